#!/usr/bin/env python
"""Reproduce the paper's robustness comparison: standard vs cooperative training, three runs, every test set.

For (cval, seed) = (0, 40), (1, 20), (2, 10) and ``--data_setting 10``, trains both methods with the same budget,
tests each on ACDC, ACDC-C (RandomBias, RandomSpike, RandomGhosting, RandomMotion) and M&Ms (also per vendor) with
n_iter 1 and 2, and writes tables with mean ± std over the runs, Wilcoxon tests over test volumes, box plots, training
curves and ``RESULTS.md`` into ``--out``. Every call continues where the previous one stopped: Ctrl-C or SIGTERM
stop a training at its next iteration with a snapshot (a second signal stops at once; the training then continues
from its last epoch snapshot), and ``--max_tasks N`` ends a sitting cleanly after N trainings/tests::

    python scripts/run_robustness_experiment.py --budget smoke --data_root data/synthetic
    python scripts/run_robustness_experiment.py --budget cpu --results_md docs/RESULTS.md      # ~4 h on 2 cores
    python scripts/run_robustness_experiment.py --budget paper --data_root data/real --device cuda --n_workers 4

Budgets: ``config/experiment/{smoke,cpu,paper}.json`` (or a path to another budget file).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

from medseg.experiments.budgets import BUDGET_NAMES, load_budget
from medseg.experiments.tasks import RunOptions
from medseg.utils.cli import ArgumentParser, CommandFailed, HelpFormatter, run_cli

logger = logging.getLogger("medseg.experiment")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="run_robustness_experiment.py",
        description="Standard vs cooperative training, three runs, tested on ACDC, ACDC-C and M&Ms; resumable.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--budget", default="cpu",
                        help=f"one of {', '.join(BUDGET_NAMES)} (config/experiment/<name>.json: seconds for CI, the "
                             "first run of README command (a) in about 26 minutes, the comparison in about 4 hours on "
                             "a 2-core CPU, the published setting for a GPU), another name in config/experiment/ "
                             "(cpu_run0: run 0 of cpu alone; calib: a one-run calibration of cpu) or the path of a "
                             "budget file")
    parser.add_argument("--data_root", type=Path, default=Path("data/synthetic"),
                        help="preprocessed layout with ACDC/, ACDC-C/<artefact>/ and MM/ (+ MM/vendors.csv) "
                            )
    parser.add_argument("--out", type=Path, default=None,
                        help="experiment folder (default: results/<budget name>)")
    parser.add_argument("--results_md", type=Path, default=None,
                        help="also write the report here, e.g. docs/RESULTS.md, with its figures copied beside it "
                             "(default: only <out>/RESULTS.md)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="auto (cuda if available, else cpu), cpu or cuda")
    parser.add_argument("--n_workers", type=int, default=2,
                        help="DataLoader workers of each training")
    parser.add_argument("--batch_slices", type=int, default=10,
                        help="test slices per forward pass")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads; 1 helps on an oversubscribed machine (default: torch's choice, "
                             "one per core)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="tasks at once, each in its own process with --threads torch threads (default: the cores "
                             "shared out); a test waits only for its own training, so --jobs 2 keeps both cores of a "
                             "2-core machine busy (default: 1, in this process)")
    parser.add_argument("--runs", nargs="+", default=None, metavar="CVAL:SEED",
                        help="(cval, seed) pairs to run instead of the budget's, e.g. --runs 0:41 (a folder made with "
                             "other runs is refused) (default: the budget's runs)")
    parser.add_argument("--max_tasks", type=int, default=None,
                        help="stop after this many trainings/tests have run, to split the work over several sittings; "
                             "the same command continues (default: run everything)")
    parser.add_argument("--config_dir", type=Path, default=None,
                        help="folder of the experiment/ budgets and the method configs (default: the repository's "
                             "config/)")
    parser.add_argument("--report_only", action="store_true",
                        help="rebuild the tables and RESULTS.md of --out without training or testing: from its "
                             "finished tests, or from --volumes")
    parser.add_argument("--volumes", type=Path, nargs="+", default=None,
                        help="with --report_only: saved volumes.csv of the same budget (e.g. "
                             "docs/RESULTS_data/volumes.csv); several files are pooled into one report, e.g. a "
                             "budget's runs and more runs of other seeds (name them all with --runs); the data folder "
                             "is then not needed (default: the tests of --out)")
    parser.add_argument("--trend", type=Path, nargs="+", default=None,
                        help="with --volumes: saved trend/trend.csv files of the same runs, pooled into the "
                             "training-length trend (default: no trend)")
    parser.add_argument("--vendors", type=Path, default=None,
                        help="with --volumes: the M&Ms vendor table (a saved MM_vendors.csv or MM/vendors.csv) (default: no "
                             "per-vendor tables)")
    parser.add_argument("--plateau", type=Path, default=None,
                        help="with --volumes: a saved training-curve summary (curves/plateau.csv) (default: no curve summary)")
    parser.add_argument("--note", action="append", default=[],
                        help="with --volumes: a line for the report saying what the saved numbers are (repeatable)")
    parser.add_argument("--bf16_decision", type=Path, default=None,
                        help="a bf16 decision record (benchmarks/bf16_decision.py --json) to show as a section of the "
                             "report (default: none)")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars")
    parser.add_argument("--verbose", action="store_true", help="debug logging and tracebacks")
    return parser


def _shortest(path: Path) -> Path:
    """``path`` relative to the working directory when it lies below it (commands in the report stay portable)."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _progress_factory():
    from tqdm import tqdm

    def factory(description: str, total: int, initial: int = 0):
        return tqdm(total=total, initial=initial, desc=description, leave=False, dynamic_ncols=True)

    return factory


class _Interrupted:
    """SIGTERM behaves like Ctrl-C (SIGINT) outside trainings; trainings install their own graceful handlers (stop at
    the next iteration, write a snapshot) and put this one back when they end. Remembers the last signal."""

    def __init__(self) -> None:
        self.signum = signal.SIGINT

    def __call__(self, signum: int, frame: object) -> None:
        self.signum = signum
        raise KeyboardInterrupt

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self)
            signal.signal(signal.SIGINT, self)


def _parse_runs(parser: argparse.ArgumentParser, values: list[str], pooled: bool = False
                ) -> tuple[tuple[int, int], ...]:
    """``["0:40", "1:20"]`` → ``((0, 40), (1, 20))``; cvals must be distinct, since one experiment folder keeps a
    run per cval, except for a report pooled from saved files (``pooled``), where only the (cval, seed) pairs must
    be."""
    runs = []
    for value in values:
        cval, sep, seed = value.partition(":")
        if not sep or not cval.strip().isdigit() or not seed.strip().lstrip("-").isdigit():
            parser.error(f"--runs: expected CVAL:SEED with integers (e.g. 0:40), got {value!r}")
        runs.append((int(cval), int(seed)))
    if len(set(runs)) != len(runs):
        parser.error(f"--runs: each (cval, seed) at most once, got {' '.join(values)}")
    if not pooled and len({cval for cval, _ in runs}) != len(runs):
        parser.error(f"--runs: each cval at most once (one experiment folder keeps one run per cval; pool folders "
                     f"with --report_only --volumes), got {' '.join(values)}")
    return tuple(runs)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 done or stopped by --max_tasks, 128 + signal when interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from medseg.training.run_files import setup_logging

    setup_logging(None, logging.DEBUG if args.verbose else logging.INFO)
    if args.n_workers < 0:
        parser.error(f"--n_workers must be >= 0, got {args.n_workers}")
    if args.batch_slices < 1:
        parser.error(f"--batch_slices must be >= 1, got {args.batch_slices}")
    if args.max_tasks is not None and args.max_tasks < 0:
        parser.error(f"--max_tasks must be >= 0, got {args.max_tasks}")
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    if not args.report_only and (args.volumes or args.vendors or args.plateau or args.note or args.trend):
        parser.error("--volumes, --trend, --vendors, --plateau and --note need --report_only")
    if args.volumes is None and (args.vendors or args.plateau or args.note or args.trend):
        parser.error("--trend, --vendors, --plateau and --note need --volumes")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    from medseg.experiments.runner import ExperimentRequest, run_experiment

    config_dir = args.config_dir or _shortest(REPO_ROOT / "config")

    def body() -> int:
        if args.bf16_decision is not None:  # a bad record is refused before any work
            from medseg.experiments.bf16_pair import read_record

            read_record(args.bf16_decision)
        budget = load_budget(args.budget, config_dir)
        if budget.precision == "bf16_where_native":
            budget = budget.resolved(args.device)
            logger.info("precision %s: %s", budget.precision,
                        "this device computes bf16 natively" if budget.precision == "bf16" else
                        "this device has no native bf16 (on a CPU: AVX512-BF16 or AMX), so fp32")
        if args.runs is not None:
            budget = dataclasses.replace(budget, runs=_parse_runs(parser, args.runs, pooled=args.volumes is not None))
        request = ExperimentRequest(
            budget=budget, data_root=args.data_root, out_dir=args.out or Path("results") / budget.name,
            config_dir=config_dir, repo_root=REPO_ROOT,
            options=RunOptions(device=args.device, n_workers=args.n_workers, batch_slices=args.batch_slices,
                               progress=not args.no_progress),
            max_tasks=args.max_tasks, results_md=args.results_md, argv=list(sys.argv[1:] if argv is None else argv),
            progress=None if args.no_progress else _progress_factory(), jobs=args.jobs, threads=args.threads,
            bf16_decision=args.bf16_decision)
        if args.report_only:
            from medseg.experiments.outputs import rebuild
            from medseg.experiments.saved import read_saved
            from medseg.experiments.state import code_version

            saved = read_saved(args.volumes, budget, args.vendors, args.plateau, args.note,
                               code_version(REPO_ROOT), args.trend or ()) if args.volumes else None
            report = rebuild(request, saved)
            if args.results_md is not None:
                print(f"report rebuilt: {report} and {args.results_md}")
            else:
                print(f"report rebuilt: {report}")
            return 0
        interrupted = _Interrupted()
        previous = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM)}
        interrupted.install()
        try:
            result = run_experiment(request)
        except KeyboardInterrupt:
            name = signal.Signals(interrupted.signum).name
            raise CommandFailed(f"interrupted by {name}; finished tasks are kept, run the same command again to "
                                "continue", 128 + int(interrupted.signum)) from None
        finally:
            if threading.current_thread() is threading.main_thread():
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
        state = "complete" if result.complete else "incomplete (run the same command again to continue)"
        print(f"experiment {state}: {len(result.ran)} tasks ran, {len(result.skipped)} already done; "
              f"report: {result.report}")
        return 0

    return run_cli(parser.prog, body, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
