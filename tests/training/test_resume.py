"""Never lose work: exact resume, refusal of foreign snapshots, SIGTERM leaves a loadable snapshot."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
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

pytestmark = pytest.mark.slow
COOP = str(REPO_ROOT / "config" / "ACDC" / "cooperative_training.json")
STD = str(REPO_ROOT / "config" / "ACDC" / "standard_training.json")
SNAPSHOT = Path("model") / "last" / "checkpoints" / "FCN_16_standard.pkl"


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_training_state(a: dict, b: dict) -> None:
    assert (a["epoch"], a["batches_done"], a["global_iteration"]) == (b["epoch"], b["batches_done"],
                                                                      b["global_iteration"])
    for module, state in a["model_state"].items():
        for key, tensor in state.items():
            assert torch.equal(tensor, b["model_state"][module][key]), f"{module}.{key} differs"
    for module, opt in a["optimizer_state"].items():
        for pid, slots in opt["state"].items():
            for slot, value in slots.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optimizer_state"][module]["state"][pid][slot]))
    assert a["best_score"] == b["best_score"]


def metrics_without_time(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def one_epoch_run(tiny_acdc: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 1-epoch cooperative run (its save_dir)."""
    save_dir = tmp_path_factory.mktemp("one_epoch")
    assert train_single_threaded(cli_args(COOP, tiny_acdc, save_dir, epochs=1)) == 0
    return save_dir


def test_k_plus_n_minus_k_epochs_equal_n_epochs(tiny_acdc: Path, tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    assert main(cli_args(COOP, tiny_acdc, straight, epochs=3)) == 0
    resumed = tmp_path / "resumed"
    assert main(cli_args(COOP, tiny_acdc, resumed, epochs=1)) == 0
    assert main(cli_args(COOP, tiny_acdc, resumed, "--resume", "auto", epochs=3)) == 0
    a, b = run_dir(straight), run_dir(resumed)
    assert_same_training_state(load(a / SNAPSHOT), load(b / SNAPSHOT))
    assert metrics_without_time(a / "log" / "metrics.csv") == metrics_without_time(b / "log" / "metrics.csv")
    for module in ("image_encoder", "shape_decoder"):
        best_a = load(a / "model" / "best" / "checkpoints" / f"{module}.pth")
        best_b = load(b / "model" / "best" / "checkpoints" / f"{module}.pth")
        assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)


def test_snapshot_of_another_config_is_refused(tiny_acdc: Path, tmp_path: Path, one_epoch_run: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    snapshot = run_dir(one_epoch_run) / SNAPSHOT
    assert "learning.latent_DA" in train_error(capsys, cli_args(STD, tiny_acdc, tmp_path, "--resume_pkl_path",
                                                                str(snapshot)))
    assert "data.crop_size" in train_error(capsys, cli_args(COOP, tiny_acdc, tmp_path, "--resume_pkl_path",
                                                            str(snapshot), "--set", "data.crop_size=[48,48,1]"))
    assert "data_setting" in train_error(capsys, cli_args(COOP, tiny_acdc, tmp_path, "--resume_pkl_path",
                                                          str(snapshot), setting="three_shot"))
    assert "--seed 40" in train_error(capsys, cli_args(COOP, tiny_acdc, tmp_path, "--resume_pkl_path", str(snapshot),
                                                       seed=41))
    assert not list(tmp_path.rglob("config.json")), "a rejected run writes nothing into its folder"


def _spawn(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen([sys.executable, "medseg/train_adv_supervised_segmentation_triplet.py", *argv],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigterm_leaves_a_loadable_snapshot_that_resumes_exactly(tiny_acdc: Path, tmp_path: Path) -> None:
    interrupted = tmp_path / "interrupted"
    proc = _spawn(cli_args(COOP, tiny_acdc, interrupted, epochs=200))
    snapshot_file = run_dir(interrupted) / SNAPSHOT
    deadline = time.monotonic() + 240
    while not snapshot_file.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert snapshot_file.exists(), proc.communicate(timeout=30)[0] if proc.poll() is not None else "no snapshot"
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=240)
    assert proc.returncode == 128 + signal.SIGTERM, output
    leftovers = [p for p in run_dir(interrupted).rglob("*") if ".tmp" in p.name]
    assert not leftovers, leftovers
    state = load(snapshot_file)
    assert state["epoch"] >= 1 and "rng" in state
    # the stop names how to continue once, and the snapshot once (the loop's own "snapshot written" line aside)
    warning = [line for line in output.splitlines() if "training interrupted by SIGTERM" in line]
    assert len(warning) == 1 and warning[0].count(str(snapshot_file)) == 1 and "--resume auto" in warning[0]
    # a snapshot inside an epoch keeps the time spent in it, so the resumed epoch's epoch_seconds counts it
    assert (state["epoch_seconds"] > 0) == (state["batches_done"] > 0)
    status = json.loads((run_dir(interrupted) / "log" / "status.json").read_text())
    assert (status["state"], status["epoch"]) == ("interrupted", state["epoch"])
    stop_at = state["global_iteration"] + 3  # continue into (or past) the interrupted epoch, then stop mid-way

    # fresh processes for both continuations, like the interrupted part (a long-lived test process has another heap
    # layout, and some CPU kernels round differently depending on buffer alignment)
    straight = tmp_path / "straight"
    for argv in (cli_args(COOP, tiny_acdc, straight, "--set", f"learning.max_iteration={stop_at}", epochs=200),
                 cli_args(COOP, tiny_acdc, interrupted, "--resume", "auto", "--set",
                          f"learning.max_iteration={stop_at}", epochs=200)):
        proc = _spawn(argv)
        output, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, output
    assert_same_training_state(load(run_dir(straight) / SNAPSHOT), load(snapshot_file))
    if state["batches_done"] > 0:
        with open(run_dir(interrupted) / "log" / "metrics.csv", newline="") as handle:
            row = next(r for r in csv.DictReader(handle) if int(r["epoch"]) == state["epoch"])
        assert float(row["epoch_seconds"]) >= state["epoch_seconds"]


def test_sigterm_to_the_process_group_is_an_interruption_not_a_failure(tiny_acdc: Path, tmp_path: Path) -> None:
    """``kill -TERM -- -PGID`` (a scheduler stopping a job) ends the DataLoader workers too; the training must stop
    with a snapshot and exit 143, not fail on the dead worker."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    save = tmp_path / "group"
    proc = subprocess.Popen([sys.executable, "medseg/train_adv_supervised_segmentation_triplet.py",
                             *cli_args(COOP, tiny_acdc, save, "--n_workers", "2", epochs=200)],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    snapshot_file = run_dir(save) / SNAPSHOT
    deadline = time.monotonic() + 240
    while not snapshot_file.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert snapshot_file.exists(), proc.communicate(timeout=30)[0] if proc.poll() is not None else "no snapshot"
    time.sleep(0.5)  # inside the next epoch, workers busy
    os.killpg(proc.pid, signal.SIGTERM)
    output, _ = proc.communicate(timeout=240)
    assert proc.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert "Traceback" not in output and "failed" not in output.lower(), output[-3000:]
    assert load(snapshot_file)["epoch"] >= 1
