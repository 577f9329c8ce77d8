"""Statistics over training runs: the replication unit of a training comparison is the run.

Every (method, run) gets one number per column (a test set's Dice, ``avg_ood``, ``avg_all``, the penalty of an
M&Ms vendor against ACDC); a run is a (cval, seed) pair, and the two methods are paired by run (same cval, seed, data
and initial weights), so the test of a column is the paired t-test over the runs of ``method − baseline`` with
``n_runs − 1`` degrees of freedom, and the 95 % interval is the t interval of the mean difference. The relative
``avg_ood`` gain is the mean over runs of each run's ``(method − baseline) / baseline`` with its t interval. With one
run no run-level test exists: every statistic is NaN and the note says so. The volume-level Wilcoxon of
:mod:`medseg.experiments.paired_test` is only within-run evidence (the volumes of one run are not independent
replications of the training).

A run's dataset value is computed like the test script's robustness table (mean over patients of each class's Dice,
then mean over LV, MYO and RV); ``avg_ood`` and ``avg_all`` average the dataset values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from medseg.evaluation.aggregate import in_averages
from medseg.experiments.tables import DICE_COLUMNS, RUN_KEY, vendor_volumes

IN_DOMAIN = "ACDC"
CONFIDENCE = 0.95
ONE_RUN_NOTE = "one run: no run-level test is possible"
TEST_COLUMNS = ["column", "n_runs", "baseline_mean", "method_mean", "mean_difference", "sd_difference", "t", "df",
                "p_value", "ci_low", "ci_high", "note"]


def paired_t(base: Sequence[float], ours: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, float | str]:
    """Paired t-test over runs of ``ours − base`` (two-sided) and the t confidence interval of the mean difference.

    Runs where either value is NaN are left out. Fewer than two runs, or differences without spread, give NaN
    statistics and a note (a zero spread with a non-zero mean has no finite t).
    """
    a = np.asarray(base, dtype=np.float64)
    b = np.asarray(ours, dtype=np.float64)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    diff = b - a
    n = int(diff.size)
    row: dict[str, float | str] = {
        "n_runs": n, "baseline_mean": float(a.mean()) if n else math.nan,
        "method_mean": float(b.mean()) if n else math.nan, "mean_difference": float(diff.mean()) if n else math.nan,
        "sd_difference": math.nan, "t": math.nan, "df": math.nan, "p_value": math.nan, "ci_low": math.nan,
        "ci_high": math.nan, "note": "",
    }
    if n < 2:
        row["note"] = ONE_RUN_NOTE if n == 1 else "no run"
        return row
    sd = float(diff.std(ddof=1))
    row["sd_difference"], row["df"] = sd, n - 1
    if sd == 0.0:
        row["note"] = "identical difference in every run (no spread): no t"
        return row
    se = sd / math.sqrt(n)
    t = float(diff.mean()) / se
    q = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1))
    row.update(t=t, p_value=float(2.0 * stats.t.sf(abs(t), n - 1)), ci_low=float(diff.mean()) - q * se,
               ci_high=float(diff.mean()) + q * se)
    return row


def run_values(volumes: pd.DataFrame, datasets: Sequence[str], vendors: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (method, cval, seed): every dataset's value, ``avg_all``, ``avg_ood``, and per M&Ms vendor
    ``MM/<vendor>`` (mean of the vendor's volumes' mean Dice) and ``penalty/<vendor>`` (vendor − ACDC).

    Args:
        volumes: per-volume rows of one ``n_iter`` (``method, cval, seed, dataset, patient_id, pid`` + Dice columns).
        datasets: the test sets in table order (``ACDC`` is in domain, the others out of domain).
        vendors: ``MM/vendors.csv`` as read by :func:`medseg.evaluation.reports.read_vendors` (None: no vendor rows).
    """
    rows = []
    mm = vendor_volumes(volumes, vendors) if vendors is not None else None
    for (method, cval, seed), part in volumes.groupby(["method", *RUN_KEY], sort=False):
        row: dict[str, object] = {"method": method, "cval": int(cval), "seed": int(seed)}
        means = {}
        for dataset in datasets:
            rows_d = part[part["dataset"] == dataset]
            if rows_d.empty:
                continue
            class_means = rows_d[DICE_COLUMNS].astype(float).mean(axis=0)
            means[dataset] = float(np.nanmean(class_means.to_numpy()))
            row[dataset] = means[dataset]
        averaged = {k: v for k, v in means.items() if in_averages(k)}
        row["avg_all"] = float(np.mean(list(averaged.values()))) if averaged else math.nan
        ood = [v for k, v in averaged.items() if k != IN_DOMAIN]
        row["avg_ood"] = float(np.mean(ood)) if ood else math.nan
        if mm is not None and len(mm):
            own = mm[(mm["method"] == method) & (mm["cval"] == cval) & (mm["seed"] == seed)]
            for vendor, group in own.groupby("vendor", sort=True):
                row[f"MM/{vendor}"] = float(group["mean_Dice"].mean())
                row[f"penalty/{vendor}"] = float(group["mean_Dice"].mean()) - means.get(IN_DOMAIN, math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def _paired(values: pd.DataFrame, baseline: str, method: str, column: str) -> tuple[np.ndarray, np.ndarray]:
    if column not in values.columns:
        return np.array([]), np.array([])
    wide = values.pivot_table(index=RUN_KEY, columns="method", values=column, dropna=False)
    if baseline not in wide.columns or method not in wide.columns:
        return np.array([]), np.array([])
    return wide[baseline].to_numpy(float), wide[method].to_numpy(float)


def run_level_tests(values: pd.DataFrame, baseline: str, method: str, columns: Sequence[str]) -> pd.DataFrame:
    """Paired t-test over runs for each column of :func:`run_values` (columns that are absent are skipped)."""
    rows = []
    for column in columns:
        base, ours = _paired(values, baseline, method, column)
        if not base.size:
            continue
        rows.append({"column": column, **paired_t(base, ours)})
    return pd.DataFrame(rows, columns=TEST_COLUMNS)


def fold_level_test(values: pd.DataFrame, baseline: str, method: str,
                    column: str = "avg_ood") -> dict[str, float | str]:
    """The paired t-test of ``column`` with the fold (cval) as the unit: each cval's runs (its seeds) are averaged
    first. Runs of one cval share their training and validation subjects, so when seeds are pooled this is the
    conservative check beside :func:`run_level_tests`, which counts every (cval, seed) as a run. Only folds with
    both methods in every run count (a run one method lacks is left out)."""
    if column not in values.columns:
        return {"column": column, **paired_t([], [])}
    wide = values.pivot_table(index=RUN_KEY, columns="method", values=column, dropna=False)
    if baseline not in wide.columns or method not in wide.columns:
        return {"column": column, **paired_t([], [])}
    wide = wide[[baseline, method]].dropna()
    folds = wide.groupby(level="cval").mean()
    return {"column": column, **paired_t(folds[baseline].to_numpy(float), folds[method].to_numpy(float))}


def relative_gain(values: pd.DataFrame, baseline: str, method: str, column: str = "avg_ood",
                  confidence: float = CONFIDENCE) -> dict[str, float | str]:
    """Mean over runs of the per-run relative gain ``(method − baseline) / baseline`` in percent, with its t interval.

    Returns:
        ``column, n_runs, relative_percent, sd_percent, ci_low_percent, ci_high_percent, note``.
    """
    base, ours = _paired(values, baseline, method, column)
    keep = ~(np.isnan(base) | np.isnan(ours)) & (base != 0) if base.size else np.array([], dtype=bool)
    rel = (ours[keep] - base[keep]) / base[keep] * 100.0 if base.size else np.array([])
    n = int(rel.size)
    out: dict[str, float | str] = {"column": column, "n_runs": n,
                                   "relative_percent": float(rel.mean()) if n else math.nan, "sd_percent": math.nan,
                                   "ci_low_percent": math.nan, "ci_high_percent": math.nan, "note": ""}
    if n < 2:
        out["note"] = ONE_RUN_NOTE if n == 1 else "no run"
        return out
    sd = float(rel.std(ddof=1))
    q = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1))
    out.update(sd_percent=sd, ci_low_percent=float(rel.mean()) - q * sd / math.sqrt(n),
               ci_high_percent=float(rel.mean()) + q * sd / math.sqrt(n))
    return out


def per_run_table(values: pd.DataFrame, baseline: str, method: str,
                  columns: Sequence[str] = ("ACDC", "avg_ood", "MM")) -> pd.DataFrame:
    """One row per run (cval, seed): each column's value for both methods and ``method − baseline``, and the
    relative ``avg_ood`` gain in percent."""
    rows = []
    for (cval, seed), part in values.groupby(RUN_KEY, sort=True):
        part = part.set_index("method")
        if baseline not in part.index or method not in part.index:
            continue
        row: dict[str, object] = {"cval": int(cval), "seed": int(seed)}
        for column in columns:
            b = float(part.at[baseline, column]) if column in part.columns else math.nan
            m = float(part.at[method, column]) if column in part.columns else math.nan
            row[f"{column}_{baseline}"], row[f"{column}_{method}"], row[f"{column}_difference"] = b, m, m - b
        b, m = row.get(f"avg_ood_{baseline}", math.nan), row.get(f"avg_ood_{method}", math.nan)
        row["avg_ood_relative_percent"] = (m - b) / b * 100.0 if b else math.nan  # type: ignore[operator]
        rows.append(row)
    return pd.DataFrame(rows)


def vendor_penalties(values: pd.DataFrame, baseline: str, method: str) -> pd.DataFrame:
    """Per M&Ms vendor: the domain-shift penalty (vendor − ACDC) of each method (mean and population std over runs),
    and the paired t-test over runs of the difference of the penalties (``method − baseline``)."""
    rows = []
    for column in [c for c in values.columns if str(c).startswith("penalty/")]:
        base, ours = _paired(values, baseline, method, column)
        test = paired_t(base, ours)
        rows.append({"vendor": column.split("/", 1)[1], "n_runs": test["n_runs"],
                     f"{baseline}_penalty": float(np.nanmean(base)), f"{baseline}_std": float(np.nanstd(base)),
                     f"{method}_penalty": float(np.nanmean(ours)), f"{method}_std": float(np.nanstd(ours)),
                     "difference": test["mean_difference"], "p_value": test["p_value"], "ci_low": test["ci_low"],
                     "ci_high": test["ci_high"], "note": test["note"]})
    return pd.DataFrame(rows)


def tie_counts(diff: np.ndarray) -> dict[str, int]:
    """Ties of a signed-rank test: ``n_zero`` differences exactly 0 (dropped by the test) and ``n_tied`` non-zero
    differences whose absolute value another non-zero difference shares (compared at 1e-9: the Dice values are stored
    with 6 decimals, so run means of equal values may differ in the last bits)."""
    diff = np.asarray(diff, dtype=np.float64)
    nonzero = np.round(np.abs(diff[diff != 0]), 9)
    _, counts = np.unique(nonzero, return_counts=True)
    return {"n_zero": int(np.sum(diff == 0)), "n_tied": int(counts[counts > 1].sum())}


def verdict(tests: pd.DataFrame, gain: dict[str, float | str], baseline: str, method: str,
            tolerance: float, alpha: float = 0.05) -> tuple[str, str]:
    """The paper's claim judged from the run-level tests alone.

    Returns:
        ``(short, sentence)``; short is ``reproduced`` (``avg_ood`` better at p < ``alpha``, and the mean ACDC
        difference not below ``-tolerance``), ``contradicted`` (``avg_ood`` worse at p < ``alpha``, or ACDC worse at
        p < ``alpha`` by more than ``tolerance``), ``undecided`` (neither) or ``no test`` (fewer than two runs).
    """
    by = tests.set_index("column") if len(tests) else pd.DataFrame()
    if "avg_ood" not in by.index or "ACDC" not in by.index:
        return "no test", "No run-level comparison: a column is missing."
    ood, acdc = by.loc["avg_ood"], by.loc["ACDC"]
    if int(ood["n_runs"]) < 2:
        return "no test", (f"One run: no run-level test is possible, so no verdict on the paper's claim; the numbers "
                           f"describe this run only ({method} − {baseline}: avg_ood {ood['mean_difference']:+.3f}, "
                           f"ACDC {acdc['mean_difference']:+.3f}).")

    def significant(row: pd.Series) -> bool:
        return not math.isnan(float(row["p_value"])) and float(row["p_value"]) < alpha

    ood_text = (f"avg_ood {ood['mean_difference']:+.3f} (95 % CI {_ci(ood)}, p = {format_p(ood['p_value'])}; relative "
                f"{_rel(gain)})")
    acdc_text = f"ACDC {acdc['mean_difference']:+.3f} (95 % CI {_ci(acdc)}, p = {format_p(acdc['p_value'])})"
    runs = f"over {int(ood['n_runs'])} runs"
    acdc_worse = significant(acdc) and float(acdc["mean_difference"]) < -tolerance
    if significant(ood) and float(ood["mean_difference"]) > 0 and float(acdc["mean_difference"]) >= -tolerance:
        return "reproduced", f"**Reproduced** {runs}: {method} − {baseline} {ood_text}; {acdc_text}."
    if (significant(ood) and float(ood["mean_difference"]) < 0) or acdc_worse:
        return "contradicted", f"**Contradicted** {runs}: {method} − {baseline} {ood_text}; {acdc_text}."
    return "undecided", (f"**Not decided** {runs}: no run-level test is significant at {alpha:g} in the paper's "
                         f"direction ({method} − {baseline} {ood_text}; {acdc_text}); more runs are needed to decide.")


def format_p(value: float | None) -> str:
    """A p-value as the report writes it (``n/a`` when there is none)."""
    if value is None or math.isnan(float(value)):
        return "n/a"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.3f}"


def _ci(row: pd.Series) -> str:
    if math.isnan(float(row["ci_low"])):
        return "n/a"
    return f"[{float(row['ci_low']):+.3f}, {float(row['ci_high']):+.3f}]"


def _rel(gain: dict[str, float | str]) -> str:
    rel = float(gain.get("relative_percent", math.nan))
    if math.isnan(rel):
        return "n/a"
    low = float(gain.get("ci_low_percent", math.nan))
    if math.isnan(low):
        return f"{rel:+.1f} %"
    return f"{rel:+.1f} %, 95 % CI [{low:+.1f}, {float(gain['ci_high_percent']):+.1f}] %"


TREND_TEST_COLUMNS = ["epoch", "column", *TEST_COLUMNS[1:]]


def trend_tests(trend: pd.DataFrame, baseline: str, method: str,
                columns: Sequence[str] = ("ACDC", "avg_ood")) -> pd.DataFrame:
    """The run-level test at every length of the training-length trend: per epoch and column, the paired t-test over
    the runs (cval, seed) that both methods have at that epoch.

    Args:
        trend: rows ``method, cval, seed, epoch`` + the columns (each kept model's values).
    """
    rows = []
    for epoch, part in trend.groupby("epoch", sort=True):
        for column in columns:
            base, ours = _paired(part, baseline, method, column)
            if base.size:
                rows.append({"epoch": int(epoch), "column": column, **paired_t(base, ours)})
    return pd.DataFrame(rows, columns=TREND_TEST_COLUMNS)


def reference_epoch(epochs: Sequence[int]) -> int:
    """The length the last one is compared with: the tested length nearest half the longest (75 of 25 ... 150, the
    ``cpu`` budget's length); the earlier of two equally near."""
    epochs = sorted(int(e) for e in epochs)
    return min(epochs[:-1] or epochs, key=lambda e: (abs(2 * e - epochs[-1]), e))


def length_change(trend: pd.DataFrame, baseline: str, method: str, column: str = "avg_ood",
                  reference: int | None = None, tolerance: float = 0.01,
                  alpha: float = 0.05) -> dict[str, object]:
    """Whether the gain ``method − baseline`` of ``column`` grows, holds or vanishes with training length, from the
    runs alone: each run's gain at the longest tested length minus its gain at ``reference`` (default
    :func:`reference_epoch`), paired over the runs that both methods have at both lengths.

    The verdict, at ``alpha`` and the 95 % t intervals: ``grows`` (the change's interval above 0), ``vanishes`` (below
    0, a positive mean gain at ``reference``, and the late gain's interval no longer above 0), ``shrinks`` (below 0
    otherwise), ``holds`` (the change's interval inside ±``tolerance``: an equivalence statement), ``undecided``
    (none of these: the runs cannot tell), ``no test`` (fewer than two runs or one length).

    Returns:
        ``column, reference, last, n_runs, early_gain, late_gain, change`` (means), ``change_ci_low/high``,
        ``change_p``, ``late_ci_low/high``, ``late_p``, ``verdict`` and ``runs`` (``{(cval, seed): (early, late)}``).
    """
    epochs = sorted(int(e) for e in trend["epoch"].unique()) if len(trend) else []
    out: dict[str, object] = {"column": column, "reference": math.nan, "last": math.nan, "n_runs": 0,
                              "verdict": "no test", "runs": {}}
    if len(epochs) < 2:
        return out
    reference = reference_epoch(epochs) if reference is None else int(reference)
    last = epochs[-1]
    gains = {}
    for epoch in (reference, last):
        wide = trend[trend["epoch"] == epoch].pivot_table(index=RUN_KEY, columns="method", values=column)
        if baseline not in wide.columns or method not in wide.columns:
            return {**out, "reference": reference, "last": last}
        gains[epoch] = (wide[method] - wide[baseline]).dropna()
    both = gains[reference].index.intersection(gains[last].index)
    early, late = gains[reference].loc[both].to_numpy(float), gains[last].loc[both].to_numpy(float)
    change = paired_t(early, late)  # the t-test of late − early
    late_test = paired_t(np.zeros_like(late), late)
    out.update(reference=reference, last=last, n_runs=int(len(both)),
               early_gain=float(early.mean()) if len(both) else math.nan, late_gain=change["method_mean"],
               change=change["mean_difference"], change_ci_low=change["ci_low"], change_ci_high=change["ci_high"],
               change_p=change["p_value"], late_ci_low=late_test["ci_low"], late_ci_high=late_test["ci_high"],
               late_p=late_test["p_value"],
               runs={(int(c), int(s)): (float(e), float(v)) for (c, s), e, v in zip(both, early, late, strict=True)})
    if len(both) < 2 or math.isnan(float(change["ci_low"])):
        out["verdict"] = "no test" if len(both) < 2 else "undecided"
        return out
    low, high = float(change["ci_low"]), float(change["ci_high"])
    late_above = not math.isnan(float(late_test["ci_low"])) and float(late_test["ci_low"]) > 0
    if low > 0 and float(change["p_value"]) < alpha:
        out["verdict"] = "grows"
    elif high < 0 and float(change["p_value"]) < alpha:
        out["verdict"] = "vanishes" if float(early.mean()) > 0 and not late_above else "shrinks"
    elif -tolerance <= low and high <= tolerance:
        out["verdict"] = "holds"
    else:
        out["verdict"] = "undecided"
    return out
