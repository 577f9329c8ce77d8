"""Write the hard-example figures of a trained model as PNG files (the notebook's figures, for scripts and papers).

    python scripts/visualize_hard_examples.py \\
        --checkpoint saved/quickstart/runs/train_ACDC_10_n_cls_4/quickstart/cooperative_training/0/model/best/checkpoints \\
        --subject data/synthetic/ACDC/007 --out docs --figures 1 2

writes ``<out>/hard_examples_fig1.png`` (corrupted images: masking methods x thresholds 0-50 %),
``hard_examples_fig2.png`` (corrupted segmentations and their entropy) and ``hard_examples_fig3.png`` (reconstruction
error and STN correction). ``--subject`` is a preprocessed subject folder (``<pid>/{ED,ES}_{img,seg}.nii.gz``) or a 3D
image file (a label map ``X_seg.nii.gz`` next to ``X.nii.gz`` is used when present). A checkpoint that does not match
the architecture is refused with the model's error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from medseg.utils.cli import ArgumentParser, HelpFormatter, run_cli

logger = logging.getLogger("medseg.visualize")

PROG = "visualize_hard_examples.py"
DPI_RANGE = (10, 1200)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description="Hard-example figures (latent masking) of a trained medseg model.",
                            formatter_class=HelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="folder with the <module>.pth files")
    parser.add_argument("--subject", type=Path, required=True,
                        help="preprocessed subject folder or 3D image file (resampled to the in-plane grid the model "
                             "was trained on, data.new_spacing of its run config.json)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for the PNG files")
    parser.add_argument("--slice", type=int, default=None,
                        help="slice index (default: the slice with the most foreground showing LV, MYO and RV)")
    parser.add_argument("--frame", choices=["ED", "ES"], default="ED",
                        help="frame of a subject folder: ED (end-diastole, default) or ES (end-systole)")
    parser.add_argument("--figures", type=int, nargs="+", choices=[1, 2, 3], default=[1, 2, 3],
                        help="which figures to write (default: 1 2 3)")
    parser.add_argument("--prefix", default="hard_examples_",
                        help="file name prefix, without folders: the files stay in --out (default hard_examples_)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the masks' random draws (default 0)")
    parser.add_argument("--dpi", type=int, default=80,
                        help=f"PNG resolution, {DPI_RANGE[0]}-{DPI_RANGE[1]} (default 80)")
    parser.add_argument("--device", default="auto", help="auto (default: CUDA if available), cpu or cuda[:k]")
    parser.add_argument("--verbose", "--debug", action="store_true", help="debug logging and error tracebacks")
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every argument checked before any work (model, subject, figures): one usage line, exit code 2."""
    from medseg.evaluation.runner import check_writable_target
    from medseg.utils.paths import check_name

    if not DPI_RANGE[0] <= args.dpi <= DPI_RANGE[1]:
        parser.error(f"--dpi: expected an integer from {DPI_RANGE[0]} to {DPI_RANGE[1]}, got {args.dpi}")
    if args.prefix:  # an empty prefix gives fig1.png ...
        try:
            check_name(f"{args.prefix}fig1.png", "--prefix")
        except ValueError:
            parser.error(f"--prefix: expected a file name prefix without folders (the figures are written into "
                         f"--out), got {args.prefix!r}")
    try:
        check_writable_target(args.out, "--out")
    except PermissionError as err:
        parser.error(str(err))


def run(args: argparse.Namespace) -> int:
    """Load the model and the subject, write the figures; returns 0 (errors are raised, see :func:`main`)."""
    from medseg.evaluation.inference import load_model
    from medseg.utils.device import resolve_device
    from medseg.visualization import checkpoint_spacing, default_slice, load_subject, save_figure
    from medseg.visualization.pipeline import hard_example_figures

    device = resolve_device(args.device)
    if not args.checkpoint.is_dir():  # before the subject's grid is looked up in it
        raise FileNotFoundError(f"--checkpoint {args.checkpoint} does not exist; expected the <module>.pth files of a "
                                "trained model (e.g. .../model/best/checkpoints)")
    subject = load_subject(args.subject, args.frame, spacing_mm=checkpoint_spacing(args.checkpoint))
    slice_index = default_slice(subject) if args.slice is None else args.slice
    if not 0 <= slice_index < subject.n_slices:
        raise ValueError(f"--slice {slice_index} out of range: {subject.name} has slices 0..{subject.n_slices - 1}")
    model = load_model(args.checkpoint, device)
    logger.info("%s: slice %d of %d, checkpoint %s", subject.name, slice_index, subject.n_slices, args.checkpoint)
    figures = hard_example_figures(model, subject, slice_index, args.figures, seed=args.seed)
    for number, fig in figures.items():
        path = save_figure(fig, args.out / f"{args.prefix}fig{number}.png", dpi=args.dpi)
        logger.info("wrote %s", path)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Returns the exit code: 0 written, 2 bad input (one line naming it; the traceback with --verbose), 1 a failure."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    return run_cli(PROG, lambda: run(args), args.verbose)


if __name__ == "__main__":
    sys.exit(main())
