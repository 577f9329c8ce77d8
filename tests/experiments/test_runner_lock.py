"""One experiment runner per output folder: a second one is refused with one line naming the holder of the lock."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from medseg.phantom.tiny import write_tiny_acdc

from medseg.experiments.runner import LOCK_NAME

REPO = Path(__file__).resolve().parents[2]


def load_script():
    spec = importlib.util.spec_from_file_location("run_robustness_experiment_lock",
                                                  REPO / "scripts" / "run_robustness_experiment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lock_data")
    write_tiny_acdc(root / "ACDC", shape=(2, 40, 48))
    return root


def run(data_root: Path, out: Path, *extra: str) -> int:
    return load_script().main(["--budget", "smoke", "--data_root", str(data_root), "--out", str(out), "--n_workers",
                               "0", "--device", "cpu", "--no_progress", *extra])


def plant_lock(out: Path, pid: int) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    lock = out / LOCK_NAME
    lock.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "2026-01-01T00:00:00+00:00",
                                "command": "run_robustness_experiment.py --out ..."}))
    return lock


def test_a_second_runner_on_one_out_is_refused_naming_the_holder(data_root, tmp_path, capsys):
    out = tmp_path / "exp"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = plant_lock(out, holder.pid)
        assert run(data_root, out) == 2
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if "error" in line]  # (the split notes are warnings)
        assert len(lines) == 1 and lines[0].startswith("run_robustness_experiment.py: error: ")
        assert "Traceback" not in err
        assert f"got the lock {lock} of pid {holder.pid}" in lines[0]
        assert "no other experiment runner uses" in lines[0]
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # no data step, no manifest, nothing
        assert lock.is_file()  # the holder's lock is left alone
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_is_taken_over_and_the_lock_released(data_root, tmp_path, caplog):
    out = tmp_path / "exp"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    plant_lock(out, dead.pid)
    assert run(data_root, out, "--max_tasks", "0") == 0
    assert f"taking over the stale lock of pid {dead.pid}" in caplog.text
    assert not (out / LOCK_NAME).exists() and (out / "experiment.json").is_file()
