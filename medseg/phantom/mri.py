"""bSSFP cine acquisition of the synthetic phantom: coil shading, off-resonance banding, k-space truncation and
filtering (Gibbs ringing, lower resolution along phase encoding), breathing ghosts, parallel-imaging noise, magnitude
reconstruction and the scanner's stored-intensity curve.

The object is a signed real signal (fat negative: out of phase with water at the echo time), so blurring a fat–water
boundary through zero gives the dark boundary line of bSSFP images. All k-space work uses :mod:`scipy.fft` on
float32 stacks of slices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft

from medseg.phantom.appearance import SiteStyle


@dataclass(frozen=True)
class Acquisition:
    """Scanner settings of one subject (drawn from a :class:`SiteStyle`)."""

    field_strength: float
    pe_axis: int  # 0: phase encoding along the image rows (vertical), 1: along the columns
    phase_res: float  # acquired fraction of k-space along phase encoding
    read_res: float
    window: float  # k-space filter strength, 0 (none) .. 1 (Hann)
    sharpen: float
    noise: float  # noise sigma relative to blood (before the g-factor)
    acceleration: int
    g_strength: float
    bias: float
    banding: float  # off-resonance at the FOV corner, in band periods
    ghost: float  # breathing-ghost amplitude (0 = none)
    ghost_period: float  # k-space lines per breathing cycle (ghost offset = lines / period)
    coefficients: np.ndarray  # (12,) random shape parameters of the coil, g-factor and off-resonance maps


def sample_acquisition(style: SiteStyle, field_strength: float, rng: np.random.Generator) -> Acquisition:
    """Draw the scanner settings of one subject (3 T: more banding, less noise)."""
    u = rng.uniform
    strong = field_strength > 2.0
    banding = u(*style.banding) * (1.6 if strong and style.p_3t < 1.0 else 1.0)
    return Acquisition(
        field_strength=field_strength,
        pe_axis=0 if rng.random() < style.p_pe_rows else 1,
        phase_res=u(*style.phase_res),
        read_res=u(*style.read_res),
        window=u(*style.window),
        sharpen=u(*style.sharpen),
        noise=u(*style.noise) * (0.75 if strong else 1.0),
        acceleration=int(rng.choice(style.acceleration)),
        g_strength=u(*style.g_strength),
        bias=u(*style.bias),
        banding=banding,
        ghost=u(0.04, 0.14) if rng.random() < style.p_ghost else 0.0,
        ghost_period=u(3.0, 6.0),
        coefficients=rng.normal(0.0, 1.0, 12),
    )


def _frequencies(shape_hw: tuple[int, int], acq: Acquisition, half: bool) -> tuple[np.ndarray, np.ndarray]:
    """Normalised k-space coordinates (cycles / pixel, |k| <= 0.5) along phase encoding and readout."""
    h, w = shape_hw
    ky = scipy.fft.fftfreq(h).astype(np.float32)[:, None]
    kx = (scipy.fft.rfftfreq(w) if half else scipy.fft.fftfreq(w)).astype(np.float32)[None, :]
    return (ky, kx) if acq.pe_axis == 0 else (kx, ky)


def kspace_filter(shape_hw: tuple[int, int], acq: Acquisition, half: bool = True) -> np.ndarray:
    """Acquisition × reconstruction filter on the k-space grid (``rfft2`` layout if ``half``), float32.

    A hard truncation to the acquired fraction along each axis (ringing), a raised-cosine window of strength
    ``window``, an edge-enhancing high-frequency lift ``sharpen`` and the amplitude modulation of the phase-encoding
    lines by breathing (ghosts at ``lines / ghost_period`` pixels).
    """
    k_pe, k_ro = _frequencies(shape_hw, acq, half)
    lim_pe, lim_ro = 0.5 * acq.phase_res, 0.5 * acq.read_res
    t_pe, t_ro = np.abs(k_pe) / np.float32(lim_pe), np.abs(k_ro) / np.float32(lim_ro)
    inside = (t_pe <= 1.0) & (t_ro <= 1.0)
    win = ((1.0 - acq.window) + acq.window * np.cos(np.float32(math.pi / 2) * np.minimum(t_pe, 1.0)) ** 2) * (
        (1.0 - acq.window) + acq.window * np.cos(np.float32(math.pi / 2) * np.minimum(t_ro, 1.0)) ** 2)
    lift = 1.0 + acq.sharpen * np.minimum(t_pe * t_pe + t_ro * t_ro, 1.0)
    filt = np.where(inside, win * lift, np.float32(0.0)).astype(np.float32)
    if acq.ghost > 0:
        n_pe = shape_hw[acq.pe_axis]
        line = k_pe * np.float32(n_pe)  # phase-encoding line index
        filt *= (1.0 + acq.ghost * np.cos(np.float32(2 * math.pi / acq.ghost_period) * line)).astype(np.float32)
    return filt


def _unit_coordinates(shape_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape_hw
    yy = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    return yy, xx


def coil_field(shape_hw: tuple[int, int], acq: Acquisition) -> np.ndarray:
    """Receive-coil shading ``(H, W)``: brighter near the anterior and posterior arrays, plus 3 T dielectric
    patches; geometric mean about 1."""
    yy, xx = _unit_coordinates(shape_hw)
    c = acq.coefficients
    poly = 0.4 * c[0] * xx + 0.4 * c[1] * yy + 0.2 * c[2] * xx * yy
    poly = poly + 1.2 * np.exp(-((xx - 0.4 * math.tanh(c[3])) ** 2 + (yy + 0.8) ** 2) / 0.8)  # anterior array
    poly = poly + 0.7 * np.exp(-((xx - 0.4 * math.tanh(c[4])) ** 2 + (yy - 0.95) ** 2) / 0.6)  # posterior array
    log_field = acq.bias * (poly - poly.mean()) / max(float(poly.std()), 1e-6)
    if acq.field_strength > 2.0:  # B1 inhomogeneity: a broad dark/bright standing-wave pattern
        r2 = (xx - 0.3 * math.tanh(c[5])) ** 2 + (yy - 0.3 * math.tanh(c[6])) ** 2
        log_field = log_field + (0.15 + 0.05 * math.tanh(c[7])) * np.cos(np.float32(3.0) * np.sqrt(r2) + c[8])
    return np.exp(log_field).astype(np.float32)


def banding_field(shape_hw: tuple[int, int], acq: Acquisition) -> np.ndarray:
    """bSSFP off-resonance profile ``(H, W)`` in 0..1: dark bands where the off-resonance crosses half a band
    period, which happens toward the FOV edges (shim volume on the heart), more at 3 T."""
    yy, xx = _unit_coordinates(shape_hw)
    c = acq.coefficients
    r = np.sqrt(((xx - 0.15 * math.tanh(c[9])) ** 2 + (yy - 0.15 * math.tanh(c[10])) ** 2) / 2.0)
    angle = np.arctan2(yy, xx)
    off = 0.08 * abs(c[11]) + acq.banding * r**2 * (1.0 + 0.25 * np.cos(2.0 * angle + c[9]))
    phase = off - np.floor(off)  # position within the band period
    dist = np.abs(phase - 0.5)
    return (1.0 - 0.85 * np.exp(-(dist / 0.05) ** 2)).astype(np.float32)


def gfactor_map(shape_hw: tuple[int, int], acq: Acquisition) -> np.ndarray:
    """Parallel-imaging noise amplification ``(H, W)`` >= 1: highest in the body centre, periodic along phase
    encoding with the aliasing distance ``N / R``."""
    if acq.acceleration <= 1:
        return np.ones(shape_hw, dtype=np.float32)
    yy, xx = _unit_coordinates(shape_hw)
    pe = yy if acq.pe_axis == 0 else xx
    c = acq.coefficients
    centre = np.exp(-(xx**2 + yy**2) / 0.6)
    folds = 0.5 + 0.5 * np.cos(np.float32(math.pi * acq.acceleration) * pe + c[2])
    return (1.0 + acq.g_strength * (acq.acceleration - 1) * centre * (0.4 + 0.6 * folds)).astype(np.float32)


@dataclass(frozen=True)
class Scanner:
    """Everything fixed for a subject's stack: filters on a fast FFT grid and spatial maps on the FOV grid.

    The object ``(H, W)`` is zero-padded to ``fft_shape`` (lengths with small prime factors) for the k-space work;
    the padding only adds empty space beyond the FOV edge.
    """

    acquisition: Acquisition
    shape_hw: tuple[int, int]
    fft_shape: tuple[int, int]
    filter_half: np.ndarray  # rfft2 layout of fft_shape
    noise_filter: np.ndarray  # the acquired k-space block (centred), scaled to a per-pixel noise sigma ``noise``
    shading: np.ndarray  # coil × banding, (H, W)
    gfactor: np.ndarray | None  # (H, W), None without parallel imaging


def build_scanner(shape_hw: tuple[int, int], acq: Acquisition) -> Scanner:
    """Precompute the subject's filters and maps."""
    fft_shape = (scipy.fft.next_fast_len(shape_hw[0], real=True), scipy.fft.next_fast_len(shape_hw[1], real=True))
    full = np.fft.fftshift(kspace_filter(fft_shape, acq, half=False))
    rows, cols = np.flatnonzero(full.any(axis=1)), np.flatnonzero(full.any(axis=0))
    block = full[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    n = fft_shape[0] * fft_shape[1]
    gain = acq.noise * math.sqrt(n / max(float((block * block).sum()), 1e-6))
    return Scanner(acq, shape_hw, fft_shape, kspace_filter(fft_shape, acq, half=True), block * np.float32(gain),
                   coil_field(shape_hw, acq) * banding_field(shape_hw, acq),
                   gfactor_map(shape_hw, acq) if acq.acceleration > 1 else None)


def acquire(signal: np.ndarray, scanner: Scanner, rng: np.random.Generator) -> np.ndarray:
    """Magnitude images of a stack of clean signed signals.

    Args:
        signal: ``(N, H, W)`` float32 object signal on the FOV grid (blood ~ 1, fat negative).
        scanner: the subject's scanner.
        rng: generator for the noise.

    Returns:
        ``(N, H, W)`` float32 magnitudes (Rician-distributed where there is no signal).
    """
    n, (h, w) = signal.shape[0], scanner.shape_hw
    shaded = signal * scanner.shading
    image = scipy.fft.irfft2(scipy.fft.rfft2(shaded, s=scanner.fft_shape, workers=1) * scanner.filter_half,
                             s=scanner.fft_shape, workers=1)[:, :h, :w]
    # White complex noise on the acquired k-space block only (interleaved float32 pairs viewed as complex64), shaped
    # by the filter. Placing the block at the corner instead of the centre of k-space multiplies the noise image by a
    # phase ramp, which leaves circular complex Gaussian noise statistically unchanged.
    noise = rng.standard_normal((n, *scanner.noise_filter.shape, 2), dtype=np.float32).view(np.complex64)[..., 0]
    noise *= scanner.noise_filter
    noise_image = scipy.fft.ifft2(noise, s=scanner.fft_shape, norm="ortho", workers=1)[:, :h, :w]
    if scanner.gfactor is not None:
        noise_image *= scanner.gfactor
    noise_image.real += image
    return np.abs(noise_image).astype(np.float32, copy=False)


def store(magnitude: np.ndarray, gamma: float, scale: float, limit: float | None = None) -> np.ndarray:
    """Stored scanner intensities: ``scale * magnitude ** gamma`` as non-negative int16, saturating at ``limit``
    (a reconstruction scaling that overflows the stored range flattens the brightest fat and blood)."""
    curved = np.power(np.maximum(magnitude, 0.0), np.float32(gamma)) * np.float32(scale)
    top = np.iinfo(np.int16).max if limit is None else min(float(limit), np.iinfo(np.int16).max)
    return np.clip(np.rint(curved), 0, top).astype(np.int16)


def saturation_limit(magnitude: np.ndarray, gamma: float, scale: float, fraction: float) -> float:
    """Stored value at ``fraction`` of the 99th percentile of ``scale * magnitude ** gamma`` (at least 1)."""
    curved = np.power(np.maximum(magnitude, 0.0), np.float32(gamma)) * np.float32(scale)
    return max(1.0, round(fraction * float(np.percentile(curved, 99.0))))
