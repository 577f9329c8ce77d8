"""The one implementation of each per-slice min–max form, and the places that use it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.data.intensity import minmax_normalize, rescale_slices
from medseg.dataset_loader.base_segmentation_dataset import BaseSegmentationDataset
from medseg.io.nifti import write_volume


def test_rescale_slices_maps_each_slice_to_0_1() -> None:
    rng = np.random.default_rng(0)
    stack = (rng.normal(0, 1, size=(3, 9, 11)) * np.array([1.0, 50.0, 1e-3])[:, None, None] + 7).astype(np.float32)
    stack[2] = 4.0  # a constant slice: 0 everywhere, not NaN
    out = rescale_slices(stack)
    assert out.dtype == np.float32 and out.shape == stack.shape
    for k in range(2):  # each slice on its own range
        lo, hi = stack[k].min(), stack[k].max()
        assert np.array_equal(out[k], ((stack[k] - lo) / (hi - lo + np.float32(1e-20))).astype(np.float32))
        assert out[k].min() == 0.0 and out[k].max() == pytest.approx(1.0, abs=1e-6)
    assert np.array_equal(out[2], np.zeros((9, 11), np.float32))
    assert np.array_equal(rescale_slices(stack[0]), out[0])  # one slice (H, W) as well


def test_minmax_normalize_is_the_training_form() -> None:
    image = np.linspace(-3.0, 5.0, 48, dtype=np.float32).reshape(6, 8)
    out = minmax_normalize(image)
    a = 1.0 / (8.0 + 1e-8)
    assert out.dtype == np.float32 and out.max() == 1.0 and 0.0 <= out.min() < 1e-6
    np.testing.assert_array_equal(out, (image * a + (1.0 - a * 5.0)).astype(np.float32))
    np.testing.assert_allclose(out, rescale_slices(image), atol=1e-6)  # the other form, up to rounding


def test_the_former_copies_are_this_implementation(tmp_path: Path) -> None:
    from medseg.data import transforms
    from medseg.robustness import corruptions

    assert transforms.minmax_normalize is minmax_normalize and corruptions.rescale_slices is rescale_slices
    rng = np.random.default_rng(1)
    image = rng.uniform(0.0, 1.0, size=(3, 20, 24)).astype(np.float32) * np.array([1.0, 0.5, 0.2])[:, None, None]
    label = np.zeros((3, 20, 24), np.uint8)
    label[:, 5:15, 6:18] = 1
    write_volume(tmp_path / "001" / "ED_img.nii.gz", image, spacing=(1.36719, 1.36719, 8.0))
    write_volume(tmp_path / "001" / "ED_seg.nii.gz", label, spacing=(1.36719, 1.36719, 8.0))
    dataset = BaseSegmentationDataset(tmp_path, ["001"], frame="ED", use_cache=False)
    stored = dataset.get_patient_data_for_testing(0, crop_size=32).image
    rescaled = dataset.get_patient_data_for_testing(0, crop_size=32, normalize_2D=True).image  # the test path's option
    assert torch.equal(rescaled, torch.from_numpy(rescale_slices(stored[:, 0].numpy()))[:, None])
    assert float(rescaled[1].max()) == pytest.approx(1.0, abs=1e-6) and float(stored[1].max()) < 0.51
