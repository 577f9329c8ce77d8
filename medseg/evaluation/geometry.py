"""Bringing network-space predictions back onto the grid of the image they came from.

The network sees a ``(Z, 192, 192)`` crop/pad of a volume that may itself have been resampled in-plane to
1.36719 mm. A prediction is mapped back by the exact inverse crop/pad (:func:`medseg.data.crop.recover_image`)
and, when the grid was resampled, by nearest-neighbour resampling in physical space onto the original grid, so the
label map overlays the original image in any viewer.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from medseg.data.crop import CropInfo, recover_image
from medseg.io.nifti import Volume, to_sitk

SPACING_TOLERANCE = 1e-4


def resample_to_reference(label: Volume, reference: Volume) -> np.ndarray:
    """Nearest-neighbour resampling of a label map onto ``reference``'s voxel grid (physical space).

    Args:
        label: ``(Z, h, w)`` label volume with its own geometry.
        reference: 3D volume defining the output grid (size, spacing, origin, direction).

    Returns:
        ``(Z, H, W)`` array with ``reference``'s shape and ``label``'s dtype.
    """
    moving = to_sitk(label)
    fixed = to_sitk(reference.with_array(np.zeros(reference.array.shape, dtype=np.uint8)))
    out = sitk.Resample(moving, fixed, sitk.Transform(), sitk.sitkNearestNeighbor, 0, moving.GetPixelID())
    return sitk.GetArrayFromImage(out).astype(label.array.dtype, copy=False)


def same_grid(spacing_a: tuple[float, ...], spacing_b: tuple[float, ...], tol: float = SPACING_TOLERANCE) -> bool:
    return len(spacing_a) == len(spacing_b) and all(abs(a - b) <= tol for a, b in zip(spacing_a, spacing_b))


def to_reference_grid(
    prediction: np.ndarray, crop_info: CropInfo, reference: Volume, grid_spacing: tuple[float, ...] | None = None
) -> np.ndarray:
    """Map a network-space prediction back to the reference image grid.

    Args:
        prediction: ``(Z, 192, 192)`` labels in the cropped/padded space.
        crop_info: how the (possibly resampled) volume was cropped/padded.
        reference: the 3D volume as read from disk (its geometry defines the output grid).
        grid_spacing: ITK ``(x, y, z)`` spacing of the grid that was cropped; ``None`` or equal to
            ``reference.spacing`` means no resampling happened.

    Returns:
        ``(Z, H, W)`` labels with exactly ``reference.array.shape``.
    """
    recovered = recover_image(prediction, crop_info, fill=0)  # (Z, h, w) on the network's grid
    resampled = grid_spacing is not None and not same_grid(tuple(grid_spacing), tuple(reference.spacing))
    if not resampled and recovered.shape == reference.array.shape:
        return recovered
    if not resampled:
        raise ValueError(
            f"prediction recovered to shape {recovered.shape} but {reference.name} has shape "
            f"{reference.array.shape} on the same spacing; expected identical grids"
        )
    on_grid = Volume(recovered, tuple(grid_spacing), reference.origin, reference.direction)
    return resample_to_reference(on_grid, reference)
