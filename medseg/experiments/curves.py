"""Training curves from each run's ``log/metrics.csv``: validation Dice against iterations, both methods on one plot.

The validation metric is the pooled foreground Dice ``dice/val_dice`` that the training loop logs (from the same
confusion matrix as the model-selection Mean IoU); runs that predate it fall back to ``iou/val_iou``. Beside the
curves, a plateau summary per run: best and last value, and the change of the mean over the last fifth of the epochs
against the fifth before it (close to 0 = plateau reached).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from medseg.training.run_files import read_metrics_rows
from medseg.io.atomic import atomic_output_path

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

DICE_KEY, IOU_KEY, LOSS_KEY = "dice/val_dice", "iou/val_iou", "loss/standard/seg"


def read_curve(metrics_csv: PathLike) -> dict[str, np.ndarray]:
    """``iteration``, ``epoch``, ``value`` (validation Dice, else IoU), ``loss`` and ``metric`` (the key used)."""
    path = Path(metrics_csv)
    if not path.is_file():
        return {}
    rows = read_metrics_rows(path)  # a damaged line is an error naming the file and the line
    if not rows:
        return {}
    key = DICE_KEY if all(r.get(DICE_KEY) not in (None, "") for r in rows) else IOU_KEY

    def number(row_index: int, name: str) -> float:
        value = rows[row_index].get(name)
        if value in (None, ""):
            return math.nan
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{path}: line {row_index + 2}: expected a number in column {name!r}, got {value!r} (a "
                             "damaged metrics.csv: repair or delete that line)") from None

    def column(name: str) -> np.ndarray:
        return np.array([number(i, name) for i in range(len(rows))])

    return {"iteration": column("global_iteration"), "epoch": column("epoch"), "value": column(key),
            "loss": column(LOSS_KEY), "metric": np.array(key)}


def plateau_summary(curve: Mapping[str, np.ndarray]) -> dict[str, float]:
    """``best``, ``last``, ``late_change`` (mean of the last fifth minus mean of the fifth before; NaN if < 10 epochs)."""
    values = curve["value"]
    n = len(values)
    k = n // 5
    late = float(np.nanmean(values[n - k:]) - np.nanmean(values[n - 2 * k: n - k])) if k >= 2 else math.nan
    return {"epochs": n, "iterations": float(curve["iteration"][-1]), "best": float(np.nanmax(values)),
            "last": float(values[-1]), "late_change": late}


def plot_run_curves(curves: Mapping[str, Mapping[str, np.ndarray]], title: str, path: PathLike) -> Path | None:
    """One PNG: validation metric (left) and training segmentation loss (right) against iterations, one line per
    method. Returns None if no method has a curve."""
    shown = {m: c for m, c in curves.items() if c}
    if not shown:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10.0, 3.8))
    metrics = set()
    for method, curve in shown.items():
        metrics.add(str(curve["metric"]))
        marker = "o" if len(curve["value"]) <= 30 else None
        left.plot(curve["iteration"], curve["value"], label=method, marker=marker, markersize=3)
        right.plot(curve["iteration"], curve["loss"], label=method, marker=marker, markersize=3)
    label = "validation Dice (pooled, mean of LV/MYO/RV)" if metrics == {DICE_KEY} else "validation " + \
        " / ".join(sorted(metrics))
    left.set_ylabel(label)
    left.set_ylim(0.0, 1.0)
    right.set_ylabel("training segmentation loss (epoch mean)")
    right.set_yscale("log")
    for ax in (left, right):
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_output_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path
