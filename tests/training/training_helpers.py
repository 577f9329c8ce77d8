"""Fixtures and helpers of the training-loop tests: tiny data, tiny-budget command lines, run-folder paths.

(``conftest.py`` of this folder belongs to the step tests; the fixtures here are imported by the test modules.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from medseg.phantom.tiny import write_tiny_acdc

REPO_ROOT = Path(__file__).resolve().parents[2]
#: the device of the loop tests (``MEDSEG_TEST_DEVICE=cuda`` runs them on a GPU; default: the CPU)
TEST_DEVICE = os.environ.get("MEDSEG_TEST_DEVICE", "cpu")
COOPERATIVE = "./config/ACDC/cooperative_training.json"
STANDARD = "./config/ACDC/standard_training.json"


@pytest.fixture(scope="session")
def tiny_acdc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All 100 ACDC ids, 4 slices of 72x80 per frame."""
    return write_tiny_acdc(tmp_path_factory.mktemp("data") / "ACDC")


@pytest.fixture()
def in_repo_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from the repository root, as the published command lines expect."""
    monkeypatch.chdir(REPO_ROOT)
    return REPO_ROOT


def tiny_overrides(root: Path, frames: str = '"ES"', batch: int = 4, epochs: int = 2) -> list[str]:
    """``--set`` arguments for a seconds-long run: 32x32 crops, small batches, few epochs."""
    pairs = {
        "data.root_dir": str(root),
        "data.frame": frames,
        "data.pad_size": "[48,48,1]",
        "data.crop_size": "[32,32,1]",
        "learning.batch_size": str(batch),
        "learning.n_epochs": str(epochs),
    }
    args: list[str] = []
    for key, value in pairs.items():
        args += ["--set", f"{key}={value}"]
    return args


def cli_args(config: str, root: Path, save_dir: Path, *extra: str, setting: str = "one_shot", seed: int = 40,
             **override_kwargs) -> list[str]:
    """A complete, fast command line (run from the repository root) on :data:`TEST_DEVICE`."""
    return ["--json_config_path", config, "--cval", "0", "--data_setting", setting, "--seed", str(seed),
            "--save_dir", str(save_dir), "--n_workers", "0", "--no_progress", "--device", TEST_DEVICE,
            *tiny_overrides(root, **override_kwargs), *extra]


def run_dir(save_dir: Path, config_name: str = "ACDC/cooperative_training", setting: str = "one_shot") -> Path:
    """The published run folder of a test run."""
    return save_dir / f"train_ACDC_{setting}_n_cls_4" / config_name / "0"


def train_error(capsys: pytest.CaptureFixture, argv: list[str], code: int = 2) -> str:
    """Run ``medseg-train`` in-process, expect exit ``code`` with exactly one error line (no traceback); return it."""
    from medseg.cli.train import main

    capsys.readouterr()
    returned = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("medseg-train: error: ")]
    assert returned == code and len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


def train_single_threaded(argv: list[str]) -> int:
    """``medseg-train`` in-process with one torch thread (tiny tensors: threads only cost; used by module fixtures,
    where the function-scoped ``single_thread`` fixture is not active yet)."""
    import torch

    from medseg.cli.train import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(argv)
    finally:
        torch.set_num_threads(threads)
