"""2D augmentation policies of the published training pipeline, written with numpy/scipy/torch only.

A transform is called as ``T(image, label, rng)`` with ``image`` H×W×1 float32, ``label`` H×W×1 uint8 and a
``numpy.random.Generator``; it returns ``(image 1×h×w float32 tensor, label 1×h×w int64 tensor)``. All randomness
comes from ``rng``, so a seeded generator gives a reproducible sample.

Training pipeline, in the order of the original (``ACDC_affine_elastic_intensity``):

1. pad H and W up to ``pad_size`` (224) as ``np.pad(mode='minimum')`` (each padded value is the minimum of its own
   column / row; labels with 0), before = ceil(diff/2); no crop if larger;
2. flip left-right, then up-down, each with p 0.2;
3. contrast/brightness (p 0.5): ``clip(x·s + b, min x, max x)``, s ~ U(0.8, 1.2), b ~ U(−0.1, 0.1);
4. affine (rotation ±15°, shift ±10 % of the size, zoom U(0.8, 1.1) per axis) and
5. rotation by a uniformly chosen multiple of 45°, both as centred pull maps with border clamp, image bilinear
   (coordinates clamped to [0, size − 2] as in torchsample), label nearest (round half to even);
6. elastic deformation (p 0.5): α = H·U(1.5, 2), σ = H·U(0.1, 0.2)·3/4, image cubic 'reflect', label per-class
   cubic warps thresholded at 0.5 (ascending classes overwrite);
7. centre crop to ``crop_size`` (192) at offset ceil((H − 192)/2);
8. min–max of the image to [0, 1].

``ACDC_affine_elastic_intensity_compression`` adds a 9th step (p 0.5), a contrast compression that the final
min–max cannot undo: ``x → (1 − c)·x + c·g``, c ~ U(0, 0.6), g ~ U(0.25, 0.75). It is drawn only by that policy, so
the random stream of the published policies is unchanged.

Implementation (same semantics as the published transforms; docs/HISTORY.md says where and why the pixels differ):

* steps 4 and 5 are one composed pull map ``A_affine · A_rot``, resampled once, and only on the pixels that survive
  the final centre crop (the crop is a pure index window);
* the label warp skips class 0 (the result starts at 0) and evaluates each class's cubic spline only within
  :data:`LABEL_WARP_MARGIN` pixels of that class's bounding box (farther away a binary map's interpolant stays far
  below 0.5), prefiltering only the rows and columns the interpolation reads;
* the elastic Gaussian smoothing (σ ≈ 17–34 px) is a zero-padded FFT convolution;
* ``no_aug`` training uses the validate transform.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.fft
import torch
from scipy import ndimage

from medseg.data.intensity import NORMALIZE_EPS, minmax_normalize  # noqa: F401 (re-exported)

Transform = Callable[[np.ndarray, np.ndarray, "np.random.Generator | None"], tuple[torch.Tensor, torch.Tensor]]

LABEL_WARP_MARGIN = 4  # pixels around a class's bounding box where its cubic interpolant can reach 0.5


@dataclass(frozen=True)
class AugmentationPolicy:
    """Probabilities and ranges of one augmentation policy.

    Attributes:
        flip_prob: probability of each of the two flips (left-right, up-down).
        intensity_prob: probability of the contrast/brightness change.
        contrast_range: contrast factor range.
        brightness_range: additive brightness range.
        rotation_degrees: affine rotation drawn from U(−r, r) degrees.
        shift_fraction: translation drawn from U(−f, f) times the current size, per axis.
        zoom_range: sampling zoom per axis (z < 1 magnifies).
        rotate_group_degrees: step of the extra rotation (0 disables it); angles ``k·step`` for ``k·step < 360``.
        elastic_prob: probability of the elastic deformation.
        elastic_alpha_range: α as a multiple of H.
        elastic_sigma_range: σ as a multiple of H (then times 3/4).
        compression_prob: probability of the contrast compression after the final min–max (not in the original).
        compression_range: compression strength c (0 = none, 1 = a constant image).
        compression_level_range: grey level g the intensities are compressed toward.
    """

    flip_prob: float = 0.0
    intensity_prob: float = 0.0
    contrast_range: tuple[float, float] = (0.8, 1.2)
    brightness_range: tuple[float, float] = (-0.1, 0.1)
    rotation_degrees: float = 0.0
    shift_fraction: float = 0.0
    zoom_range: tuple[float, float] = (1.0, 1.0)
    rotate_group_degrees: float = 0.0
    elastic_prob: float = 0.0
    elastic_alpha_range: tuple[float, float] = (1.5, 2.0)
    elastic_sigma_range: tuple[float, float] = (0.1, 0.2)
    compression_prob: float = 0.0
    compression_range: tuple[float, float] = (0.0, 0.6)
    compression_level_range: tuple[float, float] = (0.25, 0.75)

    @property
    def has_affine(self) -> bool:
        return self.rotation_degrees != 0 or self.shift_fraction != 0 or self.zoom_range != (1.0, 1.0)

    @property
    def is_identity(self) -> bool:
        return (
            self.flip_prob == 0
            and self.intensity_prob == 0
            and not self.has_affine
            and self.rotate_group_degrees == 0
            and self.elastic_prob == 0
            and self.compression_prob == 0
        )


_ACDC_AFFINE = AugmentationPolicy(
    flip_prob=0.2, rotation_degrees=15.0, shift_fraction=0.1, zoom_range=(0.8, 1.1), rotate_group_degrees=45.0
)
POLICIES: dict[str, AugmentationPolicy] = {
    "no_aug": AugmentationPolicy(),
    "ACDC_affine": _ACDC_AFFINE,
    "ACDC_affine_elastic": AugmentationPolicy(**{**_ACDC_AFFINE.__dict__, "elastic_prob": 0.5}),
    "ACDC_affine_intensity": AugmentationPolicy(**{**_ACDC_AFFINE.__dict__, "intensity_prob": 0.5}),
    "ACDC_affine_elastic_intensity": AugmentationPolicy(
        **{**_ACDC_AFFINE.__dict__, "intensity_prob": 0.5, "elastic_prob": 0.5}
    ),
    # not in the original: the published policy + a contrast compression after the min–max (module docstring)
    "ACDC_affine_elastic_intensity_compression": AugmentationPolicy(
        **{**_ACDC_AFFINE.__dict__, "intensity_prob": 0.5, "elastic_prob": 0.5, "compression_prob": 0.5}
    ),
}


# ----------------------------------------------------------------------------------------------------------- helpers
def pad_to_min_size(array: np.ndarray, target_hw: tuple[int, int], fill: str | float = "minimum") -> np.ndarray:
    """Pad the first two axes of ``array (H, W[, ...])`` up to ``target_hw``.

    Before-pad is ``ceil(diff / 2)``, after-pad ``floor(diff / 2)``; axes already at least as large are unchanged.

    Args:
        array: ``(H, W[, ...])``.
        target_hw: minimum ``(H, W)``.
        fill: ``'minimum'``: ``np.pad(mode='minimum')``, as the published PadNumpy: rows added above and
            below take the minimum of their column, columns added left and right the minimum of their row (of the
            row-padded array, so corners take their row's minimum); a number: that constant (0 for labels).
    """
    pads = []
    for size, target in zip(array.shape[:2], target_hw):
        diff = max(target - size, 0)
        pads.append((diff - diff // 2, diff // 2))
    if not any(before or after for before, after in pads):
        return array
    pads += [(0, 0)] * (array.ndim - 2)
    if fill == "minimum":
        return np.pad(array, pads, mode="minimum")
    return np.pad(array, pads, mode="constant", constant_values=fill)


def centre_crop_window(size: int, target: int) -> int:
    """Start index of the training/validation centre crop: ``ceil((size - target) / 2)``."""
    if size < target:
        raise ValueError(f"cannot centre-crop an axis of size {size} to {target}")
    return (size - target + 1) // 2


def rotation_matrix(degrees: float) -> np.ndarray:
    """3×3 rotation ``[[cos, −sin, 0], [sin, cos, 0], [0, 0, 1]]`` in (row, col) coordinates."""
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def affine_matrix(
    theta_deg: float, shift_rows: float, shift_cols: float, zoom_rows: float, zoom_cols: float
) -> np.ndarray:
    """Composite pull matrix ``R · T · S · Z`` of the torchsample affine (shear 0, so S = I)."""
    translation = np.array([[1.0, 0.0, shift_rows], [0.0, 1.0, shift_cols], [0.0, 0.0, 1.0]])
    zoom = np.diag([zoom_rows, zoom_cols, 1.0])
    return rotation_matrix(theta_deg) @ translation @ zoom


def pull_coordinates(matrix: np.ndarray, shape: tuple[int, int], rows: slice, cols: slice) -> np.ndarray:
    """Source coordinates ``M[:2,:2]·(dst − c) + M[:2,2] + c`` for the destination window ``rows × cols``.

    Args:
        matrix: 3×3 pull matrix in (row, col) coordinates.
        shape: ``(H, W)`` of the source (= destination) grid; ``c = (H/2 − 0.5, W/2 − 0.5)``.
        rows, cols: destination window.

    Returns:
        ``(2, h, w)`` float64 source (row, col) positions.
    """
    centre = np.array([shape[0] / 2 - 0.5, shape[1] / 2 - 0.5])
    r = np.arange(rows.start, rows.stop, dtype=np.float64) - centre[0]
    c = np.arange(cols.start, cols.stop, dtype=np.float64) - centre[1]
    src_r = matrix[0, 0] * r[:, None] + matrix[0, 1] * c[None, :] + (matrix[0, 2] + centre[0])
    src_c = matrix[1, 0] * r[:, None] + matrix[1, 1] * c[None, :] + (matrix[1, 2] + centre[1])
    return np.stack([src_r, src_c])


def sample_bilinear_clamped(image: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Bilinear sampling with the torchsample border rule (coordinates clamped to [0, size − 2]).

    Args:
        image: ``(H, W)`` float.
        coords: ``(2, ...)`` source (row, col) positions.
    """
    clamped = np.empty_like(coords)
    np.clip(coords[0], 0, image.shape[0] - 2, out=clamped[0])
    np.clip(coords[1], 0, image.shape[1] - 2, out=clamped[1])
    return ndimage.map_coordinates(image, clamped, order=1, mode="nearest", prefilter=False).astype(np.float32)


def sample_nearest_clamped(label: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Nearest-neighbour sampling (round half to even) with border clamp. ``label (H, W)``, ``coords (2, ...)``."""
    r = np.clip(np.rint(coords[0]), 0, label.shape[0] - 1).astype(np.intp)
    c = np.clip(np.rint(coords[1]), 0, label.shape[1] - 1).astype(np.intp)
    return label[r, c]


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """Normalised Gaussian weights of radius ``int(truncate * sigma + 0.5)`` (those of ``ndimage.gaussian_filter``)."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 / (float(sigma) * float(sigma)) * x * x)
    return weights / weights.sum()


def gaussian_filter_zero_border(field: np.ndarray, sigma: float) -> np.ndarray:
    """``ndimage.gaussian_filter(field, sigma, mode='constant', cval=0)`` for a 2-D field, computed with FFTs.

    The elastic σ is 10–20 % of the image size, so the direct filter costs ~2·(8σ + 1) products per pixel and axis;
    a zero-padded FFT convolution per axis gives the same linear convolution (up to floating-point rounding, about
    1e-16 relative) at a fraction of the cost.

    Args:
        field: ``(H, W)`` float array.
        sigma: standard deviation in pixels (both axes).
    """
    kernel = gaussian_kernel1d(sigma)
    radius = kernel.size // 2
    out = np.asarray(field, dtype=np.float64)
    for axis in (0, 1):
        size = out.shape[axis]
        n = scipy.fft.next_fast_len(size + kernel.size - 1, real=True)
        spectrum = scipy.fft.rfft(out, n, axis=axis) * scipy.fft.rfft(kernel, n)[:, None].swapaxes(0, axis)
        full = scipy.fft.irfft(spectrum, n, axis=axis)  # the linear convolution, 'full' length size + 2·radius
        out = np.take(full, np.arange(radius, radius + size), axis=axis)
    return out


def elastic_displacement(
    shape: tuple[int, int], alpha: float, sigma: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed random displacements ``(dy, dx)``, each ``(H, W)``: U(−1, 1) noise, Gaussian σ (zero border), ×α."""
    dx = gaussian_filter_zero_border(rng.uniform(-1.0, 1.0, size=shape), sigma) * alpha
    dy = gaussian_filter_zero_border(rng.uniform(-1.0, 1.0, size=shape), sigma) * alpha
    return dy, dx


def _class_spline_coefficients(mask: np.ndarray, cols: slice, rows: slice) -> np.ndarray:
    """Rows ``rows`` of ``ndimage.spline_filter(mask, order=3, mode='nearest')`` for a mask that is zero outside the
    columns ``cols``; bit-identical to slicing the full filter.

    ``spline_filter`` filters every line of axis 0, then every line of axis 1, each line independently. A line of
    zeros stays exactly zero, so the first pass only needs the columns holding the class and the second pass only the
    rows that the interpolation will read.
    """
    first = np.zeros(mask.shape, dtype=np.float64)
    first[:, cols] = ndimage.spline_filter1d(mask[:, cols].astype(np.float64), order=3, axis=0, mode="nearest")
    return ndimage.spline_filter1d(first[rows], order=3, axis=1, mode="nearest")


def warp_label_per_class(label: np.ndarray, coords: np.ndarray, margin: int = LABEL_WARP_MARGIN) -> np.ndarray:
    """Warp a label map by cubic interpolation of each binary class map, thresholded at 0.5.

    Classes are processed in ascending order and later classes overwrite earlier ones; the output starts at 0.

    Args:
        label: ``(H, W)`` integer label map.
        coords: ``(2, h, w)`` source (row, col) positions.
        margin: bounding-box margin (pixels) outside which a class cannot reach 0.5 (unbounded on a side where the
            class touches the image border, which the 'nearest' mode replicates).

    Returns:
        ``(h, w)`` warped labels, same dtype as ``label``.
    """
    out = np.zeros(coords.shape[1:], dtype=label.dtype)
    for value in np.unique(label):
        if value == 0:
            continue
        mask = label == value
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        # 'nearest' replicates the border, so a class touching it extends without bound beyond that side
        low = [-np.inf if first == 0 else first - margin for first in (rows[0], cols[0])]
        high = [np.inf if last == size - 1 else last + margin for last, size in zip((rows[-1], cols[-1]), label.shape)]
        near = (coords[0] >= low[0]) & (coords[0] <= high[0]) & (coords[1] >= low[1]) & (coords[1] <= high[1])
        if not near.any():
            continue
        points = coords[:, near]  # (2, n)
        # a cubic spline at row r reads the coefficient rows floor(r) - 1 .. floor(r) + 2 (clamped to the image)
        top = int(np.clip(np.floor(points[0].min()) - 1, 0, label.shape[0] - 1))
        bottom = int(np.clip(np.floor(points[0].max()) + 2, 0, label.shape[0] - 1))
        coefficients = _class_spline_coefficients(mask, slice(cols[0], cols[-1] + 1), slice(top, bottom + 1))
        points[0] -= top  # exact: subtracting a smaller integer from a float64 position
        values = ndimage.map_coordinates(coefficients, points, order=3, mode="nearest", prefilter=False)
        hit = np.zeros(coords.shape[1:], dtype=bool)
        hit[near] = values >= 0.5
        out[hit] = value
    return out


def _check_inputs(image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if image.ndim != 3 or image.shape[2] != 1:
        raise ValueError(f"transform expects an image of shape (H, W, 1), got {image.shape}")
    if label.shape != image.shape:
        raise ValueError(f"transform expects a label of the image's shape {image.shape}, got {label.shape}")
    return image[:, :, 0].astype(np.float32, copy=False), label[:, :, 0]


def _to_tensors(image: np.ndarray, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    image_t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).unsqueeze(0)  # (1, h, w)
    label_t = torch.from_numpy(np.ascontiguousarray(label).astype(np.int64)).unsqueeze(0)  # (1, h, w)
    return image_t, label_t


# -------------------------------------------------------------------------------------------------------- transforms
class ValidateTransform:
    """Pad to ``pad_size`` with the minimum → centre crop ``crop_size`` → per-slice min–max to [0, 1]."""

    def __init__(self, pad_hw: tuple[int, int] = (224, 224), crop_hw: tuple[int, int] = (192, 192)) -> None:
        self.pad_hw = tuple(pad_hw)
        self.crop_hw = tuple(crop_hw)

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: image ``(H, W, 1)`` float32, label ``(H, W, 1)`` uint8. Returns ``(1, h, w)`` float32 / int64."""
        img, lab = _check_inputs(image, label)
        img, lab = pad_to_min_size(img, self.pad_hw), pad_to_min_size(lab, self.pad_hw, fill=0)
        r0 = centre_crop_window(img.shape[0], self.crop_hw[0])
        c0 = centre_crop_window(img.shape[1], self.crop_hw[1])
        window = (slice(r0, r0 + self.crop_hw[0]), slice(c0, c0 + self.crop_hw[1]))
        return _to_tensors(minmax_normalize(img[window]), lab[window])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(pad_hw={self.pad_hw}, crop_hw={self.crop_hw})"


class TrainTransform:
    """The published random training pipeline for one :class:`AugmentationPolicy`."""

    def __init__(
        self,
        policy: AugmentationPolicy,
        pad_hw: tuple[int, int] = (224, 224),
        crop_hw: tuple[int, int] = (192, 192),
    ) -> None:
        self.policy = policy
        self.pad_hw = tuple(pad_hw)
        self.crop_hw = tuple(crop_hw)
        self._validate = ValidateTransform(pad_hw, crop_hw)

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment one slice.

        Args:
            image: ``(H, W, 1)`` float32.
            label: ``(H, W, 1)`` uint8 (or any integer type).
            rng: source of all randomness (a fresh entropy-seeded generator if ``None``).

        Returns:
            ``(image (1, h, w) float32 in [0, 1], label (1, h, w) int64)``.
        """
        if self.policy.is_identity:
            return self._validate(image, label)
        rng = np.random.default_rng() if rng is None else rng
        p = self.policy
        img, lab = _check_inputs(image, label)
        img, lab = pad_to_min_size(img, self.pad_hw), pad_to_min_size(lab, self.pad_hw, fill=0)
        height, width = img.shape

        # flips: left-right (W), then up-down (H)
        if rng.random() < p.flip_prob:
            img, lab = img[:, ::-1], lab[:, ::-1]
        if rng.random() < p.flip_prob:
            img, lab = img[::-1, :], lab[::-1, :]
        img, lab = np.ascontiguousarray(img), np.ascontiguousarray(lab)

        if rng.random() < p.intensity_prob:
            scale = rng.uniform(*p.contrast_range)
            shift = rng.uniform(*p.brightness_range)
            img = np.clip(img * scale + shift, img.min(), img.max()).astype(np.float32)

        # affine ∘ 45°-rotation as one pull map
        matrix = np.eye(3)
        if p.has_affine:
            theta = rng.uniform(-p.rotation_degrees, p.rotation_degrees)
            shift_rows = rng.uniform(-p.shift_fraction, p.shift_fraction) * height
            shift_cols = rng.uniform(-p.shift_fraction, p.shift_fraction) * width
            zoom_rows = rng.uniform(*p.zoom_range)
            zoom_cols = rng.uniform(*p.zoom_range)
            matrix = affine_matrix(theta, shift_rows, shift_cols, zoom_rows, zoom_cols)
        if p.rotate_group_degrees > 0:
            angles = np.arange(0.0, 360.0, p.rotate_group_degrees)
            matrix = matrix @ rotation_matrix(float(angles[rng.integers(len(angles))]))

        r0 = centre_crop_window(height, self.crop_hw[0])
        c0 = centre_crop_window(width, self.crop_hw[1])
        crop = (slice(r0, r0 + self.crop_hw[0]), slice(c0, c0 + self.crop_hw[1]))
        geometric = not np.allclose(matrix, np.eye(3), rtol=0, atol=1e-12)
        elastic = rng.random() < p.elastic_prob

        if elastic:
            alpha = height * rng.uniform(*p.elastic_alpha_range)
            sigma = height * rng.uniform(*p.elastic_sigma_range) * 0.75
            if geometric:  # the elastic step may pull from anywhere, so resample the whole grid first
                full = pull_coordinates(matrix, (height, width), slice(0, height), slice(0, width))
                img, lab = sample_bilinear_clamped(img, full), sample_nearest_clamped(lab, full)
            dy, dx = elastic_displacement((height, width), alpha, sigma, rng)
            rows = np.arange(crop[0].start, crop[0].stop, dtype=np.float64)[:, None]
            cols = np.arange(crop[1].start, crop[1].stop, dtype=np.float64)[None, :]
            coords = np.stack(np.broadcast_arrays(rows + dy[crop], cols + dx[crop]))  # (2, h, w)
            out_img = ndimage.map_coordinates(img, coords, order=3, mode="reflect").astype(np.float32)
            out_lab = warp_label_per_class(lab, coords)
        elif geometric:
            coords = pull_coordinates(matrix, (height, width), crop[0], crop[1])
            out_img, out_lab = sample_bilinear_clamped(img, coords), sample_nearest_clamped(lab, coords)
        else:
            out_img, out_lab = img[crop], lab[crop]
        out_img = minmax_normalize(out_img)
        if p.compression_prob > 0 and rng.random() < p.compression_prob:  # no draw for the published policies
            strength = rng.uniform(*p.compression_range)
            level = rng.uniform(*p.compression_level_range)
            out_img = ((1.0 - strength) * out_img + strength * level).astype(np.float32)
        return _to_tensors(out_img, out_lab)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.policy}, pad_hw={self.pad_hw}, crop_hw={self.crop_hw})"


class Transformations:
    """Named augmentation policies → ``{'train': transform, 'validate': transform}``.

    Args:
        data_aug_policy_name: one of :data:`POLICIES`.
        pad_size: ``(H, W, 1)`` size that slices are padded up to before augmentation (published default 80; the
            ACDC configs use 224).
        crop_size: ``(h, w, 1)`` output size; h and w must be multiples of 16 (the networks downsample 4 times);
            published default 80, the ACDC configs use 192.

    Raises:
        ValueError: unknown policy (the message lists the valid names) or invalid sizes.
    """

    def __init__(
        self,
        data_aug_policy_name: str,
        pad_size: tuple[int, ...] = (80, 80, 1),
        crop_size: tuple[int, ...] = (80, 80, 1),
    ) -> None:
        if data_aug_policy_name not in POLICIES:
            raise ValueError(f"unknown data_aug_policy_name {data_aug_policy_name!r}; valid names: {sorted(POLICIES)}")
        pad_hw, crop_hw = self._hw(pad_size, "pad_size"), self._hw(crop_size, "crop_size")
        if any(c % 16 for c in crop_hw):
            raise ValueError(f"crop_size must be multiples of 16 in H and W (the networks need it), got {crop_size}")
        if any(p < c for p, c in zip(pad_hw, crop_hw)):
            raise ValueError(f"pad_size {pad_size} must be at least crop_size {crop_size} in H and W")
        self.name = data_aug_policy_name
        self.policy = POLICIES[data_aug_policy_name]
        self.pad_hw, self.crop_hw = pad_hw, crop_hw

    @staticmethod
    def _hw(size: tuple[int, ...], name: str) -> tuple[int, int]:
        if len(size) not in (2, 3) or any(int(s) != s or s < 1 for s in size) or (len(size) == 3 and size[2] != 1):
            raise ValueError(f"{name} must be (H, W) or (H, W, 1) positive integers, got {size}")
        return int(size[0]), int(size[1])

    def get_transformation(self) -> dict[str, Transform]:
        """Return ``{'train': TrainTransform, 'validate': ValidateTransform}``."""
        return {
            "train": TrainTransform(self.policy, self.pad_hw, self.crop_hw),
            "validate": ValidateTransform(self.pad_hw, self.crop_hw),
        }
