"""Plots of the hard-example grids (matplotlib only; the numbers come from :mod:`.hard_examples`).

Every function returns a :class:`matplotlib.figure.Figure` that is not registered with pyplot (nothing stays open);
show it in a notebook with ``display(fig)`` and write it with :func:`save_figure`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from torch import Tensor

from medseg.io.atomic import atomic_output_path, ensure_writable_dir
from medseg.method.hard_examples import (
    CorruptionGrid,
    ReconDiff,
    entropy_maps,
    hard_labels,
    label_change,
    mean_abs_change,
)

PathLike = str | os.PathLike
#: Label colours: background black, LV red, MYO green, RV blue.
LABEL_CMAP = ListedColormap(["black", "tab:red", "tab:green", "tab:blue"])
PANEL_INCHES = 2.0


def _panel(ax, array: np.ndarray | Tensor, title: str, **imshow) -> None:
    """imshow + bold title + no axes (the published ``plot_general``)."""
    ax.imshow(np.asarray(array), interpolation="nearest", **imshow)
    ax.set_title(title, fontsize=9, fontweight="bold")
    ax.set_axis_off()


def _label_panel(ax, labels: np.ndarray | Tensor, title: str) -> None:
    _panel(ax, labels, title, cmap=LABEL_CMAP, vmin=-0.5, vmax=3.5)


def _column_title(method: str, threshold: float) -> str:
    return f"{method}: {100 * threshold:g}%"


def _figure(rows: int, cols: int, title: str) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(PANEL_INCHES * cols, PANEL_INCHES * rows + 0.4), layout="constrained")
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
    fig.suptitle(title, fontsize=11)
    return fig, axes


def plot_reconstruction_grid(grid: CorruptionGrid, image: Tensor, index: int = 0, title: str = "") -> Figure:
    """Figure 1: rows = methods; column 0 the input, then the corrupted reconstructions per threshold.

    Panel titles ``"{method}: {100 t}%"`` (as in the published notebook) with the mean absolute change from the
    unmasked reconstruction.

    Args:
        grid: an image-code :class:`CorruptionGrid`.
        image: ``(B, 1, H, W)`` or ``(B, H, W)`` model input.
        index: which batch element to show.
        title: figure title.
    """
    if grid.code != "image":
        raise ValueError(f"plot_reconstruction_grid needs an image-code grid, got code {grid.code!r}")
    image = image.reshape(image.shape[0], *image.shape[-2:])
    change = mean_abs_change(grid)
    fig, axes = _figure(len(grid.methods), len(grid.thresholds) + 1, title or "Corrupted images (image code z_i)")
    for i, method in enumerate(grid.methods):
        _panel(axes[i, 0], image[index], "input", cmap="gray", vmin=0, vmax=1)
        for j, threshold in enumerate(grid.thresholds):
            panel_title = f"{_column_title(method, threshold)}\nmean |change| {change[i, j]:.3f}"
            _panel(axes[i, j + 1], grid.outputs[i, j, index, 0], panel_title, cmap="gray", vmin=0, vmax=1)
    return fig


def plot_segmentation_grid(
    grid: CorruptionGrid, label: Tensor, index: int = 0, title: str = "", label_title: str = "GT"
) -> Figure:
    """Figure 2: per method one row of argmax maps (column 0: the label) and one row of entropy maps (bits, jet).

    The argmax titles add the fraction of pixels whose label differs from the unmasked prediction.

    Args:
        grid: a shape-code :class:`CorruptionGrid`.
        label: ``(B, H, W)`` label map used as the probe target.
        index: which batch element to show.
        title: figure title.
        label_title: title of column 0 (e.g. ``'FTN prediction'`` when the subject has no ground truth).
    """
    if grid.code != "shape":
        raise ValueError(f"plot_segmentation_grid needs a shape-code grid, got code {grid.code!r}")
    labels, entropy, changed = hard_labels(grid), entropy_maps(grid), label_change(grid)
    max_entropy = math.log2(grid.outputs.shape[-3])
    rows, cols = 2 * len(grid.methods), len(grid.thresholds) + 1
    fig, axes = _figure(rows, cols, title or "Corrupted segmentations (shape code z_s) and their entropy")
    image_handle = None
    for i, method in enumerate(grid.methods):
        _label_panel(axes[2 * i, 0], label[index], label_title)
        _panel(axes[2 * i + 1, 0], np.zeros(label.shape[-2:]), label_title, cmap="jet", vmin=0, vmax=max_entropy)
        for j, threshold in enumerate(grid.thresholds):
            panel_title = f"{_column_title(method, threshold)}\n{100 * changed[i, j]:.1f}% px changed"
            _label_panel(axes[2 * i, j + 1], labels[i, j, index], panel_title)
            _panel(axes[2 * i + 1, j + 1], entropy[i, j, index], f"entropy {100 * threshold:g}%",
                   cmap="jet", vmin=0, vmax=max_entropy)  # fmt: skip
            image_handle = axes[2 * i + 1, j + 1].images[0]
    if image_handle is not None:
        fig.colorbar(image_handle, ax=axes[:, -1].tolist(), shrink=0.5, label="entropy (bits)")
    return fig


def plot_recon_diff(diff: ReconDiff, index: int = 0, title: str = "") -> Figure:
    """Figure 3: input, reconstruction, ``|input - recon|``, FTN and STN predictions, ``|STN - FTN|``."""
    fig, axes = _figure(1, 6, title or "Where the model is unsure: reconstruction error and STN correction")
    row = axes[0]
    _panel(row[0], diff.image[index], "input", cmap="gray", vmin=0, vmax=1)
    _panel(row[1], diff.reconstruction[index], "reconstruction", cmap="gray", vmin=0, vmax=1)
    _panel(row[2], diff.image_error[index], "|input - recon|", cmap="hot", vmin=0)
    _label_panel(row[3], diff.initial[index], "FTN prediction")
    _label_panel(row[4], diff.refined[index], "STN refined")
    _panel(row[5], diff.refinement[index], "|STN - FTN| (logits)", cmap="hot", vmin=0)
    return fig


def save_figure(fig: Figure, path: PathLike, dpi: int = 80) -> Path:
    """Write ``fig`` atomically (format from the suffix, e.g. ``.png``); returns the path."""
    path = Path(path)
    ensure_writable_dir(path.parent)
    with atomic_output_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    return path


def plot_example(image_grid: CorruptionGrid, shape_grid: CorruptionGrid, image: Tensor, index: int = 0,
                 title: str = "") -> Figure:
    """One method and threshold: input, corrupted image, corrupted segmentation and its entropy (first grid cell).

    Args:
        image_grid: image-code grid; its first (method, threshold) cell is shown.
        shape_grid: shape-code grid; its first cell is shown.
        image: ``(B, 1, H, W)`` or ``(B, H, W)`` model input.
        index: which batch element to show.
        title: figure title.
    """
    image = image.reshape(image.shape[0], *image.shape[-2:])
    method, threshold = image_grid.methods[0], image_grid.thresholds[0]
    fig, axes = _figure(1, 4, title or f"{method} masking, {100 * threshold:g}%")
    row = axes[0]
    _panel(row[0], image[index], "input", cmap="gray", vmin=0, vmax=1)
    _panel(row[1], image_grid.outputs[0, 0, index, 0], "corrupted image", cmap="gray", vmin=0, vmax=1)
    _label_panel(row[2], hard_labels(shape_grid)[0, 0, index], "corrupted segmentation")
    _panel(row[3], entropy_maps(shape_grid)[0, 0, index], "entropy (bits)", cmap="jet", vmin=0,
           vmax=math.log2(shape_grid.outputs.shape[-3]))  # fmt: skip
    return fig
