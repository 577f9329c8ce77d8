"""NIfTI helpers: round trips with geometry, and the errors of read_volume / read_image_label_pair."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.dataset_loader.nifti import (
    Volume,
    check_label_values,
    read_image_label_pair,
    read_volume,
    write_volume,
)

ROTATION = (0.0, -1.0, 0.0, 0.6, 0.0, -0.8, 0.8, 0.0, 0.6)


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32])
def test_round_trip_3d_keeps_values_and_geometry(tmp_path, dtype):
    array = np.random.default_rng(0).integers(0, 100, (3, 5, 7)).astype(dtype)
    path = write_volume(tmp_path / "v.nii.gz", array, spacing=(1.5, 1.25, 8.0), origin=(1.0, -2.0, 3.5),
                        direction=ROTATION)
    volume = read_volume(path)
    assert volume.array.dtype == dtype and np.array_equal(volume.array, array)
    assert volume.spacing == pytest.approx((1.5, 1.25, 8.0)) and volume.origin == pytest.approx((1.0, -2.0, 3.5))
    assert volume.direction == pytest.approx(ROTATION, abs=1e-6) and volume.path == path


def test_round_trip_4d_and_reference_geometry(tmp_path):
    direction = np.eye(4)
    direction[:3, :3] = np.asarray(ROTATION).reshape(3, 3)
    array = np.arange(2 * 3 * 4 * 5, dtype=np.int16).reshape(2, 3, 4, 5)  # (T, Z, H, W)
    write_volume(tmp_path / "cine.nii.gz", array, spacing=(1.4, 1.4, 9.0, 1.0), origin=(0, 0, 0, 0),
                 direction=direction.ravel())
    cine = read_volume(tmp_path / "cine.nii.gz", ndim=4)
    assert np.array_equal(cine.array, array) and cine.spacing == pytest.approx((1.4, 1.4, 9.0, 1.0))
    write_volume(tmp_path / "copy.nii.gz", array[::-1], cine)
    copy = read_volume(tmp_path / "copy.nii.gz", ndim=None)
    assert copy.spacing == cine.spacing and copy.direction == pytest.approx(cine.direction)
    with pytest.raises(ValueError, match="reference geometry"):
        write_volume(tmp_path / "bad.nii.gz", array[0], cine)


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.nii.gz"):
        read_volume(tmp_path / "missing.nii.gz")
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty.nii.gz.*|empty \(0 bytes\)"):
        read_volume(tmp_path / "empty.nii.gz")
    (tmp_path / "junk.nii.gz").write_bytes(b"junk" * 100)
    with pytest.raises(ValueError, match="cannot read volume .*junk.nii.gz"):
        read_volume(tmp_path / "junk.nii.gz")
    write_volume(tmp_path / "v3.nii.gz", np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(ValueError, match=r"v3.nii.gz: expected a 4D cine volume"):
        read_volume(tmp_path / "v3.nii.gz", ndim=4)
    write_volume(tmp_path / "v4.nii.gz", np.zeros((2, 2, 3, 4), np.uint8))
    with pytest.raises(ValueError, match=r"v4.nii.gz: expected a 3D volume"):
        read_volume(tmp_path / "v4.nii.gz", ndim=3)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_voxels(tmp_path, bad):
    array = np.ones((2, 3, 4), np.float32)
    array[1, 1, 1] = bad
    write_volume(tmp_path / "nan.nii.gz", array)
    with pytest.raises(ValueError, match="nan.nii.gz: 1 voxels are NaN or Inf"):
        read_volume(tmp_path / "nan.nii.gz")
    assert read_volume(tmp_path / "nan.nii.gz", allow_nonfinite=True).array.shape == (2, 3, 4)


def test_pair_shape_mismatch_and_label_values(tmp_path):
    write_volume(tmp_path / "img.nii.gz", np.zeros((2, 3, 4), np.float32))
    write_volume(tmp_path / "seg.nii.gz", np.zeros((2, 3, 5), np.uint8))
    with pytest.raises(ValueError, match="label .*seg.nii.gz has shape"):
        read_image_label_pair(tmp_path / "img.nii.gz", tmp_path / "seg.nii.gz")
    label = Volume(np.array([[[0, 1, 7]]], np.uint8), (1.0,) * 3, (0.0,) * 3, tuple(np.eye(3).ravel()))
    with pytest.raises(ValueError, match=r"unexpected label values \[7\]"):
        check_label_values(label, {0, 1, 2, 3})
    check_label_values(label, {0, 1, 7})
