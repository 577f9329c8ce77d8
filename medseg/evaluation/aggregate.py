"""The cross-domain robustness table: one row per method, one column per test set (paper Table 1).

For each run (one method, one cval) and test set, the per-class Dice is the mean over patients and the dataset value
is the mean over LV/MYO/RV. ``avg_all`` averages the dataset values over every evaluated test set and ``avg_ood`` over
the out-of-domain ones (everything except ``ACDC``: the ACDC-C artefact sets and M&Ms). With several cvals, every
number is reported as the mean over cvals with the population standard deviation (``ddof=0``) in ``{column}_std``;
the ``_std`` columns exist only when some method has several cvals (a method with one cval has no std: empty cells).
Test sets that were skipped for a run do not enter its averages (a warning says so).
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from medseg.evaluation.reports import DatasetResult
from medseg.evaluation.runs import Run
from medseg.io.atomic import atomic_open, atomic_output_path, atomic_write_text

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
IN_DOMAIN = "ACDC"
#: Test sets named ``<artefact>_resampled`` (an ACDC-C set corrupted on the native grid and resampled to a coarser
#: one) are a second, named column beside the set corrupted at the grid; they enter neither ``avg_all`` nor
#: ``avg_ood``.
RESAMPLED_SUFFIX = "_resampled"


def in_averages(name: str) -> bool:
    """Whether test set ``name`` enters ``avg_all`` / ``avg_ood`` (not a ``*_resampled`` second column)."""
    return not name.endswith(RESAMPLED_SUFFIX)


@dataclass
class RunResults:
    """Everything evaluated for one run: dataset name → result."""

    run: Run
    results: dict[str, DatasetResult] = field(default_factory=dict)


def _nanmean(values: Sequence[float]) -> float:
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0 or np.all(np.isnan(array)):
        return math.nan
    return float(np.nanmean(array))


def run_row(entry: RunResults, datasets: Sequence[str]) -> dict[str, float]:
    """Numbers of one run: ``{dataset}``, ``{dataset}_{class}_Dice``, other metrics, ``avg_all``, ``avg_ood``."""
    row: dict[str, float] = {}
    dataset_means: dict[str, float] = {}
    for name in datasets:
        result = entry.results.get(name)
        if result is None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            class_means = result.detailed[result.metric_columns].astype(float).mean(axis=0)
        dataset_means[name] = _nanmean([class_means[c] for c in result.dice_columns])
        row[name] = dataset_means[name]
        for column in result.dice_columns:
            row[f"{name}_{column}"] = float(class_means[column])
        other_metrics = [m for m in dict.fromkeys(c.split("_", 1)[1] for c in result.metric_columns) if m != "Dice"]
        for metric in other_metrics:
            columns = [c for c in result.metric_columns if c.endswith(f"_{metric}")]
            row[f"{name}_{metric}"] = _nanmean([class_means[c] for c in columns])
    row["avg_all"] = _nanmean([v for k, v in dataset_means.items() if in_averages(k)])
    row["avg_ood"] = _nanmean([v for k, v in dataset_means.items() if k != IN_DOMAIN and in_averages(k)])
    return row


def aggregate_table(entries: Sequence[RunResults], datasets: Sequence[str]) -> pd.DataFrame:
    """One row per method (in order of first appearance), numbers averaged over its cvals.

    Returns:
        Columns ``method, n_cvals, cvals``, then per dataset ``{d}, {d}_LV_Dice, {d}_MYO_Dice, {d}_RV_Dice`` (+ other
        metrics ``{d}_{metric}``), ``avg_all, avg_ood``, then, if some method has more than one cval,
        ``{column}_std`` for every numeric column (NaN for methods with one cval).
    """
    methods: dict[str, list[RunResults]] = {}
    for entry in entries:
        methods.setdefault(entry.run.method, []).append(entry)
    rows = []
    value_columns: list[str] = []
    for method, runs in methods.items():
        per_run = [run_row(entry, datasets) for entry in runs]
        for columns in per_run:
            value_columns.extend(c for c in columns if c not in value_columns)
        row: dict[str, object] = {
            "method": method,
            "n_cvals": len(runs),
            "cvals": " ".join(str(e.run.cval) for e in runs if e.run.cval is not None),
        }
        for column in value_columns:
            values = np.asarray([r.get(column, math.nan) for r in per_run], dtype=np.float64)
            finite = values[~np.isnan(values)]
            row[column] = float(finite.mean()) if finite.size else math.nan
            row[f"{column}_std"] = float(finite.std(ddof=0)) if finite.size > 1 else math.nan
        rows.append(row)
    ordered = [c for c in _column_order(datasets, value_columns)]
    several_cvals = any(len(runs) > 1 for runs in methods.values())
    columns = ["method", "n_cvals", "cvals", *ordered, *([f"{c}_std" for c in ordered] if several_cvals else [])]
    return pd.DataFrame(rows).reindex(columns=columns)


def _column_order(datasets: Sequence[str], present: Sequence[str]) -> list[str]:
    order: list[str] = []
    names = set(datasets)
    for name in datasets:
        order.extend(c for c in present if c == name)
        # the columns of a test set whose name extends this one (RandomSpike_resampled) are that set's
        own = [c for c in present if c.startswith(f"{name}_") and c not in names
               and not any(c.startswith(f"{other}_") for other in names if other != name and other.startswith(name))]
        order.extend(c for c in own if c.endswith("_Dice"))
        order.extend(c for c in own if not c.endswith("_Dice"))
    order.extend(c for c in ("avg_all", "avg_ood") if c in present)
    return order


def _fmt(mean: float, std: float, n: int, digits: int = 3) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    if n > 1 and not math.isnan(std):
        return f"{mean:.{digits}f} ± {std:.{digits}f}"
    return f"{mean:.{digits}f}"


def format_table(table: pd.DataFrame, columns: Sequence[str]) -> str:
    """A Markdown table of ``method`` + ``columns`` with ``mean ± std`` cells when a method has several cvals."""
    header = ["method", *columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + [":---:"] * len(columns)) + "|"]
    for _, row in table.iterrows():
        n = int(row["n_cvals"])
        cells = [str(row["method"])]
        for column in columns:
            cells.append(_fmt(row.get(column, math.nan), row.get(f"{column}_std", math.nan), n))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main_columns(table: pd.DataFrame, datasets: Sequence[str]) -> list[str]:
    return [c for c in [*datasets, "avg_all", "avg_ood"] if c in table.columns]


def class_columns(table: pd.DataFrame, datasets: Sequence[str]) -> list[str]:
    return [c for c in table.columns if c.endswith("_Dice") and not c.endswith("_std") and c.split("_")[0] in datasets]


def summary_markdown(
    table: pd.DataFrame, datasets: Sequence[str], n_iter: int, notes: Sequence[str], extra: Sequence[str] = ()
) -> str:
    """The whole ``summary.md``: mean Dice table, per-class table, other metrics, warnings."""
    parts = [
        f"# Cross-domain test results (n_iter = {n_iter})",
        "",
        "Mean Dice over LV, MYO and RV per test set (patient-wise on the 3D stacks); `avg_all` = mean over all "
        "evaluated test sets, `avg_ood` = mean over the out-of-domain ones (ACDC-C artefacts and M&Ms). "
        "`mean ± std` = over cross-validation folds (population std).",
        "",
        format_table(table, main_columns(table, datasets)),
        "",
        "## Per-class Dice",
        "",
        format_table(table, class_columns(table, datasets)),
    ]
    others = [
        c
        for c in table.columns
        if not c.endswith(("_Dice", "_std")) and "_" in c and c.split("_")[0] in datasets and c not in datasets
    ]
    if others:
        parts += ["", "## Distances (mm, mean over classes)", "", format_table(table, others)]
    parts += ["", *extra]
    parts += ["", "## Warnings", ""]
    parts += [f"- {note}" for note in notes] if notes else ["None."]
    return "\n".join(parts) + "\n"


def box_plot(entries: Sequence[RunResults], datasets: Sequence[str], path: PathLike) -> Path | None:
    """PNG of per-patient Dice (mean over classes, pooled over cvals): one panel per test set, one box per method."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(e.run.method for e in entries))
    shown = [d for d in datasets if any(d in e.results for e in entries)]
    if not shown or not methods:
        return None
    panel_width = max(3.0, 1.0 + 0.8 * len(methods))
    fig, axes = plt.subplots(1, len(shown), figsize=(panel_width * len(shown), 4.0), squeeze=False)
    for ax, name in zip(axes[0], shown):
        data = []
        for method in methods:
            values = [
                e.results[name].patient_mean_dice().to_numpy(dtype=float)
                for e in entries
                if e.run.method == method and name in e.results
            ]
            pooled = np.concatenate(values) if values else np.array([])
            data.append(pooled[~np.isnan(pooled)])
        ax.boxplot([d if d.size else np.array([np.nan]) for d in data], showmeans=True)
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=30, ha="right", fontsize=8)
        counts = sorted({d.size for d in data})
        ax.set_title(f"{name} (n = {'/'.join(map(str, counts))})", fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("Dice per patient (mean of LV, MYO, RV)")
    fig.suptitle("Per-patient Dice on each test set (n = patient volumes): box = quartiles, orange line = median, "
                 "green triangle = mean, whiskers = 1.5 IQR, circles = outliers", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_output_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path


AGGREGATE_NAMES = ("summary.csv", "summary.md", "dice_boxplot.png", "warnings.txt")


def write_aggregate(
    entries: Sequence[RunResults],
    datasets: Sequence[str],
    out_dir: PathLike,
    n_iter: int,
    notes: Sequence[str] = (),
    data_root: PathLike | None = None,
) -> tuple[pd.DataFrame, dict[str, Path]]:
    """Write ``summary.csv``, ``summary.md``, ``dice_boxplot.png`` and ``warnings.txt`` to ``out_dir``.

    ``data_root`` (the test data's root folder) is named in ``summary.md``.

    Returns:
        ``(table, {"csv": ..., "md": ..., "png": ..., "warnings": ...})`` (``png`` only if something was evaluated).
    """
    out_dir = Path(out_dir)
    table = aggregate_table(entries, datasets)
    paths: dict[str, Path] = {}
    with atomic_open(out_dir / "summary.csv", "w", newline="", encoding="utf-8") as handle:
        table.to_csv(handle, index=False, float_format="%.4f")
    paths["csv"] = out_dir / "summary.csv"
    runs = ["## Runs", ""]
    if data_root is not None:
        runs += [f"Test data: `{Path(data_root).resolve()}`", ""]
    runs += [f"- {e.run.label}: `{e.run.checkpoint_dir}`" for e in entries]
    paths["md"] = out_dir / "summary.md"
    atomic_write_text(paths["md"], summary_markdown(table, datasets, n_iter, notes, runs))
    paths["warnings"] = out_dir / "warnings.txt"
    atomic_write_text(paths["warnings"], "".join(f"{note}\n" for note in notes))
    png = box_plot(entries, datasets, out_dir / "dice_boxplot.png")
    if png is not None:
        paths["png"] = png
    return table, paths
