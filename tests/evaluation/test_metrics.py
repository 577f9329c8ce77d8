"""Parity of medseg.evaluation.metrics with the reference libraries (MedPy, MONAI: dev-only dependencies)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from medpy.metric import binary as medpy_binary
from monai.metrics import compute_dice, compute_hausdorff_distance
from scipy import ndimage

from medseg.evaluation import metrics

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

SPACINGS = [(1.0, 1.0, 1.0), (8.0, 1.36719, 1.36719), (2.5, 0.7, 1.9)]


def blob_pair(seed: int, shape=(7, 48, 56)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = ndimage.gaussian_filter(rng.random(shape), sigma=(0.8, 3, 3)) > 0.5
    b = ndimage.gaussian_filter(rng.random(shape), sigma=(0.8, 3, 3)) > 0.5
    if not a.any():
        a[3, 10:20, 10:20] = True
    if not b.any():
        b[2, 15:30, 12:22] = True
    return a, b


def diagonal(spacing) -> float:
    return math.sqrt(sum(s * s for s in spacing))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("spacing", SPACINGS)
def test_distance_parity_with_medpy_random(seed, spacing):
    a, b = blob_pair(seed)
    assert metrics.hausdorff_distance(a, b, spacing) == pytest.approx(medpy_binary.hd(a, b, spacing), abs=1e-9)
    assert metrics.hd95(a, b, spacing) == pytest.approx(medpy_binary.hd95(a, b, spacing), abs=1e-9)
    assert metrics.assd(a, b, spacing) == pytest.approx(medpy_binary.assd(a, b, spacing), abs=1e-9)
    assert metrics.dice(a, b) == pytest.approx(medpy_binary.dc(a, b), abs=1e-6)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("spacing", SPACINGS)
def test_parity_with_monai(seed, spacing):
    a, b = blob_pair(seed + 10)
    ta = torch.from_numpy(a)[None, None].float()
    tb = torch.from_numpy(b)[None, None].float()
    ref_hd = float(compute_hausdorff_distance(ta, tb, include_background=True, spacing=list(spacing)))
    assert abs(metrics.hausdorff_distance(a, b, spacing) - ref_hd) <= diagonal(spacing)
    ref_dice = float(compute_dice(ta, tb, include_background=True))
    assert metrics.dice(a, b) == pytest.approx(ref_dice, abs=1e-6)


def test_dice_per_class_matches_binary_dice_and_monai():
    rng = np.random.default_rng(3)
    pred = rng.integers(0, 4, size=(5, 30, 30))
    gt = rng.integers(0, 4, size=(5, 30, 30))
    gt[gt == 3] = 0  # RV absent from the ground truth
    scores = metrics.dice_per_class(pred, gt, (1, 2, 3))
    for k, c in enumerate((1, 2, 3)):
        assert scores[k] == pytest.approx(medpy_binary.dc(pred == c, gt == c), abs=1e-6)

    def one_hot(x):
        return torch.nn.functional.one_hot(torch.from_numpy(x), 4).permute(3, 0, 1, 2)[None].float()

    ref = compute_dice(one_hot(pred), one_hot(gt), include_background=False)[0].numpy()
    np.testing.assert_allclose(scores[:2], ref[:2], atol=1e-6)


def test_dice_both_empty_is_zero_not_nan():
    empty = np.zeros((3, 8, 8), bool)
    assert metrics.dice(empty, empty) == 0.0
    assert metrics.dice_per_class(np.zeros((3, 8, 8), int), np.zeros((3, 8, 8), int), (1, 2, 3)).tolist() == [0.0] * 3


def test_hand_made_shifted_cubes_exact_distances():
    spacing = (4.0, 1.0, 0.5)
    a = np.zeros((10, 20, 20), bool)
    b = np.zeros_like(a)
    a[2:6, 5:10, 5:10] = True
    b[2:6, 5:10, 8:13] = True  # shifted by 3 columns = 1.5 mm
    assert metrics.hausdorff_distance(a, b, spacing) == pytest.approx(1.5)
    assert metrics.hausdorff_distance(a, b, spacing) == pytest.approx(medpy_binary.hd(a, b, spacing))
    c = np.zeros_like(a)
    c[4:8, 5:10, 5:10] = True  # shifted by 2 slices = 8 mm
    assert metrics.hausdorff_distance(a, c, spacing) == pytest.approx(8.0)
    assert metrics.assd(a, a, spacing) == 0.0
    assert metrics.hd95(a, c, spacing) == pytest.approx(medpy_binary.hd95(a, c, spacing))


def test_masks_touching_the_array_border():
    a = np.zeros((3, 12, 12), bool)
    b = np.zeros_like(a)
    a[:, :6, :] = True
    b[:, :8, 2:] = True
    for fn, ref in ((metrics.hausdorff_distance, medpy_binary.hd), (metrics.assd, medpy_binary.assd)):
        assert fn(a, b, (3.0, 1.0, 1.0)) == pytest.approx(ref(a, b, (3.0, 1.0, 1.0)))


DISTANCES = [metrics.hausdorff_distance, metrics.hd95, metrics.assd, metrics.slice_hausdorff_distance]


@pytest.mark.parametrize("fn", DISTANCES)
def test_distances_of_empty_masks_are_nan(fn):
    a = np.zeros((3, 10, 10), bool)
    b = np.zeros_like(a)
    b[1, 2:5, 2:5] = True
    assert math.isnan(fn(a, b, (2.0, 1.0, 1.0)))
    assert math.isnan(fn(a, a, (2.0, 1.0, 1.0)))


def test_slice_hausdorff_matches_per_slice_medpy_with_8_connectivity():
    a, b = blob_pair(5)
    b[0] = False  # a slice where only one mask is present is skipped
    spacing = (8.0, 1.2, 0.9)
    both = [k for k in range(a.shape[0]) if a[k].any() and b[k].any()]
    expected = np.mean([medpy_binary.hd(a[k], b[k], spacing[1:], connectivity=2) for k in both])
    assert metrics.slice_hausdorff_distance(a, b, spacing) == pytest.approx(expected, abs=1e-9)


def test_class_metrics_keys_and_nan_for_missing_class():
    gt = np.zeros((4, 20, 20), np.uint8)
    gt[1:3, 5:10, 5:10] = 1
    gt[1:3, 12:15, 5:10] = 2
    pred = gt.copy()
    out = metrics.class_metrics(pred, gt, {1: "LV", 2: "MYO", 3: "RV"}, ("Dice", "HD", "HD95", "ASSD"), (8, 1, 1))
    assert list(out)[:3] == ["LV_Dice", "MYO_Dice", "RV_Dice"]
    assert out["LV_Dice"] == 1.0 and out["RV_Dice"] == 0.0
    assert out["LV_HD95"] == 0.0 and math.isnan(out["RV_HD95"]) and math.isnan(out["RV_HD"])


def test_bad_arguments_are_named():
    a = np.zeros((2, 4, 4), bool)
    with pytest.raises(ValueError, match="same shape"):
        metrics.dice(a, np.zeros((2, 4, 5), bool))
    with pytest.raises(ValueError, match="spacing"):
        metrics.hd95(a, a, (1.0, 1.0))
    with pytest.raises(ValueError, match="unknown metrics"):
        metrics.class_metrics(a.astype(int), a.astype(int), {1: "LV"}, ("Jaccard",))


def test_spacing_from_itk_reverses_axes():
    assert metrics.spacing_from_itk((1.5, 1.25, 8.0)) == (8.0, 1.25, 1.5)
