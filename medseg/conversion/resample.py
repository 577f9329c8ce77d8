"""The in-plane resampler: every change of a volume's in-plane pixel size in medseg goes through this module.

Who resamples, and to which grid:

* the converters (raw ACDC, raw M&Ms, the synthetic phantom) bring every scan to the preprocessing grid,
  :data:`TARGET_SPACING_XY` (1.36719 mm);
* the training and test datasets bring their volumes to ``new_spacing`` when the data is not on it already;
* ``medseg-predict`` brings a new scan to the grid its model was trained on;
* the robustness experiment writes a copy of the data on a coarser grid.

One rule decides the filter (:func:`anti_alias_for`), so that a model sees, when it is used, the pixels it was trained
on: images are low-pass filtered before they are downsampled (:func:`resample_in_plane` with ``anti_alias``), except
onto the preprocessing grid itself, which is reached by plain linear interpolation as the published preprocessing
reached it (the training data of every model on that grid was made so; ``medseg-predict`` repeats it exactly). Label
maps are never filtered: nearest neighbour.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from medseg.io.nifti import Volume, from_sitk, to_sitk

#: The preprocessing grid: in-plane pixel size (x, y) in mm of the converted data.
TARGET_SPACING_XY: tuple[float, float] = (1.36719, 1.36719)
#: Spacings closer than this (mm, per axis) count as the same grid: nothing is resampled.
SPACING_TOLERANCE_MM = 1e-4


def same_grid(spacing_xy: Sequence[float], other_xy: Sequence[float]) -> bool:
    """Whether two in-plane spacings ``(x, y)`` in mm are the same grid (within :data:`SPACING_TOLERANCE_MM`)."""
    return all(abs(float(a) - float(b)) <= SPACING_TOLERANCE_MM for a, b in zip(spacing_xy[:2], other_xy[:2]))


def anti_alias_for(spacing_xy: Sequence[float]) -> bool:
    """Whether images resampled onto the grid ``spacing_xy`` are anti-aliased where they are downsampled.

    True for every grid except the preprocessing grid (:data:`TARGET_SPACING_XY`): data on that grid was made by plain
    linear interpolation (the published preprocessing), and a scan prepared for a model trained on it must be made the
    same way. Any other grid is a model grid chosen in medseg (``data.new_spacing``): reached with the low-pass filter,
    whether the data is resampled for training, for testing, for ``medseg-predict`` or for the experiment's copy.
    """
    return not same_grid(spacing_xy, TARGET_SPACING_XY)


def resample_in_plane(
    volume: Volume, spacing_xy: Sequence[float] = TARGET_SPACING_XY, is_label: bool = False,
    anti_alias: bool = False,
) -> Volume:
    """Resample a 3D volume to a new in-plane pixel size, keeping the slices, z spacing, origin and direction.

    The new size is ``round(old_size * old_spacing / new_spacing)`` (at least 1) along x and y; images use linear and
    label maps nearest-neighbour interpolation. The output z spacing is the input's (a negative or -1 z spacing is
    never passed on). A volume already on the grid (within :data:`SPACING_TOLERANCE_MM`) is returned unresampled, only
    cast to the output type.

    Args:
        volume: ``(Z, H, W)`` volume.
        spacing_xy: target ``(x, y)`` spacing in mm (a third value, the published ``-1`` for "keep z", is ignored).
        is_label: nearest-neighbour interpolation and uint8 output; never filtered.
        anti_alias: for images, when an axis is downsampled by a factor ``f > 1``, low-pass it first with a Gaussian
            of ``sigma = f - 1`` input pixels (1 px for a grid twice as coarse), so that detail finer than the new
            grid (e.g. the stripes of a k-space spike) is blurred instead of aliased into coarse bands; upsampled
            axes are not filtered. Callers choose it with :func:`anti_alias_for` (or use :func:`resample_to_grid`).

    Returns:
        The resampled volume ``(Z, H', W')`` (float32 for images, uint8 for labels).

    Raises:
        ValueError: naming the file, for a volume that is not 3D.
    """
    if volume.ndim != 3:
        raise ValueError(f"{volume.name}: in-plane resampling expects a 3D (Z, H, W) volume, got {volume.array.shape}")
    old_spacing = volume.spacing
    new_spacing = (float(spacing_xy[0]), float(spacing_xy[1]), float(old_spacing[2]))
    array = volume.array.astype(np.uint8 if is_label else np.float32, copy=False)
    if same_grid(old_spacing, new_spacing):
        return volume.with_array(array)
    old_size = (array.shape[2], array.shape[1], array.shape[0])  # x, y, z
    new_size = [max(1, int(round(old_size[i] * old_spacing[i] / new_spacing[i]))) for i in range(2)] + [old_size[2]]
    if anti_alias and not is_label:
        sigma = [max(0.0, new_spacing[i] / old_spacing[i] - 1.0) for i in range(2)]  # x, y in input pixels
        if max(sigma) > 0:
            array = ndimage.gaussian_filter(array, sigma=(0.0, sigma[1], sigma[0]), mode="nearest").astype(np.float32)
    resampled = sitk.Resample(
        to_sitk(volume.with_array(array)),
        new_size,
        sitk.Transform(),
        sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear,
        volume.origin,
        new_spacing,
        volume.direction,
        0,
        sitk.sitkUInt8 if is_label else sitk.sitkFloat32,
    )
    return from_sitk(resampled, path=volume.path)


def resample_to_grid(volume: Volume, spacing_xy: Sequence[float], is_label: bool = False) -> Volume:
    """:func:`resample_in_plane` onto ``spacing_xy`` with the filter :func:`anti_alias_for` chooses for that grid: what
    every data path of medseg calls, so that training, testing, prediction and the experiment's copy agree."""
    return resample_in_plane(volume, spacing_xy, is_label=is_label, anti_alias=anti_alias_for(spacing_xy))
