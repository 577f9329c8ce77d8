"""Validation figure ``testing_segmentation_results/Seg_plots.png``: rows of Input | GT | Predict (matplotlib only).

The rows are the validation slices with the most labelled (foreground) pixels, collected over the whole validation
pass by :class:`MostForeground`: they show the heart where it is largest, instead of whatever the last validation
batch happened to hold (often apical or basal slices with little or no heart). The original passed its arguments in
the wrong order, so its "Input" and "GT" columns were swapped; here every column is passed by keyword.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torch.nn import functional as F

from medseg.io.atomic import atomic_output_path

PLOT_SIZE = 128
PLOT_ROWS = 5
#: background, LV cavity, myocardium, RV cavity (then further classes, if any)
LABEL_COLOURS = ("#000000", "#e41a1c", "#4daf4a", "#377eb8", "#ff7f00", "#984ea3", "#ffff33", "#a65628")
CLASS_NAMES = ("BG", "LV", "MYO", "RV")


def _resize(batch: torch.Tensor, mode: str) -> torch.Tensor:
    """(N, H, W) → (N, 128, 128) for display."""
    x = batch.detach().float().cpu().unsqueeze(1)
    if mode == "nearest":
        return F.interpolate(x, size=(PLOT_SIZE, PLOT_SIZE), mode="nearest").squeeze(1)
    return F.interpolate(x, size=(PLOT_SIZE, PLOT_SIZE), mode="bilinear", align_corners=False).squeeze(1)


class MostForeground:
    """Keeps the ``k`` slices with the most foreground ground-truth pixels seen so far (ties: the earlier slice).

    Slices are stored resized to the plot size, so validation batches of any size can be mixed.
    """

    def __init__(self, k: int = PLOT_ROWS) -> None:
        self.k = k
        self._kept: list[tuple[int, int, torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (-fg, order, img, gt, pred)
        self._seen = 0

    def add(self, images: torch.Tensor, ground_truths: torch.Tensor, predictions: torch.Tensor) -> None:
        """Offer a batch: ``images (N, 1, H, W)`` or ``(N, H, W)``, label maps ``(N, H, W)``."""
        if images.ndim == 4:
            images = images[:, 0]
        foreground = (ground_truths > 0).flatten(1).sum(dim=1).tolist()
        images = _resize(images, "bilinear")
        gts, preds = _resize(ground_truths, "nearest"), _resize(predictions, "nearest")
        for i, count in enumerate(foreground):
            self._kept.append((-int(count), self._seen + i, images[i], gts[i].long(), preds[i].long()))
        self._seen += len(foreground)
        self._kept.sort(key=lambda entry: entry[:2])
        del self._kept[self.k:]

    def __len__(self) -> int:
        return len(self._kept)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """``(images, ground truths, predictions)``, each ``(n, 128, 128)``, most foreground first; None if empty."""
        if not self._kept:
            return None
        return tuple(torch.stack([entry[j] for entry in self._kept]) for j in (2, 3, 4))  # type: ignore[return-value]


def _dice(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> float:
    """Mean Dice over the foreground classes present in either map (NaN if none)."""
    scores = []
    for c in range(1, num_classes):
        a, b = gt == c, pred == c
        total = a.sum() + b.sum()
        if total:
            scores.append(2.0 * np.logical_and(a, b).sum() / total)
    return float(np.mean(scores)) if scores else float("nan")


def save_segmentation_plot(
    path: str | Path,
    *,
    images: torch.Tensor,
    ground_truths: torch.Tensor,
    predictions: torch.Tensor,
    num_classes: int = 4,
    max_rows: int = PLOT_ROWS,
    title: str | None = None,
) -> Path:
    """Write up to ``max_rows`` rows of Input / GT / Predict, each resized to 128×128, with a label legend.

    Args:
        images: (N, 1, H, W) or (N, H, W) float images.
        ground_truths: (N, H, W) integer label maps.
        predictions: (N, H, W) integer label maps.
        num_classes: label values 0 .. num_classes - 1 (colours: black background, red LV, green MYO, blue RV).
        max_rows: rows shown (the first ones).
        title: figure title (e.g. the epoch and validation score).
    """
    if images.ndim == 4:
        images = images[:, 0]
    rows = min(max_rows, images.shape[0])
    shown_images = _resize(images[:rows], "bilinear")
    shown_gts = _resize(ground_truths[:rows], "nearest").long()
    shown_preds = _resize(predictions[:rows], "nearest").long()
    cmap = ListedColormap(LABEL_COLOURS[:num_classes]) if num_classes <= len(LABEL_COLOURS) else "viridis"
    fig = Figure(figsize=(6, 2 * rows + (0.9 if title else 0.5)))  # no pyplot: no global state, safe in threads
    axes = fig.subplots(rows, 3, squeeze=False)
    for r in range(rows):
        gt, pred = shown_gts[r].numpy(), shown_preds[r].numpy()
        columns = (("Input", shown_images[r].numpy(), "gray", (None, None)),
                   ("GT", gt, cmap, (0, num_classes - 1)),
                   (f"Predict (Dice {_dice(gt, pred, num_classes):.2f})", pred, cmap, (0, num_classes - 1)))
        for c, (label, data, colours, (vmin, vmax)) in enumerate(columns):
            ax = axes[r][c]
            ax.imshow(data, cmap=colours, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(label if r == 0 or c == 2 else "", fontsize=9)
    names = [CLASS_NAMES[c] if c < len(CLASS_NAMES) else str(c) for c in range(1, num_classes)]
    if isinstance(cmap, ListedColormap):
        handles = [Patch(color=LABEL_COLOURS[c], label=name) for c, name in zip(range(1, num_classes), names)]
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path = Path(path)
    with atomic_output_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    return path
