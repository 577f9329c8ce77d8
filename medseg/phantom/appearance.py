"""Site styles of the synthetic bSSFP cine data: tissue contrast, scanner and reconstruction, protocol, population.

Each site is a :class:`SiteStyle` of ranges; a subject draws one :class:`Appearance` (its tissue signals) and one
:class:`~medseg.phantom.mri.Acquisition` from them. The ACDC-like domain (Siemens 1.5 T / 3 T) is
the training domain. The M&Ms-like vendors differ from it the way real sites do, not by one intensity curve:

* ``A`` Siemens 1.5 T (centre 1): ACDC-like contrast, finer pixels, a little noisier, more HCM.
* ``B`` Philips, two centres with their own protocols: centre 2 at 1.5 T with a smooth (strongly filtered),
  low-noise reconstruction, rectangular FOV with arm wrap-around and bright fat, a DCM-heavy population; centre 3 at
  3 T with a sharp reconstruction, SENSE noise, strong banding and B1 shading, thinner slices, mostly NOR / MINF.
* ``C`` GE 1.5 T (centre 4): few phase-encoding lines and no k-space filter, so heavy truncation ringing and low
  resolution along phase encoding, edge enhancement, darker fat, more HCM / RV disease.
* ``D`` Canon 1.5 T (centre 5): coarse pixels and a large FOV (more torso in the crop), high, spatially varying
  parallel-imaging noise, bright myocardium and liver, frequent breathing ghosts, MINF-heavy.

Every subject also draws a water-tissue gain (``SiteStyle.tissue_gain``: muscle, liver, ... × g, myocardium × √g;
blood and fat unchanged), so sites differ in blood–myocardium contrast (GE and Philips 3 T high, Canon and Philips
1.5 T low) and subjects of one site differ in brightness and contrast as real ones do. In 55 % of the
ACDC-like scans the reconstruction scaling is set so high that the stored intensities saturate
(``SiteStyle.p_saturated``): the brightest fat and blood are flattened at a level of 50–90 % of the stack's 99th
percentile, so after the percentile normalisation the rest of the image is brighter than in an unsaturated scan of the
same subject — the export-scaling difference that, with the coil shading and the fat and tissue signals, makes whole
crops differ in brightness between real subjects.

Signals are relative to LV blood = 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TISSUES = ("air", "lung", "fat", "muscle", "myocardium", "blood", "rv_blood", "vessel", "liver", "spleen", "stomach",
           "bowel", "marrow", "cortex", "csf", "cord", "gland", "pericardium")

_BASE_CONTRAST: dict[str, tuple[float, float]] = {
    "air": (0.0, 0.0),
    "lung": (0.03, 0.16),
    "fat": (0.55, 1.8),
    "muscle": (0.16, 0.34),
    "myocardium": (0.22, 0.4),
    "blood": (1.0, 1.0),
    "rv_blood": (0.9, 1.0),  # relative to LV blood
    "vessel": (0.85, 1.0),  # aorta, relative to LV blood
    "liver": (0.26, 0.5),
    "spleen": (0.45, 0.6),
    "stomach": (0.8, 1.2),
    "bowel": (0.35, 0.6),
    "marrow": (0.45, 0.7),
    "cortex": (0.03, 0.08),
    "csf": (1.1, 1.5),
    "cord": (0.35, 0.5),
    "gland": (0.35, 0.55),
    "pericardium": (0.04, 0.1),
}


def _contrast(**overrides: tuple[float, float]) -> dict[str, tuple[float, float]]:
    out = dict(_BASE_CONTRAST)
    out.update(overrides)
    return out


@dataclass(frozen=True)
class SiteStyle:
    """Ranges from which the subjects of one site (domain, centre) are drawn."""

    name: str
    p_3t: float  # share of 3 T scans
    spacing: tuple[float, float]  # reconstructed in-plane pixel size, mm
    fov: tuple[float, float]  # field-of-view width, mm
    p_rectangular: float  # share of rectangular FOVs (phase FOV 75–90 %)
    p_pe_rows: float  # share with phase encoding along the image rows (vertical)
    phase_res: tuple[float, float]  # acquired fraction of k-space along phase encoding
    read_res: tuple[float, float]  # along readout
    window: tuple[float, float]  # k-space filter strength (0 none: ringing; 1 strong: smooth)
    sharpen: tuple[float, float]  # reconstruction edge enhancement
    slice_spacing: tuple[float, float]  # mm
    thickness: tuple[float, float]  # mm (at most the spacing)
    noise: tuple[float, float]  # noise sigma relative to blood
    acceleration: tuple[int, ...]  # parallel-imaging factors to choose from (1 = none)
    g_strength: tuple[float, float]  # noise amplification of the g-factor map
    bias: tuple[float, float]  # log-amplitude of the coil sensitivity
    banding: tuple[float, float]  # off-resonance at the FOV edge, in bSSFP band periods
    p_wrap: float  # share with arms folded in (when the arms lie outside the FOV along phase encoding)
    p_ghost: float  # share with breathing ghosts
    contrast: dict[str, tuple[float, float]]
    gamma: tuple[float, float]  # stored-intensity curve exponent
    scale: tuple[float, float]  # stored value of unit signal
    pathology: dict[str, float]  # pathology mix (M&Ms sites)
    heart_scale: tuple[float, float]  # population heart size
    body_scale: tuple[float, float]
    p_arms: float = 0.7  # share with arms beside the torso
    tissue_gain: tuple[float, float] = (0.55, 2.0)  # per-subject factor on all water tissues (not blood, fat)
    p_saturated: float = 0.0  # share of scans whose stored intensities saturate (reconstruction scaling too high)
    saturation: tuple[float, float] = (0.55, 0.95)  # saturation level relative to the ED stack's 99th percentile


_EVEN = {"NOR": 1.0, "DCM": 1.0, "HCM": 1.0, "MINF": 1.0, "RV": 1.0}

SITES: dict[tuple[str, int], SiteStyle] = {
    ("ACDC", 0): SiteStyle(
        "ACDC (Siemens 1.5/3 T)", p_3t=0.4, spacing=(1.37, 1.68), fov=(300.0, 400.0), p_rectangular=0.6,
        p_pe_rows=0.7, phase_res=(0.88, 1.0), read_res=(0.94, 1.0), window=(0.4, 0.65), sharpen=(0.05, 0.2),
        slice_spacing=(9.0, 10.0), thickness=(6.0, 8.0), noise=(0.038, 0.058), acceleration=(1, 2),
        g_strength=(0.1, 0.3), bias=(0.05, 0.7), banding=(0.25, 0.5), p_wrap=0.25, p_ghost=0.12,
        contrast=_contrast(), gamma=(0.85, 1.2), scale=(250.0, 900.0), pathology=_EVEN,
        heart_scale=(1.0, 1.08), body_scale=(0.95, 1.08), p_saturated=0.55, saturation=(0.5, 0.9)),
    ("A", 1): SiteStyle(
        "Siemens 1.5 T (centre 1)", p_3t=0.0, spacing=(1.2, 1.45), fov=(290.0, 370.0), p_rectangular=0.5,
        p_pe_rows=0.8, phase_res=(0.65, 0.8), read_res=(0.85, 1.0), window=(0.35, 0.55), sharpen=(0.0, 0.15),
        slice_spacing=(10.0, 10.0), thickness=(8.0, 10.0), noise=(0.059, 0.08), acceleration=(2,),
        g_strength=(0.2, 0.4), bias=(0.2, 0.4), banding=(0.2, 0.45), p_wrap=0.2, p_ghost=0.15,
        contrast=_contrast(myocardium=(0.3, 0.4), fat=(0.9, 1.15)), gamma=(0.85, 0.95), scale=(150.0, 600.0),
        pathology={"NOR": 1.0, "DCM": 0.8, "HCM": 1.6, "MINF": 0.6, "RV": 0.5},
        heart_scale=(0.96, 1.03), body_scale=(0.95, 1.05), tissue_gain=(0.7, 1.4)),
    ("B", 2): SiteStyle(
        "Philips 1.5 T (centre 2)", p_3t=0.0, spacing=(1.25, 1.4), fov=(300.0, 360.0), p_rectangular=0.9,
        p_pe_rows=0.3, phase_res=(0.6, 0.75), read_res=(0.8, 0.95), window=(0.8, 1.0), sharpen=(0.0, 0.0),
        slice_spacing=(10.0, 10.0), thickness=(8.0, 10.0), noise=(0.03, 0.042), acceleration=(1, 2),
        g_strength=(0.1, 0.25), bias=(0.25, 0.4), banding=(0.2, 0.4), p_wrap=0.7, p_ghost=0.1,
        contrast=_contrast(fat=(1.1, 1.35), myocardium=(0.34, 0.44), liver=(0.4, 0.5)), gamma=(1.1, 1.25),
        scale=(60.0, 250.0), pathology={"NOR": 0.6, "DCM": 2.0, "HCM": 0.8, "MINF": 1.0, "RV": 0.5},
        heart_scale=(1.01, 1.08), body_scale=(1.0, 1.1), tissue_gain=(0.9, 1.6)),
    ("B", 3): SiteStyle(
        "Philips 3 T (centre 3)", p_3t=1.0, spacing=(1.1, 1.3), fov=(280.0, 340.0), p_rectangular=0.7,
        p_pe_rows=0.5, phase_res=(0.75, 0.9), read_res=(0.9, 1.0), window=(0.0, 0.2), sharpen=(0.1, 0.3),
        slice_spacing=(8.0, 9.0), thickness=(7.0, 8.0), noise=(0.042, 0.059), acceleration=(2, 3),
        g_strength=(0.35, 0.6), bias=(0.35, 0.55), banding=(0.55, 0.95), p_wrap=0.3, p_ghost=0.1,
        contrast=_contrast(fat=(1.0, 1.3), myocardium=(0.3, 0.4)), gamma=(1.05, 1.15), scale=(80.0, 300.0),
        pathology={"NOR": 1.8, "DCM": 0.6, "HCM": 0.6, "MINF": 1.4, "RV": 0.6},
        heart_scale=(0.92, 0.98), body_scale=(0.9, 1.0), tissue_gain=(0.6, 1.15)),
    ("C", 4): SiteStyle(
        "GE 1.5 T (centre 4)", p_3t=0.0, spacing=(1.4, 1.6), fov=(320.0, 380.0), p_rectangular=0.2,
        p_pe_rows=0.6, phase_res=(0.45, 0.6), read_res=(0.7, 0.8), window=(0.0, 0.08), sharpen=(0.2, 0.45),
        slice_spacing=(10.0, 10.0), thickness=(8.0, 10.0), noise=(0.05, 0.067), acceleration=(1, 2),
        g_strength=(0.1, 0.3), bias=(0.25, 0.45), banding=(0.25, 0.5), p_wrap=0.25, p_ghost=0.15,
        contrast=_contrast(fat=(0.7, 0.9), myocardium=(0.22, 0.3), muscle=(0.18, 0.26)), gamma=(0.75, 0.85),
        scale=(1200.0, 3500.0), pathology={"NOR": 0.7, "DCM": 0.8, "HCM": 1.5, "MINF": 0.7, "RV": 1.3},
        heart_scale=(0.97, 1.05), body_scale=(0.95, 1.08), tissue_gain=(0.55, 1.0)),
    ("D", 5): SiteStyle(
        "Canon 1.5 T (centre 5)", p_3t=0.0, spacing=(1.5, 1.9), fov=(340.0, 420.0), p_rectangular=0.4,
        p_pe_rows=0.7, phase_res=(0.7, 0.85), read_res=(0.85, 1.0), window=(0.2, 0.4), sharpen=(0.1, 0.25),
        slice_spacing=(10.0, 10.0), thickness=(8.0, 10.0), noise=(0.084, 0.118), acceleration=(2, 3),
        g_strength=(0.5, 0.9), bias=(0.3, 0.5), banding=(0.3, 0.55), p_wrap=0.15, p_ghost=0.35,
        contrast=_contrast(myocardium=(0.34, 0.44), liver=(0.42, 0.54), fat=(0.9, 1.1)), gamma=(1.25, 1.4),
        scale=(400.0, 2000.0), pathology={"NOR": 0.7, "DCM": 1.0, "HCM": 0.6, "MINF": 1.8, "RV": 0.8},
        heart_scale=(0.99, 1.06), body_scale=(1.0, 1.12), tissue_gain=(0.95, 1.7)),
}

#: Centres of each domain (ACDC has one pseudo-centre 0).
CENTRES: dict[str, tuple[int, ...]] = {"ACDC": (0,), "A": (1,), "B": (2, 3), "C": (4,), "D": (5,)}


def site_style(domain: str, centre: int | None = None) -> SiteStyle:
    """Style of a domain's centre (its first centre if ``centre`` is None)."""
    if domain not in CENTRES:
        raise ValueError(f"domain must be one of {sorted(CENTRES)}, got {domain!r}")
    centre = CENTRES[domain][0] if centre is None else centre
    if (domain, centre) not in SITES:
        raise ValueError(f"domain {domain!r} has centres {CENTRES[domain]}, got centre {centre}")
    return SITES[(domain, centre)]


@dataclass(frozen=True)
class Appearance:
    """Tissue signals of one subject (blood 1) and its stored-intensity curve."""

    contrast: dict[str, float]
    gamma: float
    scale: float
    field_strength: float
    saturation: float | None = None  # stored values saturate at this fraction of the ED stack's 99th percentile


def sample_appearance(style: SiteStyle, rng: np.random.Generator) -> Appearance:
    """Draw the tissue contrast of one subject of a site (3 T: a little more myocardium–blood contrast)."""
    field_strength = 3.0 if rng.random() < style.p_3t else 1.5
    contrast = {key: float(rng.uniform(*style.contrast[key])) for key in TISSUES}
    # Sequence settings (flip angle, TR) and the subject's relaxation times move all water tissues together
    # against blood and fat: the between-subject spread of blood-myocardium contrast of real cine.
    # The myocardium follows at a reduced rate (its T2/T1 varies less between subjects than the abdomen's signal
    # does with the shim, the coil and the slice position).
    gain = float(rng.uniform(*style.tissue_gain))
    for key in ("muscle", "liver", "spleen", "bowel", "marrow", "gland", "cord"):
        contrast[key] *= gain
    contrast["myocardium"] *= gain**0.5
    if field_strength > 2.0:
        contrast["myocardium"] *= 0.92
        contrast["fat"] *= 0.95
    return Appearance(contrast=contrast, gamma=float(rng.uniform(*style.gamma)), scale=float(rng.uniform(*style.scale)),
                      field_strength=field_strength)


def sample_group(style: SiteStyle, rng: np.random.Generator) -> str:
    """Draw a pathology group from the site's mix."""
    names = sorted(style.pathology)
    weights = np.array([style.pathology[n] for n in names], dtype=np.float64)
    return str(names[int(rng.choice(len(names), p=weights / weights.sum()))])
