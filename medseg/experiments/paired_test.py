"""Paired comparison of two methods over test volumes: Wilcoxon signed-rank of (method − baseline) per volume.

Pairing: a test volume is one (test set, patient/frame). Every run of both methods is tested on the same volumes (the
20 ACDC test subjects are the same for every run), so each volume gets, per method, the mean over the runs of its
mean Dice (LV, MYO, RV); the test is over the per-volume differences of these run means. Columns: each test set, each
M&Ms vendor, all volumes pooled (``all``) and the out-of-domain volumes pooled (``ood``: everything except ACDC).
Pooled columns weigh every volume equally, unlike ``avg_all`` / ``avg_ood`` of the tables (means of test-set means).

This is within-run evidence only: the volumes are the same subjects in every run (and ED/ES frames and ACDC-C copies
of one subject), so they are not independent replications of the training; the comparison of the methods is the
run-level test of :mod:`medseg.experiments.run_stats`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from medseg.evaluation.aggregate import in_averages
from medseg.experiments.run_stats import tie_counts
from medseg.experiments.tables import RUN_KEY, vendor_volumes, with_mean_dice

IN_DOMAIN = "ACDC"
RESULT_COLUMNS = ["column", "n_volumes", "baseline_mean", "method_mean", "mean_difference", "median_difference",
                  "share_method_better", "n_zero", "n_tied", "wilcoxon_statistic", "p_value", "note"]


def per_volume_means(volumes: pd.DataFrame, vendors: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean over runs of each volume's mean Dice: columns ``dataset, patient_id, vendor, method, mean_Dice, n_runs``."""
    data = with_mean_dice(volumes)
    keys = ["method", *RUN_KEY, "dataset", "patient_id"]
    mm = vendor_volumes(volumes, vendors).assign(dataset="MM")[[*keys, "vendor"]]
    data = data.merge(mm, on=keys, how="left")
    data["vendor"] = data["vendor"].fillna("")
    grouped = data.groupby(["dataset", "patient_id", "vendor", "method"], sort=False)["mean_Dice"]
    return grouped.agg(mean_Dice="mean", n_runs="count").reset_index()


def wilcoxon_row(column: str, base: np.ndarray, ours: np.ndarray) -> dict[str, object]:
    """Two-sided Wilcoxon signed-rank test of ``ours − base`` (zero differences dropped, as scipy's default); the
    ties are counted: ``n_zero`` volumes with a zero difference (left out of the test) and ``n_tied`` non-zero
    differences sharing their absolute value with another (averaged ranks)."""
    diff = ours - base
    row: dict[str, object] = {
        "column": column, "n_volumes": int(diff.size),
        "baseline_mean": float(base.mean()) if diff.size else math.nan,
        "method_mean": float(ours.mean()) if diff.size else math.nan,
        "mean_difference": float(diff.mean()) if diff.size else math.nan,
        "median_difference": float(np.median(diff)) if diff.size else math.nan,
        "share_method_better": float((diff > 0).mean()) if diff.size else math.nan,
        **tie_counts(diff),
        "wilcoxon_statistic": math.nan, "p_value": math.nan, "note": "",
    }
    if not np.any(diff != 0):
        row["note"] = "no volume" if not diff.size else "all differences are zero"
        return row
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)  # scipy's small-sample notices
        result = stats.wilcoxon(diff, alternative="two-sided")
    row["wilcoxon_statistic"] = float(result.statistic)
    row["p_value"] = float(result.pvalue)
    return row


def paired_tests(volumes: pd.DataFrame, baseline: str, method: str, datasets: Sequence[str],
                 vendors: pd.DataFrame | None = None) -> pd.DataFrame:
    """One Wilcoxon row per column (test sets, M&Ms vendors ``MM/<vendor>``, ``all``, ``ood``); see the module doc."""
    means = per_volume_means(volumes, vendors)
    wide = means.pivot_table(index=["dataset", "patient_id", "vendor"], columns="method", values="mean_Dice")
    wide = wide.reset_index()
    if baseline not in wide.columns or method not in wide.columns:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    wide = wide.dropna(subset=[baseline, method])
    groups: list[tuple[str, pd.Series]] = [(d, wide["dataset"] == d) for d in datasets]
    mm = wide[wide["dataset"] == "MM"]
    groups += [(f"MM/{v}", (wide["dataset"] == "MM") & (wide["vendor"] == v)) for v in sorted(mm["vendor"].unique())]
    averaged = [d for d in datasets if in_averages(d)]  # the *_resampled second columns stay out of the pools
    groups += [("all", wide["dataset"].isin(averaged)),
               ("ood", wide["dataset"].isin([d for d in averaged if d != IN_DOMAIN]))]
    rows = []
    for column, mask in groups:
        part = wide[mask]
        rows.append(wilcoxon_row(column, part[baseline].to_numpy(float), part[method].to_numpy(float)))
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)
