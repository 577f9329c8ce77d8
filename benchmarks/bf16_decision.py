#!/usr/bin/env python
"""The bf16 decision from a full-length run pair: the same run (cval, seed) trained in fp32 and in bf16, each tested
by the robustness experiment (its ``volumes.csv``). bf16 becomes the default where the hardware computes it natively
only if ACDC and avg_ood (n_iter 2) are within 0.01 Dice of fp32 for both methods::

    python benchmarks/bf16_decision.py --fp32 results/cpu_run0_fp32/volumes.csv --bf16 results/cpu_bf16/volumes.csv

The fp32 side can also be the first ``--epoch`` epochs of a training-length trend run of the same regime (constant
learning rate, same seed: its best model after those epochs is the shorter run's best model), read from the trend's
``trend.csv``::

    python benchmarks/bf16_decision.py --fp32_trend results/cpu_trend/trend/trend.csv --epoch 75 \
        --bf16 results/cpu_bf16_emulated/volumes.csv

Prints the differences and the decision; exit code 0 (neutral) or 1 (not neutral), 2 on bad input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

from medseg.experiments.budgets import DEFAULT_DATASETS
from medseg.utils.cli import ArgumentParser, HelpFormatter, run_cli


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="bf16_decision.py", description="bf16 against fp32 on one run pair.",
                            formatter_class=HelpFormatter)
    fp32 = parser.add_mutually_exclusive_group(required=True)
    fp32.add_argument("--fp32", type=Path, help="volumes.csv of the fp32 run")
    fp32.add_argument("--fp32_trend", type=Path,
                      help="trend.csv of a training-length trend whose run, after --epoch epochs, is the fp32 run")
    parser.add_argument("--epoch", type=int, default=None,
                        help="with --fp32_trend: the fp32 run's length in epochs (the trend tests with n_iter 2, so "
                             "compare --n_iter 2) (default: none; required with --fp32_trend)")
    parser.add_argument("--bf16", type=Path, required=True, help="volumes.csv of the bf16 run")
    parser.add_argument("--cval", type=int, default=0, help="the run compared (both files must hold it)")
    parser.add_argument("--seed", type=int, default=None,
                        help="the run's seed, needed when a file holds several seeds of the cval (default: the one)")
    parser.add_argument("--n_iter", type=int, default=2, help="test setting compared")
    parser.add_argument("--tolerance", type=float, default=0.01, help="largest |bf16 - fp32| Dice that is neutral")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the decision record here (for the experiment report's --bf16_decision and "
                             "benchmarks/benchmark.py --bf16_decision) (default: print only)")
    args = parser.parse_args(argv)
    if (args.fp32_trend is None) != (args.epoch is None):
        parser.error("--epoch goes with --fp32_trend (the trend run's length that is the fp32 run)")

    def body() -> int:
        import pandas as pd

        from medseg.experiments import bf16_pair
        from medseg.experiments.decisions import bf16_decision, values_of_run, values_of_trend
        from medseg.io.atomic import atomic_write_text

        tables, sides_found = {}, {}
        sides = (("fp32", args.fp32), ("fp32_trend", args.fp32_trend), ("bf16", args.bf16))
        for name, path in ((n, p) for n, p in sides if p is not None):
            if not path.is_file():
                raise FileNotFoundError(f"--{name}: {path} not found")
            sides_found["bf16" if name == "bf16" else "fp32"] = bf16_pair.side(
                path, bf16_pair.find_experiment(path), args.epoch if name == "fp32_trend" else None)
            try:
                if name == "fp32_trend":
                    trend = pd.read_csv(path)
                    tables["fp32"] = values_of_trend(trend, args.epoch, args.cval, args.seed)
                    continue
                volumes = pd.read_csv(path, dtype={"patient_id": str, "pid": str, "dataset": str})
                datasets = [d for d in DEFAULT_DATASETS if d in set(volumes["dataset"])]
                tables[name] = values_of_run(volumes, datasets, args.cval, args.n_iter, args.seed)
            except (KeyError, ValueError) as err:
                raise ValueError(f"--{name} {path}: {err}") from None
        problems, same_data = bf16_pair.pair_problems(sides_found["fp32"], sides_found["bf16"])
        if problems:
            raise ValueError(f"--fp32 and --bf16 are not a run pair: {'; '.join(problems)}")
        decision = bf16_decision(tables["fp32"], tables["bf16"], args.tolerance)
        print("\n".join(decision.lines()))
        if args.json is not None:
            data = bf16_pair.record(decision, sides_found["fp32"], sides_found["bf16"], tables, args.cval, args.seed,
                                    args.n_iter, same_data)
            atomic_write_text(args.json, json.dumps(data, indent=2) + "\n")
            print(f"decision record: {args.json}")
        return 0 if decision.neutral else 1

    return run_cli(parser.prog, body, False)


if __name__ == "__main__":
    sys.exit(main())
