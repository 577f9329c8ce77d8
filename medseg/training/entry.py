"""Glue between the training command line and :func:`medseg.training.loop.train`.

argparse namespace → config (+ ``--set``) → data checks (dataset, data folder, transforms) and the canonical data
setting → run folder name → process group and device → allocator tuning (CPU only) → claim of the run folder (lock,
earlier results) → logging → seeds → resume target → ``train`` (which calls back once the run is accepted: config.json,
train.log). From the claim until ``train`` returns, SIGINT/SIGTERM outside the training loop's own graceful stop end
the run cleanly (:class:`StopOutsideLoop`). Kept apart from the script so that the script stays a thin argparse
wrapper.
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import logging
import secrets
import signal
import threading
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import torch

from medseg.config import ExperimentConfig, config_name_from_path, load_config, method_name
from medseg.data.splits import canonical_data_setting
from medseg.training.builders import check_data_config
from medseg.training.snapshot import snapshot_best_dir, snapshot_path
from medseg.training.distributed import DistContext, init_distributed, shutdown_distributed
from medseg.training.loop import PRECISION_KEY, Progress, TrainOptions, TrainResult, train
from medseg.training.run_files import (
    DeferredFileHandler,
    RunPaths,
    build_run_paths,
    clear_results,
    prepare_run_dirs,
    run_results,
    setup_logging,
    teardown_logging,
    training_folders,
)
from medseg.training.run_lock import RunLock
from medseg.training.signals import TrainingInterrupted
from medseg.utils.device import seed_everything
from medseg.io.atomic import atomic_write_text, remove_stale_temp_files
from medseg.nn.precision import WHERE_NATIVE, check_precision, resolve_precision

logger = logging.getLogger("medseg.train")


def _tqdm_factory(total: int, initial: int, desc: str) -> Progress:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True)


def _tune_allocator(device: Any) -> None:
    """The CPU allocator tuning of :mod:`medseg.utils.memory`, in CPU training only."""
    try:
        from medseg.utils.memory import tune_allocator
    except ImportError:
        return
    tune_allocator(device)


def resolve_resume(args: argparse.Namespace, paths: RunPaths, config: ExperimentConfig) -> Path | None:
    """The snapshot to continue from: ``--resume_pkl_path`` (must exist) or, with ``--resume auto``, the run's own."""
    if args.resume_pkl_path:
        path = Path(args.resume_pkl_path)
        if not path.is_file():
            raise FileNotFoundError(f"--resume_pkl_path {path} does not exist")
        return path
    if args.resume == "auto":
        path = snapshot_path(paths.model_dir, config.segmentation_model.network_type)
        if path.is_file():
            return path
        logger.info("--resume auto: no snapshot at %s, starting a new run", path)
    return None


class SignalledOutsideLoop(Exception):
    """SIGINT/SIGTERM while the run folder is claimed but the training loop is not running (data loading, cache
    building): the loop's graceful stop is not installed yet, so the work in progress is abandoned."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"received {signal.Signals(signum).name} while the training loop was not running")
        self.signum = signum


class StopOutsideLoop:
    """Context manager: while it is active, SIGINT/SIGTERM raise :class:`SignalledOutsideLoop`, so that the run
    ends with one line and exit code 128 + signal and its ``finally`` releases the run folder's lock (SIGTERM's
    default action would kill the process and leave the lock behind). The training loop installs its own graceful
    handlers while it runs and puts these back afterwards. A second signal gets the previous handler (no second
    exception while the first one is being handled). Main thread only; elsewhere it is inert."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._restore()
        raise SignalledOutsideLoop(signum)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def __enter__(self) -> StopOutsideLoop:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._restore()


def _data_seed(seed: int | None, dist: DistContext) -> int:
    """The seed of the data order/augmentation: ``--seed``, or one random draw shared by all ranks."""
    if seed is not None:
        return seed
    return int(dist.broadcast_object(secrets.randbits(31)))


def claim_run_folder(lock: RunLock, args: argparse.Namespace, paths: RunPaths, config: ExperimentConfig) -> None:
    """Take the run folder's lock and refuse to start afresh over an earlier run's results.

    Raises:
        RunFolderBusy: another live training holds the folder.
        ValueError: the folder holds results and neither ``--resume`` nor ``--overwrite`` was given (or ``--resume
            auto`` found no snapshot to continue).
    """
    lock.acquire()
    try:
        snapshot = snapshot_path(paths.model_dir, config.segmentation_model.network_type)
        resuming = bool(args.resume_pkl_path) or (args.resume == "auto" and snapshot.is_file())
        results = run_results(paths)
        if results and not resuming and not args.overwrite:
            shown = ", ".join(str(p.relative_to(paths.run_dir)) for p in results[:4]) + (" ..." if len(results) > 4
                                                                                          else "")
            how = ("--resume auto found no snapshot at " + str(snapshot) + "; start afresh with --overwrite"
                   if args.resume == "auto" else "continue it with --resume auto, or start afresh with --overwrite")
            raise ValueError(f"{paths.run_dir}: expected a new run folder, got the results of an earlier run "
                             f"({len(results)} files: {shown}); {how} (which deletes them)")
    except BaseException:
        lock.release()
        raise


def _claim_on_main(lock: RunLock, args: argparse.Namespace, paths: RunPaths, config: ExperimentConfig,
                   dist: DistContext) -> None:
    """Rank 0 claims the folder; its verdict is shared so that every rank stops alike."""
    error: Exception | None = None
    if dist.is_main:
        try:
            claim_run_folder(lock, args, paths, config)
        except (OSError, ValueError) as err:
            error = err
    message = dist.broadcast_object(None if error is None else str(error))
    if error is not None:
        raise error
    if message is not None:
        raise ValueError(message)


def run_training(args: argparse.Namespace, continue_hint: str | None = None) -> int:
    """Run the training command; returns the exit code (128 + signal number after an interrupt).

    ``continue_hint`` says how an interrupted run continues (default: ``--resume auto``); a program that runs the
    training for its user (the robustness experiment) names its own command.

    Nothing is written into the run folder before the configuration is valid and the folder is claimed (lock, no
    earlier results unless ``--resume``/``--overwrite``); ``config.json``, ``train.log`` and ``--overwrite``'s
    deletion wait until the data and the resume snapshot have been checked too.

    Raises:
        ValueError, OSError: user errors (bad config, folder in use or holding results, bad data or snapshot).
        TrainingDiverged: non-finite gradients with ``learning.on_non_finite = "stop"``.
    """
    level = logging.DEBUG if args.debug else logging.INFO
    if args.debug:
        faulthandler.enable()
    setup_logging(None, level)
    try:
        return _run_training(args, level, continue_hint)
    finally:
        teardown_logging()  # an in-process caller (tests, notebooks) keeps no handler of this run


def _resolved_precision(config: ExperimentConfig, device: torch.device) -> tuple[ExperimentConfig, str | None]:
    """``learning.precision`` ``bf16_where_native`` resolved for ``device`` (so that config.json records the
    precision the run trains in), and the line that says so (None: nothing was resolved)."""
    requested = config.learning.precision
    precision = resolve_precision(requested, device)
    if precision == requested:
        return config, None
    why = f"{device} computes bf16 natively" if precision == "bf16" else f"{device} has no native bf16"
    return (dataclasses.replace(config, learning=dataclasses.replace(config.learning, precision=precision)),
            f"learning.precision {WHERE_NATIVE}: {precision} ({why})")


def _run_training(args: argparse.Namespace, level: int, continue_hint: str | None = None) -> int:
    config = load_config(args.json_config_path, args.overrides)
    try:
        check_data_config(config)  # dataset, data folder, transforms: before anything is created
    except (ValueError, OSError) as err:  # name the config file, as load_config's errors do
        raise type(err)(f"{args.json_config_path}: {err}") from err
    data_setting = canonical_data_setting(args.data_setting)  # "010" is "10": one run folder per setting
    paths = build_run_paths(args.save_dir, config.data.dataset_name, data_setting,
                            config.segmentation_model.num_classes, config_name_from_path(args.json_config_path),
                            args.cval)
    dist = init_distributed(args.device)
    _tune_allocator(dist.device)  # before the DataLoader workers are forked: they inherit it
    lock = RunLock(paths.run_dir)
    file_log = DeferredFileHandler()
    resume_path: Path | None = None
    try:
        with StopOutsideLoop():
            config, resolved = _resolved_precision(config, dist.device)
            check_precision(config.learning.precision, dist.device, key=PRECISION_KEY)  # before any file is written
            _claim_on_main(lock, args, paths, config, dist)
            setup_logging(file_log if dist.is_main else None, level, dist.rank)
            logger.info("run folder %s (device %s, %d process(es))", paths.run_dir, dist.device, dist.world_size)
            if resolved is not None:
                logger.info("%s", resolved)
            logger.info("method: %s (learning.latent_DA = %s)", method_name(config),
                        str(config.learning.latent_da).lower())
            if data_setting != args.data_setting:
                logger.info("--data_setting %r is the setting %r", args.data_setting, data_setting)
            resume_path = resolve_resume(args, paths, config)
            seed_everything(None if args.seed is None else args.seed + dist.rank)

            def accept() -> None:
                if args.overwrite and resume_path is None:
                    clear_results(paths)
                for folder in training_folders(paths):  # only what training writes (not medseg-test reports)
                    remove_stale_temp_files(folder, older_than_s=0)  # we hold the lock: every temp file is stale
                prepare_run_dirs(paths)
                file_log.open(paths.log_file)
                atomic_write_text(paths.config_json, config.to_json())

            options = TrainOptions(
                data_setting=data_setting, cval=args.cval, seed=args.seed, data_seed=_data_seed(args.seed, dist),
                n_workers=args.n_workers, pin_memory=not args.no_pin_memory and dist.device.type == "cuda",
                tensorboard=args.log, resume_path=resume_path, debug=args.debug, on_accepted=accept)
            progress = None if args.no_progress or not dist.is_main else _tqdm_factory
            try:
                result = train(config, options, paths, dist, progress)
            except TrainingInterrupted as err:
                logger.warning("%s; %s", err, continue_hint or "continue with --resume auto")
                return 128 + err.signum
        if dist.is_main:
            _report_result(result, paths, resume_path, config)
            if args.log:
                logger.info("TensorBoard: tensorboard --logdir %s", paths.log_dir)
        return 0
    except SignalledOutsideLoop as err:
        snapshot = snapshot_path(paths.model_dir, config.segmentation_model.network_type)
        how = ((continue_hint or "continue with --resume auto") + f" (last snapshot {snapshot})"
               if snapshot.is_file() else "nothing was trained; start it again")
        logger.warning("%s: stopped; %s", err, how)
        return 128 + err.signum
    finally:
        logging.getLogger().removeHandler(file_log)
        file_log.close()
        lock.release()
        shutdown_distributed()


def _report_result(result: TrainResult, paths: RunPaths, resume_path: Path | None, config: ExperimentConfig) -> None:
    """The final lines: what was trained, and where the best checkpoints are (only a folder that exists)."""
    if result.iterations_trained:
        logger.info("finished: %d epochs, %d iterations, best validation Mean IoU %.4f", result.epochs_done,
                    result.global_iteration, result.best_score)
    else:
        logger.info("finished: nothing trained (the run is at epoch %d of learning.n_epochs = %d, iteration %d), "
                    "best validation Mean IoU %.4f", result.epochs_done, config.learning.n_epochs,
                    result.global_iteration, result.best_score)
    best = paths.model_dir / "best" / "checkpoints"
    if best.is_dir():
        logger.info("checkpoints: %s", best)
        return
    origin = snapshot_best_dir(resume_path) if resume_path is not None else None
    if not result.iterations_trained:
        why = "nothing was trained here"
    elif resume_path is not None:
        why = f"no epoch trained here beat the resumed best Mean IoU {result.best_score:.4f}"
    else:
        why = "no validation Mean IoU was a number"
    if origin is not None and origin.is_dir() and origin.resolve() != best.resolve():
        logger.warning("no best checkpoints in this run folder (%s): the best model is %s", why, origin)
    else:
        logger.warning("no best checkpoints in this run folder (%s)", why)
