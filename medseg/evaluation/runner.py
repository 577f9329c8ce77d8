"""Testing every run on every test set and writing all reports (the body of ``medseg-test``)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from medseg.evaluation.aggregate import AGGREGATE_NAMES, RunResults, write_aggregate
from medseg.evaluation.datasets import DatasetUnavailable, TestSet, build_test_set
from medseg.evaluation.inference import (
    PUBLISHED_SPACING_MM,
    check_checkpoint,
    checkpoint_spacing,
    load_model,
    unknown_grid_note,
)
from medseg.evaluation.reports import evaluate_dataset, write_dataset_report
from medseg.evaluation.runs import Run, report_location
from medseg.evaluation.scan import field_of_view_crop
from medseg.experiments.state import hash_files
from medseg.io.atomic import remove_stale_temp_files
from medseg.io.nifti import read_volume_info
from medseg.io.checkpoint import MANIFEST_NAME, read_manifest
from medseg.utils.paths import check_name

logger = logging.getLogger(__name__)

#: A warning of :func:`~medseg.evaluation.reports.evaluate_dataset` about a patient whose files could not be read.
_SKIPPED_PATIENT = re.compile(r"^[^:]+: (patient #\d+) skipped: (?:(?:cannot read volume )?(\S+\.nii(?:\.gz)?)\b)?")


def _skipped_volume(match: re.Match) -> str:
    """``<subject>/<file>`` of a skipped patient whose error names its file, else ``patient #<index>``."""
    if match.group(2):
        path = Path(match.group(2).rstrip(":"))
        return f"{path.parent.name}/{path.name}"
    return match.group(1)

PathLike = str | os.PathLike
ProgressFactory = Callable[[str, int], Any]  # (description, total) -> object with update() and close()


@dataclass
class TestOutcome:
    """What :func:`run_tests` produced.

    Attributes:
        evaluated: volumes (patient/frame pairs) scored, summed over runs and test sets.
        skipped: volumes that could not be evaluated (unreadable or invalid files; see ``notes``).
        missing: requested test sets that are absent from the table (folder unavailable, or no patient evaluated).
    """

    table: pd.DataFrame
    entries: list[RunResults]
    paths: dict[str, Path]
    notes: list[str] = field(default_factory=list)
    report_dirs: list[Path] = field(default_factory=list)
    evaluated: int = 0
    skipped: int = 0
    missing: list[str] = field(default_factory=list)


def open_test_sets(
    datasets: Sequence[str], data_root: PathLike, frames: Sequence[str]
) -> tuple[dict[str, TestSet], list[str]]:
    """Open every requested test set; unavailable ones are reported in the returned notes."""
    opened: dict[str, TestSet] = {}
    notes: list[str] = []
    for name in datasets:
        try:
            opened[name] = build_test_set(name, data_root, frames)
        except DatasetUnavailable as err:
            logger.warning("%s", err)
            notes.append(str(err))
            continue
        notes.extend(opened[name].notes)
    return opened, notes


def check_writable_target(directory: PathLike, what: str) -> None:
    """Check, without creating anything, that ``directory`` exists as a writable folder or could be created.

    Raises:
        PermissionError: naming ``what`` and the folder (or the blocking file / unwritable parent).
    """
    directory = Path(directory)
    probe = directory
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise PermissionError(f"{what} {directory}: expected a folder, but {probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {directory}: expected a writable folder, but {probe} is not writable")


class CheckpointError(ValueError):
    """A run's checkpoint folder cannot be loaded; the message names the run and the file."""


def check_checkpoints(runs: Sequence[Run]) -> None:
    """Strictly load every checkpoint once on the CPU so a bad folder fails before hours of testing.

    Raises:
        CheckpointError: naming the run and (through the model's error) the offending file.
    """
    for run in runs:
        try:
            check_checkpoint(run.checkpoint_dir)
        except (FileNotFoundError, ValueError, RuntimeError, KeyError) as err:
            raise CheckpointError(
                f"method {run.label}: cannot load checkpoint folder {run.checkpoint_dir}: {err}"
            ) from err


def checkpoint_identity(checkpoint_dir: PathLike) -> dict[str, Any]:
    """Epoch, validation score and a SHA-256 over the module files of a checkpoint folder, and the time of the test:
    a report kept beside checkpoints that training later replaced is then recognisably about other weights."""
    import datetime

    folder = Path(checkpoint_dir)
    manifest = read_manifest(folder) if (folder / MANIFEST_NAME).is_file() else None
    return {
        "checkpoint_epoch": None if manifest is None else manifest.get("epoch"),
        "checkpoint_mean_iou": None if manifest is None else manifest.get("mean_iou"),
        "checkpoint_sha256": hash_files(sorted(folder.glob("*.pth"))),
        "tested": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _grid_note(run: Run, crop_size: int | None) -> str | None:
    """A warning when a model trained on another in-plane grid is tested with the 1.36719 mm protocol's crop, or
    when the checkpoint has no record of its grid."""
    spacing = checkpoint_spacing(run.checkpoint_dir)
    if spacing is None:
        return f"{run.label}: " + unknown_grid_note(
            run.checkpoint_dir, "test data resampled to its grid with the matching --crop_size")
    if abs(spacing - PUBLISHED_SPACING_MM) < 1e-3:
        return None
    expected = field_of_view_crop(spacing)[0]
    if crop_size == expected:
        return None
    return (f"{run.label}: the model was trained on a {spacing:g} mm grid; test it on data resampled to that grid "
            f"with --crop_size {expected} (the robustness experiment does both), not with crop {crop_size or 192}")


def _volume_spacings(source: Any) -> list[tuple[str, float]]:
    """(image file, in-plane spacing as the model will see it) of every readable volume of a test source, from the
    headers only; unreadable volumes are left out (the evaluation reports them)."""
    spacings: list[tuple[str, float]] = []
    for part in getattr(source, "parts", [source]):
        resampled_to = getattr(part, "new_spacing", None)
        for pid in getattr(part, "patient_id_list", []):
            image_path = part.paths(pid)[0]
            try:
                spacing = float(resampled_to[0]) if resampled_to is not None else float(
                    read_volume_info(image_path, ndim=None).spacing[0])
            except (OSError, ValueError, RuntimeError):
                continue
            spacings.append((str(image_path), spacing))
    return spacings


def _data_grid_note(run: Run, name: str, source: Any, crop_size: int) -> str | None:
    """A warning when test volumes' in-plane spacing is not the model's grid: the network would see their structures
    at another scale (medseg-test does not resample; medseg-predict does). Every volume is checked (its header); the
    warning counts the volumes off the grid and names the first."""
    model_spacing = checkpoint_spacing(run.checkpoint_dir) or PUBLISHED_SPACING_MM
    spacings = _volume_spacings(source)
    off = [(path, spacing) for path, spacing in spacings if abs(spacing - model_spacing) > 0.01 * model_spacing]
    if not off:
        return None
    first, spacing = off[0]
    return (f"{run.label}: {name}: {len(off)} of {len(spacings)} test volume(s) are not on the model's "
            f"{model_spacing:g} mm grid (e.g. {first}: {spacing:g} mm pixels); resample the data to the model's grid "
            "(the robustness experiment does)")


def run_tests(
    runs: Sequence[Run],
    data_root: PathLike,
    datasets: Sequence[str],
    output_dir: PathLike,
    frames: Sequence[str] = ("ED", "ES"),
    n_iter: int = 2,
    metric_names: Sequence[str] = ("Dice",),
    device: torch.device | None = None,
    batch_slices: int = 10,
    save_predictions: bool = False,
    progress: ProgressFactory | None = None,
    reports_dir: PathLike | None = None,
    normalize_2D: bool = False,  # noqa: N803 (published name)
    crop_size: int = 192,
    precision: str = "fp32",
) -> TestOutcome:
    """Evaluate each run on each available test set, write its per-dataset reports and the aggregate.

    Args:
        runs: checkpoints to test.
        data_root: folder with ``ACDC/``, ``ACDC-C/<artefact>/`` and ``MM/``.
        datasets: test-set names, in table order.
        output_dir: folder for ``summary.csv``, ``summary.md``, ``dice_boxplot.png`` and ``warnings.txt``.
        frames: frames to test (ED first by default).
        n_iter: 1 = FTN, 2 = FTN + STN.
        metric_names: metrics (``Dice`` always first in the tables).
        device: where the models run (CPU by default).
        batch_slices: slices per forward pass.
        save_predictions: also write NIfTI label maps in the original image geometry.
        progress: optional progress-bar factory (entry points only).
        reports_dir: root of the per-dataset reports (``<reports_dir>/<method>/<cval>/<dataset>/``); None = beside
            each checkpoint (:func:`~medseg.evaluation.runs.report_location`).
        normalize_2D: min–max each test slice to [0, 1] (off as in the published ED+ES protocol).
        crop_size: in-plane test crop (published 192).
        precision: compute precision of the networks (``'fp32'``, ``'bf16'``, ``'fp16'``).

    Returns:
        The aggregate table, the per-run results, the written aggregate paths and the warnings.

    Raises:
        CheckpointError: a checkpoint folder is unusable (all are checked before testing starts).
        ValueError: a dataset name that is not a single folder name.
        PermissionError: an output folder cannot be written (checked before any inference).
    """
    if not runs:
        raise ValueError("no run to test: give --methods NAME=DIR or --runs_dir")
    for name in datasets:
        check_name(name, "--datasets")
    if len(set(datasets)) != len(datasets):  # one report folder and one table column per test set
        raise ValueError(f"--datasets: expected each test set once, got {list(datasets)}")
    device = device if device is not None else torch.device("cpu")
    metric_names = ["Dice", *[m for m in metric_names if m != "Dice"]]
    check_checkpoints(runs)
    test_sets, notes = open_test_sets(datasets, data_root, frames)
    check_writable_target(output_dir, "--output_dir")  # before hours of inference, not after
    out_dirs = {(index, name): report_location(run, name, data_root, test_set.folder, reports_dir)
                for index, run in enumerate(runs) for name, test_set in test_sets.items()}
    for (index, _), folder in out_dirs.items():
        check_writable_target(folder / "predictions" if save_predictions else folder,
                              f"{runs[index].label}: report folder")
    # an interrupted run must not leave the previous run's tables looking like this run's: they go before any
    # report is rewritten and come back, complete, only at the end
    for stale in AGGREGATE_NAMES:
        (Path(output_dir) / stale).unlink(missing_ok=True)
    entries: list[RunResults] = []
    report_dirs: list[Path] = []
    evaluated = skipped = 0
    skipped_names: list[str] = []  # named once, not once per run
    for index, run in enumerate(runs):
        model = load_model(run.checkpoint_dir, device, n_iter=n_iter, precision=precision)
        weights = checkpoint_identity(run.checkpoint_dir)  # which weights each report describes
        grid_note = _grid_note(run, crop_size)
        if grid_note:
            logger.warning(grid_note)
            notes.append(grid_note)
        entry = RunResults(run)
        for name, test_set in test_sets.items():
            data_note = _data_grid_note(run, name, test_set.source, crop_size)
            if data_note:
                logger.warning(data_note)
                notes.append(data_note)
            out_dir = out_dirs[index, name]
            bar = progress(f"{run.label} / {name}", test_set.source.patient_number) if progress else None
            result = evaluate_dataset(
                model,
                test_set.source,
                name,
                metric_names,
                n_iter=n_iter,
                batch_slices=batch_slices,
                device=device,
                predictions_dir=out_dir / "predictions" if save_predictions else None,
                on_patient=bar.update if bar is not None else None,
                normalize_2D=normalize_2D,
                crop_size=crop_size,
            )
            if bar is not None:
                bar.close()
            info = {
                "method": run.method,
                "cval": run.cval,
                "checkpoint_dir": str(run.checkpoint_dir),
                **weights,
                "data_root": str(Path(data_root).resolve()),
                "data_folder": str(Path(test_set.folder).resolve()),
                "frames": list(frames),
                "metrics": list(metric_names),
                "normalize_2D": normalize_2D,
                "crop_size": crop_size,
            }
            remove_stale_temp_files(out_dir)
            write_dataset_report(result, out_dir, n_iter, info, test_set.vendors)
            report_dirs.append(out_dir)
            notes.extend(f"{run.label}: {note}" for note in result.warnings)
            evaluated += len(result.detailed)
            skipped += test_set.source.patient_number - len(result.detailed) + len(test_set.skipped)
            skipped_names += [f"{name} {volume}" for volume in test_set.skipped if index == 0]
            skipped_names += [f"{name} {_skipped_volume(match)}" for match in map(_SKIPPED_PATIENT.match,
                                                                                 result.warnings) if match and index == 0]
            if result.detailed.empty:
                notes.append(f"{run.label}: {name}: no patient could be evaluated")
                continue
            entry.results[name] = result
            logger.info(
                "%s on %s: mean Dice %.4f over %d volumes", run.label, name, result.mean_dice(), len(result.detailed)
            )
        entries.append(entry)
        del model
    if skipped:
        shown = ", ".join(skipped_names[:20]) + (" ..." if len(skipped_names) > 20 else "")
        notes.append(f"{skipped} volume(s) skipped because their files are unreadable or invalid ({shown}): the test "
                     "sets are smaller than the data on disk; repair or regenerate those files (the warnings above "
                     "say what is wrong with each)")
    table, paths = write_aggregate(entries, datasets, output_dir, n_iter, notes, data_root=data_root)
    missing = [name for name in datasets if not entries or any(name not in entry.results for entry in entries)]
    return TestOutcome(table, entries, paths, notes, report_dirs, evaluated, skipped, missing)
