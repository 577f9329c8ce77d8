"""The two kinds of work of the experiment, each through the project's real entry points.

* Training one (method, cval, seed): the training command line (:func:`medseg.cli.train.
  main`, i.e. ``medseg-train``) with ``--resume auto``, the budget as ``--set`` overrides and the run layout of
  ``medseg-train`` under ``<out>/runs``; a killed training continues from its last snapshot.
* Testing one trained model with one ``n_iter``: :func:`medseg.evaluation.runner.run_tests` (the body of
  ``medseg-test``) on every test set; besides the test script's own files it returns the per-volume Dice that the
  experiment tables and statistics are computed from.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from medseg.config import config_name_from_path, load_config
from medseg.evaluation.runner import run_tests
from medseg.evaluation.runs import Run
from medseg.experiments.budgets import Budget
from medseg.io.atomic import atomic_open
from medseg.training.api import TrainArguments, train
from medseg.training.run_files import build_run_paths, setup_logging
from medseg.utils.device import resolve_device

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
VOLUME_COLUMNS = ("dataset", "patient_id", "pid", "LV_Dice", "MYO_Dice", "RV_Dice")
TRAIN_SCRIPT = "medseg/train_adv_supervised_segmentation_triplet.py"
#: what an interrupted training of the experiment tells its user (the experiment resumes it itself)
CONTINUE_HINT = "the same experiment command continues it from there"


class TrainingStopped(RuntimeError):
    """The training command returned a non-zero exit code: interrupted (128 + signal) or failed.

    Attributes:
        exit_code: the training's exit code (the experiment exits with it).
    """

    def __init__(self, code: int, run_dir: Path) -> None:
        if code >= 128:
            message = (f"training in {run_dir} was interrupted (exit code {code}); run the same command again to "
                       "continue it from its last snapshot")
        else:
            message = (f"training in {run_dir} failed with exit code {code} (its error is printed above and in "
                       f"{run_dir / 'log' / 'train.log'})")
        super().__init__(message)
        self.exit_code = code
        self.run_dir = run_dir

    def __reduce__(self) -> tuple[type, tuple[int, Path]]:  # picklable across task processes (--jobs)
        return (type(self), (self.exit_code, self.run_dir))


@dataclass(frozen=True)
class RunSpec:
    """One trained model of the experiment: a method at one (cval, seed)."""

    method: str
    config_path: Path
    cval: int
    seed: int

    @property
    def train_id(self) -> str:
        return f"train_{self.method}_cval{self.cval}_seed{self.seed}"

    def test_id(self, n_iter: int) -> str:
        return f"test_{self.method}_cval{self.cval}_seed{self.seed}_iter{n_iter}"


@dataclass(frozen=True)
class RunOptions:
    """Machine settings that do not change results (not part of the experiment identity)."""

    device: str = "auto"
    n_workers: int = 2
    batch_slices: int = 10
    progress: bool = True


def training_argv(spec: RunSpec, budget: Budget, save_dir: PathLike, acdc_root: PathLike,
                  options: RunOptions) -> list[str]:
    """The training command line of one run (arguments of ``medseg-train``)."""
    argv = [
        "--json_config_path", str(spec.config_path), "--cval", str(spec.cval), "--data_setting", budget.data_setting,
        "--seed", str(spec.seed), "--save_dir", str(save_dir), "--resume", "auto", "--log",
        "--n_workers", str(options.n_workers), "--device", options.device,
    ]
    if not options.progress:
        argv.append("--no_progress")
    for override in budget.training_overrides(acdc_root):
        argv += ["--set", override]
    return argv


def training_arguments(spec: RunSpec, budget: Budget, save_dir: PathLike, acdc_root: PathLike,
                       options: RunOptions) -> TrainArguments:
    """The options of one run's training: what :func:`training_argv` gives ``medseg-train``."""
    return TrainArguments(json_config_path=str(spec.config_path), cval=spec.cval, data_setting=budget.data_setting,
                          seed=spec.seed, save_dir=str(save_dir), resume="auto", log=True,
                          n_workers=options.n_workers, device=options.device, no_progress=not options.progress,
                          overrides=tuple(budget.training_overrides(acdc_root)))


def shell_command(script: str, argv: list[str]) -> str:
    """``python <script> <argv>`` quoted for a POSIX shell."""
    return " ".join(["python", script, *(shlex.quote(a) for a in argv)])


def resolved_config(spec: RunSpec, budget: Budget, acdc_root: PathLike) -> str:
    """The JSON of the config a run trains with (its hash says whether a finished training is still valid)."""
    return load_config(spec.config_path, budget.training_overrides(acdc_root)).to_json()


def run_dir(spec: RunSpec, budget: Budget, save_dir: PathLike, acdc_root: PathLike) -> Path:
    """``<save_dir>/train_ACDC_{setting}_n_cls_4/<config name>/<cval>``, as ``medseg-train`` lays it out."""
    config = load_config(spec.config_path, budget.training_overrides(acdc_root))
    return build_run_paths(save_dir, config.data.dataset_name, budget.data_setting,
                           config.segmentation_model.num_classes, config_name_from_path(spec.config_path),
                           spec.cval).run_dir


def run_training(spec: RunSpec, budget: Budget, save_dir: PathLike, acdc_root: PathLike,
                 options: RunOptions) -> None:
    """Train (or continue training) one run in this process, as its ``medseg-train`` command line would.

    Raises:
        TrainingStopped: the command exited non-zero (interrupted by a signal: rerun to continue).
    """
    arguments = training_arguments(spec, budget, save_dir, acdc_root, options)
    level = logging.getLogger().level
    try:
        code = train(arguments, continue_hint=CONTINUE_HINT)
    finally:
        setup_logging(None, level)  # the training logs into its run folder; stop doing so for the next task
    if code != 0:
        raise TrainingStopped(code, run_dir(spec, budget, save_dir, acdc_root))


def checkpoint_dir(run_folder: Path) -> Path:
    return run_folder / "model" / "best" / "checkpoints"


def run_test(spec: RunSpec, n_iter: int, run_folder: Path, data_root: PathLike, budget: Budget, out_dir: PathLike,
             options: RunOptions, progress: Callable[[str, int], Any] | None = None,
             checkpoints: Path | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Test one run's best checkpoint on every test set with ``n_iter``.

    Writes the test script's files into ``out_dir`` (as ``medseg-test --output_dir out_dir``: ``summary.csv``,
    ``summary.md``, ``dice_boxplot.png`` and the per-dataset reports in ``<method>/<cval>/<dataset>/``) and
    ``out_dir/volumes.csv``. ``checkpoints``: another checkpoint folder of the run (default its best model).

    Returns:
        ``(volumes, notes)``: one row per test volume (columns :data:`VOLUME_COLUMNS`) and the test warnings.
    """
    run = Run(spec.method, checkpoints or checkpoint_dir(run_folder), spec.cval)
    outcome = run_tests([run], data_root, list(budget.test_datasets), out_dir, frames=list(budget.frames),
                        n_iter=n_iter,
                        metric_names=["Dice"], device=resolve_device(options.device),
                        batch_slices=options.batch_slices, progress=progress, reports_dir=out_dir,
                        crop_size=budget.test_crop_size)
    frames = []
    for entry in outcome.entries:
        for name, result in entry.results.items():
            detailed = result.detailed.copy()
            detailed.insert(0, "dataset", name)
            frames.append(detailed)
    volumes = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(VOLUME_COLUMNS))
    volumes = volumes.reindex(columns=list(VOLUME_COLUMNS))
    with atomic_open(Path(out_dir) / "volumes.csv", "w", newline="", encoding="utf-8") as handle:
        volumes.to_csv(handle, index=False, float_format="%.6f")
    return volumes, list(outcome.notes)
