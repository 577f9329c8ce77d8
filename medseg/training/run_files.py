"""Run folder layout, console/file logging, TensorBoard scalars and the per-run ``metrics.csv``.

Layout (the published one): ``save_dir/train_{dataset}_{data_setting}_n_cls_{n}/{config name}/{cval}/{log,model}/``.
``log/`` holds the TensorBoard events (with ``--log``), ``train.log`` and ``metrics.csv``; the run folder holds
``config.json`` (the resolved config); ``model/`` holds the checkpoints.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medseg.io.atomic import atomic_write_text, ensure_writable_dir
from medseg.utils.paths import check_inside, check_name

logger = logging.getLogger(__name__)

LOSS_NAMES = (
    "loss/standard/total", "loss/standard/seg", "loss/standard/image", "loss/standard/shape", "loss/standard/gt_shape",
    "loss/hard/total", "loss/hard/seg", "loss/hard/image", "loss/hard/shape",
)
#: validation Mean IoU and accuracy (the published scalars), and the pooled validation Dice, mean over the foreground classes (the
#: score the experiment's training curves and the console's progress show)
VAL_NAMES = ("iou/val_iou", "acc/val_acc", "dice/val_dice")
#: Every TensorBoard scalar, in logging order (the published ones and the validation Dice).
SCALAR_NAMES = LOSS_NAMES + VAL_NAMES
#: Logged beside them in metrics.csv only (none at present).
EXTRA_VAL_NAMES: tuple[str, ...] = ()
#: The image decoder's reconstruction quality (:mod:`medseg.training.validation`), in metrics.csv and TensorBoard.
RECON_NAMES = ("recon/val_mse", "recon/val_psnr", "recon/hard_change")


@dataclass(frozen=True)
class RunPaths:
    """Folders and files of one training run."""

    run_dir: Path
    experiment_name: str

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "log"

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "model"

    @property
    def metrics_csv(self) -> Path:
        return self.log_dir / "metrics.csv"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "train.log"

    @property
    def config_json(self) -> Path:
        return self.run_dir / "config.json"


def build_run_paths(save_dir: str | Path, dataset_name: str, data_setting: str, num_classes: int, config_name: str,
                    cval: int) -> RunPaths:
    """The published run folder for one experiment (folders are created by :func:`prepare_run_dirs`).

    Raises:
        ValueError: if a component would lead outside ``save_dir`` (``--data_setting ../x``, a dataset name with
            ``/``...), naming the flag or key.
    """
    check_name(dataset_name, "data.dataset_name")
    check_name(str(data_setting), "--data_setting")
    for part in config_name.split("/"):
        check_name(part, "--json_config_path (config name)")
    project = f"train_{dataset_name}_{data_setting}_n_cls_{num_classes}"
    experiment_name = f"{config_name}/{cval}"
    run_dir = Path(save_dir) / project / experiment_name
    check_inside(run_dir, save_dir, "run folder")
    return RunPaths(run_dir=run_dir, experiment_name=experiment_name)


def run_results(paths: RunPaths) -> list[Path]:
    """Files of an earlier run that a fresh start would overwrite: ``metrics.csv`` and every checkpoint file."""
    found = [paths.metrics_csv] if paths.metrics_csv.is_file() else []
    if paths.model_dir.is_dir():
        found += sorted(p for p in paths.model_dir.rglob("*") if p.is_file() and p.suffix in (".pth", ".pkl"))
    return found


def training_folders(paths: RunPaths) -> list[Path]:
    """Folders that training writes into (run folder, log, checkpoint and plot folders), for temp-file cleaning."""
    model = [p for p in paths.model_dir.glob("*/*") if p.is_dir() and p.name in ("checkpoints",
                                                                                 "testing_segmentation_results")]
    return [paths.run_dir, paths.log_dir, *sorted(model)]


def clear_results(paths: RunPaths) -> None:
    """Remove an earlier run's results (``--overwrite``): ``model/``, ``log/`` and ``config.json``."""
    for folder in (paths.model_dir, paths.log_dir):
        if folder.is_symlink():  # deleting through a link would reach outside the run folder
            raise ValueError(f"--overwrite: {folder} is a symbolic link (to {os.readlink(folder)}); expected a "
                             "folder of the run; remove the link (or what it points to) yourself, or use another "
                             "run folder")
    for folder in (paths.model_dir, paths.log_dir):
        if folder.is_dir():
            shutil.rmtree(folder)
    paths.config_json.unlink(missing_ok=True)
    logger.warning("--overwrite: removed the earlier results in %s", paths.run_dir)


class DeferredFileHandler(logging.Handler):
    """Keeps log records in memory until :meth:`open` names the file; then writes them and everything after.

    Nothing reaches the run folder's ``train.log`` before the run is accepted (config, data and resume checks passed);
    a rejected run leaves the folder untouched.
    """

    def __init__(self) -> None:
        super().__init__()
        self._pending: list[logging.LogRecord] = []
        self._file: logging.FileHandler | None = None

    def open(self, log_file: Path) -> None:
        ensure_writable_dir(log_file.parent)
        self._file = logging.FileHandler(log_file, encoding="utf-8")
        self._file.setFormatter(self.formatter)
        for record in self._pending:
            self._file.emit(record)
        self._pending.clear()

    def emit(self, record: logging.LogRecord) -> None:
        if self._file is None:
            self._pending.append(record)
        else:
            self._file.emit(record)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        super().close()


def prepare_run_dirs(paths: RunPaths) -> None:
    """Create the log and model folders (PermissionError naming the folder if impossible)."""
    ensure_writable_dir(paths.log_dir)
    ensure_writable_dir(paths.model_dir)


def teardown_logging() -> None:
    """Detach (and close) the handlers :func:`setup_logging` attached, e.g. at the end of an in-process run."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_medseg", False):
            root.removeHandler(handler)
            handler.close()


#: environment variable: the least level a process logs to the console (its log files keep everything); the experiment
#: runner sets it to WARNING for its task processes while it shows their progress itself
CONSOLE_LEVEL_ENV = "MEDSEG_CONSOLE_LEVEL"


def console_floor() -> int:
    """The level of :data:`CONSOLE_LEVEL_ENV` (a name such as ``WARNING`` or a number; unset or unknown: 0)."""
    value = os.environ.get(CONSOLE_LEVEL_ENV, "").strip()
    if value.isdigit():
        return int(value)
    level = logging.getLevelName(value.upper()) if value else 0
    return level if isinstance(level, int) else 0


def setup_logging(log_file: Path | DeferredFileHandler | None, level: int = logging.INFO, rank: int = 0) -> None:
    """Log to the console (rank 0, or warnings only on other ranks) and to ``log_file`` (appended; a
    :class:`DeferredFileHandler` writes once it is opened)."""
    root = logging.getLogger()
    root.setLevel(level)
    teardown_logging()
    prefix = f"[rank {rank}] " if rank else ""
    fmt = logging.Formatter(f"%(asctime)s %(levelname)s {prefix}%(name)s: %(message)s", "%H:%M:%S")
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(max(level if rank == 0 else logging.WARNING, console_floor()))
    console.setFormatter(fmt)
    handlers: list[logging.Handler] = [console]
    if isinstance(log_file, DeferredFileHandler):
        handlers.append(log_file)
        log_file.setFormatter(fmt)
    elif log_file is not None:
        ensure_writable_dir(log_file.parent)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
        handlers[-1].setFormatter(fmt)
    for handler in handlers:
        handler._medseg = True  # type: ignore[attr-defined]
        root.addHandler(handler)


def read_metrics_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a ``metrics.csv``, each with an integer ``epoch`` and a numeric or empty ``global_iteration``
    (an empty cell is a value that row did not record, as in every other column).

    Raises:
        ValueError: naming the file and the line of a damaged row (or undecodable text).
    """
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            for row in reader:
                for key, kind in (("epoch", int), ("global_iteration", float)):
                    value = row.get(key)
                    if key == "global_iteration" and value in (None, ""):
                        continue
                    try:
                        kind(value)
                    except (TypeError, ValueError):
                        raise ValueError(f"{path}: line {reader.line_num}: expected a number in column {key!r}, got "
                                         f"{value!r} (a damaged metrics.csv: repair or delete that line)") from None
                rows.append(row)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: expected UTF-8 CSV text, got undecodable bytes ({err})") from None
    except csv.Error as err:
        raise ValueError(f"{path}: expected CSV text, got {err}") from None
    return rows


class MetricsLog:
    """Every scalar of every epoch, rewritten atomically to ``metrics.csv`` after each epoch.

    On resume the rows of epochs that will be re-run (``epoch >= start_epoch``) are dropped.
    """

    #: ``stop_reason`` is empty, or ``max_iteration`` on the last row of a run that the iteration cap ended early.
    columns = ("epoch", "global_iteration", "n_iterations", *SCALAR_NAMES, *EXTRA_VAL_NAMES, *RECON_NAMES,
               "epoch_seconds", "stop_reason")

    def __init__(self, path: Path, start_epoch: int = 0) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        if start_epoch > 0 and path.is_file():
            self.rows = [row for row in read_metrics_rows(path) if int(row["epoch"]) < start_epoch]

    def append(self, row: Mapping[str, Any]) -> None:
        """Add one epoch's row and rewrite the file."""
        self.rows.append({k: row.get(k, "") for k in self.columns})
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buffer.getvalue())


class ScalarLogger:
    """TensorBoard ``SummaryWriter`` when enabled (``--log``), otherwise a no-op with the same methods.

    The writer (and its event file) is created at the first value logged, so a run that logs nothing (e.g. a resume of
    a finished run) leaves no empty event file behind.
    """

    def __init__(self, log_dir: Path, enabled: bool, purge_step: int | None = None) -> None:
        self.writer = None
        self.enabled, self.log_dir, self.purge_step = enabled, log_dir, purge_step

    def _writer(self) -> Any:
        if self.writer is None and self.enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=self.purge_step)
        return self.writer

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        finite = {name: value for name, value in values.items() if not math.isnan(value)}
        if finite and self._writer() is not None:
            for name, value in finite.items():
                self.writer.add_scalar(name, value, global_step=step)

    def images(self, tag: str, images: torch.Tensor, step: int) -> None:
        """Add an (N, 1|3, H, W) batch with values in [0, 1]."""
        if self._writer() is not None:
            self.writer.add_images(tag, images.detach().float().clamp(0, 1).cpu(), global_step=step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.enabled = False


def epoch_means(sums: Mapping[str, float], n_iterations: int, names: Sequence[str] = LOSS_NAMES) -> dict[str, float]:
    """Epoch means of the summed per-iteration losses (0.0 for names never reported, e.g. hard losses)."""
    return {name: (sums.get(name, 0.0) / n_iterations if n_iterations else float("nan")) for name in names}


def keep_best_so_far(model_dir: Path, epoch: int) -> Path | None:
    """Copy ``model/best/checkpoints`` to ``model/best_at_<epoch>/checkpoints`` (the best model after ``epoch``
    epochs, for the training-length trend); written beside and renamed into place, so a folder that exists is whole.
    Returns the folder, or None when no best model exists yet."""
    import shutil

    source = model_dir / "best" / "checkpoints"
    if not source.is_dir():
        return None
    target = model_dir / f"best_at_{epoch}" / "checkpoints"
    partial = target.with_name("checkpoints.partial")
    if partial.exists():
        shutil.rmtree(partial)
    if target.exists():
        shutil.rmtree(target)
    partial.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, partial)
    partial.rename(target)
    return target
