"""Status files: where a long task stands, written by the task and read by whoever shows progress.

A training writes ``<run folder>/log/status.json`` and a test of the robustness experiment writes ``status.json`` in
its test folder; the experiment runner, which starts them as child processes, reads these files and renders one live
line per running task (:mod:`medseg.experiments.progress`). A status file is a small JSON object, replaced
atomically, so a reader never sees half of one; it says what the task is doing, not what it produced (its results
are the usual files), and a missing or unreadable one just means "no status yet".

Keys of a training's status (``kind`` ``"train"``): ``state`` (``training``, ``finished``, ``interrupted``),
``epoch`` (0-based epoch in progress, or ``n_epochs`` when finished), ``n_epochs``, ``batch`` and ``batches``
(iterations done in this epoch and per epoch), ``global_iteration``, ``planned_iterations`` (the whole run),
``eta_s`` (seconds left, from this session's pace, validation included; null before the first iteration),
``val_dice`` and ``val_epoch`` (last validation mean Dice and its epoch, null before the first), ``updated``
(UNIX time). A test's (``kind`` ``"test"``): ``state`` (``testing``, ``finished``), ``dataset``, ``dataset_index``,
``n_datasets``, ``done`` and ``total`` (volumes of the current test set), ``updated``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from medseg.io.atomic import atomic_write_text

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
STATUS_NAME = "status.json"
WRITE_EVERY_S = 2.0  # least time between two status writes of one task (state changes are written at once)


def write_status(path: PathLike, status: dict[str, Any]) -> None:
    """Replace ``path`` with ``status`` (plus ``updated``) atomically; a failure is logged, never raised (progress
    display must not stop the work)."""
    try:
        atomic_write_text(path, json.dumps({**status, "updated": round(time.time(), 2)}) + "\n")
    except OSError as err:
        logger.debug("cannot write status %s: %s", path, err)


def read_status(path: PathLike) -> dict[str, Any] | None:
    """The status in ``path``; None if there is none (yet) or it is not a JSON object."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


class TrainingStatus:
    """A training's status file, written by the training loop (rank 0).

    Call :meth:`iteration` after every iteration (written at most every :data:`WRITE_EVERY_S` seconds),
    :meth:`validated` after every validation and :meth:`end` when the loop ends.
    """

    def __init__(self, path: PathLike, n_epochs: int, batches: int, planned_iterations: int,
                 start_iteration: int) -> None:
        self.path = Path(path)
        self.started = time.monotonic()
        self.start_iteration = start_iteration
        self.last_write = 0.0
        self.status: dict[str, Any] = {
            "kind": "train", "state": "training", "epoch": 0, "n_epochs": n_epochs, "batch": 0, "batches": batches,
            "global_iteration": start_iteration, "planned_iterations": planned_iterations, "eta_s": None,
            "val_dice": None, "val_epoch": None}

    def _eta(self, global_iteration: int) -> float | None:
        done = global_iteration - self.start_iteration
        if done <= 0:
            return None
        left = max(self.status["planned_iterations"] - global_iteration, 0)
        return round((time.monotonic() - self.started) / done * left, 1)

    def iteration(self, epoch: int, batch: int, global_iteration: int, force: bool = False) -> None:
        self.status.update(epoch=epoch, batch=batch, global_iteration=global_iteration,
                           eta_s=self._eta(global_iteration))
        now = time.monotonic()
        if force or now - self.last_write >= WRITE_EVERY_S:
            self.last_write = now
            write_status(self.path, self.status)

    def validated(self, epoch: int, mean_dice: float) -> None:
        self.status.update(val_dice=None if mean_dice != mean_dice else round(float(mean_dice), 4), val_epoch=epoch)
        self.iteration(epoch, self.status["batch"], self.status["global_iteration"], force=True)

    def end(self, state: str, epoch: int) -> None:
        """``state``: ``finished`` or ``interrupted``; ``epoch``: the next epoch to run."""
        self.status.update(state=state, epoch=epoch, eta_s=0.0 if state == "finished" else None)
        write_status(self.path, self.status)


class EvaluationStatus:
    """A test's status file: a progress-bar factory for :func:`medseg.evaluation.runner.run_tests` (one bar per test
    set) that writes the status instead of drawing."""

    def __init__(self, path: PathLike, n_datasets: int) -> None:
        self.path = Path(path)
        self.status: dict[str, Any] = {"kind": "test", "state": "testing", "dataset": None, "dataset_index": 0,
                                       "n_datasets": n_datasets, "done": 0, "total": 0}
        self.index = -1
        self.last_write = 0.0
        write_status(self.path, self.status)

    def __call__(self, description: str, total: int, initial: int = 0) -> EvaluationStatus:
        self.index += 1
        self.status.update(dataset=description.rsplit(" / ", 1)[-1], dataset_index=self.index, done=initial,
                           total=total)
        self.last_write = time.monotonic()
        write_status(self.path, self.status)
        return self

    def update(self, n: int = 1) -> None:
        self.status["done"] += n
        now = time.monotonic()
        if now - self.last_write >= WRITE_EVERY_S:
            self.last_write = now
            write_status(self.path, self.status)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        return None

    def close(self) -> None:
        return None

    def end(self) -> None:
        self.status.update(state="finished", dataset_index=self.status["n_datasets"])
        write_status(self.path, self.status)
