"""The experiment's console progress: one status per running task, tasks done / total and an overall ETA.

The trainings and tests run in child processes (:mod:`medseg.experiments.parallel`); each writes a small status file
(:mod:`medseg.utils.status`) that the runner reads about once a second. On a terminal the status block is redrawn in
place below the log lines::

    experiment: 2 of 6 tasks done, 3:12 elapsed, about 14:05 left
      train cooperative  epoch 4/15  iteration 12/51  val Dice 0.561 (epoch 3)  ETA 11:50
      test standard n_iter 2  RandomGhosting (4/6) 7/20

Elsewhere (a log file, a pipe) it prints plain lines instead: when a task starts or ends, when a training finishes
an epoch, and for a training in the middle of a long epoch every ``plain_every_s`` seconds (two minutes by default), so
that a log shows a one-epoch training moving. The overall ETA places the waiting tasks on the free slots after the
running ones, with the durations of finished tasks of the same kind (a test waits for its training); while a duration
is still unknown (no such task has finished yet) it is a lower bound, shown as "at least".
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from medseg.utils.status import read_status

Task = tuple[str, Any, "int | None"]  # (kind, spec, n_iter), as in medseg.experiments.runner


def format_duration(seconds: float | None) -> str:
    """``m:ss`` or ``h:mm:ss``; ``?`` for None."""
    if seconds is None:
        return "?"
    total = max(int(round(seconds)), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass
class _Running:
    task: Task
    started_wall: float  # time.time(), to ignore a status file left by an earlier sitting
    started: float  # time.monotonic()
    last_epoch_line: int = -1
    last_plain: float = 0.0  # time.monotonic() of this task's last plain line (its start before the first)
    last_plain_iteration: int = -1


class ExperimentProgress:
    """Renders the experiment's progress from the tasks' status files (a monitor of
    :func:`medseg.experiments.parallel.run_parallel`).

    Args:
        tasks: every task of the experiment, in the runner's order.
        jobs: tasks at once.
        label: task -> short name (``train cooperative``).
        status_path: task -> its status file.
        finished_seconds: task -> how long it took if it is finished, else None.
        dependency: task -> the task it waits for (a test: its training), or None.
        stream: where to draw (default ``sys.stderr``).
        live: redraw in place (default: whether ``stream`` is a terminal); False prints plain lines.
        plain_every_s: with plain lines, a running training's line again after this many seconds if it moved.
    """

    def __init__(self, tasks: Sequence[Task], jobs: int, *, label: Callable[[Task], str],
                 status_path: Callable[[Task], Path], finished_seconds: Callable[[Task], float | None],
                 dependency: Callable[[Task], Task | None], stream: TextIO | None = None,
                 live: bool | None = None, plain_every_s: float = 120.0) -> None:
        self.tasks, self.jobs = list(tasks), jobs
        self.label, self.status_path = label, status_path
        self.finished_seconds, self.dependency = finished_seconds, dependency
        self.stream = stream if stream is not None else sys.stderr
        self.live = live if live is not None else bool(getattr(self.stream, "isatty", lambda: False)())
        self.plain_every_s = plain_every_s
        self.running: dict[int, _Running] = {}
        self.done: dict[int, float | None] = {}  # task -> seconds it took, None while not finished (see refresh)
        self.started = time.monotonic()
        self.drawn = 0  # lines of the live block on screen

    # -- monitor interface -------------------------------------------------------------------------------------------
    def task_started(self, task: Task) -> None:
        now = time.monotonic()
        self.running[id(task)] = _Running(task, time.time(), now, last_plain=now)
        if not self.live:
            self._print(f"started {self.label(task)}; {self.summary()}")

    def task_finished(self, task: Task, ok: bool) -> None:
        entry = self.running.pop(id(task), None)
        took = time.monotonic() - entry.started if entry is not None else None
        if not self.live:
            how = "finished" if ok else "stopped"
            self._print(f"{how} {self.label(task)} after {format_duration(took)}; {self.summary()}")

    def tick(self) -> None:
        if self.live:
            self.draw()
            return
        for entry in self.running.values():
            status = self._status(entry)
            if status is None or status.get("kind") != "train":
                continue
            now, iteration = time.monotonic(), int(status.get("global_iteration", -1))
            new_epoch = status.get("val_epoch") is not None and status["val_epoch"] > entry.last_epoch_line
            moved = now - entry.last_plain >= self.plain_every_s and iteration > entry.last_plain_iteration
            if new_epoch or moved:
                if new_epoch:
                    entry.last_epoch_line = status["val_epoch"]
                entry.last_plain, entry.last_plain_iteration = now, iteration
                self._print(f"{self.task_line(entry.task, status, entry)}; {self.summary()}")

    def close(self) -> None:
        if self.live:
            self.clear()

    # -- content -----------------------------------------------------------------------------------------------------
    def _status(self, entry: _Running) -> dict[str, Any] | None:
        status = read_status(self.status_path(entry.task))
        if status is None or float(status.get("updated", 0)) < entry.started_wall - 1.0:
            return None  # none yet, or left by an earlier sitting
        return status

    def task_line(self, task: Task, status: dict[str, Any] | None, entry: _Running | None = None) -> str:
        """One running task's status in words."""
        name = self.label(task)
        elapsed = time.monotonic() - entry.started if entry is not None else None
        if status is None:
            return f"{name}  starting ({format_duration(elapsed)})"
        if status.get("kind") == "train":
            epoch, n_epochs = int(status["epoch"]), int(status["n_epochs"])
            parts = [name, f"epoch {min(epoch + 1, n_epochs)}/{n_epochs}",
                     f"iteration {status['batch']}/{status['batches']}"]
            if status.get("val_dice") is not None:
                parts.append(f"val Dice {status['val_dice']:.3f} (epoch {int(status['val_epoch']) + 1})")
            parts.append(f"ETA {format_duration(status.get('eta_s'))}")
            return "  ".join(parts)
        dataset = status.get("dataset") or "loading the model"
        index, total_sets = int(status.get("dataset_index", 0)), int(status.get("n_datasets", 0))
        return (f"{name}  {dataset} ({min(index + 1, total_sets)}/{total_sets})  "
                f"{status.get('done', 0)}/{status.get('total', 0)} volumes  ETA {format_duration(self._remaining(task))}")

    def refresh(self) -> None:
        """Read which tasks are finished (once per drawing)."""
        self.done = {id(t): self.finished_seconds(t) for t in self.tasks}

    def summary(self) -> str:
        """``k of n tasks done, <elapsed> elapsed, about <t> left``."""
        self.refresh()
        done = sum(v is not None for v in self.done.values())
        left, exact = self.overall_remaining()
        if done == len(self.tasks):
            eta = "done"
        else:
            eta = f"{'about' if exact else 'at least'} {format_duration(left)} left"
        return (f"{done} of {len(self.tasks)} tasks done, {format_duration(time.monotonic() - self.started)} "
                f"elapsed, {eta}")

    def _typical(self, task: Task) -> float | None:
        """Duration of finished tasks like ``task`` (trainings of the same method, tests with the same n_iter, trend
        tests)."""
        kind, spec, n_iter = task

        def alike(other: Task) -> bool:
            if other[0] != kind:
                return False
            return {"train": other[1].method == spec.method, "test": other[2] == n_iter}.get(kind, True)

        same = [s for t in self.tasks if alike(t) and (s := self.done.get(id(t))) is not None and s > 0]
        return sum(same) / len(same) if same else None

    def _remaining(self, task: Task) -> float | None:
        """Seconds left of a running task (None: unknown)."""
        entry = self.running.get(id(task))
        if entry is None:
            return None
        status = self._status(entry)
        if task[0] == "train":
            return None if status is None else status.get("eta_s")
        elapsed = time.monotonic() - entry.started
        typical = self._typical(task)
        if typical is not None:
            return max(typical - elapsed, 0.0)
        if status is None or not status.get("n_datasets"):
            return None
        fraction = (int(status.get("dataset_index", 0)) + status.get("done", 0) / max(status.get("total", 0), 1)) \
            / int(status["n_datasets"])
        return elapsed / fraction - elapsed if fraction >= 0.05 else None

    def overall_remaining(self) -> tuple[float, bool]:
        """(seconds until every task is done, whether every duration in it is known)."""
        exact = True
        ends: dict[int, float] = {}
        slots: list[float] = []
        running_ids = set(self.running)
        for entry in self.running.values():
            left = self._remaining(entry.task)
            if left is None:
                exact, left = False, 0.0
            ends[id(entry.task)] = left
            slots.append(left)
        slots += [0.0] * max(self.jobs - len(slots), 0)
        for task in self.tasks:
            if id(task) in running_ids or self.done.get(id(task)) is not None:
                continue
            duration = self._typical(task)
            if duration is None:
                exact, duration = False, 0.0
            before = self.dependency(task)
            ready = ends.get(id(before), 0.0) if before is not None else 0.0
            slot = min(range(len(slots)), key=slots.__getitem__)
            ends[id(task)] = max(slots[slot], ready) + duration
            slots[slot] = ends[id(task)]
        return (max(ends.values()) if ends else 0.0), exact

    # -- drawing -----------------------------------------------------------------------------------------------------
    def lines(self) -> list[str]:
        return [f"experiment: {self.summary()}"] + [  # summary first: it refreshes what is finished
            "  " + self.task_line(entry.task, self._status(entry), entry) for entry in self.running.values()]

    def _print(self, text: str) -> None:
        self.stream.write(f"[progress] {text}\n")
        self.stream.flush()

    def clear(self) -> None:
        """Erase the live block (before other output, and at the end)."""
        if self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F\x1b[J")
            self.stream.flush()
            self.drawn = 0

    def draw(self) -> None:
        width = _terminal_width(self.stream)
        text = [line[: width - 1] for line in self.lines()]
        self.clear()
        self.stream.write("".join(f"{line}\n" for line in text))
        self.stream.flush()
        self.drawn = len(text)

    def above(self, stream: TextIO) -> _Above:
        """A stream for log handlers: what is written to it appears above the live block."""
        return _Above(self, stream)


class _Above:
    """Writes through to ``stream`` after erasing the live block (it is redrawn at the next tick)."""

    def __init__(self, progress: ExperimentProgress, stream: TextIO) -> None:
        self.progress, self.stream = progress, stream

    def write(self, text: str) -> int:
        self.progress.clear()
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())


def _terminal_width(stream: TextIO) -> int:
    import os
    import shutil

    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return shutil.get_terminal_size().columns
