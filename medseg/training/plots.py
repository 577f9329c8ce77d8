"""Validation figure ``testing_segmentation_results/Seg_plots.png``: columns Input | GT | Predict (matplotlib only).

The original passed its arguments in the wrong order, so its "Input" and "GT" columns were swapped (spec j.11);
here every column is passed by keyword.
"""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch.nn import functional as F

from medseg.utils.io import atomic_output_path

PLOT_SIZE = 128


def _resize(batch: torch.Tensor, mode: str) -> torch.Tensor:
    """(N, H, W) → (N, 128, 128) for display."""
    x = batch.detach().float().cpu().unsqueeze(1)
    if mode == "nearest":
        return F.interpolate(x, size=(PLOT_SIZE, PLOT_SIZE), mode="nearest").squeeze(1)
    return F.interpolate(x, size=(PLOT_SIZE, PLOT_SIZE), mode="bilinear", align_corners=False).squeeze(1)


def save_segmentation_plot(
    path: str | Path,
    *,
    images: torch.Tensor,
    ground_truths: torch.Tensor,
    predictions: torch.Tensor,
    num_classes: int = 4,
    max_rows: int = 5,
) -> Path:
    """Write up to ``max_rows`` rows of Input / GT / Predict, each resized to 128×128.

    Args:
        images: (N, 1, H, W) or (N, H, W) float images.
        ground_truths: (N, H, W) integer label maps.
        predictions: (N, H, W) integer label maps.
    """
    if images.ndim == 4:
        images = images[:, 0]
    rows = min(max_rows, images.shape[0])
    columns = (("Input", _resize(images[:rows], "bilinear"), "gray", None),
               ("GT", _resize(ground_truths[:rows], "nearest"), "viridis", (0, num_classes - 1)),
               ("Predict", _resize(predictions[:rows], "nearest"), "viridis", (0, num_classes - 1)))
    fig = Figure(figsize=(6, 2 * rows))  # no pyplot: no global backend state, safe in worker threads
    axes = fig.subplots(rows, 3, squeeze=False)
    for r in range(rows):
        for c, (title, data, cmap, vrange) in enumerate(columns):
            ax = axes[r][c]
            vmin, vmax = vrange if vrange else (None, None)
            ax.imshow(data[r].numpy(), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_axis_off()
            if r == 0:
                ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_output_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    return path
