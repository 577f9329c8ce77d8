"""A label map written for a NIfTI scan keeps the scan's header geometry; ambiguous headers are refused clearly."""

from __future__ import annotations

import gzip
import struct
import warnings

import nibabel as nib
import numpy as np
import pytest

from medseg.io.nifti import read_volume, read_volume_info, write_volume
from medseg.evaluation.scan import select_frame

SHAPE_XYZ = (12, 10, 4)
GEOMETRY_FIELDS = ("qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y",
                   "qoffset_z", "srow_x", "srow_y", "srow_z", "xyzt_units")


def oblique(zooms=(3.0, 2.5, 9.5), offset=(71.1, 128.6, -162.4)) -> np.ndarray:
    """A scanner-like affine: rotated about two axes, with a non-trivial offset."""
    a, b = np.deg2rad(30.0), np.deg2rad(-50.0)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag(zooms)
    affine[:3, 3] = offset
    return affine


def scan(path, affine, *, qform=None, q_code=1, s_code=1, units=None, shape=SHAPE_XYZ, dtype=np.int16,
         big_endian=False, zooms=None, scale=1.0):
    """A NIfTI-1 scan written by nibabel, with the forms set explicitly (``qform`` defaults to ``affine``)."""
    data = np.random.default_rng(0).integers(0, 500, shape).astype(dtype) * dtype(scale)
    header = nib.Nifti1Header(endianness=">" if big_endian else "<")
    image = nib.Nifti1Image(data, affine, header=header)
    image.set_data_dtype(data.dtype)
    image.set_sform(affine, code=s_code)
    image.set_qform(affine if qform is None else qform, code=q_code)
    if units is not None:
        image.header.set_xyzt_units(units)
    if zooms is not None:
        image.header.set_zooms(zooms)
    nib.save(image, str(path))
    return path


def predict_like(source, target, frame=None):
    """What medseg-predict does around the model: read (float32), pick the frame, write uint8 labels on its grid."""
    volume = select_frame(read_volume(source, ndim=None, dtype="float32"), frame)
    labels = (volume.array > np.median(volume.array)).astype(np.uint8) * 3  # any label map on the input grid
    write_volume(target, labels, volume)
    return labels


def assert_same_header_geometry(source, target):
    a, b = nib.load(str(source)), nib.load(str(target))
    assert b.shape == a.shape[:3]
    for key in GEOMETRY_FIELDS:
        np.testing.assert_array_equal(np.asarray(a.header[key]), np.asarray(b.header[key]), err_msg=key)
    np.testing.assert_array_equal(a.header["pixdim"][:4], b.header["pixdim"][:4])
    np.testing.assert_array_equal(a.affine, b.affine)  # what nibabel-based viewers (and FSL's choice of form) use
    ours, theirs = read_volume_info(source, ndim=None), read_volume_info(target)  # what ITK / ITK-SNAP use
    direction = np.asarray(ours.direction).reshape(len(ours.spacing), -1)[:3, :3]
    assert theirs.spacing == ours.spacing[:3] and theirs.origin == ours.origin[:3]
    assert theirs.direction == tuple(direction.ravel().tolist())


def _las(path):
    return scan(path, np.diag([-3.0, 3.0, 9.5, 1.0]))


def _lps_flipped_z(path):
    return scan(path, np.diag([-3.0, -3.0, -9.5, 1.0]))


def _oblique(path):
    return scan(path, oblique())


def _oblique_big_endian(path):
    return scan(path, oblique(), big_endian=True)


def _sform_only(path):
    return scan(path, oblique(), q_code=0)


def _qform_only(path):
    return scan(path, oblique(), s_code=0)


def _no_form(path):  # codes 0/0: every tool falls back to pixdim, and must do the same for the label map
    return scan(path, np.diag([3.0, 3.0, 9.5, 1.0]), q_code=0, s_code=0)


def _units_meter(path):
    return scan(path, np.diag([0.003, 0.0025, 0.0095, 1.0]), units="meter")


def _units_micron(path):
    return scan(path, np.diag([3000.0, 2500.0, 9500.0, 1.0]), units="micron")


def _float64(path):
    return scan(path, oblique(), dtype=np.float64)


def _agree_within_rounding(path):  # qform 0.001 mm off the sform: far below any voxel size
    shifted = oblique()
    shifted[0, 3] += 0.001
    return scan(path, oblique(), qform=shifted)


CASES = [_las, _lps_flipped_z, _oblique, _oblique_big_endian, _sform_only, _qform_only, _no_form, _units_meter,
         _units_micron, _float64, _agree_within_rounding]


@pytest.mark.parametrize("make", CASES, ids=[c.__name__.lstrip("_") for c in CASES])
def test_label_map_keeps_the_header_geometry_of_its_scan(tmp_path, make):
    source = make(tmp_path / "scan.nii.gz")
    target = tmp_path / "out" / "scan_seg.nii.gz"
    labels = predict_like(source, target)
    assert_same_header_geometry(source, target)
    written = nib.load(str(target))
    assert written.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(written.dataobj), labels.T)  # (Z, H, W) ↔ nibabel (x, y, z)
    np.testing.assert_array_equal(read_volume(target).array, labels)
    assert sorted(p.name for p in target.parent.iterdir()) == ["scan_seg.nii.gz"]  # no temporary file left


def test_frame_of_a_4d_scan_keeps_the_spatial_header_geometry(tmp_path):
    data = np.random.default_rng(1).integers(0, 500, (*SHAPE_XYZ, 3)).astype(np.int16)
    image = nib.Nifti1Image(data, oblique())
    image.set_qform(oblique(), code=1)
    image.header.set_zooms((3.0, 2.5, 9.5, 40.0))
    nib.save(image, str(tmp_path / "cine.nii.gz"))
    labels = predict_like(tmp_path / "cine.nii.gz", tmp_path / "ed_seg.nii.gz", frame=1)
    assert_same_header_geometry(tmp_path / "cine.nii.gz", tmp_path / "ed_seg.nii.gz")
    assert nib.load(str(tmp_path / "ed_seg.nii.gz")).header["dim"][0] == 3
    np.testing.assert_array_equal(read_volume(tmp_path / "ed_seg.nii.gz").array, labels)


def test_uncompressed_output_and_4d_output(tmp_path):
    source = scan(tmp_path / "scan.nii", oblique())
    predict_like(source, tmp_path / "seg.nii")
    assert (tmp_path / "seg.nii").read_bytes()[344:348] == b"n+1\x00"  # plain NIfTI-1, not gzip
    assert_same_header_geometry(source, tmp_path / "seg.nii")
    cine = tmp_path / "cine.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((*SHAPE_XYZ, 2), np.float32), oblique()), str(cine))
    volume = read_volume(cine, ndim=4)
    write_volume(tmp_path / "copy.nii.gz", volume.array * 2, volume)
    copy = read_volume(tmp_path / "copy.nii.gz", ndim=4)
    assert copy.spacing == volume.spacing and copy.origin == volume.origin and np.all(copy.array == 2)
    np.testing.assert_array_equal(nib.load(str(copy.path)).affine, nib.load(str(cine)).affine)


def test_another_grid_is_written_from_its_own_geometry(tmp_path):
    """A volume moved or resampled away from its file's grid must not get that file's header."""
    source = scan(tmp_path / "scan.nii.gz", np.diag([3.0, 3.0, 9.5, 1.0]), q_code=0, s_code=0)
    volume = read_volume(source)
    write_volume(tmp_path / "moved.nii.gz", volume.array, volume, origin=(5.0, 6.0, 7.0))
    moved = read_volume(tmp_path / "moved.nii.gz")
    assert moved.origin == pytest.approx((5.0, 6.0, 7.0)) and moved.spacing == pytest.approx(volume.spacing)
    write_volume(tmp_path / "cropped.nii.gz", volume.array[:, 1:], volume)  # same ndim, another shape
    assert read_volume(tmp_path / "cropped.nii.gz").array.shape == (4, 9, 12)


def test_disagreeing_qform_and_sform_are_refused_naming_the_file(tmp_path, capfd):
    axis_aligned = np.diag([3.0, 2.5, 9.5, 1.0])
    axis_aligned[:3, 3] = (10.0, 20.0, 30.0)
    path = scan(tmp_path / "two_grids.nii.gz", oblique(), qform=axis_aligned)
    with pytest.raises(ValueError, match=r"two_grids.nii.gz: the qform and the sform of the header place the voxels "
                                         r"up to \d+ mm apart; expected one geometry"):
        read_volume(path)
    slightly = oblique()
    slightly[2, 3] += 0.5  # a 0.5 mm offset is already a different grid
    path = scan(tmp_path / "half_mm.nii.gz", oblique(), qform=slightly)
    with pytest.raises(ValueError, match=r"half_mm.nii.gz: .* up to 0.5 mm apart"):
        read_volume_info(path)
    assert "medseg-hdr" not in capfd.readouterr().err  # ITK's warnings name the temporary header file


def test_sheared_sform_with_a_qform_is_refused(tmp_path, capfd):
    sheared = np.diag([3.0, 3.0, 9.5, 1.0])
    sheared[0, 1] = 1.0
    path = scan(tmp_path / "sheared.nii.gz", sheared, qform=np.diag([3.0, 3.0, 9.5, 1.0]))
    with pytest.raises(ValueError, match=r"sheared.nii.gz: .* up to \d+ mm apart \(its sform is sheared"):
        read_volume(path)
    err = capfd.readouterr().err
    assert "WARNING" not in err and "medseg-hdr" not in err, err


def test_sform_whose_voxel_sizes_differ_from_pixdim_is_refused(tmp_path, capfd):
    path = scan(tmp_path / "scales.nii.gz", np.diag([3.0, 3.0, 9.6, 1.0]), q_code=0, zooms=(3.0, 3.0, 9.5))
    with pytest.raises(ValueError, match=r"scales.nii.gz: the sform's voxel sizes \(3.0, 3.0, 9.6\) mm differ from "
                                         r"pixdim \(3.0, 3.0, 9.5\) mm, so ITK reads a grid up to 0.3 mm away"):
        read_volume(path)
    assert capfd.readouterr().err == ""


def test_float64_values_beyond_float32_get_an_accurate_message(tmp_path, capfd):
    path = scan(tmp_path / "huge.nii.gz", np.diag([3.0, 3.0, 9.5, 1.0]), dtype=np.float64, scale=1e300)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from the cast
        with pytest.raises(ValueError, match=r"huge.nii.gz: intensities up to 4.98e\+302 are too large for float32 "
                                             r"\(at most 3.4e\+38\)"):
            read_volume(path, dtype=np.float32)
        assert read_volume(path).array.dtype == np.float64  # kept as stored: nothing to refuse
    assert capfd.readouterr().err == ""
    scaled = scan(tmp_path / "scaled.nii.gz", np.diag([3.0, 3.0, 9.5, 1.0]))  # int16, at most 498 here
    data = bytearray(gzip.decompress(scaled.read_bytes()))
    data[112:120] = struct.pack("<2f", 1e37, 0.0)  # scl_slope, scl_inter: 498e37 does not fit float32 (ITK's type)
    scaled.write_bytes(gzip.compress(bytes(data)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"scaled.nii.gz: intensities after the header's scaling \(scl_slope "
                                             r"1e\+37\) up to 4.98e\+39 are too large for float32"):
            read_volume(scaled)
