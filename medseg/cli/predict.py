"""Segment new cardiac MR scans with a trained checkpoint (console script ``medseg-predict``).

The scan is normalised and resampled as in preprocessing, segmented, and the label map is written in the input's
exact geometry (size, spacing, origin, direction), so it overlays the image in any viewer::

    medseg-predict --checkpoint saved/.../model/best/checkpoints --input scan.nii.gz --output scan_seg.nii.gz
    medseg-predict --checkpoint CKPT --input cine_4d.nii.gz --frame 0 --output ed_seg.nii.gz --label_convention acdc_raw
    medseg-predict --checkpoint CKPT --input scans/ --output segs/        # every *.nii(.gz) -> segs/<name>_seg.nii.gz

Labels: ``medseg``/``mnms`` = 1 LV, 2 MYO, 3 RV (default); ``acdc_raw`` = 1 RV, 2 MYO, 3 LV. For a 4D input the
output is the 3D label map of the chosen frame, in that frame's geometry.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from medseg.nn.precision import option_error
from medseg.utils.cli import ArgumentParser, HelpFormatter, run_cli

NIFTI_SUFFIXES = (".nii.gz", ".nii")
LABEL_SUFFIXES = ("_seg.nii.gz", "_seg.nii")

logger = logging.getLogger("medseg.cli.predict")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="medseg-predict", description="Segment LV, MYO and RV in cardiac MR scans.",
                            formatter_class=HelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="folder with the <module>.pth files")
    parser.add_argument("--input", type=Path, required=True, help="a NIfTI scan (3D or 4D) or a folder of scans")
    parser.add_argument("--output", type=Path, required=True, help="output label map (file) or folder")
    parser.add_argument("--n_iter", type=int, default=2, help="1 = FTN only, 2 = FTN + STN (default)")
    parser.add_argument(
        "--label_convention", default="medseg", choices=["medseg", "acdc_raw", "mnms"],
        help="label values written: medseg = 1 LV, 2 MYO, 3 RV (the training labels); acdc_raw = 1 RV, 2 MYO, 3 LV "
        "(the ACDC challenge files); mnms = 1 LV, 2 MYO, 3 RV (the M&Ms files, same values as medseg)",
    )
    parser.add_argument("--frame", type=int, default=None,
                        help="frame index K of a 4D (T, Z, H, W) input (default: none; required for 4D inputs)")
    parser.add_argument(
        "--spacing_mm", type=float, default=None,
        help="in-plane grid (mm) the model was trained on (default: the checkpoint's record of it, in its manifest.json "
        "or its run's config.json; without one, the published 1.36719 mm, with a warning)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu or cuda[:k]")
    parser.add_argument("--batch_slices", type=int, default=10, help="slices per forward pass")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                        help="fp32 (default), bf16 (CUDA, or a CPU with AVX512-BF16/AMX) or fp16 (CUDA) inference")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar in folder mode")
    parser.add_argument("--verbose", "--debug", action="store_true", help="error tracebacks")
    return parser


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


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``medseg-predict``; returns the exit code (0 ok, 1 some scans failed, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.n_iter < 1:
        parser.error(f"--n_iter must be >= 1, got {args.n_iter}")
    if args.batch_slices < 1:
        parser.error(f"--batch_slices must be >= 1, got {args.batch_slices}")
    try:
        jobs = plan_jobs(args.input, args.output)
        refuse_in_place(jobs)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    existing = [out for _, out in jobs if out.exists()]
    if existing and not args.overwrite:
        shown = ", ".join(str(p) for p in existing[:5]) + (" ..." if len(existing) > 5 else "")
        parser.error(f"output exists: {shown}; pass --overwrite to replace")
    precision_error = option_error(args.precision, args.device)
    if precision_error is not None:
        parser.error(precision_error)
    if args.spacing_mm is not None and not 0 < args.spacing_mm < float("inf"):
        parser.error(f"--spacing_mm must be a positive spacing in mm, got {args.spacing_mm}")
    from medseg.io.atomic import ensure_writable_dir

    try:  # before the model loads and any scan is segmented
        for folder in sorted({target.parent for _, target in jobs}):
            ensure_writable_dir(folder)
    except PermissionError as err:
        parser.error(f"--output {args.output}: {err}")

    return run_cli(parser.prog, lambda: segment_all(args, jobs), args.verbose)


def segment_all(args: argparse.Namespace, jobs: list[tuple[Path, Path]]) -> int:
    """Load the model once and segment every job; returns 0, or 1 if some scans of a folder failed.

    Raises:
        OSError, ValueError: an unusable checkpoint, or the failure of the only scan (one error line, exit 2).
    """
    from medseg.evaluation.inference import load_model, training_grid, unknown_grid_note
    from medseg.evaluation.scan import field_of_view_crop, segment_volume, select_frame
    from medseg.io.atomic import remove_stale_temp_files
    from medseg.io.nifti import read_volume, write_volume
    from medseg.nn.precision import configure_tf32
    from medseg.utils.device import resolve_device
    from medseg.utils.memory import tune_allocator

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
    bar = None
    if len(jobs) > 1 and not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="segmenting", unit="scan")
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


if __name__ == "__main__":
    sys.exit(main())
