"""Predictions go back onto the original grid exactly (inverse crop/pad, inverse resampling)."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.data.crop import crop_or_pad
from medseg.io.nifti import Volume
from medseg.evaluation.geometry import to_reference_grid
from medseg.evaluation.scan import prepare_scan

ROTATED = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


@pytest.mark.parametrize("hw", [(150, 151), (160, 160), (192, 192), (193, 200), (231, 256), (101, 250)])
def test_inverse_crop_pad_restores_the_grid(hw):
    rng = np.random.default_rng(sum(hw))
    labels = rng.integers(0, 4, size=(3, *hw)).astype(np.uint8)
    reference = Volume(labels.astype(np.float32), (1.36719, 1.36719, 8.0), (1.0, 2.0, 3.0), ROTATED)
    cropped, info = crop_or_pad(labels)
    assert cropped.shape == (3, 192, 192)
    restored = to_reference_grid(cropped, info, reference, reference.spacing)
    assert restored.shape == labels.shape
    # every voxel inside the 192×192 window comes back unchanged; the cropped-away border is background
    r, c = info.rows, info.cols
    window = (slice(None), slice(r.src_start, r.src_start + r.length), slice(c.src_start, c.src_start + c.length))
    np.testing.assert_array_equal(restored[window], labels[window])
    outside = np.ones(hw, bool)
    outside[window[1:]] = False
    assert not restored[:, outside].any()
    if hw[0] <= 192 and hw[1] <= 192:
        np.testing.assert_array_equal(restored, labels)


@pytest.mark.parametrize("spacing", [(0.8, 0.8, 10.0), (1.9, 1.2, 6.0)])
def test_resampled_prediction_maps_back_to_the_input_grid(spacing):
    # a label that is a smooth disk survives the round trip through the 1.36719 mm grid up to the boundary
    z, h, w = 2, 121, 97
    yy, xx = np.mgrid[:h, :w]
    disk = (np.hypot((yy - h / 2) * spacing[1], (xx - w / 2) * spacing[0]) < 30).astype(np.float32)
    volume = Volume(np.repeat(disk[None], z, axis=0) * 3, spacing, (5.0, -7.0, 2.0), ROTATED)
    prepared = prepare_scan(volume)
    assert prepared.image.shape == (z, 1, 192, 192)
    assert prepared.grid_spacing[:2] == pytest.approx((1.36719, 1.36719))
    pred = (prepared.image[:, 0].numpy() > 0.5).astype(np.uint8)  # network-space "prediction"
    back = to_reference_grid(pred, prepared.crop_info, volume, prepared.grid_spacing)
    assert back.shape == volume.array.shape
    agreement = (back[0] == disk.astype(np.uint8)).mean()
    assert agreement > 0.98


def test_mismatched_grid_without_resampling_is_an_error():
    identity = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    reference = Volume(np.zeros((2, 50, 60), np.float32), (1.0, 1.0, 1.0), (0.0,) * 3, identity)
    _, info = crop_or_pad(np.zeros((2, 40, 60)))
    with pytest.raises(ValueError, match="expected identical grids"):
        to_reference_grid(np.zeros((2, 192, 192), np.uint8), info, reference, reference.spacing)
