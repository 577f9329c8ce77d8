"""The experiment's progress display: task lines from status files, tasks done / total, the overall ETA, and the
two ways of drawing (live block on a terminal, plain lines elsewhere). No timing: the durations are given."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from medseg.experiments.progress import ExperimentProgress, format_duration
from medseg.experiments.tasks import RunSpec
from medseg.utils.status import STATUS_NAME, EvaluationStatus, TrainingStatus, read_status, write_status


def _tasks():
    std, coop = RunSpec("standard", Path("s.json"), 0, 40), RunSpec("cooperative", Path("c.json"), 0, 40)
    trains = [("train", std, None), ("train", coop, None)]
    tests = [("test", s, n) for n in (1, 2) for s in (std, coop)]
    return trains + tests


def _board(tmp_path: Path, finished: dict, live: bool, jobs: int = 2):
    tasks = _tasks()
    trains = {t[1]: t for t in tasks if t[0] == "train"}
    out = io.StringIO()
    board = ExperimentProgress(
        tasks, jobs, label=lambda t: f"{t[0]} {t[1].method}" + (f" n_iter {t[2]}" if t[2] else ""),
        status_path=lambda t: tmp_path / f"{t[0]}_{t[1].method}_{t[2]}" / STATUS_NAME,
        finished_seconds=lambda t: finished.get((t[0], t[1].method, t[2])),
        dependency=lambda t: None if t[0] == "train" else trains[t[1]], stream=out, live=live)
    return board, tasks, out


def test_overall_eta_places_the_waiting_tests_after_their_training(tmp_path: Path) -> None:
    # standard training and its two tests are done (100 s, 30 s and 40 s); cooperative training has 200 s left
    finished = {("train", "standard", None): 100.0, ("test", "standard", 1): 30.0, ("test", "standard", 2): 40.0}
    board, tasks, _ = _board(tmp_path, finished, live=False)
    coop = tasks[1]
    board.task_started(coop)
    write_status(tmp_path / "train_cooperative_None" / STATUS_NAME,
                 {"kind": "train", "state": "training", "epoch": 4, "n_epochs": 15, "batch": 12, "batches": 51,
                  "eta_s": 200.0, "val_dice": 0.5612, "val_epoch": 3})
    board.refresh()
    left, exact = board.overall_remaining()
    # both cooperative tests start when its training ends, one per slot: 200 + max(30, 40)
    assert exact and left == pytest.approx(240.0)
    assert "3 of 6 tasks done" in board.summary() and "about 4:00 left" in board.summary()
    line = board.task_line(coop, read_status(tmp_path / "train_cooperative_None" / STATUS_NAME))
    assert line == "train cooperative  epoch 5/15  iteration 12/51  val Dice 0.561 (epoch 4)  ETA 3:20"

    # one slot: the two tests run one after the other
    board.jobs = 1
    assert board.overall_remaining() == (pytest.approx(270.0), True)


def test_unknown_durations_make_the_eta_a_lower_bound(tmp_path: Path) -> None:
    board, tasks, _ = _board(tmp_path, {}, live=False)
    for task in tasks[:2]:
        board.task_started(task)
    assert "at least" in board.summary() and "0 of 6 tasks done" in board.summary()
    assert board.task_line(tasks[0], None).startswith("train standard  starting")


def test_a_test_reports_its_test_set_and_volumes(tmp_path: Path) -> None:
    status = EvaluationStatus(tmp_path / STATUS_NAME, n_datasets=6)
    assert read_status(tmp_path / STATUS_NAME)["state"] == "testing"
    bar = status("standard (cval 0) / ACDC", 20)
    for _ in range(20):
        bar.update(1)
    bar.close()
    status("standard (cval 0) / RandomBias", 20)
    saved = read_status(tmp_path / STATUS_NAME)
    assert (saved["dataset"], saved["dataset_index"], saved["total"]) == ("RandomBias", 1, 20)
    board, tasks, _ = _board(tmp_path, {("train", "standard", None): 10.0}, live=False)
    test = tasks[2]
    (tmp_path / "test_standard_1").mkdir()
    (tmp_path / STATUS_NAME).rename(tmp_path / "test_standard_1" / STATUS_NAME)
    board.task_started(test)
    saved["updated"] = time.time()
    assert "test standard n_iter 1  RandomBias (2/6)  0/20 volumes" in board.task_line(test, saved)
    status.end()


def test_training_status_eta_counts_this_sittings_pace(tmp_path: Path) -> None:
    status = TrainingStatus(tmp_path / STATUS_NAME, n_epochs=3, batches=10, planned_iterations=30,
                            start_iteration=10)
    status.started -= 20.0  # 20 s ago, 10 iterations of this sitting done: 2 s each, 10 left
    status.iteration(1, 10, 20, force=True)
    assert read_status(tmp_path / STATUS_NAME)["eta_s"] == pytest.approx(20.0, rel=0.05)
    status.validated(1, float("nan"))
    assert read_status(tmp_path / STATUS_NAME)["val_dice"] is None
    status.end("interrupted", 2)
    saved = read_status(tmp_path / STATUS_NAME)
    assert (saved["state"], saved["epoch"], saved["eta_s"]) == ("interrupted", 2, None)


def test_live_block_is_redrawn_in_place_and_log_lines_go_above_it(tmp_path: Path) -> None:
    board, tasks, out = _board(tmp_path, {}, live=True)
    board.task_started(tasks[0])
    board.tick()
    first = out.getvalue()
    assert first.startswith("experiment: 0 of 6 tasks done") and first.count("\n") == 2
    board.tick()
    assert out.getvalue()[len(first):].startswith("\x1b[2F\x1b[J")  # the old block erased before the new one
    above = board.above(out)
    above.write("a log line\n")
    assert out.getvalue().endswith("\x1b[2F\x1b[Ja log line\n") and board.drawn == 0
    board.close()
    assert "[progress]" not in out.getvalue()


def test_format_duration() -> None:
    assert (format_duration(None), format_duration(59.6), format_duration(3725)) == ("?", "1:00", "1:02:05")


def test_plain_lines_show_a_long_epoch_moving(tmp_path: Path) -> None:
    """Without a terminal a training prints a line when an epoch ends and, inside a long epoch, again after
    ``plain_every_s`` if it moved; never one line per tick."""
    board, tasks, out = _board(tmp_path, {}, live=False)
    board.plain_every_s = 60.0
    train = tasks[1]  # the cooperative training
    board.task_started(train)
    status = TrainingStatus(tmp_path / "train_cooperative_None" / STATUS_NAME, n_epochs=1, batches=805,
                            planned_iterations=805, start_iteration=0)
    status.iteration(0, 200, 200, force=True)
    entry = board.running[id(train)]
    board.tick()
    assert len(out.getvalue().splitlines()) == 1  # only "started": not a minute yet
    entry.last_plain -= 61.0  # a minute later
    board.tick()
    board.tick()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "train cooperative  epoch 1/1  iteration 200/805" in lines[1]
    entry.last_plain -= 61.0  # another minute, but the training has not moved: nothing new to say
    board.tick()
    assert len(out.getvalue().splitlines()) == 2
    status.iteration(0, 400, 400, force=True)
    board.tick()
    assert "iteration 400/805" in out.getvalue().splitlines()[-1]
    status.validated(0, 0.61)
    board.tick()  # the end of the epoch is always shown
    assert "val Dice 0.610 (epoch 1)" in out.getvalue().splitlines()[-1]
    assert len(out.getvalue().splitlines()) == 4
