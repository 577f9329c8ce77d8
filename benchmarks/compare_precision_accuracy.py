#!/usr/bin/env python
"""Accuracy of bf16 against fp32 training with the same seed (for ``docs/PERFORMANCE.md``).

For each precision: ``medseg-train`` with ``config/quickstart/<config>.json`` (seed 40, data setting 10, cval 0,
``--precision P``, ``--resume auto`` so an interrupted comparison continues; ``--crop``, ``--epochs`` and
``--batch`` shrink the budget), then ``medseg-test`` of its best checkpoint in the same precision on the test sets
of ``--datasets``. Writes one JSON with the best and last validation Mean IoU (``metrics.csv``), the in-domain ACDC
test Dice and the mean Dice over the tested sets, the budget that actually ran (read from the run's
``config.json``), and whether bf16 is within ``--criterion`` Dice points of fp32.

    python benchmarks/compare_precision_accuracy.py                       # the quickstart budget, ~2 x its training
    python benchmarks/compare_precision_accuracy.py --crop 96 --epochs 6 --batch 20 --datasets ACDC   # ~12 min
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(command: list[str], threads: int | None) -> float:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    from medseg.utils.cli import CommandFailed

    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env)
    if done.returncode != 0:
        raise CommandFailed(f"{Path(command[1]).name} failed with exit code {done.returncode} (its error is above)")
    return (time.perf_counter() - start) / 60


def _validation(metrics_csv: Path) -> tuple[float, float, float]:
    """Best and last validation Mean IoU, and the summed training-epoch minutes, from a run's metrics.csv."""
    from medseg.training.run_files import read_metrics_rows

    if not Path(metrics_csv).is_file():
        raise FileNotFoundError(f"{metrics_csv}: not found; expected the metrics.csv of a finished run (train it "
                                "first, without --summarise-only)")
    rows = read_metrics_rows(Path(metrics_csv))  # a damaged line names the file and the line
    ious = [float(row["iou/val_iou"]) for row in rows]
    return max(ious), ious[-1], sum(float(row["epoch_seconds"]) for row in rows) / 60


def _test_dice(summary_csv: Path) -> dict[str, float]:
    with open(summary_csv, newline="") as handle:
        row = next(csv.DictReader(handle))
    return {k: float(v) for k, v in row.items()  # per-set means and the averages, not the per-class columns
            if v not in ("", None) and ("_" not in k or k in ("avg_all", "avg_ood")) and k not in ("method", "cvals")}


def _summary(run_dir: Path, test_dir: Path, test_minutes: float | None) -> dict:
    """Validation and test results of one precision's run."""
    best, last, train_minutes = _validation(run_dir / "log" / "metrics.csv")
    dice = _test_dice(test_dir / "summary.csv")
    return {"best_val_iou": best, "last_val_iou": last, "test_dice": dice.get("ACDC"),
            "test_dice_all_sets": dice.get("avg_all"), "test_dice_by_set": dice, "train_minutes": train_minutes,
            "test_minutes": test_minutes}


def compare(runs: dict[str, dict], precisions: list[str], criterion: float) -> dict:
    """Differences of the last precision against the first, and whether they are within ``criterion`` points."""
    reference, low = runs[precisions[0]], runs[precisions[-1]]
    dice_difference = low["test_dice"] - reference["test_dice"]
    all_difference = (low["test_dice_all_sets"] or 0.0) - (reference["test_dice_all_sets"] or 0.0)
    return {
        "runs": runs,
        "dice_difference": dice_difference,
        "dice_difference_all_sets": all_difference,
        "iou_difference": low["best_val_iou"] - reference["best_val_iou"],
        "criterion_points": criterion,
        "neutral": abs(dice_difference) * 100 <= criterion and abs(all_difference) * 100 <= criterion,
    }


def _budget(config_name: str, run_dir: Path, is_quickstart: bool, threads: int | None, n_workers: int) -> dict:
    """What ran (the run's config.json and metrics.csv) against the quickstart budget (its config file)."""
    config = json.loads((run_dir / "config.json").read_text())
    quickstart = json.loads((REPO / "config" / "quickstart" / f"{config_name}.json").read_text())
    with open(run_dir / "log" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    iterations = int(rows[-1]["global_iteration"])
    per_epoch = int(rows[0]["n_iterations"])
    # keep-orig batches: a loader batch of batch/2 slices plus their originals, so an epoch is slices / (batch / 2)
    slices = per_epoch * config["learning"]["batch_size"] // 2
    q_learning = quickstart["learning"]
    return {"epochs": len(rows), "iterations": iterations, "batch_size": config["learning"]["batch_size"],
            "crop": config["data"]["crop_size"][0], "quickstart": is_quickstart, "threads": threads,
            "n_workers": n_workers,
            "quickstart_iterations": q_learning["n_epochs"] * (slices // (q_learning["batch_size"] // 2)),
            "quickstart_batch_size": q_learning["batch_size"], "quickstart_crop": quickstart["data"]["crop_size"][0]}


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (no machine-specific paths in the report)."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    from medseg.nn.precision import INFERENCE_PRECISIONS
    from medseg.utils.cli import ArgumentParser, HelpFormatter, run_cli

    parser = ArgumentParser(prog="compare_precision_accuracy.py", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--config", default="cooperative_training", help="file name in config/quickstart/")
    parser.add_argument("--data_root", type=Path, default=REPO / "data" / "synthetic",
                        help="folder holding ACDC/ (training, validation, test), ACDC-C/ and MM/")
    parser.add_argument("--save_dir", type=Path, default=REPO / "saved" / "precision_accuracy",
                        help="runs go to SAVE_DIR/<precision>/")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=INFERENCE_PRECISIONS,
                        help=f"two or more of {', '.join(INFERENCE_PRECISIONS)} (each trains and tests in it): "
                             "reference first, the compared precision last")
    parser.add_argument("--seed", type=int, default=40, help="the same seed for every precision")
    parser.add_argument("--n_workers", type=int, default=2, help="DataLoader workers of the training runs")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the runs (default: torch's)")
    parser.add_argument("--crop", type=int, default=None, help="training crop size (default: the config's)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the config's)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the config's)")
    parser.add_argument("--datasets", nargs="+", default=None, help="medseg-test --datasets (default: all)")
    parser.add_argument("--criterion", type=float, default=1.0, help="neutral if within this many Dice points")
    parser.add_argument("--summarise-only", action="store_true",
                        help="train and test nothing: rebuild --out from the runs already in --save_dir")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "precision_accuracy.json",
                        help="the comparison as JSON")
    parser.add_argument("--verbose", "--debug", action="store_true", help="error tracebacks")
    args = parser.parse_args(argv)
    if len(set(args.precisions)) < 2 or len(set(args.precisions)) != len(args.precisions):
        parser.error(f"--precisions: expected two or more distinct precisions (reference first), got "
                     f"{' '.join(args.precisions)}")
    for flag in ("n_workers", "threads", "crop", "epochs", "batch"):
        value = getattr(args, flag)
        if value is not None and value < (0 if flag == "n_workers" else 1):
            parser.error(f"--{flag}: expected an integer >= {0 if flag == 'n_workers' else 1}, got {value}")
    if args.crop is not None and args.crop % 16:
        parser.error(f"--crop: expected a multiple of 16, got {args.crop}")
    return run_cli(parser.prog, lambda: compare_runs(args), args.verbose)


def compare_runs(args: argparse.Namespace) -> int:
    """Train and test each precision (unless --summarise-only), then write the comparison; returns 0."""

    budget = []
    if args.crop is not None:
        budget += ["--set", f"data.crop_size=[{args.crop},{args.crop},1]"]
    if args.epochs is not None:
        budget += ["--set", f"learning.n_epochs={args.epochs}"]
    if args.batch is not None:
        budget += ["--set", f"learning.batch_size={args.batch}"]
    datasets = ["--datasets", *args.datasets] if args.datasets else []
    runs = {}
    for precision in args.precisions:
        save_dir = args.save_dir / precision
        run_dir = save_dir / "train_ACDC_10_n_cls_4" / "quickstart" / args.config / "0"
        test_dir = save_dir / "test_reports"
        test_minutes = None
        if not args.summarise_only:
            _run([
                sys.executable, "medseg/train_adv_supervised_segmentation_triplet.py",
                "--json_config_path", f"./config/quickstart/{args.config}.json", "--cval", "0", "--data_setting",
                "10", "--seed", str(args.seed), "--n_workers", str(args.n_workers), "--save_dir", str(save_dir),
                "--set", f"data.root_dir={args.data_root / 'ACDC'}", "--precision", precision, "--resume", "auto",
                "--no_progress", *budget], args.threads)
            test_minutes = _run([
                sys.executable, "medseg/test_ACDC_triplet_segmentation.py", "--methods",
                f"{args.config}_{precision}={run_dir / 'model' / 'best' / 'checkpoints'}", "--data_root",
                str(args.data_root), "--output_dir", str(test_dir), "--n_iter", "2", "--precision", precision,
                "--no_progress", *datasets], args.threads)
        runs[precision] = _summary(run_dir, test_dir, test_minutes)
        if args.summarise_only and args.out.is_file():  # keep the test time measured when the test ran
            runs[precision]["test_minutes"] = json.loads(args.out.read_text())["runs"][precision]["test_minutes"]
    result = compare(runs, args.precisions, args.criterion)
    result["budget"] = _budget(args.config, run_dir, not budget, args.threads, args.n_workers)
    tested = ", ".join(args.datasets) if args.datasets else "every available test set"
    b = result["budget"]
    result["description"] = (
        f"`config/quickstart/{args.config}.json` with {b['epochs']} epochs of {b['iterations'] // b['epochs']} "
        f"iterations ({b['iterations']} iterations at batch {b['batch_size']} × {b['crop']}² crops; the quickstart "
        f"budget is {b['quickstart_iterations']} iterations at batch {b['quickstart_batch_size']} × "
        f"{b['quickstart_crop']}²), data setting 10, cval 0, seed {args.seed}, "
        f"{b['threads'] or 'default'} thread(s), trained once per precision and tested (`--n_iter 2`, in-domain ACDC "
        f"test split; tested sets: {tested}) on `{_shown(args.data_root)}`.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
