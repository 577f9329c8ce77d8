"""The one in-plane resampler: a training run with ``data.new_spacing`` sees exactly the pixels ``medseg-predict``
gives its model, predict repeats the converters' resampling exactly on the preprocessing grid, and the old import
paths are the same function."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.config import apply_overrides, from_dict
from medseg.conversion.resample import TARGET_SPACING_XY, anti_alias_for, resample_in_plane, resample_to_grid
from medseg.data.splits import get_ACDC_split_policy
from medseg.data.crop import crop_or_pad
from medseg.io.nifti import Volume, read_volume, write_volume
from medseg.conversion.preprocessing import ACDC_TO_MEDSEG, normalize_percentile, preprocess_pair
from medseg.evaluation.scan import field_of_view_crop, prepare_scan
from medseg.training.builders import build_datasets

COARSE = 2.73438  # the CPU budgets' grid, twice as coarse as the preprocessing grid
SPACING = (TARGET_SPACING_XY[0], TARGET_SPACING_XY[1], 8.0)


def preprocessed_image(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """A float32 image in [0, 1] with its 2nd and 98th percentiles exactly 0 and 1 (more than 2 % of the voxels at
    each end), as the converters write it: predict's percentile normalisation leaves it exactly as it is."""
    z, h, w = shape
    yy, xx = np.mgrid[:h, :w]
    disk = np.hypot(yy - h / 2, xx - w / 2) < min(h, w) / 4
    stripes = 0.5 + 0.4 * np.cos(2 * np.pi * xx / 2.4)  # detail finer than the coarse grid: aliases without a filter
    image = np.where(disk, 1.0, stripes)[None] * rng.uniform(0.8, 1.2, size=(z, 1, 1)) + rng.normal(0, 0.05, shape)
    low, high = np.percentile(image, [5, 95])
    return np.clip((image - low) / (high - low), 0.0, 1.0).astype(np.float32)


def label_map(shape: tuple[int, int, int]) -> np.ndarray:
    z, h, w = shape
    yy, xx = np.mgrid[:h, :w]
    dist = np.hypot(yy - h / 2, xx - w / 2)
    label = np.zeros(shape, dtype=np.uint8)
    label[:, dist < min(h, w) / 3] = 2
    label[:, dist < min(h, w) / 4] = 1
    label[:, 2:10, 2:12] = 3
    return label


@pytest.fixture(scope="module")
def acdc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The subjects of the ``one_shot`` split (train and validation), ES frame, on the preprocessing grid."""
    root = tmp_path_factory.mktemp("data") / "ACDC"
    split = get_ACDC_split_policy("one_shot", 0)
    shape = (3, 70, 78)
    for i, pid in enumerate(sorted(set(split["train"]) | set(split["validate"]))):
        image = preprocessed_image(shape, np.random.default_rng([3, i]))
        write_volume(root / pid / "ES_img.nii.gz", image, spacing=SPACING)
        write_volume(root / pid / "ES_seg.nii.gz", label_map(shape), spacing=SPACING)
    return root


def _datasets(root: Path, overrides: list[str]):
    raw = {"data": {"root_dir": str(root), "frame": ["ES"], "pad_size": [48, 48, 1], "crop_size": [32, 32, 1]}}
    return build_datasets(from_dict(apply_overrides(raw, overrides)), "one_shot", 0, seed=7)


def test_a_new_spacing_training_sees_the_pixels_predict_gives_its_model(acdc_root: Path) -> None:
    train_set, val_set = _datasets(acdc_root, [f"data.new_spacing=[{COARSE},{COARSE},-1]"])  # --set data.new_spacing
    crop = field_of_view_crop(COARSE)
    for dataset in (train_set, val_set):
        assert dataset.patient_number > 0
        for index in range(len(dataset)):
            vol, z = dataset._locate_slice(index)
            pid = dataset.patient_id_list[vol]
            image_path = dataset.paths(pid)[0]
            stored = read_volume(image_path, dtype=np.float32)
            assert np.array_equal(normalize_percentile(stored.array), stored.array)  # predict's normalisation: a no-op
            prepared = prepare_scan(stored, COARSE)  # what medseg-predict feeds a model trained on this grid
            image, label = dataset.load_data(index)
            seen, _ = crop_or_pad(image[:, :, 0], crop)
            # the very same pixels (not merely close): one resampler, one anti-aliasing rule
            assert np.array_equal(seen, prepared.image[z, 0].numpy()), (pid, z)
        test_volume = dataset.get_patient_data_for_testing(0, crop_size=crop)  # medseg-test's path on the same grid
        reference = prepare_scan(read_volume(dataset.paths(dataset.patient_id_list[0])[0], dtype=np.float32), COARSE)
        assert torch.equal(test_volume.image, reference.image)
        assert test_volume.spacing[:2] == pytest.approx((COARSE, COARSE))
    # and the model grid is really coarser, and anti-aliased: plain linear interpolation gives other pixels
    stored = read_volume(acdc_root / train_set.patient_id_list[0] / "ES_img.nii.gz", dtype=np.float32)
    plain = resample_in_plane(stored, (COARSE, COARSE), anti_alias=False).array
    filtered = train_set._images[0]
    assert filtered.shape == plain.shape == (3, 35, 39)
    assert np.abs(filtered - plain).max() > 0.1


def test_a_training_without_new_spacing_reads_the_stored_pixels(acdc_root: Path) -> None:
    train_set, _ = _datasets(acdc_root, [])  # default data.new_spacing: the preprocessing grid, no resampling
    for vol, pid in enumerate(train_set.patient_id_list):
        stored = read_volume(acdc_root / pid / "ES_img.nii.gz", dtype=np.float32).array
        assert np.array_equal(train_set._images[vol], stored)


def test_predict_repeats_the_converters_resampling_on_the_preprocessing_grid() -> None:
    """A raw scan finer than the preprocessing grid (downsampled): the converter interpolates without the filter, as
    the published preprocessing did, so the model's training data and predict's input are the same pixels."""
    rng = np.random.default_rng(0)
    shape = (2, 60, 64)
    raw = np.clip(rng.normal(300, 60, size=shape) + 400.0 * label_map(shape), 0, None).astype(np.int16)
    scan = Volume(raw, (0.9, 0.95, 10.0), (0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    raw_label = Volume(np.choose(label_map(shape), [0, 3, 2, 1]).astype(np.uint8), scan.spacing, scan.origin,
                       scan.direction)
    converted, _ = preprocess_pair(scan, raw_label, ACDC_TO_MEDSEG)
    assert converted.array.shape == (2, 42, 42)  # 60 x 0.95 mm and 64 x 0.9 mm at 1.36719 mm
    prepared = prepare_scan(scan)  # medseg-predict for a model on the preprocessing grid
    assert torch.equal(prepared.image[:, 0], torch.from_numpy(crop_or_pad(converted.array, (192, 192))[0]))
    assert prepared.grid_spacing[:2] == pytest.approx(TARGET_SPACING_XY)


def test_the_rule_and_the_old_import_paths() -> None:
    from medseg.conversion import preprocessing
    from medseg.data import base_dataset
    from medseg.dataset_loader import base_segmentation_dataset

    for module in (preprocessing, base_dataset, base_segmentation_dataset):  # the former copies' names
        assert module.resample_in_plane is resample_in_plane
    assert not anti_alias_for(TARGET_SPACING_XY) and not anti_alias_for((1.36719 + 5e-5, 1.36719))
    assert anti_alias_for((COARSE, COARSE)) and anti_alias_for((1.0, 1.0))
    x = np.arange(64, dtype=np.float32)
    volume = Volume(np.broadcast_to(0.5 + 0.5 * np.cos(2 * np.pi * x / 2.4), (1, 16, 64)).astype(np.float32),
                    (0.7, 0.7, 8.0), (0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    # onto the preprocessing grid: plain; onto another grid: filtered where downsampled; labels: never filtered
    assert np.array_equal(resample_to_grid(volume, TARGET_SPACING_XY).array,
                          resample_in_plane(volume, TARGET_SPACING_XY).array)
    assert np.array_equal(resample_to_grid(volume, (COARSE, COARSE)).array,
                          resample_in_plane(volume, (COARSE, COARSE), anti_alias=True).array)
    labels = volume.with_array((volume.array > 0.5).astype(np.uint8))
    assert np.array_equal(resample_to_grid(labels, (COARSE, COARSE), is_label=True).array,
                          resample_in_plane(labels, (COARSE, COARSE), is_label=True).array)
    with pytest.raises(ValueError, match="3D"):
        resample_in_plane(Volume(np.zeros((4, 4), np.float32), (1.0, 1.0), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0)))
