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


RUN_KEY = ["cval", "seed"]  # a training run: its fold and its seed (two seeds of one fold are two runs)
RunKey = tuple[int, int]


def run_keys(frame: pd.DataFrame) -> list[RunKey]:
    """The distinct ``(cval, seed)`` runs of ``frame``, sorted."""
    if frame.empty:
        return []
    pairs = frame[RUN_KEY].drop_duplicates().astype(int).itertuples(index=False)
    return sorted((int(c), int(s)) for c, s in pairs)


def run_names(runs: Sequence[RunKey]) -> list[str]:
    """How runs are named in tables and notes: by cval alone while no cval repeats (``"0"``), else with the seed
    (``"0 (seed 41)"``), as when runs of another seed are pooled with a budget's runs."""
    unique = len({c for c, _ in runs}) == len(runs)
    return [str(c) if unique else f"{c} (seed {s})" for c, s in runs]


def finished_runs(volumes: pd.DataFrame, methods: Sequence[str]) -> tuple[pd.DataFrame, list[RunKey], list[str]]:
    """Keep the runs ``(cval, seed)`` that every method has finished, so that both methods are compared on the same
    runs.

    Args:
        volumes: per-volume rows of one ``n_iter`` (columns ``method``, ``cval``, ``seed``, ...).
        methods: the compared methods.

    Returns:
        ``(rows of the finished runs, their (cval, seed) keys, notes about runs that only some methods have
        finished)``.
    """
    if volumes.empty:
        return volumes, [], []
    done = {m: set(run_keys(volumes[volumes["method"] == m])) for m in methods}
    runs = sorted(set.intersection(*done.values())) if done else []
    pending = sorted(set.union(*done.values()) - set(runs))
    names = dict(zip(runs + pending, run_names(runs + pending), strict=True))
    notes = []
    for key in pending:
        have = [m for m in methods if key in done[m]]
        notes.append(f"cval {names[key]}: only {', '.join(have)} tested so far; left out of the comparison until "
                     f"{', '.join(m for m in methods if m not in have)} is tested too")
    keys = pd.MultiIndex.from_frame(volumes[RUN_KEY].astype(int))
    return volumes[keys.isin(runs)], runs, notes


def with_mean_dice(volumes: pd.DataFrame) -> pd.DataFrame:
    """Add ``mean_Dice`` = mean over LV, MYO and RV of each volume (Dice of two empty masks is 0 by convention)."""
    out = volumes.copy()
    out["mean_Dice"] = out[DICE_COLUMNS].astype(float).mean(axis=1)
    return out


def run_entries(volumes: pd.DataFrame, methods: Sequence[str],
                checkpoint_dirs: dict[tuple[str, int, int], Path]) -> list[RunResults]:
    """One :class:`RunResults` per (method, run) of ``volumes`` (one ``n_iter``), methods in the given order;
    ``checkpoint_dirs`` is keyed by ``(method, cval, seed)``."""
    entries = []
    for method in methods:
        rows = volumes[volumes["method"] == method]
        for (cval, seed), run_rows in rows.groupby(RUN_KEY, sort=True):
            entry = RunResults(Run(method, checkpoint_dirs.get((method, int(cval), int(seed)), Path(".")), int(cval)))
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
            per_run = group.groupby(RUN_KEY)["mean_Dice"].mean().to_numpy(dtype=float)
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
    """Per run (cval, seed): ``avg_ood`` of both methods (mean of the dataset means) and the relative improvement in
    percent."""
    data = with_mean_dice(volumes)
    rows = []
    for (cval, seed), run in data.groupby(RUN_KEY, sort=True):
        values = {}
        for name in (baseline, method):
            part = run[(run["method"] == name) & run["dataset"].isin(list(ood))]
            values[name] = float(np.nanmean(part.groupby("dataset")["mean_Dice"].mean())) if len(part) else math.nan
        base, ours = values[baseline], values[method]
        rows.append({"cval": int(cval), "seed": int(seed), "baseline_avg_ood": base, "method_avg_ood": ours,
                     "relative_percent": (ours - base) / base * 100.0 if base else math.nan})
    return pd.DataFrame(rows)
