"""Several tasks of the experiment at once (``--jobs N``): one process per task, at most N alive.

A test waits for its own training only, so on a 2-core machine with ``--jobs 2`` the standard training of a run
trains beside the cooperative one, its tests run when it finishes, and the next run's standard training follows
while the slower cooperative training goes on: the cores stay busy. Each child process runs exactly the serial
task functions (the same markers, the same run folders), with ``threads`` torch threads.

Signals come from the parent only: a child starts its own process group (Ctrl-C in a terminal reaches the parent
alone), and a parent that is interrupted sends one SIGTERM to every running child, so a training stops at its next
iteration with a snapshot (and a test is redone next time), then waits for them. A task that fails stops the others
the same way, and its error is raised in the parent.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import pickle
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

from medseg.training.run_files import setup_logging

logger = logging.getLogger(__name__)

Task = tuple[str, Any, "int | None"]  # (kind, spec, n_iter), as in medseg.experiments.runner
#: child function: (task, threads, log level, connection) -> None; sends ("ok", did_run) or ("error", exception)
ChildTarget = Callable[..., None]


@dataclass
class _Child:
    task: Task
    task_id: str
    process: Any
    conn: Connection


def default_threads(jobs: int) -> int:
    """Torch threads per child: the cores shared out (at least one)."""
    return max(1, (os.cpu_count() or 1) // jobs)


class Monitor(Protocol):
    """What :func:`run_parallel` tells a progress display (:class:`medseg.experiments.progress.ExperimentProgress`)."""

    def task_started(self, task: Task) -> None: ...
    def task_finished(self, task: Task, ok: bool) -> None: ...
    def tick(self) -> None: ...


def run_parallel(tasks: Sequence[Task], *, jobs: int, target: ChildTarget, target_args: tuple[Any, ...],
                 task_id: Callable[[Task], str], is_done: Callable[[Task], bool], is_ready: Callable[[Task], bool],
                 threads: int, max_tasks: int | None = None, monitor: Monitor | None = None,
                 tick_s: float = 1.0) -> tuple[list[str], list[str]]:
    """Run ``tasks`` (in list order as they become ready) in up to ``jobs`` child processes.

    Args:
        tasks: the task list of the serial order.
        target: module-level function run in each child as ``target(*target_args, task, threads, level, conn)``.
        is_done: whether a task is finished already (skipped without a process).
        is_ready: whether a task's inputs exist (a test: its training finished).
        max_tasks: start at most this many tasks (None: all).
        monitor: told when a task starts and ends, and called every ``tick_s`` seconds while tasks run.

    Returns:
        ``(ran, skipped)`` task ids.

    Raises:
        the first child's exception (others are stopped first); KeyboardInterrupt after stopping the children.
    """
    ctx = mp.get_context("spawn")  # no fork of a process holding OpenMP threads
    running: list[_Child] = []
    ran: list[str] = []
    skipped = [task_id(t) for t in tasks if is_done(t)]
    waiting = [t for t in tasks if not is_done(t)]
    failure: BaseException | None = None
    level = logging.getLogger().level
    try:
        while True:
            while failure is None and len(running) < jobs and (max_tasks is None or len(ran) < max_tasks):
                task = next((t for t in waiting if is_ready(t)), None)
                if task is None:
                    break
                waiting.remove(task)
                receive, send = ctx.Pipe(duplex=False)
                process = ctx.Process(target=target, args=(*target_args, task, threads, level, send),
                                      name=task_id(task), daemon=False)
                process.start()
                send.close()
                running.append(_Child(task, task_id(task), process, receive))
                ran.append(task_id(task))
                logger.info("started %s (process %d; %d running)", task_id(task), process.pid, len(running))
                if monitor is not None:
                    monitor.task_started(task)
            if not running:
                break
            wait([c.process.sentinel for c in running], timeout=tick_s if monitor is not None else None)
            if monitor is not None:
                monitor.tick()
            for child in [c for c in running if not c.process.is_alive()]:
                running.remove(child)
                error = _outcome(child)
                if monitor is not None:
                    monitor.task_finished(child.task, error is None)
                if error is not None and failure is None:
                    failure = error
                    if running:
                        logger.error("%s failed: stopping the other running tasks", child.task_id)
                        _stop(running)
        if failure is not None:
            raise failure
        return ran, skipped
    except BaseException:
        if running:
            logger.warning("stopping %d running task(s): %s", len(running), ", ".join(c.task_id for c in running))
            _stop(running)
            for child in running:
                child.process.join()
                error = _outcome(child)
                if monitor is not None:
                    monitor.task_finished(child.task, error is None)
        raise


def _stop(children: list[_Child]) -> None:
    for child in children:
        if child.process.is_alive() and child.process.pid is not None:
            try:
                os.kill(child.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def _outcome(child: _Child) -> BaseException | None:
    """The child's error (None if it succeeded); joins the process."""
    message = None
    try:
        if child.conn.poll():
            message = child.conn.recv()
    except (EOFError, OSError):
        message = None
    finally:
        child.conn.close()
    child.process.join()
    if message is not None and message[0] == "ok":
        return None
    if message is not None and message[0] == "error":
        return message[1]
    return RuntimeError(f"{child.task_id}: its process ended with exit code {child.process.exitcode} without a "
                        "result (killed?); run the same command again to continue")


def child_main(run_task: Callable[[Task], bool], task: Task, threads: int, level: int, conn: Connection) -> None:
    """Body of a child: own process group, ``threads`` torch threads, run the task, send its outcome."""
    os.setpgrp()  # a terminal's Ctrl-C reaches the parent only; it forwards one SIGTERM
    import torch

    torch.set_num_threads(threads)
    setup_logging(None, level)
    try:
        did_run = run_task(task)
        conn.send(("ok", did_run))
    except BaseException as err:  # noqa: BLE001 - every failure goes back to the parent
        conn.send(("error", _portable(err)))
    finally:
        conn.close()


def _portable(err: BaseException) -> BaseException:
    """``err`` if it survives pickling both ways (the parent re-raises it with its type, e.g. the exit code of an
    interrupted training), else a RuntimeError with its type and message."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:  # noqa: BLE001 - any exception whose constructor does not take its args back
        return RuntimeError(f"{type(err).__name__}: {err}")
