"""Runs are never lost or corrupted: re-runs, the lock, rejected runs and diverged runs."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from training_helpers import (  # noqa: F401
    REPO_ROOT,
    cli_args,
    run_dir,
    tiny_acdc,
    train_error,
    train_single_threaded,
)

from medseg.cli.train import main
from medseg.training.run_lock import LOCK_NAME

pytestmark = pytest.mark.slow
STD = str(REPO_ROOT / "config" / "ACDC" / "standard_training.json")
NAME = "ACDC/standard_training"


def fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tiny_acdc: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """save_dir of a finished 1-epoch standard run."""
    save_dir = tmp_path_factory.mktemp("finished")
    assert train_single_threaded(cli_args(STD, tiny_acdc, save_dir, epochs=1)) == 0
    return save_dir


def copy_run(finished: Path, tmp_path: Path) -> Path:
    target = tmp_path / "saved"
    shutil.copytree(finished, target)
    return target


def test_rerun_without_resume_is_refused_and_changes_nothing(tiny_acdc: Path, finished: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    save_dir = copy_run(finished, tmp_path)
    before = fingerprint(run_dir(save_dir, NAME))
    line = train_error(capsys, cli_args(STD, tiny_acdc, save_dir, epochs=1))
    assert "expected a new run folder, got the results of an earlier run" in line
    assert "--resume auto" in line and "--overwrite" in line
    assert fingerprint(run_dir(save_dir, NAME)) == before  # not even config.json or train.log were touched
    shutil.rmtree(run_dir(save_dir, NAME) / "model" / "last")  # --resume auto with results but no snapshot
    line = train_error(capsys, cli_args(STD, tiny_acdc, save_dir, "--resume", "auto", epochs=1))
    assert "--resume auto found no snapshot" in line and "--overwrite" in line


def test_rejected_resume_and_rejected_data_write_nothing(tiny_acdc: Path, finished: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    save_dir = copy_run(finished, tmp_path)
    before = fingerprint(run_dir(save_dir, NAME))
    line = train_error(capsys, cli_args(STD, tiny_acdc, save_dir, "--resume", "auto", "--set", "learning.lr=0.01",
                                        epochs=2))
    assert "learning.lr: snapshot 0.0001 vs now 0.01" in line
    assert fingerprint(run_dir(save_dir, NAME)) == before  # config.json of the run is kept as it was
    fresh = tmp_path / "fresh"
    line = train_error(capsys, cli_args(STD, tmp_path / "no_such_data", fresh, epochs=1))
    assert "no_such_data" in line
    assert not [p for p in fresh.rglob("*") if p.is_file()], "a rejected run leaves no file behind"


def test_live_lock_refuses_and_stale_lock_with_overwrite_starts_afresh(tiny_acdc: Path, finished: Path,
                                                                      tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    save_dir = copy_run(finished, tmp_path)
    run = run_dir(save_dir, NAME)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (run / LOCK_NAME).write_text(json.dumps({"pid": sleeper.pid, "host": __import__("socket").gethostname(),
                                                 "started": "now"}))
        line = train_error(capsys, cli_args(STD, tiny_acdc, save_dir, "--overwrite", epochs=1))
        assert f"of pid {sleeper.pid}" in line and "wait for that run to end" in line
    finally:
        sleeper.kill()
        sleeper.wait()
    stale_epoch = run / "model" / "99" / "checkpoints"
    stale_epoch.mkdir(parents=True)
    (stale_epoch / "image_encoder.pth").write_bytes(b"old run")
    (run / "model" / "best" / "checkpoints" / ".image_encoder.abcdefgh.tmp.pth").write_bytes(b"kill -9 leftover")
    assert main(cli_args(STD, tiny_acdc, save_dir, "--overwrite", epochs=1)) == 0  # the sleeper is gone: stale
    assert not (run / LOCK_NAME).exists() and not (run / "model" / "99").exists()
    assert not list(run.rglob(".*.tmp*"))
    manifest = json.loads((run / "model" / "best" / "checkpoints" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["epoch"] == 0
    data = json.loads((run / "config.json").read_text())["data"]  # the training grid travels with the weights
    assert manifest["spacing_mm"] == pytest.approx(data["new_spacing"][0]) and manifest["crop_size"] == data["crop_size"][:2]
    assert "train.lock" not in {p.name for p in run.iterdir()}
    with pytest.raises(SystemExit):  # --overwrite and --resume contradict each other
        main(cli_args(STD, tiny_acdc, save_dir, "--overwrite", "--resume", "auto", epochs=1))


def test_divergence_stops_the_run_and_saves_nothing_non_finite(tiny_acdc: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    line = train_error(capsys, cli_args(STD, tiny_acdc, tmp_path, "--set", "learning.lr=1e10", epochs=2), code=1)
    assert "training diverged at epoch 0" in line and "non-finite gradients" in line
    assert "learning.lr (now 1e+10)" in line and "learning.on_non_finite=skip" in line
    run = run_dir(tmp_path, NAME)
    saved = [p for p in run.rglob("*") if p.suffix in (".pth", ".pkl")]
    for path in saved:  # whatever exists was written before the divergence: finite
        state = torch.load(path, weights_only=True)
        tensors = state["model_state"].values() if "model_state" in state else [state]
        assert all(torch.isfinite(t).all() for s in tensors for t in s.values() if t.is_floating_point())
    assert not (run / "model" / "best").exists()
    line = train_error(capsys, cli_args(STD, tiny_acdc, tmp_path / "inf", "--set", "learning.lr=Infinity"))
    assert "'learning.lr': expected a finite number" in line
