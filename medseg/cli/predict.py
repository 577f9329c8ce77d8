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
from typing import Any

from medseg.evaluation.predict import plan_jobs, refuse_in_place, segment_scans
from medseg.io.atomic import ensure_writable_dir
from medseg.nn.precision import INFERENCE_PRECISIONS, option_error
from medseg.utils.cli import ArgumentParser, HelpFormatter, run_cli


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
    parser.add_argument("--precision", choices=INFERENCE_PRECISIONS, default="fp32",
                        help="fp32 (default), bf16 (CUDA, or a CPU with AVX512-BF16/AMX) or fp16 (CUDA) inference")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar in folder mode")
    parser.add_argument("--verbose", "--debug", action="store_true", help="error tracebacks")
    return parser


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
    try:  # before the model loads and any scan is segmented
        for folder in sorted({target.parent for _, target in jobs}):
            ensure_writable_dir(folder)
    except PermissionError as err:
        parser.error(f"--output {args.output}: {err}")

    progress = None if args.no_progress else _progress_bar
    return run_cli(parser.prog, lambda: segment_scans(args, jobs, progress), args.verbose)


def _progress_bar(total: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="segmenting", unit="scan")


if __name__ == "__main__":
    sys.exit(main())
