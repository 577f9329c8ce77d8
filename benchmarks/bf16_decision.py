#!/usr/bin/env python
"""The bf16 decision from a full-length run pair: the same run (cval, seed) trained in fp32 and in bf16, each tested
by the robustness experiment (its ``volumes.csv``). bf16 becomes the default where the hardware computes it natively
only if ACDC and avg_ood (n_iter 2) are within 0.01 Dice of fp32 for both methods::

    python benchmarks/bf16_decision.py --fp32 results/cpu_run0_fp32/volumes.csv --bf16 results/cpu_bf16/volumes.csv

Prints the differences and the decision; exit code 0 (neutral) or 1 (not neutral), 2 on bad input.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

from medseg.experiments.budgets import DEFAULT_DATASETS
from medseg.utils.cli import ArgumentParser, HelpFormatter, run_cli


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="bf16_decision.py", description="bf16 against fp32 on one run pair.",
                            formatter_class=HelpFormatter)
    parser.add_argument("--fp32", type=Path, required=True, help="volumes.csv of the fp32 run")
    parser.add_argument("--bf16", type=Path, required=True, help="volumes.csv of the bf16 run")
    parser.add_argument("--cval", type=int, default=0, help="the run compared (both files must hold it)")
    parser.add_argument("--seed", type=int, default=None,
                        help="the run's seed, needed when a file holds several seeds of the cval (default: the one)")
    parser.add_argument("--n_iter", type=int, default=2, help="test setting compared")
    parser.add_argument("--tolerance", type=float, default=0.01, help="largest |bf16 - fp32| Dice that is neutral")
    args = parser.parse_args(argv)

    def body() -> int:
        import pandas as pd

        from medseg.experiments.decisions import bf16_decision, values_of_run

        tables = {}
        for name, path in (("fp32", args.fp32), ("bf16", args.bf16)):
            if not path.is_file():
                raise FileNotFoundError(f"--{name}: {path} not found")
            volumes = pd.read_csv(path, dtype={"patient_id": str, "pid": str, "dataset": str})
            datasets = [d for d in DEFAULT_DATASETS if d in set(volumes["dataset"])]
            try:
                tables[name] = values_of_run(volumes, datasets, args.cval, args.n_iter, args.seed)
            except (KeyError, ValueError) as err:
                raise ValueError(f"--{name} {path}: {err}") from None
        decision = bf16_decision(tables["fp32"], tables["bf16"], args.tolerance)
        print("\n".join(decision.lines()))
        return 0 if decision.neutral else 1

    return run_cli(parser.prog, body, False)


if __name__ == "__main__":
    sys.exit(main())
