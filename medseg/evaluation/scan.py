"""Segmenting a new scan: the training data's preprocessing, the network, and the way back to the input geometry.

The preprocessing functions are those of :mod:`medseg.conversion.preprocessing`.

Steps for a 3D volume ``(Z, H, W)``: (1) clip to the [2nd, 98th] intensity percentiles of the volume and rescale to
[0, 1]; (2) resample in-plane to 1.36719 mm (linear; z spacing and slice count unchanged; skipped within 1e-4 mm) or to the
grid the model was trained on; (3) centre crop / zero pad to 192×192 (the same field of view on another grid); (4) predict (FTN + STN by default) and take the argmax; (5) inverse crop/pad,
then nearest-neighbour resampling back onto the input grid, so the label map has the input's exact size, spacing,
origin and direction; (6) relabel to the requested convention.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medseg.config import crop_size_problem
from medseg.data.crop import CropInfo, crop_or_pad
from medseg.io.nifti import Volume
from medseg.io.plausibility import RAW_SCAN, check_image_volume
from medseg.conversion.preprocessing import normalize_percentile
from medseg.conversion.resample import TARGET_SPACING_XY, resample_to_grid
from medseg.evaluation.geometry import to_reference_grid
from medseg.evaluation.inference import predict_stack

logger = logging.getLogger(__name__)

CROP_SIZE = (192, 192)
# model classes 0 BG, 1 LV, 2 MYO, 3 RV -> written values
LABEL_CONVENTIONS: dict[str, np.ndarray] = {
    "medseg": np.array([0, 1, 2, 3], dtype=np.uint8),
    "mnms": np.array([0, 1, 2, 3], dtype=np.uint8),  # M&Ms native labels are LV/MYO/RV already
    "acdc_raw": np.array([0, 3, 2, 1], dtype=np.uint8),  # ACDC raw: 1 RV, 2 MYO, 3 LV
}


def select_frame(volume: Volume, frame: int | None) -> Volume:
    """The 3D volume to segment: ``volume`` itself if 3D, frame ``frame`` of a 4D ``(T, Z, H, W)`` cine volume.

    Raises:
        ValueError: naming the file, for 2D/5D+ inputs, a 4D input without ``frame``, or a frame out of range.
    """
    if volume.ndim == 3:
        if frame is not None:
            logger.warning("%s is 3D; --frame %d ignored", volume.name, frame)
        return volume
    if volume.ndim != 4:
        raise ValueError(
            f"{volume.name}: expected a 3D volume (Z, H, W) or a 4D cine volume (T, Z, H, W), got an array of shape "
            f"{volume.array.shape} ({volume.ndim}D)"
        )
    n_frames = volume.array.shape[0]
    if frame is None:
        raise ValueError(f"{volume.name} is a 4D cine volume with {n_frames} frames; choose one with --frame K")
    if not 0 <= frame < n_frames:
        raise ValueError(f"{volume.name}: --frame {frame} out of range; the volume has frames 0..{n_frames - 1}")
    direction = np.asarray(volume.direction, dtype=np.float64).reshape(4, 4)[:3, :3]
    return Volume(
        array=volume.array[frame],
        spacing=tuple(volume.spacing[:3]),
        origin=tuple(volume.origin[:3]),
        direction=tuple(direction.ravel().tolist()),
        path=volume.path,
    )


@dataclass
class PreparedScan:
    """A volume ready for the network.

    Attributes:
        image: ``(Z, 1, 192, 192)`` float32 tensor.
        crop_info: crop/pad offsets on the (resampled) grid.
        grid_spacing: ITK ``(x, y, z)`` spacing of the resampled grid.
        reference: the input 3D volume (defines the output geometry).
    """

    image: torch.Tensor
    crop_info: CropInfo
    grid_spacing: tuple[float, ...]
    reference: Volume


def field_of_view_crop(spacing_mm: float) -> tuple[int, int]:
    """The crop that covers the test protocol's 192 × 192 field of view at ``spacing_mm`` (a multiple of 16).

    192 at 1.36719 mm (the published protocol), 96 at 2.73438 mm (the CPU budgets' grid).
    """
    if not 0.1 <= spacing_mm <= 20.0:
        raise ValueError(f"in-plane spacing must be 0.1-20 mm, got {spacing_mm!r}")
    n = max(16, int(round(CROP_SIZE[0] * TARGET_SPACING_XY[0] / spacing_mm / 16.0)) * 16)
    problem = crop_size_problem(n)
    if problem is not None:
        raise ValueError(f"a {spacing_mm:g} mm grid needs a {n} x {n} crop to cover the 262 mm field of view; expected "
                         f"a crop {problem}")
    return n, n


MIN_FIELD_OF_VIEW_MM = 100.0  # the model was trained on a 262 mm field; a heart is about 100-130 mm across


def layout_warnings(volume: Volume) -> list[str]:
    """Signs that a 3D scan is not a short-axis stack as the model expects (slices along the third NIfTI axis, a
    field of view around the whole heart); the scan is still segmented, but the result is likely meaningless."""
    sx, sy, sz = (abs(float(v)) for v in volume.spacing[:3])
    n_slices, height, width = volume.array.shape
    notes = []
    if n_slices > 1 and sz < 0.8 * max(sx, sy):
        notes.append(f"{volume.name}: its slices (3rd axis, {sz:g} mm apart) are closer than its in-plane pixels "
                     f"({sx:g} x {sy:g} mm); the model segments the planes of the first two axes, so a stack stored "
                     "with its slices along another axis must be reoriented first")
    fov_x, fov_y = width * sx, height * sy
    if min(fov_x, fov_y) < MIN_FIELD_OF_VIEW_MM:
        notes.append(f"{volume.name}: in-plane field of view {fov_x:.0f} x {fov_y:.0f} mm; the model was trained on "
                     f"about 262 mm around the heart, so a field under {MIN_FIELD_OF_VIEW_MM:.0f} mm is likely "
                     "segmented poorly or not at all")
    return notes


def prepare_scan(volume: Volume, spacing_mm: float | None = None) -> PreparedScan:
    """Normalise, resample in-plane and crop/pad a 3D ``volume`` (see the module docstring).

    Args:
        volume: ``(Z, H, W)`` image with its geometry.
        spacing_mm: in-plane grid of the model (None: the preprocessing's 1.36719 mm, crop 192 × 192); another grid
            gets the crop that covers the same field of view (:func:`field_of_view_crop`).
    """
    if volume.ndim != 3:
        raise ValueError(f"{volume.name}: prepare_scan expects a 3D volume, got shape {volume.array.shape}")
    check_image_volume(volume, RAW_SCAN)  # the one plausibility rule of a raw scan (unit errors, scl_slope, constant)
    for note in layout_warnings(volume):
        logger.warning(note)
    normalized = volume.with_array(normalize_percentile(volume.array))  # the converters' preprocessing
    spacing = TARGET_SPACING_XY if spacing_mm is None else (float(spacing_mm), float(spacing_mm))
    crop = CROP_SIZE if spacing_mm is None else field_of_view_crop(float(spacing_mm))
    # no-op within 1e-4 mm; the filter follows the grid as for the model's training data: the preprocessing grid as
    # the converters reach it, any other grid anti-aliased as a data.new_spacing training and the experiment's copy
    grid = resample_to_grid(normalized, spacing, is_label=False)
    image, info = crop_or_pad(grid.array.astype(np.float32), crop)  # (Z, 192, 192) at 1.36719 mm
    return PreparedScan(torch.from_numpy(np.ascontiguousarray(image))[:, None], info, tuple(grid.spacing), volume)


def segment_volume(
    model: Any,
    volume: Volume,
    n_iter: int = 2,
    batch_slices: int = 10,
    device: torch.device | None = None,
    label_convention: str = "medseg",
    spacing_mm: float | None = None,
) -> np.ndarray:
    """Segment a 3D volume and return a uint8 label map with exactly ``volume.array.shape``.

    Args:
        model: loaded model (``predict(x, softmax=False, n_iter)``).
        volume: ``(Z, H, W)`` image with its geometry.
        n_iter: 1 = FTN, 2 = FTN + STN.
        batch_slices: slices per forward pass.
        device: model device.
        label_convention: ``medseg``/``mnms`` (1 LV, 2 MYO, 3 RV) or ``acdc_raw`` (1 RV, 2 MYO, 3 LV).
        spacing_mm: in-plane grid the model was trained on (None: 1.36719 mm; see
            :func:`medseg.evaluation.inference.checkpoint_spacing`).

    Returns:
        ``(Z, H, W)`` uint8 labels on the input grid.
    """
    if label_convention not in LABEL_CONVENTIONS:
        raise ValueError(f"label_convention must be one of {sorted(LABEL_CONVENTIONS)}, got {label_convention!r}")
    prepared = prepare_scan(volume, spacing_mm)
    pred = predict_stack(model, prepared.image, n_iter=n_iter, batch_slices=batch_slices, device=device)
    labels = to_reference_grid(pred, prepared.crop_info, volume, prepared.grid_spacing)
    return LABEL_CONVENTIONS[label_convention][labels]
