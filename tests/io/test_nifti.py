"""NIfTI helpers: round trips with geometry, and the errors of read_volume / read_image_label_pair."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.io.nifti import (
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
    with pytest.raises(ValueError, match="junk.nii.gz: .*not a NIfTI"):
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


# ------------------------------------------------------------------------------ integrity of the one NIfTI reader
def _sitk_reference(path):
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def _nibabel_file(path, array_zyx, dtype, slope=None, inter=None, big_endian=False, version=1, affine=None):
    import nibabel as nib

    cls = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    data = np.asarray(array_zyx).T.astype(dtype)  # nibabel order (x, y, z[, t])
    affine = np.diag([1.5, 1.25, 7.0, 1.0]) if affine is None else affine
    header = (nib.Nifti1Header if version == 1 else nib.Nifti2Header)(endianness=">" if big_endian else "<")
    image = cls(data, affine, header=header)
    image.set_data_dtype(dtype)
    if slope is not None:
        image.header.set_slope_inter(slope, inter)
    nib.save(image, str(path))
    return path


@pytest.mark.parametrize("case", ["int16", "uint8", "float64", "big_endian", "scaled_int", "scaled_float", "four_d",
                                  "sform_rotation", "uncompressed"])
def test_reader_matches_simpleitk(tmp_path, case):
    """Voxels and geometry decoded from the bytes are exactly what SimpleITK reads from the file."""
    rng = np.random.default_rng(1)
    array = rng.integers(0, 200, (3, 5, 7))
    affine = None
    kwargs: dict = {"dtype": np.int16}
    name = "v.nii.gz"
    if case == "uint8":
        kwargs["dtype"] = np.uint8
    elif case == "float64":
        kwargs["dtype"] = np.float64
        array = rng.random((3, 5, 7))
    elif case == "big_endian":
        kwargs["big_endian"] = True
    elif case == "scaled_int":
        kwargs.update(slope=2.5, inter=-3.0)
    elif case == "scaled_float":
        kwargs.update(dtype=np.float32, slope=2.0, inter=0.5)
    elif case == "four_d":
        array = rng.integers(0, 200, (2, 3, 5, 7))
        affine = np.diag([1.5, 1.25, 7.0, 1.0])
    elif case == "sform_rotation":
        rotation = np.asarray(ROTATION).reshape(3, 3) @ np.diag([1.5, 1.25, 7.0])
        affine = np.eye(4)
        affine[:3, :3], affine[:3, 3] = rotation, (10.0, -20.0, 5.0)
    elif case == "uncompressed":
        name = "v.nii"
    path = _nibabel_file(tmp_path / name, array, affine=affine, **kwargs)
    volume = read_volume(path, ndim=None)
    want, spacing, origin, direction = _sitk_reference(path)
    assert volume.array.dtype == want.dtype and volume.array.shape == want.shape
    assert np.array_equal(volume.array, want)
    assert volume.spacing == pytest.approx(spacing) and volume.origin == pytest.approx(origin)
    assert volume.direction == pytest.approx(direction)
    assert volume.array.flags.writeable and volume.array.dtype.isnative


def test_nifti2_is_refused_clearly(tmp_path):
    path = _nibabel_file(tmp_path / "v2.nii.gz", np.zeros((3, 5, 7)), np.int16, version=2)
    with pytest.raises(ValueError, match="v2.nii.gz: a NIfTI-2 file; expected NIfTI-1"):
        read_volume(path)


def _typical(tmp_path):
    array = np.random.default_rng(0).random((6, 64, 72)).astype(np.float32)
    return write_volume(tmp_path / "typical.nii.gz", array, spacing=(1.36719, 1.36719, 8.0))


def test_truncated_gzip_names_the_file(tmp_path):
    path = _typical(tmp_path)
    raw = path.read_bytes()
    for keep in (len(raw) // 2, len(raw) - 4):  # half the file, and only the gzip length trailer missing
        cut = tmp_path / f"cut{keep}.nii.gz"
        cut.write_bytes(raw[:keep])
        with pytest.raises(ValueError, match=f"cut{keep}.nii.gz: (truncated|corrupt)"):
            read_volume(cut)


def test_bit_flipped_gzip_names_the_file(tmp_path):
    path = _typical(tmp_path)
    raw = bytearray(path.read_bytes())
    start = len(raw) // 2
    raw[start:start + 64] = bytes(b ^ 0xFF for b in raw[start:start + 64])  # 64 flipped bytes
    bad = tmp_path / "flipped.nii.gz"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="flipped.nii.gz: corrupt gzip data"):
        read_volume(bad)


def test_truncated_uncompressed_and_header_size_check(tmp_path):
    import gzip

    path = _typical(tmp_path)
    data = gzip.decompress(path.read_bytes())
    short = tmp_path / "short.nii"
    short.write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match=r"short.nii: truncated file: the header declares 72x64x6 voxels of float32 "
                                         r"= 110592 bytes of voxel data, the file holds 110492"):
        read_volume(short)
    # an intact gzip stream of too little data (e.g. written by a tool that stopped early)
    repacked = tmp_path / "repacked.nii.gz"
    repacked.write_bytes(gzip.compress(data[: len(data) // 2]))
    with pytest.raises(ValueError, match="repacked.nii.gz: truncated file: the header declares"):
        read_volume(repacked)


def test_nan_voxels_are_kept_not_zeroed(tmp_path):
    array = np.ones((2, 3, 4), np.float32)
    array[1, 2, 3] = np.nan
    path = write_volume(tmp_path / "nan.nii.gz", array)
    volume = read_volume(path, allow_nonfinite=True)
    assert np.isnan(volume.array[1, 2, 3]) and np.isfinite(volume.array).sum() == 23


def test_rgb_vector_and_complex_are_refused(tmp_path):
    import SimpleITK as sitk

    rgb = tmp_path / "rgb.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 4, 5, 3), np.uint8), isVector=True), str(rgb))
    for ndim in (3, 4, None):  # an RGB image is never taken for a 4D cine volume
        with pytest.raises(ValueError, match="rgb.nii.gz: an RGB colour image .*expected a grayscale volume"):
            read_volume(rgb, ndim=ndim)
    complex_path = _nibabel_file(tmp_path / "complex.nii.gz", np.ones((2, 3, 4)) * (1 + 2j), np.complex64)
    with pytest.raises(ValueError, match="complex.nii.gz: complex-valued voxels"):
        read_volume(complex_path)


def test_zero_voxel_size_is_refused(tmp_path):
    import gzip
    import struct

    path = _typical(tmp_path)
    data = bytearray(gzip.decompress(path.read_bytes()))
    data[80:84] = struct.pack("<f", 0.0)  # pixdim[1] (x); ITK would silently report 1 mm
    bad = tmp_path / "zero_pixdim.nii.gz"
    bad.write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(ValueError, match=r"zero_pixdim.nii.gz: voxel size along x \(pixdim\) is 0.0; expected a "
                                         "positive size"):
        read_volume(bad)


def test_read_volume_info_reads_the_header_only(tmp_path):
    from medseg.io.nifti import read_volume_info

    path = _typical(tmp_path)
    info = read_volume_info(path)
    assert info.shape == (6, 64, 72) and info.spacing == pytest.approx((1.36719, 1.36719, 8.0))
    (tmp_path / "text.nii.gz").write_text("not an image\n")
    with pytest.raises(ValueError, match="text.nii.gz: .*not a NIfTI"):
        read_volume_info(tmp_path / "text.nii.gz")
    with pytest.raises(ValueError, match="expected a 4D cine volume"):
        read_volume_info(path, ndim=4)
