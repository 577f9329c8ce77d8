"""The training loop: epochs of ``train_step`` calls, validation, checkpoints, logging.

:func:`train` composes the helpers of this package: :mod:`~medseg.training.builders` (data, masking specs),
:mod:`~medseg.training.snapshot` (exact resume), :mod:`~medseg.training.distributed` (multi-process),
:mod:`~medseg.training.run_files` (layout, TensorBoard, metrics.csv), :mod:`~medseg.training.validation` and
:mod:`~medseg.training.plots`. Unlike the published loop: a global iteration counter that stops at
``max_iteration`` (the published check used the per-epoch counter and never stopped), correctly ordered figure
columns, a resume that fails loudly and restores the best score, one device, no per-step ``gc``/``empty_cache``.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch

from medseg.config import ExperimentConfig, method_name
from medseg.models.advanced_triplet_recon_segmentation_model import AdvancedTripletReconSegmentationModel
from medseg.io.checkpoint import MANIFEST_NAME, read_manifest, save_modules
from medseg.nn.blocks import set_compute_precision
from medseg.training import snapshot as snapshots
from medseg.training.builders import DataBundle, assemble_batch, build_data
from medseg.training.distributed import DistContext, convert_sync_batchnorm
from medseg.training.guards import NonFiniteGuard, TrainingDiverged
from medseg.training.plots import save_segmentation_plot
from medseg.training.run_files import LOSS_NAMES, MetricsLog, RunPaths, ScalarLogger, epoch_means, keep_best_so_far
from medseg.training.signals import StopRequest, TrainingInterrupted
from medseg.training.step import LOSS_KEYS, train_step
from medseg.training.validation import ValidationResult, validate
from medseg.nn.precision import (
    check_precision,
    compute_precision,
    configure_tf32,
    emulated_bf16,
    make_grad_scaler,
    resolve_precision,
)
from medseg.utils.status import STATUS_NAME, TrainingStatus

logger = logging.getLogger(__name__)

PRECISION_KEY = "config key 'learning.precision' (--precision)"
IMAGE_SUMMARY_EVERY = 5  # epochs between TensorBoard image summaries of hard examples
IMAGE_SUMMARY_SLICES = 4
SKIPPED = "steps/skipped_non_finite"  # epoch_sums key counting skipped optimiser steps
#: iterations between two polls of the stop flag in a multi-process CUDA run (each poll is an all-reduce read back
#: to the host; on the CPU, and in one process, the flag is read every iteration at no cost)
STOP_POLL_EVERY = 8


class Progress(Protocol):
    """What the loop needs from a progress bar (tqdm fits)."""

    def update(self, n: int = 1) -> Any: ...
    def set_postfix_str(self, s: str = "", refresh: bool = True) -> Any: ...
    def close(self) -> Any: ...


class _NoProgress:
    def update(self, n: int = 1) -> None:
        return None

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        return None

    def close(self) -> None:
        return None


ProgressFactory = Callable[[int, int, str], Progress]  # (total, initial, description) -> bar


@dataclass(frozen=True)
class TrainOptions:
    """Run-level settings from the command line."""

    data_setting: str = "10"
    cval: int = 0
    seed: int | None = None
    data_seed: int = 0
    n_workers: int = 4
    pin_memory: bool = True
    tensorboard: bool = False
    resume_path: Path | None = None
    debug: bool = False
    on_accepted: Callable[[], None] | None = None  # rank 0, once config, data and the resume snapshot are checked


@dataclass
class TrainResult:
    """Outcome of :func:`train`."""

    best_score: float
    epochs_done: int
    global_iteration: int
    snapshot: Path | None
    iterations_trained: int = 0  # by this call (0: a resumed run that had nothing left to train)


class _Run:
    """State shared by the epoch helpers of one :func:`train` call."""

    def __init__(self, config: ExperimentConfig, options: TrainOptions, paths: RunPaths, dist: DistContext) -> None:
        self.config, self.options, self.paths, self.dist = config, options, paths, dist
        self.device = dist.device
        self.precision = check_precision(resolve_precision(config.learning.precision, self.device), self.device,
                                         key=PRECISION_KEY)
        self.compute = compute_precision(self.precision)  # the networks' precision: tf32 computes in fp32
        configure_tf32(self.precision == "tf32")  # cuDNN allows TF32 by default: GPU "fp32" would not be fp32
        self.scaler = make_grad_scaler(self.precision, self.device)
        lower_precision_on_cuda = self.device.type == "cuda" and self.compute != "fp32"
        self.model = AdvancedTripletReconSegmentationModel(
            network_type=config.segmentation_model.network_type, image_ch=config.data.crop_size[2],
            learning_rate=config.learning.lr, num_classes=config.segmentation_model.num_classes, n_iter=1,
            checkpoint_dir=None, debug=options.debug, device=self.device,
            channels_last=True if lower_precision_on_cuda else None)  # tensor cores want NHWC
        set_compute_precision(self.model.model.values(), self.compute)  # validation predicts in it too
        self.sync_batchnorm = convert_sync_batchnorm(self.model, config.learning.sync_batchnorm, dist)
        # The masking draws (thresholds, method, soft values) come from a CPU generator, so reading them never waits
        # for the GPU; on CUDA the input noise (one image-sized draw per iteration) comes from a generator on the
        # device, so it is not copied from the host. On the CPU one generator draws both.
        self.step_generator = torch.Generator()
        self.noise_generator = torch.Generator(device=self.device) if self.device.type == "cuda" else None
        self._seed_step_streams(0)
        self.data: DataBundle = build_data(config, options.data_setting, options.cval, options.data_seed,
                                           options.n_workers, options.pin_memory, dist.world_size, dist.rank)
        self.state = snapshots.TrainState(seed=options.seed, data_seed=options.data_seed)
        # the whole run's length (the loader is not yet shortened by a mid-epoch resume): sets the lr schedule
        self.planned_iterations = planned_iterations(config.learning, len(self.data.train_loader))
        self.run_info = {"dataset_name": config.data.dataset_name, "data_setting": options.data_setting,
                         "cval": options.cval, "world_size": dist.world_size, "device": self.device.type}
        self.snapshot_file = snapshots.snapshot_path(paths.model_dir, config.segmentation_model.network_type)
        self.last_hard: dict[str, torch.Tensor] = {}
        self.status: TrainingStatus | None = None  # rank 0, once the run is accepted (log/status.json)

    def _seed_step_streams(self, global_iteration: int) -> None:
        """Seed the step generators from the data seed, the rank and (when a resume re-seeds them) the iteration."""
        base = self.options.data_seed * 1000 + 7919 * global_iteration
        # with SyncBatchNorm every rank must run the same forward passes (each one is a collective): the masking
        # draws (method, thresholds) are then shared by the ranks, and only the input noise differs
        shared = getattr(self, "sync_batchnorm", False)
        self.step_generator.manual_seed((base + (0 if shared else self.dist.rank)) % 2**63)
        if self.noise_generator is not None:
            self.noise_generator.manual_seed((base + self.dist.rank + 1) % 2**63)

    @property
    def step_generators(self) -> dict[str, torch.Generator]:
        gens = {"step": self.step_generator}
        if self.noise_generator is not None:
            gens["noise"] = self.noise_generator
        return gens

    @property
    def generators(self) -> dict[str, torch.Generator]:
        return {**self.step_generators, "loader": self.data.loader_generator}

    @property
    def cuda_device(self) -> torch.device | None:
        return self.device if self.device.type == "cuda" else None

    def resume(self, snapshot: dict[str, Any], path: Path) -> None:
        """Restore modules, optimisers, the fp16 scaler, counters and this rank's RNG states from a loaded snapshot.

        A snapshot of another device type (or whose step generators do not fit this run's) continues with one
        warning: every device-independent RNG state is restored and the step streams are re-seeded.
        """
        snapshots.check_compatible(snapshot, self.config, self.run_info, path)
        self.state = snapshots.restore_training_state(snapshot, self.model.model, self.model.optimizers, path)
        self.state.epoch_sums = resumed_epoch_sums(self.state.epoch_sums, self.dist.is_main)
        snapshots.restore_scaler(snapshot, self.scaler, path)
        self.state.data_seed = self.options.data_seed
        rng = snapshot.get("rng") or []
        if len(rng) == self.dist.world_size:
            own = rng[self.dist.rank]
            saved_device = snapshot.get("run", {}).get("device")
            unfit = snapshots.generators_fit(own, self.step_generators)
            moved = saved_device is not None and saved_device != self.device.type
            snapshots.restore_rng_state(own, self.generators, cuda_device=None if moved else self.cuda_device)
            if moved or unfit:
                self._seed_step_streams(self.state.global_iteration)
                why = (f"was written on {saved_device}, this run trains on {self.device.type}" if moved else
                       f"holds step generator states that do not fit this run's ({', '.join(unfit)}: another device "
                       "or an earlier medseg version)")
                logger.warning("snapshot %s %s: the step RNG streams (input noise, masking) are re-seeded", path, why)
        else:
            logger.warning("snapshot %s has RNG states of %d process(es), this run has %d: RNG streams restart",
                           path, len(rng), self.dist.world_size)
        logger.info("resumed from %s: epoch %d, batch %d, iteration %d, best score %.4f", path, self.state.epoch,
                    self.state.batches_done, self.state.global_iteration, self.state.best_score)

    def save_snapshot(self) -> Path | None:
        """Collective: average BN buffers, gather RNG states, sum the running epoch sums over the processes (a
        mid-epoch snapshot holds the sums of all of them; rank 0 alone takes them back on resume); rank 0 writes."""
        self.dist.average_buffers(self.model.model.values())
        rng_states = self.dist.gather_objects(snapshots.capture_rng_state(self.generators, self.cuda_device))
        saved_state = replace(self.state, epoch_sums=self.dist.sum_dict(self.state.epoch_sums))
        path = None
        if self.dist.is_main:
            path = snapshots.save_snapshot(self.snapshot_file, network_type=self.model.network_type,
                                      modules=self.model.model, optimizers=self.model.optimizers, state=saved_state,
                                      config=self.config, run_info=self.run_info, rng_states=rng_states,
                                      scaler=self.scaler, precision=self.precision)
        self.dist.barrier()
        return path

    def train_epoch(self, epoch: int, stop: StopRequest, progress: ProgressFactory) -> bool:
        """Train ``epoch`` from ``state.batches_done``; returns False if stopped early (signal or max_iteration)."""
        cfg, state, data = self.config, self.state, self.data
        skip = state.batches_done * data.train_loader.batch_size  # type: ignore[operator]
        data.sampler.set_epoch(epoch, skip=skip)
        data.train_set.set_epoch(epoch)  # type: ignore[attr-defined]
        data.loader_generator.manual_seed(state.data_seed * 100003 + epoch)
        total = state.batches_done + len(data.train_loader)
        bar = progress(total, state.batches_done, f"epoch {epoch}") if self.dist.is_main else _NoProgress()
        after_backward = None
        if self.dist.enabled:
            params = list(self.model.parameters())
            after_backward = lambda: self.dist.allreduce_gradients(params)  # noqa: E731
        guard = NonFiniteGuard(self.model.model, cfg.learning.on_non_finite,
                               f"Lower learning.lr (now {cfg.learning.lr:g}) or set learning.on_non_finite=skip.",
                               reduce=self.dist.all_reduce_max_ if self.dist.enabled else None)

        def before_update(losses: torch.Tensor) -> tuple[list[float], bool]:
            # fp16: the GradScaler skips overflowing steps itself (expected while it calibrates): losses only
            return guard.decide(losses, LOSS_KEYS[:-1], check_gradients=self.scaler is None)

        poll_every = STOP_POLL_EVERY if self.dist.enabled and self.device.type == "cuda" else 1
        completed = True
        batches = iter(data.train_loader)
        while True:
            polled = state.batches_done % poll_every == 0  # the same iterations on every rank
            if ((polled and self.dist.any(stop.requested))
                    or cap_reached(state.global_iteration, cfg.learning.max_iteration)):
                completed = state.batches_done >= total  # stopped after the last batch: the epoch is complete
                break
            try:
                batch = next(batches)
            except StopIteration:
                break
            except (RuntimeError, ConnectionError) as err:
                if not (stop.requested or worker_stopped_by_signal(err, stop)):
                    raise
                # Ctrl-C (or kill -TERM to the process group) also reaches DataLoader workers, which then exit:
                # stop cleanly at this batch boundary
                completed = False
                break
            images, labels = assemble_batch(batch, cfg.data.keep_orig_image_label_pair_for_training, self.device)
            guard.before_step(f"epoch {epoch}, batch {state.batches_done}, iteration {state.global_iteration}")
            if cfg.learning.lr_schedule != "constant":
                set_learning_rate(self.model.optimizers.values(),
                                  scheduled_lr(cfg.learning.lr, cfg.learning.lr_schedule, state.global_iteration,
                                               self.planned_iterations))
            out = train_step(self.model, images, labels, latent_da=cfg.learning.latent_da,
                             mask_scope=list(cfg.latent_da.mask_scope), image_code_spec=cfg.latent_da.image_code,
                             shape_code_spec=cfg.latent_da.shape_code, separate_training=cfg.learning.separate_training,
                             generator=self.step_generator, after_backward=after_backward,
                             precision=self.compute, scaler=self.scaler, noise_generator=self.noise_generator,
                             before_update=before_update)
            for name, value in ({SKIPPED: 1.0} if guard.skipped else out.losses).items():
                state.epoch_sums[name] = state.epoch_sums.get(name, 0.0) + float(value)
            state.batches_done += 1
            state.global_iteration += 1
            if out.corrupted_image is not None or out.corrupted_seg is not None:
                self._keep_hard_examples(images, out)
            bar.update(1)
            bar.set_postfix_str(f"loss {state.epoch_sums.get('loss/total', 0.0) / state.batches_done:.4f}")
            if self.status is not None:
                self.status.iteration(epoch, state.batches_done, state.global_iteration)
        bar.close()
        return completed

    def _keep_hard_examples(self, images: torch.Tensor, out: Any) -> None:
        """Keep the first slices of the latest hard examples on the device (no host copy, no sync per step)."""
        k = IMAGE_SUMMARY_SLICES
        self.last_hard = {"input": images[:k].detach().clone()}
        if out.corrupted_image is not None:
            self.last_hard["corrupted_image"] = out.corrupted_image[:k].detach().clone()
        if out.corrupted_seg is not None:
            self.last_hard["corrupted_seg"] = out.corrupted_seg[:k].detach().clone()

    def _hard_example_images(self) -> dict[str, torch.Tensor]:
        """The kept hard examples as (k, 1, H, W) CPU images in [0, 1] (segmentations as label / (classes - 1))."""
        images = {tag: value.float().cpu() for tag, value in self.last_hard.items()}
        if "corrupted_seg" in images:
            seg = images["corrupted_seg"].argmax(dim=1, keepdim=True).float()
            images["corrupted_seg"] = seg / max(self.config.segmentation_model.num_classes - 1, 1)
        return images

    def end_epoch(self, epoch: int, scalars: ScalarLogger, metrics: MetricsLog | None, seconds: float,
                  stop_reason: str = "") -> None:
        """Collective epoch end: average BN stats, reduce loss sums; rank 0 validates, logs and saves models."""
        self.dist.average_buffers(self.model.model.values())
        if self.options.debug:
            self.dist.check_in_sync(self.model.model.values())
        counts = self.dist.sum_dict({"n": float(self.state.batches_done), **self.state.epoch_sums})
        n_iters = int(counts.pop("n"))
        skipped = int(counts.pop(SKIPPED, 0))
        if skipped and self.dist.is_main:
            logger.warning("epoch %d: %d of %d optimiser steps skipped (non-finite)", epoch, skipped, n_iters)
        if n_iters and skipped >= n_iters:  # summed over every process, so all of them stop here alike
            raise TrainingDiverged(
                f"training diverged: every optimiser step of epoch {epoch} ({skipped} of {n_iters}) was skipped as "
                "non-finite (learning.on_non_finite = skip), so the epoch trained nothing; it is neither validated "
                f"nor saved. Lower learning.lr (now {self.config.learning.lr:g}) or check the data")
        means = epoch_means(counts, n_iters - skipped, (*LOSS_NAMES, "loss/total"))
        if self.dist.is_main:
            result = validate(self.model, self.data.val_loader, self.config.segmentation_model.num_classes, self.device)
            if self.status is not None:
                self.status.validated(epoch, result.mean_dice)
            values = {**{k: means[k] for k in LOSS_NAMES}, "iou/val_iou": result.mean_iou,
                      "acc/val_acc": result.mean_acc, "dice/val_dice": result.mean_dice, **result.reconstruction}
            # hard-example losses exist only in cooperative training: no constant-zero curves for standard training
            scalars.scalars({k: v for k, v in values.items()
                             if self.config.learning.latent_da or not k.startswith("loss/hard/")}, epoch)
            if self.last_hard and (epoch % IMAGE_SUMMARY_EVERY == 0) and scalars.writer is not None:
                for tag, images in self._hard_example_images().items():
                    scalars.images(f"hard_examples/{tag}", images, epoch)
            scalars.flush()
            logger.info("%s network: %s epoch %d training loss iter: %d, total  loss: %.6f",
                        self.paths.experiment_name, self.model.network_type, epoch, n_iters, means["loss/total"])
            logger.info("%s score: Mean IoU %.4f (Mean Acc %.4f)", self.paths.experiment_name, result.mean_iou,
                        result.mean_acc)
            self._save_models(epoch, result)
            if metrics is not None:
                metrics.append({"epoch": epoch, "global_iteration": self.state.global_iteration,
                                "n_iterations": n_iters, **values, "epoch_seconds": round(seconds, 2),
                                "stop_reason": stop_reason})
        self.model.train()

    def _save_models(self, epoch: int, result: ValidationResult) -> None:
        targets = []
        if not math.isnan(result.mean_iou) and result.mean_iou > self.state.best_score:
            logger.info("new best Mean IoU %.4f (was %.4f): saving model/best", result.mean_iou, self.state.best_score)
            self.state.best_score = result.mean_iou
            targets.append("best")
        if (epoch + 1) % self.config.output.save_epoch_every_num_epochs == 0 or epoch == 0:
            targets.append(str(epoch))
        keep_every = self.config.output.keep_best_every_num_epochs
        for name in targets:
            set_aside_reports(self.paths.model_dir / name)
            save_modules(self.model.model, self.paths.model_dir / name / "checkpoints",
                         info={"epoch": epoch, "mean_iou": result.mean_iou, "network_type": self.model.network_type,
                               "method": method_name(self.config),  # what learning.latent_DA trained
                               # the grid travels with the weights: a copied checkpoint folder is tested on it too
                               "spacing_mm": float(self.config.data.new_spacing[0]),
                               "crop_size": [int(v) for v in self.config.data.crop_size[:2]]})
            if result.images is not None:
                save_segmentation_plot(
                    self.paths.model_dir / name / "testing_segmentation_results" / "Seg_plots.png",
                    images=result.images, ground_truths=result.ground_truths, predictions=result.predictions,
                    num_classes=self.config.segmentation_model.num_classes,
                    title=f"{self.paths.experiment_name}, epoch {epoch}: validation Mean IoU {result.mean_iou:.3f}\n"
                          f"the {len(result.images)} validation slices with the most labelled pixels")
        if keep_every and (epoch + 1) % keep_every == 0:
            keep_best_so_far(self.paths.model_dir, epoch + 1)  # the best model after epoch + 1 epochs


def resumed_epoch_sums(saved: dict[str, float], is_main: bool) -> dict[str, float]:
    """This rank's running epoch sums after a mid-epoch resume: a snapshot holds the sums of all processes, so rank 0
    takes them and every other rank starts from zero under the same keys (the epoch-end all-reduce then counts each
    trained iteration once)."""
    return dict(saved) if is_main else {key: 0.0 for key in saved}


def set_aside_reports(tag_dir: Path) -> Path | None:
    """Rename ``<tag>/report`` (medseg-test's reports beside the checkpoints) to ``report.stale-epoch<E>`` before new
    weights replace the ones it describes, so no report passes for one of the new weights; returns the new name."""
    report = tag_dir / "report"
    if not report.is_dir():
        return None
    manifest = read_manifest(tag_dir / "checkpoints") if (tag_dir / "checkpoints" / MANIFEST_NAME).is_file() else None
    epoch = manifest.get("epoch", "unknown") if manifest else "unknown"
    target = tag_dir / f"report.stale-epoch{epoch}"
    suffix = 1
    while target.exists():
        suffix += 1
        target = tag_dir / f"report.stale-epoch{epoch}.{suffix}"
    report.rename(target)
    logger.info("%s described the weights being replaced: moved to %s", report, target.name)
    return target


def train(config: ExperimentConfig, options: TrainOptions, paths: RunPaths, dist: DistContext,
          progress: ProgressFactory | None = None) -> TrainResult:
    """Train one run; every rank calls this. Validation and all file writes happen on rank 0.

    Raises:
        TrainingInterrupted: after SIGINT/SIGTERM, once the snapshot has been written.
        FileNotFoundError, ValueError: bad data folder or bad/incompatible resume snapshot.
    """
    progress = progress or (lambda total, initial, desc: _NoProgress())
    snapshot_data = None
    if options.resume_path is not None:
        snapshot_data = snapshots.load_snapshot(options.resume_path)  # to the CPU: resume() places each part
        options = _options_from_snapshot(options, snapshot_data, options.resume_path)
    run = _Run(config, options, paths, dist)
    if snapshot_data is not None and options.resume_path is not None:
        run.resume(snapshot_data, options.resume_path)
        if dist.is_main:
            _warn_if_nothing_to_train(run.state, config.learning.n_epochs, options.resume_path, run.snapshot_file)
    else:
        if dist.is_main and run.snapshot_file.is_file():
            logger.warning("%s holds a snapshot of an earlier run; starting afresh overwrites it (use --resume auto "
                           "to continue it)", run.snapshot_file)
        dist.broadcast_modules(run.model.model.values())
    if dist.is_main and options.on_accepted is not None:
        options.on_accepted()
    state = run.state
    start_iteration = state.global_iteration
    metrics = MetricsLog(paths.metrics_csv, state.epoch) if dist.is_main else None
    scalars = ScalarLogger(paths.log_dir, options.tensorboard and dist.is_main, purge_step=state.epoch or None)
    run.model.train()
    cap, n_epochs = config.learning.max_iteration, config.learning.n_epochs
    if dist.is_main:
        announce_binding_cap(cap, n_epochs, state.epoch, state.global_iteration - state.batches_done,
                             len(run.data.train_loader))
        if config.learning.lr_schedule != "constant":
            logger.info("learning.lr_schedule %s: lr %g at iteration 0, falling to 0 over %d iterations",
                        config.learning.lr_schedule, config.learning.lr, run.planned_iterations)
    if dist.is_main:
        run.status = TrainingStatus(paths.log_dir / STATUS_NAME, n_epochs, len(run.data.train_loader),
                                    run.planned_iterations, start_iteration)
        run.status.iteration(state.epoch, state.batches_done, state.global_iteration, force=True)
    snapshot: Path | None = None
    try:
        with StopRequest() as stop, emulated_bf16(run.precision):
            try:
                snapshot = _epochs(run, config, stop, scalars, metrics, progress)
            except (RuntimeError, ConnectionError) as err:  # workers ended by the same signal, seen elsewhere
                if not (stop.requested or worker_stopped_by_signal(err, stop)):
                    raise
                last = run.snapshot_file if run.snapshot_file.is_file() else None
                raise TrainingInterrupted(stop.signum or 15, str(last)) from None
        if run.status is not None:
            run.status.end("finished", state.epoch)
    except TrainingInterrupted:
        if run.status is not None:
            run.status.end("interrupted", state.epoch)
        raise
    finally:
        scalars.close()
    return TrainResult(best_score=state.best_score, epochs_done=state.epoch, global_iteration=state.global_iteration,
                       snapshot=snapshot, iterations_trained=state.global_iteration - start_iteration)


def _warn_if_nothing_to_train(state: snapshots.TrainState, n_epochs: int, snapshot: Path, own_snapshot: Path) -> None:
    """A resumed run that is already at (or past) ``learning.n_epochs`` trains nothing: say so (a warning when the
    snapshot comes from another run folder, naming where its best checkpoints are; this run's own finished snapshot,
    e.g. ``--resume auto`` once more, is only noted)."""
    if state.epoch < n_epochs:
        return
    if snapshot.resolve() == own_snapshot.resolve():
        logger.info("the run is complete (epoch %d of learning.n_epochs = %d): nothing to train", state.epoch,
                    n_epochs)
        return
    origin = snapshots.snapshot_best_dir(snapshot)
    where = (f"its best checkpoints are in {origin}" if origin is not None and origin.is_dir() else
             "no best checkpoints were found beside it")
    logger.warning("resume snapshot %s is at epoch %d >= learning.n_epochs = %d: nothing to train (raise "
                   "learning.n_epochs to continue it); %s", snapshot, state.epoch, n_epochs, where)


def _epochs(run: _Run, config: ExperimentConfig, stop: StopRequest, scalars: ScalarLogger,
            metrics: MetricsLog | None, progress: ProgressFactory) -> Path | None:
    """The epoch loop of :func:`train`; returns the last snapshot written."""
    state, dist = run.state, run.dist
    cap, n_epochs = config.learning.max_iteration, config.learning.n_epochs
    snapshot: Path | None = None
    while state.epoch < n_epochs:
        if dist.any(stop.requested):
            raise TrainingInterrupted(stop.signum or 15, str(run.save_snapshot()))
        if cap_reached(state.global_iteration, cap):
            logger.warning("stopped by learning.max_iteration = %s before epoch %d: %d of learning.n_epochs "
                           "= %d epochs trained", cap, state.epoch, state.epoch, n_epochs)
            break
        epoch, started = state.epoch, time.perf_counter()
        completed = run.train_epoch(epoch, stop, progress)
        seconds = state.epoch_seconds + time.perf_counter() - started  # a resumed epoch: the time before it too
        if dist.any(stop.requested) and not completed:
            state.epoch_seconds = seconds
            raise TrainingInterrupted(stop.signum or 15, str(run.save_snapshot()))
        capped = cap_reached(state.global_iteration, cap) and (not completed or epoch + 1 < n_epochs)
        run.end_epoch(epoch, scalars, metrics, seconds, stop_reason=STOPPED_BY_CAP if capped else "")
        state.epoch_seconds = 0.0 if completed else seconds
        if completed:
            state.epoch, state.batches_done, state.epoch_sums = epoch + 1, 0, {}
        snapshot = run.save_snapshot()
        if capped:  # the snapshot can continue the run later (with a larger or no cap)
            logger.warning("stopped by learning.max_iteration = %d at iteration %d, %s epoch %d: %d of "
                           "learning.n_epochs = %d epochs trained", cap, state.global_iteration,
                           "after" if completed else "inside", epoch, state.epoch, n_epochs)
            break
    return snapshot


STOPPED_BY_CAP = "max_iteration"

#: how DataLoader reports a worker ended by SIGTERM / SIGINT (strsignal names)
_WORKER_STOP_SIGNALS = {"Terminated": signal.SIGTERM, "Interrupt": signal.SIGINT}


def worker_stopped_by_signal(err: BaseException, stop: StopRequest, grace_s: float = 0.5) -> bool:
    """Whether ``err`` says a DataLoader worker was ended by SIGTERM or SIGINT, i.e. the stop request of a signal
    sent to the whole process group (``kill -TERM -- -PGID``, a job scheduler) whose copy to this process may be
    handled a moment later than the worker's death is noticed. Then the stop is recorded on ``stop`` (after
    ``grace_s`` for this process's own handler) and the run ends with a snapshot instead of a failure. A
    ``ConnectionError`` (a worker's end seen as its connection closing, which names no signal) is a stop only if
    this process's own stop request arrives within ``grace_s``."""
    def own_request_arrived() -> bool:
        deadline = time.monotonic() + grace_s
        while not stop.requested and time.monotonic() < deadline:
            time.sleep(0.01)
        return stop.requested

    if isinstance(err, ConnectionError):
        return own_request_arrived()
    text = str(err)
    if "DataLoader worker" not in text:
        return False
    signum = next((num for name, num in _WORKER_STOP_SIGNALS.items() if f"killed by signal: {name}" in text), None)
    if signum is None:
        return False
    if not own_request_arrived():
        logger.warning("%s: treating it as a stop request (%s)", text.splitlines()[0], signal.Signals(signum).name)
        stop.signum = signum
    return True


def planned_iterations(learning: Any, iterations_per_epoch: int) -> int:
    """Iterations of the whole run: ``n_epochs`` epochs, or fewer if ``max_iteration`` binds."""
    planned = learning.n_epochs * iterations_per_epoch
    return planned if learning.max_iteration is None else min(planned, learning.max_iteration)


def scheduled_lr(base_lr: float, schedule: str, iteration: int, total: int) -> float:
    """The learning rate of 0-based ``iteration`` of ``total`` (``learning.lr_schedule``).

    ``constant``: ``base_lr`` throughout (the published training). ``cosine``: ``base_lr * (1 + cos(pi * t)) / 2``
    with ``t = iteration / total``, so the first step uses ``base_lr`` and the rate falls smoothly towards 0 at the
    end. A pure function of the global iteration: an interrupted run resumes on the same schedule.
    """
    if schedule == "constant":
        return base_lr
    if schedule == "cosine":
        t = min(max(iteration / max(total, 1), 0.0), 1.0)
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * t))
    raise ValueError(f"learning.lr_schedule: expected one of 'constant', 'cosine', got {schedule!r}")


def set_learning_rate(optimizers: Any, lr: float) -> None:
    """Set ``lr`` on every parameter group of the given optimisers."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = lr


def cap_reached(global_iteration: int, max_iteration: int | None) -> bool:
    """Whether the iteration cap (None: no cap) stops training now."""
    return max_iteration is not None and global_iteration >= max_iteration


def announce_binding_cap(max_iteration: int | None, n_epochs: int, start_epoch: int, start_iteration: int,
                         iterations_per_epoch: int) -> int | None:
    """Warn at the start of a run if ``max_iteration`` will end it before ``n_epochs``.

    Returns:
        The epoch during which the cap stops the run, or None if it does not bind.
    """
    if max_iteration is None or iterations_per_epoch <= 0:
        return None
    planned = start_iteration + (n_epochs - start_epoch) * iterations_per_epoch
    if planned <= max_iteration:
        return None
    stop_epoch = start_epoch + max(max_iteration - start_iteration - 1, 0) // iterations_per_epoch  # last epoch run
    logger.warning("learning.max_iteration = %d will stop this run in epoch %d of learning.n_epochs = %d "
                   "(%d iterations per epoch, %d planned); set learning.max_iteration to null (no cap) to train "
                   "every epoch", max_iteration, stop_epoch, n_epochs, iterations_per_epoch, planned)
    return stop_epoch


def _options_from_snapshot(options: TrainOptions, snapshot: dict[str, Any], path: Path) -> TrainOptions:
    """Take the seeds of the run being resumed (the data order and augmentation depend on them).

    Raises:
        ValueError: if ``--seed`` was given and differs from the snapshot's seed.
    """
    saved_seed = snapshot.get("seed")
    if options.seed is not None and saved_seed is not None and options.seed != saved_seed:
        raise ValueError(f"resume snapshot {path} was made with --seed {saved_seed}, got --seed {options.seed}")
    data_seed = int(snapshot["data_seed"]) if "data_seed" in snapshot else options.data_seed
    return replace(options, seed=saved_seed if options.seed is None else options.seed, data_seed=data_seed)
