"""Cross-domain testing of trained checkpoints (console script ``medseg-test``).

Tests each method on in-domain ACDC, the ACDC-C artefact sets and M&Ms, writes patient-wise reports (into
``--output_dir/<method>/<cval>/<dataset>/``, or else into each method's own ``.../model/best/report/<dataset>/``) and an
aggregate table over everything, and prints it::

    medseg-test --runs_dir saved --data_root data/synthetic
    medseg-test --methods standard=saved/train_ACDC_10_n_cls_4/standard_training/{cval}/model/best/checkpoints \\
        cooperative=saved/train_ACDC_10_n_cls_4/cooperative_training/{cval}/model/best/checkpoints --cval 0 1 2
    python medseg/test_ACDC_triplet_segmentation.py --runs_dir saved --metrics Dice HD95 ASSD --save_predictions
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from medseg.config import crop_size_problem
from medseg.data.splits import N_FOLDS
from medseg.evaluation.metrics import SUPPORTED_METRICS
from medseg.nn.precision import INFERENCE_PRECISIONS, configure_tf32, option_error
from medseg.utils.cli import ArgumentParser, CommandFailed, HelpFormatter, run_cli
from medseg.utils.device import resolve_device
from medseg.utils.memory import tune_allocator

CVALS = range(N_FOLDS)  # the folds medseg-train accepts
DEFAULT_DATASETS = ["ACDC", "RandomBias", "RandomSpike", "RandomGhosting", "RandomMotion", "MM"]


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="medseg-test",
        description="Test checkpoints on ACDC, ACDC-C and M&Ms; write patient-wise reports and a robustness table.",
        formatter_class=HelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--methods",
        nargs="+",
        metavar="NAME=CHECKPOINT_DIR",
        help="methods to test; CHECKPOINT_DIR may contain {cval}, filled with each --cval",
    )
    source.add_argument(
        "--runs_dir", type=Path, help="discover every <config>/<cval>/model/best/checkpoints under this folder"
    )
    parser.add_argument("--data_root", type=Path, default=Path("data/synthetic"), help="holds ACDC/, ACDC-C/, MM/")
    parser.add_argument("--datasets", nargs="+", default=DEFAULT_DATASETS, help="test sets, in table order")
    parser.add_argument("--frames", nargs="+", default=["ED", "ES"], choices=["ED", "ES"],
                        help="cardiac phases to test: ED (end-diastole), ES (end-systole)")
    parser.add_argument("--n_iter", type=int, default=2, help="1 = FTN only, 2 = FTN + STN (default)")
    parser.add_argument("--cval", type=int, nargs="+", default=None, choices=CVALS, metavar="{0-4}",
                        help="folds to test, among 0, 1, 2, 3 and 4 (default: every fold found; with {cval} in --methods "
                        "this is required)")
    parser.add_argument(
        "--metrics", nargs="+", default=["Dice"], choices=list(SUPPORTED_METRICS),
        help="Dice (always computed), HD (slice-averaged 2D Hausdorff distance, mm), HD95 (3D 95th-percentile "
        "Hausdorff distance, mm), ASSD (3D average symmetric surface distance, mm), HD3D (3D Hausdorff distance, mm)",
    )
    parser.add_argument("--save_predictions", action="store_true", help="write NIfTI label maps in image geometry")
    parser.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu or cuda[:k]")
    parser.add_argument("--batch_slices", type=int, default=10, help="slices per forward pass")
    parser.add_argument("--precision", choices=INFERENCE_PRECISIONS, default="fp32",
                        help="fp32 (default), bf16 (CUDA, or a CPU with AVX512-BF16/AMX) or fp16 (CUDA) inference")
    parser.add_argument(
        "--crop_size", type=int, default=192,
        help="in-plane centre crop / zero pad of the test volumes (published 192; match the training grid, e.g. 96 "
        "for data resampled to 2.734 mm)",
    )
    parser.add_argument(
        "--output_dir", type=Path, default=None,
        help="write everything here: summary.csv/.md, dice_boxplot.png, warnings.txt and the per-dataset reports in "
        "<output_dir>/<method>/<cval>/<dataset>/ (default: per-dataset reports beside each checkpoint in "
        "model/best/report/<dataset>/, the aggregate in --runs_dir or ./saved/test_reports)",
    )
    parser.add_argument(
        "--normalize_2D", action="store_true",
        help="min-max each test slice to [0, 1] before predicting (off by default, as in the published ED+ES test "
        "protocol, which keeps the stored intensities)",
    )
    parser.add_argument(
        "--strict", action="store_true",
        help="exit with status 1 (after writing every report) when a volume was skipped or a test set is missing "
        "from the table, instead of 0 with the warnings listed; for pipelines that must not go on with a partial "
        "table",
    )
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars")
    parser.add_argument("--verbose", "--debug", action="store_true", help="debug logging and error tracebacks")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``medseg-test``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.n_iter < 1:
        parser.error(f"--n_iter must be >= 1, got {args.n_iter}")
    if args.batch_slices < 1:
        parser.error(f"--batch_slices must be >= 1, got {args.batch_slices}")
    crop_problem = crop_size_problem(args.crop_size)
    if crop_problem is not None:
        parser.error(f"--crop_size: expected {crop_problem}, got {args.crop_size}")
    if len(set(args.datasets)) != len(args.datasets):  # one report folder and one table column per test set
        repeated = sorted({name for name in args.datasets if args.datasets.count(name) > 1})
        parser.error(f"--datasets: expected each test set once, got {' '.join(repeated)} more than once")
    if not args.data_root.is_dir():
        parser.error(f"--data_root {args.data_root} does not exist; expected a folder holding ACDC/, ACDC-C/, MM/")
    precision_error = option_error(args.precision, args.device)
    if precision_error is not None:
        parser.error(precision_error)

    from medseg.evaluation.aggregate import class_columns, format_table, main_columns
    from medseg.evaluation.runner import run_tests
    from medseg.evaluation.runs import discover_runs, parse_method_specs

    try:
        if args.methods:
            runs = parse_method_specs(args.methods, args.cval)
        else:
            runs = discover_runs(args.runs_dir, args.cval)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    output_dir = args.output_dir or (args.runs_dir if args.runs_dir is not None else Path("saved/test_reports"))
    progress = None
    if not args.no_progress:
        from tqdm import tqdm

        def progress(description: str, total: int):
            return tqdm(total=total, desc=description, unit="volume", leave=False)

    def body() -> int:
        # on the CPU: reuse freed activations instead of page-faulting fresh memory per chunk
        tune_allocator(resolve_device(args.device))
        configure_tf32(False)  # fp32 on a GPU is fp32 (cuDNN would use TF32 by default)
        outcome = run_tests(
            runs,
            args.data_root,
            args.datasets,
            output_dir,
            frames=args.frames,
            n_iter=args.n_iter,
            metric_names=args.metrics,
            device=resolve_device(args.device),
            batch_slices=args.batch_slices,
            save_predictions=args.save_predictions,
            progress=progress,
            reports_dir=args.output_dir,
            normalize_2D=args.normalize_2D,
            crop_size=args.crop_size,
            precision=args.precision,
        )
        if outcome.evaluated == 0:
            reasons = "; ".join(outcome.notes[:3]) or "no test set was available"
            raise CommandFailed(f"nothing was evaluated (0 volumes; --datasets {' '.join(args.datasets)}): {reasons}")
        table = outcome.table
        print(f"\nMean Dice over LV/MYO/RV (n_iter = {args.n_iter})\n")
        print(format_table(table, main_columns(table, args.datasets)))
        print("\nPer-class Dice\n")
        print(format_table(table, class_columns(table, args.datasets)))
        if outcome.notes:
            print(f"\n{len(outcome.notes)} warnings (see {outcome.paths['warnings']}):")
            for note in outcome.notes:
                print(f"  - {note}")
        print(f"\n{outcome.evaluated} volumes evaluated, {outcome.skipped} skipped")
        print(f"\nAggregate: {outcome.paths['csv']}, {outcome.paths['md']}")
        if args.strict and (outcome.skipped or outcome.missing):
            absent = f"test sets missing from the table: {' '.join(outcome.missing)}; " if outcome.missing else ""
            raise CommandFailed(f"--strict: {outcome.skipped} volume(s) skipped; {absent}see "
                                f"{outcome.paths['warnings']} (the reports were written)")
        return 0

    return run_cli(parser.prog, body, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
