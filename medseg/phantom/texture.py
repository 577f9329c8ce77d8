"""Random fields for the synthetic phantom: multi-scale tissue texture and random angular (periodic) profiles.

Everything here is a pure function of a :class:`numpy.random.Generator`, so a subject's draws stay reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.fft

#: Angular resolution of every outline profile (bins over ``[-pi, pi)``).
N_ANGLES = 360
ANGLES = (np.arange(N_ANGLES, dtype=np.float32) + 0.5) * np.float32(2 * math.pi / N_ANGLES) - np.float32(math.pi)


def texture_pair(
    rng: np.random.Generator, shape_hw: tuple[int, int], spacing: float,
    scales_mm: Sequence[float] = (1.5, 4.0, 10.0, 20.0), weights: Sequence[float] = (0.7, 0.45, 0.45, 0.5),
) -> np.ndarray:
    """Two independent zero-mean, unit-variance multi-scale Gaussian random fields ``(2, H, W)`` float32.

    White complex noise is low-pass filtered in k-space by a sum of Gaussians (one per scale, ``scales_mm`` being the
    correlation lengths); the real and imaginary parts of the result are independent real fields.

    Args:
        rng: random generator.
        shape_hw: field size ``(H, W)``.
        spacing: pixel size in mm.
        scales_mm: correlation lengths (2–20 mm gives the organ texture of cine images).
        weights: relative standard deviation of each scale.
    """
    h, w = shape_hw
    noise = rng.standard_normal((2, h, w), dtype=np.float32)
    spectrum = scipy.fft.fft2(noise[0] + 1j * noise[1], workers=1)
    ky = scipy.fft.fftfreq(h, d=spacing).astype(np.float32)[:, None]
    kx = scipy.fft.fftfreq(w, d=spacing).astype(np.float32)[None, :]
    k2 = ky * ky + kx * kx
    filt = np.zeros((h, w), dtype=np.float32)
    for scale, weight in zip(scales_mm, weights):
        # Gaussian correlation of length ``scale``; its spectrum's amplitude ~ scale (keeps each scale's variance).
        filt += np.float32(weight * scale) * np.exp(np.float32(-2.0 * math.pi**2 * scale**2) * k2)
    field = scipy.fft.ifft2(spectrum * filt, workers=1)
    out = np.stack([field.real, field.imag]).astype(np.float32)
    out -= out.mean(axis=(1, 2), keepdims=True)
    out /= np.maximum(out.std(axis=(1, 2), keepdims=True), 1e-6)
    return out


def harmonic_profile(rng: np.random.Generator, orders: Sequence[int], amplitude: float) -> np.ndarray:
    """A smooth random periodic function on :data:`ANGLES` ``(N_ANGLES,)``: sum of cosines of the given orders.

    Amplitudes decay with the order; ``amplitude`` is the largest excursion (the sum of the order amplitudes).
    """
    orders = np.asarray(orders, dtype=np.float32)
    amps = rng.uniform(0.3, 1.0, orders.size).astype(np.float32) / orders
    amps *= np.float32(amplitude) / amps.sum()
    phases = rng.uniform(0.0, 2 * math.pi, orders.size).astype(np.float32)
    return (amps[:, None] * np.cos(orders[:, None] * ANGLES[None, :] + phases[:, None])).sum(axis=0)


def wrap_angle(angle: np.ndarray | float) -> np.ndarray | float:
    """Angle difference wrapped to ``[-pi, pi)``."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


def bump_profile(centres: np.ndarray, half_widths: np.ndarray, heights: np.ndarray, power: float = 2.0
                 ) -> np.ndarray:
    """Sum of smooth bumps ``(N_ANGLES,)``: ``heights[k] * (1 - (d / half_widths[k])**2)**power`` within the
    half-width (``power`` 1 gives broad-based, tapering fingers).

    Args:
        centres, half_widths, heights: ``(K,)`` bump centres (rad), half-widths (rad) and heights.
    """
    if centres.size == 0:
        return np.zeros(N_ANGLES, dtype=np.float32)
    d = wrap_angle(ANGLES[None, :] - centres[:, None].astype(np.float32)) / half_widths[:, None].astype(np.float32)
    bumps = np.clip(1.0 - d * d, 0.0, None) ** power
    return (heights[:, None].astype(np.float32) * bumps).sum(axis=0).astype(np.float32)


def sector_profile(centre: float, half_width: float, edge: float = 0.25) -> np.ndarray:
    """1 inside an angular sector, 0 outside, with raised-cosine edges of ``edge`` rad ``(N_ANGLES,)``."""
    d = np.abs(wrap_angle(ANGLES - np.float32(centre)))
    t = np.clip((d - (half_width - edge)) / max(edge, 1e-6), 0.0, 1.0)
    return (0.5 + 0.5 * np.cos(math.pi * t)).astype(np.float32)


def angle_index(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Index into :data:`ANGLES` of the direction of ``(dx, dy)`` (same shape, intp)."""
    phi = np.arctan2(dy, dx)
    idx = ((phi + np.float32(math.pi)) * np.float32(N_ANGLES / (2 * math.pi))).astype(np.intp)
    return np.minimum(idx, N_ANGLES - 1)
