"""The experiment's tables from the per-volume Dice of every finished test.

* the robustness table of each ``n_iter``: :func:`medseg.evaluation.aggregate.write_aggregate`, i.e. exactly the test
  script's ``summary.csv`` / ``summary.md`` / ``dice_boxplot.png`` (rows = methods, columns = test sets, ``avg_all``,
  ``avg_ood``; mean ± population std over the runs);
* the M&Ms per-vendor table (vendor of each subject from ``MM/vendors.csv``): per run, the mean over the vendor's
  volumes of the per-volume mean Dice (LV, MYO, RV); then mean ± population std over the runs;
* the relative improvement of the second method over the first (the baseline).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from medseg.evaluation.aggregate import RunResults, write_aggregate
from medseg.evaluation.reports import DatasetResult
from medseg.evaluation.runs import Run

PathLike = str | os.PathLike
DICE_COLUMNS = ["LV_Dice", "MYO_Dice", "RV_Dice"]


def finished_runs(volumes: pd.DataFrame, methods: Sequence[str]) -> tuple[pd.DataFrame, list[int], list[str]]:
    """Keep the runs (cvals) that every method has finished, so that both methods are compared on the same runs.

    Args:
        volumes: per-volume rows of one ``n_iter`` (columns ``method``, ``cval``, ...).
        methods: the compared methods.

    Returns:
        ``(rows of the finished runs, their cvals, notes about runs that only some methods have finished)``.
    """
    if volumes.empty:
        return volumes, [], []
    done = {m: set(volumes.loc[volumes["method"] == m, "cval"].astype(int)) for m in methods}
    cvals = sorted(set.intersection(*done.values())) if done else []
    notes = []
    for cval in sorted(set.union(*done.values()) - set(cvals)):
        have = [m for m in methods if cval in done[m]]
        notes.append(f"cval {cval}: only {', '.join(have)} tested so far; left out of the comparison until "
                     f"{', '.join(m for m in methods if m not in have)} is tested too")
    return volumes[volumes["cval"].astype(int).isin(cvals)], cvals, notes


def with_mean_dice(volumes: pd.DataFrame) -> pd.DataFrame:
    """Add ``mean_Dice`` = mean over LV, MYO and RV of each volume (Dice of two empty masks is 0 by convention)."""
    out = volumes.copy()
    out["mean_Dice"] = out[DICE_COLUMNS].astype(float).mean(axis=1)
    return out


def run_entries(volumes: pd.DataFrame, methods: Sequence[str], checkpoint_dirs: dict[tuple[str, int], Path]
                ) -> list[RunResults]:
    """One :class:`RunResults` per (method, cval) of ``volumes`` (one ``n_iter``), methods in the given order."""
    entries = []
    for method in methods:
        rows = volumes[volumes["method"] == method]
        for cval in sorted(rows["cval"].unique()):
            run_rows = rows[rows["cval"] == cval]
            entry = RunResults(Run(method, checkpoint_dirs.get((method, int(cval)), Path(".")), int(cval)))
            for dataset, part in run_rows.groupby("dataset", sort=False):
                detailed = part[["patient_id", "pid", *DICE_COLUMNS]].reset_index(drop=True)
                entry.results[str(dataset)] = DatasetResult(str(dataset), detailed, list(DICE_COLUMNS))
            entries.append(entry)
    return entries


def write_summary(entries: list[RunResults], datasets: Sequence[str], out_dir: PathLike, n_iter: int,
                  notes: Sequence[str]) -> tuple[pd.DataFrame, dict[str, Path]]:
    """The test script's aggregate files for these runs."""
    return write_aggregate(entries, list(datasets), out_dir, n_iter, list(notes))


def vendor_volumes(volumes: pd.DataFrame, vendors: pd.DataFrame | None) -> pd.DataFrame:
    """M&Ms rows of ``volumes`` with ``vendor`` and ``vendor_name`` (``unknown`` for subjects not in the table)."""
    mm = with_mean_dice(volumes[volumes["dataset"] == "MM"])
    if vendors is None or mm.empty:
        return mm.assign(vendor="unknown", vendor_name="unknown")
    table = vendors.rename(columns={"subject": "pid"})[["pid", "vendor", "vendor_name"]]
    merged = mm.merge(table, on="pid", how="left")
    merged[["vendor", "vendor_name"]] = merged[["vendor", "vendor_name"]].fillna("unknown")
    return merged


def vendor_table(volumes: pd.DataFrame, vendors: pd.DataFrame | None, methods: Sequence[str]) -> pd.DataFrame:
    """Long table ``method, vendor, vendor_name, n_volumes, n_runs, mean, std`` (std over runs, population)."""
    mm = vendor_volumes(volumes, vendors)
    rows = []
    for method in methods:
        part = mm[mm["method"] == method]
        for (vendor, name), group in part.groupby(["vendor", "vendor_name"], sort=True):
            per_run = group.groupby("cval")["mean_Dice"].mean().to_numpy(dtype=float)
            rows.append({"method": method, "vendor": vendor, "vendor_name": name,
                         "n_volumes": int(len(group) / max(len(per_run), 1)), "n_runs": len(per_run),
                         "mean": float(per_run.mean()), "std": float(per_run.std(ddof=0))})
    return pd.DataFrame(rows, columns=["method", "vendor", "vendor_name", "n_volumes", "n_runs", "mean", "std"])


def relative_improvement(table: pd.DataFrame, baseline: str, method: str,
                         columns: Sequence[str] = ("ACDC", "avg_all", "avg_ood")) -> pd.DataFrame:
    """``(method − baseline) / baseline`` of the run-averaged values, in percent, and the absolute Dice difference.

    Returns:
        Columns ``column, baseline, method, difference, relative_percent`` (NaN where a value is missing).
    """
    rows = []
    by_method = table.set_index("method")
    for column in columns:
        base = float(by_method.at[baseline, column]) if column in by_method.columns and baseline in by_method.index \
            else math.nan
        ours = float(by_method.at[method, column]) if column in by_method.columns and method in by_method.index \
            else math.nan
        rel = (ours - base) / base * 100.0 if base and not math.isnan(base) else math.nan
        rows.append({"column": column, "baseline": base, "method": ours, "difference": ours - base,
                     "relative_percent": rel})
    return pd.DataFrame(rows)


def per_run_relative(volumes: pd.DataFrame, baseline: str, method: str, ood: Sequence[str]) -> pd.DataFrame:
    """Per cval: ``avg_ood`` of both methods (mean of the dataset means) and the relative improvement in percent."""
    data = with_mean_dice(volumes)
    rows = []
    for cval in sorted(data["cval"].unique()):
        values = {}
        for name in (baseline, method):
            part = data[(data["method"] == name) & (data["cval"] == cval) & data["dataset"].isin(list(ood))]
            values[name] = float(np.nanmean(part.groupby("dataset")["mean_Dice"].mean())) if len(part) else math.nan
        base, ours = values[baseline], values[method]
        rows.append({"cval": int(cval), "baseline_avg_ood": base, "method_avg_ood": ours,
                     "relative_percent": (ours - base) / base * 100.0 if base else math.nan})
    return pd.DataFrame(rows)
