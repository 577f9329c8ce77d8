"""Glue between the training command line and :func:`medseg.training.loop.train`.

argparse namespace → allocator tuning → config (+ ``--set``) → process group and device → run folder, logging →
seeds → resume target → ``train``. Kept apart from the script so that the script stays a thin argparse wrapper.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import secrets
from pathlib import Path

from medseg.config import ExperimentConfig, config_name_from_path, load_config
from medseg.training.checkpoint import snapshot_path
from medseg.training.distributed import DistContext, init_distributed, shutdown_distributed
from medseg.training.loop import Progress, TrainOptions, train
from medseg.training.run_files import RunPaths, build_run_paths, prepare_run_dirs, setup_logging
from medseg.training.signals import TrainingInterrupted
from medseg.utils.device import seed_everything
from medseg.utils.io import atomic_write_text

logger = logging.getLogger("medseg.train")


def _tqdm_factory(total: int, initial: int, desc: str) -> Progress:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True)


def _tune_allocator() -> None:
    try:
        from medseg.utils.memory import keep_freed_memory
    except ImportError:
        return
    keep_freed_memory()


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


def _data_seed(seed: int | None, dist: DistContext) -> int:
    """The seed of the data order/augmentation: ``--seed``, or one random draw shared by all ranks."""
    if seed is not None:
        return seed
    return int(dist.broadcast_object(secrets.randbits(31)))


def run_training(args: argparse.Namespace) -> int:
    """Run the training command; returns the exit code (128 + signal number after an interrupt)."""
    _tune_allocator()
    level = logging.DEBUG if args.debug else logging.INFO
    if args.debug:
        faulthandler.enable()
    setup_logging(None, level)
    config = load_config(args.json_config_path, args.overrides)
    dist = init_distributed(args.device)
    try:
        config_name = config_name_from_path(args.json_config_path)
        paths = build_run_paths(args.save_dir, config.data.dataset_name, args.data_setting,
                                config.segmentation_model.num_classes, config_name, args.cval)
        if dist.is_main:
            prepare_run_dirs(paths)
        dist.barrier()
        setup_logging(paths.log_file if dist.is_main else None, level, dist.rank)
        logger.info("run folder %s (device %s, %d process(es))", paths.run_dir, dist.device, dist.world_size)
        resume_path = resolve_resume(args, paths, config)
        seed_everything(None if args.seed is None else args.seed + dist.rank)
        if dist.is_main:
            atomic_write_text(paths.config_json, config.to_json())
        options = TrainOptions(
            data_setting=args.data_setting, cval=args.cval, seed=args.seed, data_seed=_data_seed(args.seed, dist),
            n_workers=args.n_workers, pin_memory=not args.no_pin_memory and dist.device.type == "cuda",
            tensorboard=args.log, resume_path=resume_path, debug=args.debug)
        progress = None if args.no_progress or not dist.is_main else _tqdm_factory
        try:
            result = train(config, options, paths, dist, progress)
        except TrainingInterrupted as err:
            logger.warning("%s; continue with --resume auto (or --resume_pkl_path %s)", err, err.snapshot)
            return 128 + err.signum
        if dist.is_main:
            logger.info("finished: %d epochs, %d iterations, best validation Mean IoU %.4f", result.epochs_done,
                        result.global_iteration, result.best_score)
            logger.info("checkpoints: %s", paths.model_dir / "best" / "checkpoints")
            if args.log:
                logger.info("TensorBoard: tensorboard --logdir %s", paths.log_dir)
        return 0
    finally:
        shutdown_distributed()

