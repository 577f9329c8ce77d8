"""Measure how real and how hard a prepared (synthetic or real) data set is, per domain: threshold-rule Dice,
intensity / gradient statistics, blood-pool variation, heart size; writes a markdown table and figures.

Example:
    python scripts/phantom_report.py data/synthetic   (writes results/phantom_report/)
"""

from __future__ import annotations

import argparse
import logging
import sys

from medseg.phantom.report_output import write_report
from medseg.utils.cli import ArgumentParser, HelpFormatter, run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(prog="phantom_report.py", description=__doc__.splitlines()[0],
                            formatter_class=HelpFormatter)
    parser.add_argument("data_dir", help="prepared data folder with ACDC/, MM/ (vendors.csv) and/or ACDC-C/")
    parser.add_argument("--out", default="results/phantom_report",
                        help="output folder for report.md, report.json and figures (git-ignored by default)")
    parser.add_argument("--montage", type=int, default=6, help="subjects per domain montage")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--verbose", "--debug", action="store_true", help="error tracebacks")
    args = parser.parse_args(argv)
    if args.montage < 1:
        parser.error(f"--montage: expected an integer >= 1, got {args.montage}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_cli("phantom_report.py", lambda: report(args), args.verbose)


def report(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    with tqdm(desc="phantom report", unit="subj", disable=args.no_progress) as bar:
        path = write_report(args.data_dir, args.out, n_montage=args.montage, on_case=lambda _: bar.update())
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
