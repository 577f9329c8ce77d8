"""Segmenting new scans with a trained checkpoint (the body of ``medseg-predict``): which files to write, and the
segmentation of each scan in its own geometry (:func:`medseg.evaluation.scan.segment_volume`)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medseg.evaluation.inference import load_model, training_grid, unknown_grid_note
from medseg.evaluation.scan import field_of_view_crop, segment_volume, select_frame
from medseg.io.atomic import remove_stale_temp_files
from medseg.io.nifti import read_volume, write_volume
from medseg.nn.precision import configure_tf32
from medseg.utils.device import resolve_device
from medseg.utils.memory import tune_allocator

NIFTI_SUFFIXES = (".nii.gz", ".nii")
LABEL_SUFFIXES = ("_seg.nii.gz", "_seg.nii")

logger = logging.getLogger("medseg.cli.predict")  # the command's messages keep the command's logger name


def is_nifti(path: Path) -> bool:
    """A NIfTI scan to segment: not hidden (``.name`` files include the temporary files of interrupted writes)."""
    return path.is_file() and path.name.endswith(NIFTI_SUFFIXES) and not path.name.startswith(".")


def output_name(path: Path) -> str:
    """``scan.nii.gz`` → ``scan_seg.nii.gz``."""
    for suffix in NIFTI_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)] + "_seg.nii.gz"
    return path.name + "_seg.nii.gz"


def plan_jobs(input_path: Path, output_path: Path) -> list[tuple[Path, Path]]:
    """Pairs (input file, output file).

    Raises:
        FileNotFoundError / ValueError: naming the path when the input does not exist or is not usable.
    """
    if input_path.is_dir():
        if output_path.exists() and not output_path.is_dir():
            raise ValueError(f"--input {input_path} is a folder, so --output must be a folder; {output_path} is a file")
        if not output_path.exists() and output_path.name.endswith(NIFTI_SUFFIXES):
            raise ValueError(f"--input {input_path} is a folder, so --output must be a folder; {output_path} is named "
                             "like a NIfTI file")
        scans = sorted(p for p in input_path.iterdir() if is_nifti(p) and not p.name.endswith(LABEL_SUFFIXES))
        if not scans:
            raise FileNotFoundError(f"no *.nii / *.nii.gz scan in {input_path} (files ending in _seg are skipped)")
        jobs = [(scan, output_path / output_name(scan)) for scan in scans]
        by_target: dict[Path, list[Path]] = {}
        for scan, target in jobs:
            by_target.setdefault(target, []).append(scan)
        clashes = {target: sources for target, sources in by_target.items() if len(sources) > 1}
        if clashes:
            target, sources = next(iter(clashes.items()))
            raise ValueError(f"--input {input_path}: expected one output per scan, got {len(sources)} scans for "
                             f"{target}: {', '.join(str(s) for s in sources)} (rename one of them)")
        return jobs
    if not input_path.exists():
        raise FileNotFoundError(f"--input {input_path} does not exist")
    if output_path.is_dir():
        return [(input_path, output_path / output_name(input_path))]
    if not output_path.name.endswith(NIFTI_SUFFIXES):
        raise ValueError(f"--output {output_path} must end in .nii.gz or .nii (or be an existing folder)")
    return [(input_path, output_path)]


def refuse_in_place(jobs: list[tuple[Path, Path]]) -> None:
    """No output may be one of the inputs (paths resolved, symlinks followed): it would replace a scan by labels.

    Raises:
        ValueError: naming the output and the input it would overwrite.
    """
    inputs = {source.resolve(): source for source, _ in jobs}
    for source, target in jobs:
        clash = inputs.get(target.resolve())
        if clash is None and target.exists():
            clash = next((s for s in inputs.values() if s.exists() and target.samefile(s)), None)
        if clash is not None:
            raise ValueError(f"--output {target}: expected a new file, got the input scan {clash} itself (also via "
                             "symlinks or hard links); writing the label map there would destroy the scan")


def segment_scans(args: argparse.Namespace, jobs: list[tuple[Path, Path]],
                  progress: Callable[[int], Any] | None = None) -> int:
    """Load the model once and segment every job; returns 0, or 1 if some scans of a folder failed.

    Args:
        args: the ``medseg-predict`` options (``checkpoint``, ``device``, ``n_iter``, ``precision``, ``spacing_mm``,
            ``frame``, ``batch_slices``, ``label_convention``).
        jobs: ``(scan, output)`` pairs from :func:`plan_jobs`.
        progress: progress-bar factory ``(total) -> bar`` with ``update()`` and ``close()`` (entry points only);
            used for more than one scan.

    Raises:
        OSError, ValueError: an unusable checkpoint, or the failure of the only scan (one error line, exit 2).
    """
    device = resolve_device(args.device)
    tune_allocator(device)  # on the CPU: reuse freed activations instead of page-faulting fresh memory per chunk
    configure_tf32(False)  # fp32 on a GPU is fp32 (cuDNN would use TF32 by default)
    try:
        model = load_model(args.checkpoint, device, n_iter=args.n_iter, precision=args.precision)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        raise ValueError(f"cannot load --checkpoint {args.checkpoint}: {err}") from err
    spacing, record = training_grid(args.checkpoint)  # the grid the model was trained on, if recorded
    if args.spacing_mm is not None:
        if spacing is not None and abs(spacing - args.spacing_mm) > 1e-4:
            logger.warning("--spacing_mm %g overrides the %g mm recorded in %s", args.spacing_mm, spacing, record)
        spacing = args.spacing_mm
    elif spacing is None:
        logger.warning(unknown_grid_note(args.checkpoint, "--spacing_mm"))
    if spacing is not None:
        logger.info("the model was trained on a %.5g mm grid: scans are resampled to it (%d x %d crop)", spacing,
                    *field_of_view_crop(spacing))
    for folder in {target.parent for _, target in jobs}:
        remove_stale_temp_files(folder)
    bar = progress(len(jobs)) if progress is not None and len(jobs) > 1 else None
    failures = 0
    for source, target in jobs:
        try:
            volume = select_frame(read_volume(source, ndim=None, dtype="float32"), args.frame)
            labels = segment_volume(
                model, volume, args.n_iter, args.batch_slices, device, label_convention=args.label_convention,
                spacing_mm=spacing,
            )
            write_volume(target, labels, volume)
            logger.info("%s -> %s", source, target)
        except (OSError, ValueError) as err:
            if len(jobs) == 1:
                raise
            failures += 1
            logger.error("skipped %s: %s", source, err)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    if failures:
        logger.error("%d of %d scans failed", failures, len(jobs))
        return 1
    return 0
