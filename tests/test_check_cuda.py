"""``scripts/check_cuda.py``: on a CPU-only machine every CUDA-only section is SKIP and the others PASS (they are
real checks on the CPU); a failing section makes the exit code non-zero."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "check_cuda.py"
CUDA_ONLY = {"step-bf16", "step-fp16", "cpu-vs-cuda", "cpu-snapshot-on-cuda", "test-gpu-vs-cpu", "ddp-nccl"}
EVERYWHERE = {"step-fp32", "host-reads", "predict-folded", "train-resume"}


def _module(monkeypatch):
    spec = importlib.util.spec_from_file_location("check_cuda", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "check_cuda", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_check_cuda_runs_every_section(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(SCRIPT), "--keep", str(tmp_path / "work")], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=1200)
    statuses = {name: status for status, name in re.findall(r"^(PASS|FAIL|SKIP) (\S+) \(", result.stdout, flags=re.M)}
    assert set(statuses) == CUDA_ONLY | EVERYWHERE, result.stdout + result.stderr[-3000:]
    assert result.returncode == 0 and "FAIL" not in statuses.values(), result.stdout + result.stderr[-3000:]
    if not torch.cuda.is_available():
        assert {statuses[name] for name in CUDA_ONLY} == {"SKIP"}
        assert {statuses[name] for name in EVERYWHERE} == {"PASS"}
        assert "1 + 1 epochs vs 2 epochs: weights and Adam moments max rel diff 0.00e+00" in result.stdout


def test_a_failing_section_fails_the_check(monkeypatch, capsys) -> None:
    module = _module(monkeypatch)

    def broken() -> str:
        raise AssertionError("2 host reads")

    monkeypatch.setattr(module, "section_host_reads", broken)
    assert module.main(["--sections", "host-reads"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^FAIL host-reads \([\d.]+ s\): AssertionError: 2 host reads$", out, flags=re.M)
    assert "0 passed, 1 failed, 0 skipped" in out


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_step_within_its_host_sync_budget(precision: str, monkeypatch) -> None:
    """On a GPU: the loop's iteration in each precision, finite, all modules updated, within the sync budget."""
    module = _module(monkeypatch)
    try:
        detail = module.section_step(precision, torch.device("cuda"), 64, 4)
    except module.Skip as why:
        pytest.skip(str(why))
    assert "host sync(s) per iteration" in detail
