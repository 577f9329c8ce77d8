"""Decision rules of the experiments, as functions with tests (the numbers they read come from the reports' tables).

* :func:`bf16_decision`: bf16 becomes the default precision where the hardware computes it natively only if a
  full-length run pair (the same run, seed and data in bf16 and in fp32) lands within :data:`BF16_TOLERANCE` Dice of
  the fp32 run on ACDC and on ``avg_ood``, for both methods.
* :func:`runs_decide`: whether the run-level interval of the relative ``avg_ood`` gain excludes 0 (then more runs do
  not change the answer's sign).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from medseg.experiments.run_stats import run_values

BF16_TOLERANCE = 0.01
BF16_COLUMNS = ("ACDC", "avg_ood")


@dataclass(frozen=True)
class Bf16Decision:
    """``neutral``: every |bf16 − fp32| is within the tolerance; ``differences[method][column]`` = bf16 − fp32."""

    neutral: bool
    differences: dict[str, dict[str, float]]
    tolerance: float

    def lines(self) -> list[str]:
        out = [f"- {m}: " + ", ".join(f"{c} {d:+.3f}" for c, d in cols.items()) for m, cols in self.differences.items()]
        return [f"bf16 − fp32 (tolerance {self.tolerance:g} Dice on {', '.join(BF16_COLUMNS)}, both methods):",
                *out, bf16_verdict(self.neutral) + "."]


def bf16_verdict(neutral: bool, bold: bool = False) -> str:
    """The decision in words (one sentence, no final stop); ``bold`` marks its first clause in Markdown."""
    mark = "**" if bold else ""
    if neutral:
        return (f"{mark}bf16 is neutral{mark}: it becomes the default where the hardware computes bf16 natively (a CPU "
                "with AVX512-BF16/AMX, CUDA with bf16), fp32 elsewhere")
    return f"{mark}bf16 is not neutral{mark}: fp32 stays the default"


def bf16_decision(fp32: Mapping[str, Mapping[str, float]], bf16: Mapping[str, Mapping[str, float]],
                  tolerance: float = BF16_TOLERANCE, columns: Sequence[str] = BF16_COLUMNS) -> Bf16Decision:
    """Compare the two precisions run for run: ``{method: {column: value}}`` of the fp32 and the bf16 run.

    Raises:
        ValueError: a method or column is missing from either side (naming it), or a value is not finite.
    """
    differences: dict[str, dict[str, float]] = {}
    for method in fp32:
        if method not in bf16:
            raise ValueError(f"bf16 decision: method {method!r} has no bf16 run")
        differences[method] = {}
        for column in columns:
            for side, table in (("fp32", fp32), ("bf16", bf16)):
                value = table[method].get(column, math.nan)
                if not math.isfinite(value):
                    raise ValueError(f"bf16 decision: {side} {method} has no finite {column} value ({value})")
            differences[method][column] = float(bf16[method][column]) - float(fp32[method][column])
    if not differences:
        raise ValueError("bf16 decision: no method to compare")
    neutral = all(abs(d) <= tolerance + 1e-12 for cols in differences.values() for d in cols.values())
    return Bf16Decision(neutral, differences, tolerance)


def values_of_run(volumes: pd.DataFrame, datasets: Sequence[str], cval: int, n_iter: int = 2,
                  seed: int | None = None) -> dict[str, dict[str, float]]:
    """``{method: {column: value}}`` of one run (cval, and its seed when the rows hold several seeds of that cval)
    and n_iter from an experiment's ``volumes.csv`` rows.

    Raises:
        ValueError: no such volume, or several seeds of the cval and no ``seed`` to choose one.
    """
    part = _one_run(volumes[volumes["n_iter"] == n_iter], cval, seed, f"volume with n_iter {n_iter}")
    return _by_method(run_values(part, datasets))


def values_of_trend(trend: pd.DataFrame, epoch: int, cval: int, seed: int | None = None) -> dict[str, dict[str, float]]:
    """``{method: {column: value}}`` of one run's best model after ``epoch`` epochs, from a training-length trend's
    ``trend.csv`` (the run-level values of the kept model's tests): the fp32 side of a bf16 pair whose fp32 run is
    the first ``epoch`` epochs of a longer trend run (same regime, constant learning rate).

    Raises:
        ValueError: no such row, or several seeds of the cval and no ``seed`` to choose one.
    """
    missing = [c for c in ("method", "cval", "seed", "epoch", *BF16_COLUMNS) if c not in trend.columns]
    if missing:
        raise ValueError(f"not a trend.csv: no column {', '.join(missing)}")
    part = _one_run(trend[trend["epoch"] == epoch], cval, seed, f"trend row at epoch {epoch}")
    return _by_method(part.drop(columns="epoch"))


def _one_run(rows: pd.DataFrame, cval: int, seed: int | None, what: str) -> pd.DataFrame:
    part = rows[rows["cval"] == cval]
    if seed is not None:
        part = part[part["seed"] == seed]
    if part.empty:
        raise ValueError(f"no {what} of cval {cval}{'' if seed is None else f' seed {seed}'}")
    seeds = sorted(int(s) for s in part["seed"].unique())
    if len(seeds) > 1:
        raise ValueError(f"cval {cval} was run with seeds {seeds}; name the one to use")
    return part


def _by_method(values: pd.DataFrame) -> dict[str, dict[str, float]]:
    return {str(r["method"]): {c: float(r[c]) for c in values.columns if c not in ("method", "cval", "seed")}
            for _, r in values.iterrows()}


def runs_decide(gain: Mapping[str, float | str]) -> bool:
    """True when the t interval of the relative gain (:func:`medseg.experiments.run_stats.relative_gain`) excludes 0."""
    low, high = float(gain.get("ci_low_percent", math.nan)), float(gain.get("ci_high_percent", math.nan))
    return not (math.isnan(low) or math.isnan(high)) and (low > 0 or high < 0)
