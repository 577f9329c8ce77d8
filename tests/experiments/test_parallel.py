"""``--jobs N``: tasks in child processes, a test after its own training, failures and interrupts stop the others with
one SIGTERM each (a training then writes its snapshot), nothing is left running."""

from __future__ import annotations

import functools
import signal
import sys
import time
from pathlib import Path

import pytest

from medseg.experiments.parallel import child_main, default_threads, run_parallel


def _wait_for(path: Path, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.02)


def fake_task(root: str, task: tuple) -> bool:
    """A task of a child process: ``ok`` writes ``<name>.done``; ``hang`` waits for SIGTERM and records it; ``fail``
    raises once the hanging task is listening."""
    kind, name, _ = task
    folder = Path(root)
    if kind == "hang":
        def stop(signum, frame):
            (folder / f"{name}.stopped").write_text(signal.Signals(signum).name)
            sys.exit(143)

        signal.signal(signal.SIGTERM, stop)
    (folder / f"{name}.started").write_text(str(time.time()))
    if kind == "hang":
        time.sleep(120)
        return True
    if kind == "fail":
        _wait_for(folder / "h.started")
        raise ValueError(f"bad input for {name}")
    (folder / f"{name}.done").write_text(str(time.time()))
    return True


def _run(tmp_path: Path, tasks: list[tuple], jobs: int = 2, **kwargs):
    options = {"is_done": lambda t: False, "is_ready": lambda t: True, **kwargs}
    return run_parallel(tasks, jobs=jobs, target=child_main, target_args=(functools.partial(fake_task, str(tmp_path)),),
                        task_id=lambda t: t[1], threads=1, **options)


def test_a_task_waits_for_what_it_needs_and_done_tasks_are_skipped(tmp_path: Path) -> None:
    tasks = [("ok", "train", None), ("ok", "test", None), ("ok", "old", None)]
    ran, skipped = _run(tmp_path, tasks, is_done=lambda t: t[1] == "old",
                        is_ready=lambda t: t[1] != "test" or (tmp_path / "train.done").exists())
    assert ran == ["train", "test"] and skipped == ["old"]
    assert float((tmp_path / "test.started").read_text()) >= float((tmp_path / "train.done").read_text())
    assert not (tmp_path / "old.started").exists()


def test_max_tasks_starts_no_more(tmp_path: Path) -> None:
    ran, _ = _run(tmp_path, [("ok", "a", None), ("ok", "b", None), ("ok", "c", None)], max_tasks=2)
    assert ran == ["a", "b"] and not (tmp_path / "c.started").exists()


def test_a_failure_stops_the_other_tasks_and_is_raised(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bad input for f"):
        _run(tmp_path, [("hang", "h", None), ("fail", "f", None)])
    assert (tmp_path / "h.stopped").read_text() == "SIGTERM"  # one graceful signal, then the parent waited


def test_an_interrupted_parent_stops_its_children_before_it_raises(tmp_path: Path) -> None:
    def is_ready(task: tuple) -> bool:
        if task[1] == "never":
            _wait_for(tmp_path / "h.started")
            raise KeyboardInterrupt  # as the runner's SIGTERM/SIGINT handler raises it in the parent
        return True

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, [("hang", "h", None), ("ok", "never", None)], is_ready=is_ready)
    assert (tmp_path / "h.stopped").read_text() == "SIGTERM"
    assert not (tmp_path / "never.started").exists()


def test_default_threads_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert [default_threads(j) for j in (1, 2, 3, 16)] == [8, 4, 2, 1]


class _NeedsTwoArgs(Exception):
    def __init__(self, code: int, where: str) -> None:
        super().__init__(f"{where}: {code}")


def test_errors_cross_the_process_boundary_with_their_type() -> None:
    from medseg.experiments.parallel import _portable
    from medseg.experiments.tasks import TrainingStopped

    stopped = _portable(TrainingStopped(143, Path("runs/x")))
    assert isinstance(stopped, TrainingStopped) and stopped.exit_code == 143 and "interrupted" in str(stopped)
    assert type(_portable(ValueError("bad key 'lr'"))) is ValueError
    odd = _portable(_NeedsTwoArgs(3, "here"))  # pickles, but cannot be rebuilt from its message alone
    assert type(odd) is RuntimeError and "_NeedsTwoArgs: here: 3" in str(odd)
