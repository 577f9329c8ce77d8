"""The synthetic generator's headers satisfy the reader at every allowed --spacing-scale, and the reader's geometry
messages say what is actually wrong (metre units, absurd grids) instead of reporting a qform/sform mismatch."""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.io.nifti import check_header_geometry, read_volume, read_volume_info, write_volume
from medseg.io.nifti_format import parse_geometry
from medseg.phantom.generator import SyntheticSettings, write_acdc_subject
from medseg.phantom.appearance import SITES
from medseg.phantom.stack import _random_rotation, qform_safe_rotation

REPO = Path(__file__).resolve().parents[2]


def _scale_range() -> tuple[float, float]:
    spec = importlib.util.spec_from_file_location("_msd", REPO / "scripts" / "make_synthetic_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.spacing_scale_range()


def _scales() -> list[float]:
    low, high = _scale_range()
    return [low, (low + 1.0) / 2, 1.0, 2.0, (2.0 + high) / 2, high]


def _rotation_near_half_turn() -> np.ndarray:
    """A rotation whose NIfTI qform is a turn of about 179.8 degrees (``a`` of its quaternion about 0.0016): the draw
    that broke patient061 at --spacing-scale 2."""
    return np.diag([-1.0, -1.0, 1.0]) @ _turn(179.8)


def _turn(degrees: float) -> np.ndarray:
    axis = np.array([0.48, -0.6, 0.64])
    axis /= np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = np.radians(degrees)
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


@pytest.mark.parametrize("scale", _scales())
def test_generator_geometry_reads_back_at_every_allowed_spacing_scale(tmp_path, scale):
    """Header-only: a header written as the generator writes it (its spacing at this scale, its rotations including
    the ill-conditioned half turn, its origins), checked by the reader for the largest grid of every site (a form
    does not depend on the dims, so a tiny volume carries the header of the full one)."""
    rng = np.random.default_rng(int(scale * 1000))
    rotations = [qform_safe_rotation(_rotation_near_half_turn())] + [_random_rotation(rng) for _ in range(4)]
    for k, (name, style) in enumerate(sorted(SITES.items())):
        spacing = style.spacing[0] * scale  # the finest pixel gives the largest matrix
        side = max(16, round(style.fov[1] / spacing))
        for j, direction in enumerate(rotations):
            origin = tuple(rng.uniform(-200.0, 200.0, 3))
            path = write_volume(tmp_path / f"{k}_{j}.nii.gz", np.zeros((2, 2, 2), dtype=np.uint8),
                                spacing=(spacing, spacing, style.slice_spacing[1]), origin=origin,
                                direction=tuple(direction.ravel()))
            info = read_volume_info(path)
            assert info.spacing[0] == pytest.approx(spacing, rel=1e-5), name
            full = dataclasses.replace(info, shape=(14, side, side))
            check_header_geometry(parse_geometry(_header(path), path), full)  # raises if the forms disagree


def _header(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())[:352]


def test_the_half_turn_is_made_well_conditioned_with_the_same_axes_up_to_sign():
    direction = _rotation_near_half_turn()
    safe = qform_safe_rotation(direction)
    assert np.allclose(np.abs(safe), np.abs(direction)) and np.linalg.det(safe) == pytest.approx(1.0)
    ras = np.diag([-1.0, -1.0, 1.0]) @ safe
    assert np.sqrt(1.0 + np.trace(ras)) / 2 >= 0.5
    ordinary = _random_rotation(np.random.default_rng(0))
    assert qform_safe_rotation(ordinary) is ordinary  # well-conditioned draws are kept as they are


def test_patient061_at_spacing_scale_2_reads_back(tmp_path):
    """The published default split's subject whose header the reader refused at --spacing-scale 2."""
    folder = write_acdc_subject(tmp_path, 61, seed=0, settings=SyntheticSettings(spacing_scale=2.0))
    for path in sorted(folder.glob("*.nii.gz")):
        volume = read_volume(path)
        assert volume.spacing[0] == pytest.approx(volume.spacing[1])


def test_a_sub_voxel_rounding_disagreement_is_accepted_and_a_voxel_is_not(tmp_path):
    affine = np.diag([2.7, 2.7, 8.0, 1.0])
    for shift, accepted in ((0.04, True), (2.0, False)):
        qform = affine.copy()
        qform[0, 3] += shift
        image = nib.Nifti1Image(np.zeros((40, 40, 6), dtype=np.int16), affine)
        image.set_qform(qform, code=1)
        image.set_sform(affine, code=1)
        path = tmp_path / f"shift_{shift}.nii.gz"
        nib.save(image, path)
        if accepted:
            read_volume_info(path)
        else:
            with pytest.raises(ValueError, match=r"qform and the sform .* up to 2 mm apart"):
                read_volume_info(path)


def test_mm_values_under_a_metre_unit_are_named_as_such(tmp_path):
    image = nib.Nifti1Image(np.zeros((64, 64, 8), dtype=np.int16), np.diag([1.37, 1.37, 8.0, 1.0]))
    image.header.set_xyzt_units("meter")
    nib.save(image, tmp_path / "metres.nii.gz")
    with pytest.raises(ValueError, match=r"metres.nii.gz: the header describes 64x64x8 voxels of 1.37, 1.37, 8 m, a "
                                         r"grid 87.7 m across; the header's spatial unit is metres"):
        read_volume(tmp_path / "metres.nii.gz")


def test_an_absurd_grid_is_named_as_such(tmp_path):
    image = nib.Nifti1Image(np.zeros((2, 2, 2), dtype=np.uint8), np.diag([30000.0, 1.0, 1.0, 1.0]))
    image.header.set_xyzt_units("mm")
    nib.save(image, tmp_path / "wide.nii.gz")
    with pytest.raises(ValueError, match=r"wide.nii.gz: the header describes 2x2x2 voxels of 30000, 1, 1 mm, a grid "
                                         r"60 m across; expected a scan at most 10 m across"):
        read_volume(tmp_path / "wide.nii.gz")
