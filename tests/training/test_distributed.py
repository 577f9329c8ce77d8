"""Multi-process data-parallel training on CPU: 2 gloo processes started by torchrun."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from training_helpers import REPO_ROOT, cli_args, run_dir, tiny_acdc  # noqa: F401

from medseg.models.advanced_triplet_recon_segmentation_model import AdvancedTripletReconSegmentationModel

pytestmark = pytest.mark.slow
COOP = str(REPO_ROOT / "config" / "ACDC" / "cooperative_training.json")


def _can_spawn() -> bool:
    if not (dist.is_available() and dist.is_gloo_available()):
        return False
    try:
        return subprocess.run([sys.executable, "-c", "pass"], timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.skipif(not _can_spawn(), reason="platform cannot spawn gloo worker processes")
def test_two_process_gloo_run(tiny_acdc: Path, tmp_path: Path) -> None:
    save_dir = tmp_path / "saved"
    # "--" stops torchrun from reading the script's flags (it rejects --log as an ambiguous prefix of --log-dir);
    # --debug makes every epoch end check that both processes hold bit-identical parameters
    argv = cli_args(COOP, tiny_acdc, save_dir, "--log", "--debug", epochs=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "--", "medseg/train_adv_supervised_segmentation_triplet.py", *argv],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "2 process(es)" in result.stderr
    run = run_dir(save_dir)
    model = AdvancedTripletReconSegmentationModel(checkpoint_dir=run / "model" / "best" / "checkpoints", device="cpu")
    assert model.predict(torch.rand(2, 1, 32, 32), n_iter=2).shape == (2, 4, 32, 32)
    snapshot = torch.load(run / "model" / "last" / "checkpoints" / "FCN_16_standard.pkl", weights_only=True)
    assert snapshot["epoch"] == 2 and snapshot["run"]["world_size"] == 2 and len(snapshot["rng"]) == 2
    # 4 training slices split over 2 processes, loader batch 2: one iteration per process and epoch
    assert snapshot["global_iteration"] == 2
    with open(run / "log" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["epoch"] for r in rows] == ["0", "1"] and all(r["n_iterations"] == "2" for r in rows)
    assert len(list((run / "log").glob("events.out.tfevents.*"))) == 1  # rank 0 only
