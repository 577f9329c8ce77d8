"""The robustness experiment end to end: data → 2 methods × 3 runs of training → tests with n_iter 1 and 2 → report.

Output folder (``--out``, e.g. ``results/cpu``)::

    experiment.json            identity (budget, data fingerprint, method configs) and every invocation
    experiment.lock            held while a runner works in the folder (a second runner is refused)
    state/<task>.json          completion markers; log/tasks.jsonl: what each call ran or skipped
    data_<spacing>mm/          resampled copy of the data (only when the budget's spacing is not the data's)
    runs/train_ACDC_10_n_cls_4/ACDC/<config>/<cval>/   the medseg-train run folders (checkpoints, metrics.csv, ...)
    tests/<method>/cval<k>_seed<s>/iter_<n>/   one test of one model: volumes.csv + the test script's summary files
    n_iter_<n>/                summary.csv, summary.md, dice_boxplot.png (the test script's format, all runs),
                               vendors.csv, wilcoxon.csv, relative_improvement.csv
    curves/cval<k>_seed<s>.png training curves of both methods; curves/plateau.csv
    volumes.csv                every test volume of every run and n_iter
    RESULTS.md                 the report (also written to ``results_md`` if given, figures and tables copied beside)

Tasks go run by run: for cval 0 train the baseline, train the method, test both with n_iter 1, test both with
n_iter 2; then cval 1, then cval 2. So a sitting that stops early leaves whole runs (both methods, tested) for the
report, which covers the finished runs and says how many of them there are. A budget that keeps the best model every
N epochs adds a trend test per run and kept length (``trend/``, :mod:`medseg.experiments.trend`), queued after every
training and test, so that with ``--jobs`` they fill the slots of finished runs while the last ones train. A
finished task is never redone, an interrupted training continues from its snapshot, and a folder made with another
budget, other data or other method configs is refused.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from medseg.experiments import data as exp_data
from medseg.experiments import parallel, trend
from medseg.experiments.budgets import Budget
from medseg.experiments.outputs import write_outputs
from medseg.experiments.plan import ExperimentRequest, Plan, config_hash, make_plan, test_dir
from medseg.experiments.progress import ExperimentProgress
from medseg.experiments.state import ExperimentState, code_version, hash_files, now
from medseg.experiments.tasks import RunSpec, checkpoint_dir, run_dir, run_test, run_training
from medseg.training.run_files import CONSOLE_LEVEL_ENV
from medseg.training.run_lock import RunLock
from medseg.utils.status import STATUS_NAME, EvaluationStatus

#: The runner's lock file in its output folder (held while it runs; a stale one is taken over).
LOCK_NAME = "experiment.lock"

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
Task = tuple[str, RunSpec, "int | None"]  # (kind "train" | "test" | "trend", spec, n_iter of a test / epoch of a trend)


@dataclass
class ExperimentResult:
    """What one call did."""

    complete: bool
    ran: list[str]
    skipped: list[str]
    report: Path | None


def _prepare_data(request: ExperimentRequest, plan: Plan, state: ExperimentState, fingerprint: str) -> None:
    if not request.budget.resamples:
        return
    done = state.marker("data")
    made = done is not None and done.get("fingerprint") == fingerprint
    if made:
        version = done.get("resampling_version", 1)
        if version != exp_data.RESAMPLING["version"]:
            raise ValueError(
                f"{plan.data_root} was resampled by an older method (version {version}: "
                f"{exp_data.OLDER_VERSIONS.get(version, 'unknown')}), "
                f"and the runs of {request.out_dir} were trained and tested on it; start a new --out folder, or "
                f"delete {request.out_dir} to redo the experiment on a current copy (version "
                f"{exp_data.RESAMPLING['version']})")
    started = time.perf_counter()
    what = "checking the resampled copy" if made else f"resampling to {request.budget.spacing_mm:g} mm"
    bar = request.progress(what, len(plan.files)) if request.progress else None
    # a made copy is checked as well: a file broken since (a full disk) is rewritten, never trained on
    written = exp_data.resample_copy(request.data_root, plan.data_root, plan.files, request.budget.spacing_mm,
                                     progress=bar.update if bar is not None else None)
    if bar is not None:
        bar.close()
    if made and not written:
        state.log("data", "skipped")
        return
    seconds = time.perf_counter() - started
    state.mark_done("data", {"fingerprint": fingerprint, "files": len(plan.files), "seconds": round(seconds, 1),
                             "resampling_version": exp_data.RESAMPLING["version"], "finished": now()})
    state.log("data", "ran", seconds=round(seconds, 1))


def run_experiment(request: ExperimentRequest) -> ExperimentResult:
    """Run (or continue) the experiment and write its report.

    Raises:
        RunFolderBusy: another runner holds the output folder's lock (``experiment.lock``; the message names it).
        ExperimentMismatch: the output folder holds an experiment with another identity.
        FileNotFoundError: missing data or config.
        TrainingStopped: a training was interrupted (the partial report is written first; rerun to continue).
    """
    plan = make_plan(request)
    # one runner per folder: a second one would run the data step and the same tasks at the same time
    with RunLock(request.out_dir, name=LOCK_NAME, folder_kind="experiment folder", holder="experiment runner"):
        return _run_locked(request, plan)


def _run_locked(request: ExperimentRequest, plan: Plan) -> ExperimentResult:
    budget, out_dir = request.budget, request.out_dir
    state = ExperimentState(out_dir)
    fingerprint = exp_data.fingerprint(request.data_root, plan.files)
    commit = code_version(request.repo_root)
    settings = {k: v for k, v in budget.to_dict().items() if k != "description"}  # wording may change
    identity = {"budget": settings, "data_fingerprint": fingerprint, "data_files": len(plan.files),
                "method_configs": config_hash(sorted({s.config_path for s in plan.specs}))}
    state.open(identity, {"time": now(), "argv": request.argv, "commit": commit,
                          "data_root": str(request.data_root), "device": request.options.device,
                          "n_workers": request.options.n_workers, "jobs": request.jobs})
    for note in plan.notes:
        logger.warning("%s", note)
    _prepare_data(request, plan, state, fingerprint)
    tasks = experiment_tasks(plan, budget)
    try:
        if request.jobs > 1:
            ran, skipped = _run_parallel(request, plan, state, tasks, commit)
        else:
            ran, skipped = _run_serial(request, plan, state, tasks, commit)
    except KeyboardInterrupt:
        raise
    except BaseException:
        write_outputs(request, plan, state, complete=False)  # what is finished stays readable
        raise
    left = [t for t in tasks if not _finished(request, plan, state, t)]
    report = write_outputs(request, plan, state, complete=not left)
    if left:
        logger.info("%d of %d tasks remain: run the same command again to continue", len(left), len(tasks))
    return ExperimentResult(not left, ran, skipped, report)


def experiment_tasks(plan: Plan, budget: Budget) -> list[Task]:
    """Every task in the serial order: per run (cval, seed) both trainings, then their tests per n_iter; then the
    trend tests of every run and kept length (none unless the budget keeps the best model every N epochs). With
    ``--jobs`` a task starts as soon as a slot is free and its training is finished, earliest in this list first: so
    trainings start before any trend test, and trend tests fill the slots that finished runs free."""
    tasks: list[Task] = []
    for cval, seed in plan.pairs():
        pair_specs = [s for s in plan.specs if (s.cval, s.seed) == (cval, seed)]
        tasks += [("train", s, None) for s in pair_specs]
        tasks += [("test", s, n) for n in budget.n_iter for s in pair_specs]  # a pair per n_iter is complete early
    tasks += [("trend", s, e) for s in plan.specs
              for e in trend.milestones(budget.n_epochs, budget.keep_best_every_num_epochs)]
    return tasks


def _run_serial(request: ExperimentRequest, plan: Plan, state: ExperimentState, tasks: list[Task],
                commit: str) -> tuple[list[str], list[str]]:
    ran: list[str] = []
    skipped: list[str] = []
    bar = request.progress("experiment tasks", len(tasks)) if request.progress else None
    try:
        for task in tasks:
            if request.max_tasks is not None and len(ran) >= request.max_tasks:
                break
            task_id = _task_id(*task)
            if bar is not None:
                bar.set_postfix_str(task_id)
            (ran if _run_task(request, plan, commit, task, state) else skipped).append(task_id)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return ran, skipped


def _run_task(request: ExperimentRequest, plan: Plan, commit: str, task: Task,
              state: ExperimentState | None = None) -> bool:
    """Run one task unless it is done; True if it ran (the body of a task process too)."""
    kind, spec, n_iter = task
    state = state or ExperimentState(request.out_dir)
    if kind == "train":
        return _train_task(request, plan, state, spec, commit)
    if kind == "trend":
        return trend.trend_test_task(request, plan, state, spec, n_iter)  # type: ignore[arg-type]
    return _test_task(request, plan, state, spec, n_iter, commit)  # type: ignore[arg-type]


def _run_parallel(request: ExperimentRequest, plan: Plan, state: ExperimentState, tasks: list[Task],
                  commit: str) -> tuple[list[str], list[str]]:
    quiet = replace(request, progress=None, options=replace(request.options, progress=False))
    threads = request.threads or parallel.default_threads(request.jobs)
    logger.info("running up to %d tasks at once, %d torch thread(s) each", request.jobs, threads)

    def is_done(task: Task) -> bool:
        kind, spec, n_iter = task
        if kind == "train":
            return state.marker(spec.train_id) is not None
        if state.marker(spec.train_id) is None:
            return False
        if kind == "trend":
            return trend.is_tested(request, plan, state, spec, n_iter)  # type: ignore[arg-type]
        files = _checkpoint_files(request, plan, spec)
        return bool(files) and _tested(state, spec.test_id(n_iter), hash_files(files))

    def is_ready(task: Task) -> bool:
        return task[0] == "train" or state.marker(task[1].train_id) is not None

    board = _progress_board(request, plan, state, tasks)
    handlers = _log_above(board) if board.live else []
    previous_floor = os.environ.get(CONSOLE_LEVEL_ENV)
    os.environ[CONSOLE_LEVEL_ENV] = "WARNING"  # the tasks' progress is shown by the board; their logs keep it all
    try:
        ran, skipped = parallel.run_parallel(
            tasks, jobs=request.jobs, target=parallel.child_main,
            target_args=(functools.partial(_run_task, quiet, plan, commit),), task_id=lambda t: _task_id(*t),
            is_done=is_done, is_ready=is_ready, threads=threads, max_tasks=request.max_tasks, monitor=board)
    finally:
        board.close()
        for handler, stream in handlers:
            handler.setStream(stream)
        if previous_floor is None:
            os.environ.pop(CONSOLE_LEVEL_ENV, None)
        else:
            os.environ[CONSOLE_LEVEL_ENV] = previous_floor
    for task_id in skipped:
        state.log(task_id, "skipped")
    return ran, skipped


def _progress_board(request: ExperimentRequest, plan: Plan, state: ExperimentState,
                    tasks: list[Task]) -> ExperimentProgress:
    """The console progress of a parallel run: live on a terminal (unless --no_progress), plain lines elsewhere."""
    several_runs = len(plan.pairs()) > 1
    trainings = {t[1]: t for t in tasks if t[0] == "train"}

    def label(task: Task) -> str:
        kind, spec, n_iter = task
        name = {"train": f"train {spec.method}", "trend": f"trend test {spec.method} epoch {n_iter}"}.get(
            kind, f"test {spec.method} n_iter {n_iter}")
        return f"{name} (cval {spec.cval})" if several_runs else name

    def status_path(task: Task) -> Path:
        kind, spec, n_iter = task
        if kind == "train":
            return run_dir(spec, request.budget, plan.save_dir, plan.data_root / "ACDC") / "log" / STATUS_NAME
        if kind == "trend":
            return trend.trend_dir(request.out_dir, spec, n_iter) / STATUS_NAME  # type: ignore[arg-type]
        return test_dir(request.out_dir, spec, n_iter) / STATUS_NAME  # type: ignore[arg-type]

    def finished_seconds(task: Task) -> float | None:
        done = state.marker(_task_id(*task))
        return None if done is None else float(done.get("seconds", 0.0))

    def dependency(task: Task) -> Task | None:
        return None if task[0] == "train" else trainings.get(task[1])

    live = request.progress is not None and bool(getattr(sys.stderr, "isatty", lambda: False)())
    return ExperimentProgress(tasks, request.jobs, label=label, status_path=status_path,
                              finished_seconds=finished_seconds, dependency=dependency, stream=sys.stderr, live=live)


def _log_above(board: ExperimentProgress) -> list[tuple[logging.StreamHandler, Any]]:
    """Route the console log handlers through the board (log lines appear above the live block); returns what to
    put back."""
    swapped = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stderr, sys.stdout):
            swapped.append((handler, handler.setStream(board.above(handler.stream))))
    return swapped


def _checkpoint_files(request: ExperimentRequest, plan: Plan, spec: RunSpec) -> list[Path]:
    """The best model's module files of one run (sorted; empty before its training saved one)."""
    return sorted(checkpoint_dir(run_dir(spec, request.budget, plan.save_dir, plan.data_root / "ACDC")).glob("*.pth"))


def _tested(state: ExperimentState, task_id: str, checkpoint_hash: str) -> bool:
    """Whether test ``task_id`` is done on exactly these checkpoint files (a retrained model is tested again)."""
    done = state.marker(task_id)
    return done is not None and done.get("checkpoint_hash") == checkpoint_hash


def _task_id(kind: str, spec: RunSpec, n_iter: int | None) -> str:
    if kind == "trend":
        return trend.task_id(spec, n_iter)  # type: ignore[arg-type]
    return spec.train_id if kind == "train" else spec.test_id(n_iter)  # type: ignore[arg-type]


def _finished(request: ExperimentRequest, plan: Plan, state: ExperimentState, task: Task) -> bool:
    """Whether a task is done (a trend test: on the run's kept files, or recorded as having none to test)."""
    kind, spec, epoch = task
    if kind == "trend":
        return state.marker(spec.train_id) is not None and trend.is_tested(request, plan, state, spec, epoch)
    return state.marker(_task_id(*task)) is not None


def _train_task(request: ExperimentRequest, plan: Plan, state: ExperimentState, spec: RunSpec, commit: str) -> bool:
    task_id = spec.train_id
    if state.marker(task_id) is not None:
        state.log(task_id, "skipped")
        return False
    folder = run_dir(spec, request.budget, plan.save_dir, plan.data_root / "ACDC")
    resumed = (folder / "model" / "last").is_dir()
    logger.info("%s: training%s into %s", task_id, " (resuming)" if resumed else "", folder)
    state.log(task_id, "started", resuming=resumed, commit=commit)
    started = time.perf_counter()
    run_training(spec, request.budget, plan.save_dir, plan.data_root / "ACDC", request.options)
    seconds = time.perf_counter() - started
    state.mark_done(task_id, {"run_dir": str(folder), "commit": commit, "seconds": round(seconds, 1),
                              "resumed": resumed, "finished": now()})
    state.log(task_id, "ran", seconds=round(seconds, 1))
    return True


def _test_task(request: ExperimentRequest, plan: Plan, state: ExperimentState, spec: RunSpec, n_iter: int,
               commit: str) -> bool:
    task_id = spec.test_id(n_iter)
    folder = run_dir(spec, request.budget, plan.save_dir, plan.data_root / "ACDC")
    files = _checkpoint_files(request, plan, spec)
    if not files:
        raise FileNotFoundError(f"{task_id}: no checkpoint files in {checkpoint_dir(folder)}; the training did not "
                                f"save a best model (see {folder / 'log' / 'train.log'})")
    checkpoint_hash = hash_files(files)
    if _tested(state, task_id, checkpoint_hash):
        state.log(task_id, "skipped")
        return False
    if state.marker(task_id) is not None:
        logger.warning("%s: the checkpoint changed since it was tested: testing again", task_id)
        state.clear(task_id)
    started = time.perf_counter()
    status = EvaluationStatus(test_dir(request.out_dir, spec, n_iter) / STATUS_NAME, len(request.budget.test_datasets))
    volumes, notes = run_test(spec, n_iter, folder, plan.data_root, request.budget,
                              test_dir(request.out_dir, spec, n_iter), request.options, request.progress or status)
    status.end()
    seconds = time.perf_counter() - started
    counts = volumes.groupby("dataset").size().to_dict() if len(volumes) else {}
    state.mark_done(task_id, {"checkpoint_hash": checkpoint_hash, "commit": commit, "seconds": round(seconds, 1),
                              "volumes": {str(k): int(v) for k, v in counts.items()}, "warnings": len(notes),
                              "finished": now()})
    state.log(task_id, "ran", seconds=round(seconds, 1))
    return True
