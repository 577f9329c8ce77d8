"""Subject slice -> the three hard-example figures (what the figure script and the notebook both do)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from matplotlib.figure import Figure

from medseg.visualization.figures import plot_recon_diff, plot_reconstruction_grid, plot_segmentation_grid
from medseg.method.hard_examples import METHODS, THRESHOLDS, corruption_grid, recon_diff
from medseg.visualization.subjects import Subject, slice_batch

logger = logging.getLogger(__name__)

FIGURES = (1, 2, 3)


def probe_label(model, image: torch.Tensor, label: torch.Tensor | None) -> tuple[torch.Tensor, str]:
    """The target of the shape-code probe: the label map, or (without one) the FTN prediction, said in the title.

    Returns:
        ``(label (B, H, W) int64, title of the label column)``.
    """
    if label is not None:
        return label, "GT"
    logger.warning("the subject has no label map: the shape code is probed against the FTN prediction instead")
    model.eval()
    with torch.no_grad():
        _, logits = model.fast_predict(image.to(model.device))
    return logits.argmax(dim=1).cpu(), "FTN pred. (no GT)"


def hard_example_figures(
    model,
    subject: Subject,
    slice_index: int,
    figures: Sequence[int] = FIGURES,
    methods: Sequence[str] = METHODS,
    thresholds: Sequence[float] = THRESHOLDS,
    seed: int = 0,
) -> dict[int, Figure]:
    """Figures 1 (corrupted images), 2 (corrupted segmentations + entropy) and 3 (difference maps) of one slice.

    Args:
        model: loaded model (switched to eval mode).
        subject: from :func:`medseg.visualization.subjects.load_subject`.
        slice_index: slice to show.
        figures: which of 1, 2, 3 to make.
        methods, thresholds: the grid (default: all three methods, 0 to 50 %).
        seed: seed of the masks' random draws.

    Returns:
        ``{figure number: Figure}``.
    """
    unknown = sorted(set(figures) - set(FIGURES))
    if unknown:
        raise ValueError(f"figures must be among {FIGURES}, got {unknown}")
    image, label = slice_batch(subject, [slice_index])
    where = f"{subject.name}, slice {slice_index}"
    out: dict[int, Figure] = {}
    if 1 in figures:
        grid = corruption_grid(model, image, "image", methods=methods, thresholds=thresholds, seed=seed)
        out[1] = plot_reconstruction_grid(grid, image, title=f"Corrupted images from the masked image code ({where})")
    if 2 in figures:
        target, label_title = probe_label(model, image, label)
        grid = corruption_grid(model, image, "shape", target, methods=methods, thresholds=thresholds, seed=seed)
        out[2] = plot_segmentation_grid(grid, target, label_title=label_title,
                                        title=f"Corrupted segmentations from the masked shape code ({where})")
    if 3 in figures:
        out[3] = plot_recon_diff(recon_diff(model, image), title=f"Reconstruction error and STN correction ({where})")
    return {k: out[k] for k in sorted(out)}
