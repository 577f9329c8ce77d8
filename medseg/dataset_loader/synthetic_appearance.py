"""Scanner appearance of synthetic bSSFP cine images: tissue contrast, blur, coil bias, Rician noise, intensity curve.

Each domain (``"ACDC"`` and the M&Ms vendors ``"A"``–``"D"``) has its own ranges; a subject draws one
:class:`Appearance` from them. The ranges keep the bSSFP look everywhere (bright blood and fat, dark myocardium and
lungs) but shift myocardium/fat contrast, noise, bias strength, resolution and the intensity curve between vendors, so
that a model trained on the ACDC-like domain loses accuracy on the others without failing outright.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter

TISSUES = ("air", "fat", "muscle", "lung", "blood", "myocardium", "liver", "stomach", "bone", "csf", "mediastinum")


@dataclass(frozen=True)
class DomainStyle:
    """Ranges from which the appearance of one subject of a domain is drawn (signal relative to blood = 1)."""

    name: str
    spacing: tuple[float, float]  # in-plane pixel size, mm
    contrast: dict[str, tuple[float, float]]
    noise: tuple[float, float]  # Rician sigma relative to the blood signal
    bias: tuple[float, float]  # log-amplitude of the coil sensitivity field
    blur_mm: tuple[float, float]  # Gaussian point-spread sigma (partial volume, reconstruction resolution)
    gamma: tuple[float, float]  # intensity curve exponent
    scale: tuple[float, float]  # stored value of unit signal (scanners use arbitrary integer scales)
    matrix_square: float = 0.4  # probability of a square matrix


def _contrast(**overrides: tuple[float, float]) -> dict[str, tuple[float, float]]:
    base = {
        "air": (0.0, 0.0),
        "fat": (0.80, 0.95),
        "muscle": (0.22, 0.30),
        "lung": (0.03, 0.07),
        "blood": (1.0, 1.0),
        "myocardium": (0.24, 0.32),
        "liver": (0.30, 0.40),
        "stomach": (0.45, 0.75),
        "bone": (0.35, 0.50),
        "csf": (0.85, 1.0),
        "mediastinum": (0.45, 0.65),
    }
    base.update(overrides)
    return base


DOMAINS: dict[str, DomainStyle] = {
    # ACDC: Siemens 1.5 T / 3 T cine, the training domain.
    "ACDC": DomainStyle("ACDC", (1.37, 1.75), _contrast(), (0.025, 0.045), (0.15, 0.35), (0.6, 1.0), (0.95, 1.05),
                        (250.0, 900.0)),
    # Vendor A (Siemens): close to ACDC, noisier, slightly compressed curve.
    "A": DomainStyle("A", (1.25, 1.45), _contrast(myocardium=(0.27, 0.35)), (0.04, 0.06), (0.2, 0.4), (0.6, 0.9),
                     (0.85, 0.95), (150.0, 600.0)),
    # Vendor B (Philips): very bright fat, brighter myocardium (lower blood/myo contrast), strong bias.
    "B": DomainStyle("B", (1.2, 1.4), _contrast(fat=(1.05, 1.25), myocardium=(0.34, 0.42), liver=(0.4, 0.5)),
                     (0.025, 0.04), (0.4, 0.6), (0.7, 1.0), (1.1, 1.25), (60.0, 250.0), matrix_square=0.7),
    # Vendor C (GE): low acquired resolution (blurry), darker fat, expanded dark range.
    "C": DomainStyle("C", (1.4, 1.6), _contrast(fat=(0.6, 0.75), myocardium=(0.22, 0.28), muscle=(0.2, 0.26)),
                     (0.04, 0.06), (0.25, 0.45), (1.3, 1.8), (0.72, 0.82), (1200.0, 3500.0), matrix_square=0.8),
    # Vendor D (Canon): high noise, bright myocardium and liver, steep curve.
    "D": DomainStyle("D", (1.5, 2.0), _contrast(myocardium=(0.32, 0.40), liver=(0.42, 0.52), fat=(0.9, 1.05)),
                     (0.06, 0.085), (0.3, 0.5), (0.8, 1.2), (1.25, 1.4), (400.0, 2000.0)),
}


@dataclass(frozen=True)
class Appearance:
    """Appearance of one subject (fixed values drawn from a :class:`DomainStyle`)."""

    contrast: dict[str, float]
    noise: float
    bias: float
    blur_mm: float
    gamma: float
    scale: float
    bias_coefficients: np.ndarray = field(repr=False)  # (7,) polynomial + coil hot spot


def sample_appearance(domain: str, rng: np.random.Generator) -> Appearance:
    """Draw the appearance of one subject of ``domain`` (``"ACDC"``, ``"A"``, ``"B"``, ``"C"`` or ``"D"``)."""
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {sorted(DOMAINS)}, got {domain!r}")
    style = DOMAINS[domain]
    contrast = {key: float(rng.uniform(*style.contrast[key])) for key in TISSUES}
    return Appearance(
        contrast=contrast,
        noise=float(rng.uniform(*style.noise)),
        bias=float(rng.uniform(*style.bias)),
        blur_mm=float(rng.uniform(*style.blur_mm)),
        gamma=float(rng.uniform(*style.gamma)),
        scale=float(rng.uniform(*style.scale)),
        bias_coefficients=rng.normal(0.0, 1.0, 7),
    )


def bias_field(shape_zhw: tuple[int, int, int], appearance: Appearance) -> np.ndarray:
    """Smooth multiplicative coil sensitivity ``(Z, H, W)`` float32, geometric mean about 1."""
    z, h, w = shape_zhw
    zz = np.linspace(-1.0, 1.0, z, dtype=np.float32)[:, None, None]
    yy = np.linspace(-1.0, 1.0, h, dtype=np.float32)[None, :, None]
    xx = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, None, :]
    c = appearance.bias_coefficients
    poly = c[0] * xx + c[1] * yy + 0.5 * c[2] * xx * yy + 0.5 * c[3] * xx**2 + 0.5 * c[4] * yy**2 + 0.3 * c[5] * zz
    hot_x, hot_y = math.tanh(c[6]), math.copysign(0.8, c[5])  # a surface coil element near the chest
    poly = poly + 1.5 * np.exp(-((xx - hot_x) ** 2 + (yy - hot_y) ** 2) / 0.5)
    field_ = np.exp(appearance.bias * (poly - poly.mean()) / max(float(poly.std()), 1e-6))
    return field_.astype(np.float32)


def apply_appearance(
    signal: np.ndarray, appearance: Appearance, spacing: float, bias: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Turn a clean tissue signal into a scanner image.

    Args:
        signal: ``(Z, H, W)`` float32 clean signal (blood ~ 1).
        appearance: the subject's appearance.
        spacing: in-plane pixel size in mm (for the blur).
        bias: ``(Z, H, W)`` coil field from :func:`bias_field`.
        rng: generator for the noise.

    Returns:
        ``(Z, H, W)`` int16 image with non-negative integer values.
    """
    sigma_px = appearance.blur_mm / spacing
    blurred = gaussian_filter(signal, sigma=(0.0, sigma_px, sigma_px), mode="nearest") * bias
    sigma = appearance.noise
    real = blurred + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    magnitude = np.sqrt(real * real + imag * imag)  # Rician: magnitude of complex Gaussian noise
    curved = np.power(magnitude, appearance.gamma) * appearance.scale
    return np.clip(np.rint(curved), 0, np.iinfo(np.int16).max).astype(np.int16)
