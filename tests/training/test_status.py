"""The training's status file and the experiment's progress display of it, on a tiny run."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from training_helpers import STANDARD, cli_args, in_repo_root, run_dir, tiny_acdc  # noqa: F401

from medseg.experiments.progress import ExperimentProgress
from medseg.experiments.tasks import RunSpec
from medseg.cli.train import main
from medseg.utils.status import STATUS_NAME, read_status

pytestmark = pytest.mark.slow


def test_a_tiny_training_reports_its_progress_and_the_board_shows_it(tiny_acdc: Path, tmp_path: Path,
                                                                     in_repo_root: Path, single_thread) -> None:
    save_dir = tmp_path / "saved"
    assert main(cli_args(STANDARD, tiny_acdc, save_dir, epochs=2)) == 0
    run = run_dir(save_dir, "ACDC/standard_training")
    status = read_status(run / "log" / STATUS_NAME)
    assert status is not None and status["kind"] == "train" and status["state"] == "finished"
    assert (status["epoch"], status["n_epochs"], status["val_epoch"]) == (2, 2, 1)
    assert status["batches"] > 0 and status["global_iteration"] == status["planned_iterations"] == 2 * status["batches"]
    assert status["eta_s"] == 0.0
    metrics = (run / "log" / "metrics.csv").read_text().splitlines()
    last_dice = float(dict(zip(metrics[0].split(","), metrics[-1].split(",")))["dice/val_dice"])
    assert status["val_dice"] == pytest.approx(last_dice, abs=1e-4)  # the score the curves show

    spec = RunSpec("standard", Path(STANDARD), 0, 40)
    train, test = ("train", spec, None), ("test", spec, 2)
    paths = {id(train): run / "log" / STATUS_NAME, id(test): tmp_path / "test" / STATUS_NAME}
    finished: dict[int, float] = {}
    out = io.StringIO()
    board = ExperimentProgress(
        [train, test], 2, label=lambda t: f"{t[0]} {t[1].method}", status_path=lambda t: paths[id(t)],
        finished_seconds=lambda t: finished.get(id(t)), dependency=lambda t: train if t is test else None,
        stream=out, live=False)
    board.task_started(train)
    board.tick()
    board.tick()  # one line per validated epoch, not one per tick
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[progress] started train standard; 0 of 2 tasks done")
    assert len(lines) == 2 and "epoch 2/2" in lines[1] and f"val Dice {status['val_dice']:.3f} (epoch 2)" in lines[1]
    assert "at least" in lines[1]  # the test's duration is not known yet
    finished[id(train)] = 12.0
    board.task_finished(train, ok=True)
    assert "finished train standard" in out.getvalue().splitlines()[-1]
    assert "1 of 2 tasks done" in out.getvalue().splitlines()[-1]


def test_the_status_file_of_an_earlier_sitting_is_not_shown(tiny_acdc: Path, tmp_path: Path) -> None:
    path = tmp_path / "log" / STATUS_NAME
    path.parent.mkdir()
    path.write_text(json.dumps({"kind": "train", "state": "interrupted", "epoch": 3, "n_epochs": 9, "batch": 0,
                                "batches": 5, "eta_s": None, "val_dice": 0.5, "val_epoch": 2, "updated": 1.0}))
    spec = RunSpec("cooperative", Path("x.json"), 0, 40)
    train = ("train", spec, None)
    board = ExperimentProgress([train], 1, label=lambda t: "train cooperative", status_path=lambda t: path,
                               finished_seconds=lambda t: None, dependency=lambda t: None, stream=io.StringIO(),
                               live=True)
    board.task_started(train)
    assert board.lines()[1].strip().startswith("train cooperative  starting")
