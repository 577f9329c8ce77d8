"""The validation figure shows the slices with the most foreground, Input | GT | Predict."""

from __future__ import annotations

import torch
from matplotlib.image import imread

from medseg.training.plots import PLOT_SIZE, MostForeground, save_segmentation_plot


def _labels(n_foreground: list[int], size: int = 16) -> torch.Tensor:
    labels = torch.zeros(len(n_foreground), size, size, dtype=torch.long)
    for i, n in enumerate(n_foreground):
        labels[i].view(-1)[:n] = 1 + i % 3
    return labels


def test_most_foreground_keeps_the_largest_slices_over_all_batches():
    keeper = MostForeground(k=3)
    batches = [[0, 10, 3], [50, 0], [10, 7, 200]]  # foreground pixels per slice, batch by batch
    for b, counts in enumerate(batches):
        gts = _labels(counts)
        images = torch.arange(len(counts), dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 16, 16) + 10 * b
        keeper.add(images, gts, gts.clone())
    images, gts, preds = keeper.tensors()
    assert images.shape == gts.shape == preds.shape == (3, PLOT_SIZE, PLOT_SIZE)
    # 200 (batch 2, slice 2), 50 (batch 1, slice 0), then the first of the two slices with 10 (batch 0, slice 1)
    assert [float(v) for v in images[:, 0, 0]] == [22.0, 10.0, 1.0]
    counts = (gts > 0).flatten(1).sum(1)
    assert counts[0] > counts[1] > counts[2] > 0
    assert MostForeground().tensors() is None and len(keeper) == 3


def test_plot_has_one_row_per_kept_slice(tmp_path):
    gts = _labels([120, 80])
    preds = gts.clone()
    preds[1] = 0  # a missed slice
    path = save_segmentation_plot(tmp_path / "Seg_plots.png", images=torch.rand(2, 1, 16, 16), ground_truths=gts,
                                  predictions=preds, title="epoch 3: validation Mean IoU 0.500")
    picture = imread(path)
    assert picture.shape[1] == 480 and picture.shape[0] > 300  # three panels side by side, two rows, title, legend
    three_rows = save_segmentation_plot(tmp_path / "three.png", images=torch.rand(3, 16, 16),
                                        ground_truths=_labels([1, 2, 3]), predictions=_labels([1, 2, 3]))
    assert imread(three_rows).shape[0] > picture.shape[0]
