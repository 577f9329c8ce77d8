"""Centre crop / zero pad of the in-plane axes and its exact inverse.

The published test protocol brings every slice to 192×192: an axis longer than the target is cropped starting at
``floor((size - target) / 2)``; a shorter one is zero-padded with the data placed at ``ceil((target - size) / 2)``.
:func:`recover_image` maps a cropped/padded array (e.g. a prediction) back onto the original grid, filling what the
crop removed with ``fill``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AxisCrop:
    """Where one axis of the original array lands in the cropped/padded one."""

    original_size: int
    target_size: int
    src_start: int  # first index taken from the original
    dst_start: int  # where it goes in the output
    length: int  # number of indices copied


@dataclass(frozen=True)
class CropInfo:
    """Crop/pad bookkeeping for the last two axes (H, W)."""

    rows: AxisCrop
    cols: AxisCrop

    @property
    def original_hw(self) -> tuple[int, int]:
        return self.rows.original_size, self.cols.original_size

    @property
    def target_hw(self) -> tuple[int, int]:
        return self.rows.target_size, self.cols.target_size


def axis_crop(size: int, target: int) -> AxisCrop:
    """Offsets for bringing an axis of ``size`` to ``target`` (crop at floor offset, pad at ceil offset)."""
    if size < 1 or target < 1:
        raise ValueError(f"sizes must be positive, got size={size}, target={target}")
    if size >= target:
        return AxisCrop(size, target, src_start=(size - target) // 2, dst_start=0, length=target)
    return AxisCrop(size, target, src_start=0, dst_start=-((size - target) // 2), length=size)


def crop_or_pad(array: np.ndarray, target_hw: tuple[int, int] = (192, 192), fill: float = 0) -> tuple[np.ndarray, CropInfo]:
    """Centre-crop or pad the last two axes of ``array`` to ``target_hw``.

    Args:
        array: ``(..., H, W)``.
        target_hw: output in-plane size.
        fill: value for padded voxels (0 as in the published protocol).

    Returns:
        ``(output (..., th, tw), info)``; always two values, whatever the input size (the published one returned six
        unless the input already had the crop size).
    """
    if array.ndim < 2:
        raise ValueError(f"crop_or_pad expects an array (..., H, W), got shape {array.shape}")
    info = CropInfo(axis_crop(array.shape[-2], target_hw[0]), axis_crop(array.shape[-1], target_hw[1]))
    out = np.full(array.shape[:-2] + tuple(target_hw), fill, dtype=array.dtype)
    r, c = info.rows, info.cols
    out[..., r.dst_start : r.dst_start + r.length, c.dst_start : c.dst_start + c.length] = array[
        ..., r.src_start : r.src_start + r.length, c.src_start : c.src_start + c.length
    ]
    return out, info


def recover_image(array: np.ndarray, info: CropInfo, fill: float = 0) -> np.ndarray:
    """Inverse of :func:`crop_or_pad`: place ``array (..., th, tw)`` back on the original ``(..., H, W)`` grid."""
    if tuple(array.shape[-2:]) != info.target_hw:
        raise ValueError(f"recover_image expects (..., {info.target_hw[0]}, {info.target_hw[1]}), got {array.shape}")
    out = np.full(array.shape[:-2] + info.original_hw, fill, dtype=array.dtype)
    r, c = info.rows, info.cols
    out[..., r.src_start : r.src_start + r.length, c.src_start : c.src_start + c.length] = array[
        ..., r.dst_start : r.dst_start + r.length, c.dst_start : c.dst_start + c.length
    ]
    return out
