"""Phantom report: how real and how hard the (synthetic) data are, per domain, on the preprocessed layout.

Every statistic is measured on the *mid-ventricular slice* of each subject, at ED and at ES (two samples per
subject), after the test path's 192 × 192 centre crop / zero pad (:func:`~medseg.data.crop.crop_or_pad`) of
the preprocessed image (percentile-normalised to [0, 1], 1.367 mm pixels). The mid-ventricular slice is the middle one
of the slices whose ED label holds LV cavity (``lv_slices[len // 2]``); ES uses the same slice index.

* **Threshold rule** (a baseline that needs no learning): Otsu threshold of the crop (256 bins on [0, 1]); bright
  4-connected components of at least :data:`MIN_AREA` pixels; LV = the roundest one (``4π area / perimeter²``, the
  perimeter by the Crofton formula over rows, columns and diagonals), holes filled; MYO = not-bright pixels within
  :data:`BAND_PX` pixels of that LV; RV = the largest other bright component within :data:`RV_REACH_PX` pixels of the
  LV, holes filled (empty if there is none). Dice against the labels per structure.
  ``lv_dice_all`` repeats the LV rule on every slice with LV in its label; ``lv_dice_best`` replaces the roundness
  choice by the bright component that overlaps the LV label best (an upper bound for any choice rule).
* **Intensity**: fraction of crop pixels < 0.1 and > 0.5.
* **Gradient**: ``|Sobel| / 8`` (scipy's 3 × 3 Sobel on both axes) over the crop: median and 90th percentile.
* **Blood CoV**: robust coefficient of variation ``1.4826 MAD / median`` of the LV-label pixels eroded by one pixel
  (papillary muscles and trabeculae are part of that label, as they are in ACDC).
* **Heart extent**: largest extent (Feret diameter over 90 directions) of LV ∪ MYO ∪ RV, divided by 192.
* **LV cavity diameter**: equivalent-circle diameter ``2 sqrt(area / π)`` of the LV label at ED, pixels.
* **Noise**: ``1.4826 MAD / √2`` of horizontal neighbour differences over the darkest quarter of the crop.
* **Median / 75th percentile intensity** of the crop's image pixels (zero padding excluded); the summary gives their
  standard deviation over the subjects' ED samples (how much subjects differ in brightness and contrast).
* **High-pass noise**: ``1.4826 MAD`` of the residual ``image - gaussian(image, 1.5 px)`` over the darkest quarter of
  the image pixels (padding and the one-pixel rim next to it excluded): grain that survives a 1.5 px low-pass.
* **Gradient p99**: 99th percentile of ``|Sobel| / 8`` over the crop.
* **Ventricular volumes** (ml, whole stack): LV (cavity label, papillary muscles and trabeculae included) and RV
  cavity voxels × voxel volume, at ED and ES, per pathology group (from the raw ``Info.cfg`` / M&Ms CSV when present).
* **Shortcut probe**: the threshold rule above is a rule that knows only intensity (Otsu) and shape (roundness); its
  LV accuracy (share of samples with LV Dice > 0.5) must stay low, as it is on real cine where bright round vessels,
  fat and trabeculated cavities defeat it. ``probe_central`` is the same rule choosing, among the bright components
  of roundness >= 0.6, the one nearest the crop centre (the position prior of a centre crop).
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from medseg.data.crop import crop_or_pad
from medseg.io.nifti import read_volume

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

CROP = (192, 192)
MIN_AREA = 40  # pixels (75 mm²): smaller bright specks are not candidates for the LV
BAND_PX = 9
RV_REACH_PX = 20
FRAMES = ("ED", "ES")


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1] (maximises the between-class variance of a ``bins`` histogram)."""
    hist, edges = np.histogram(np.clip(values, 0.0, 1.0), bins=bins, range=(0.0, 1.0))
    p = hist.astype(np.float64) / max(hist.sum(), 1)
    centres = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(p)
    mu = np.cumsum(p * centres)
    between = (mu[-1] * w0 - mu) ** 2 / np.maximum(w0 * (1.0 - w0), 1e-12)
    return float(edges[int(np.argmax(between)) + 1])


def crofton_perimeter(mask: np.ndarray) -> float:
    """Perimeter (pixels) by the Crofton formula: boundary crossings along rows, columns and both diagonals."""
    m = np.pad(mask.astype(bool), 1)
    axis = np.count_nonzero(m[:, 1:] != m[:, :-1]) + np.count_nonzero(m[1:, :] != m[:-1, :])
    diagonal = np.count_nonzero(m[1:, 1:] != m[:-1, :-1]) + np.count_nonzero(m[1:, :-1] != m[:-1, 1:])
    return float(math.pi / 8 * (axis + diagonal / math.sqrt(2)))


def roundness(mask: np.ndarray) -> float:
    """``4π area / perimeter²`` with the Crofton perimeter (≈ 1 for a disc, π/4 for a square)."""
    return float(4 * math.pi * mask.sum() / max(crofton_perimeter(mask) ** 2, 1e-9))


def best_component_dice(image: np.ndarray, reference: np.ndarray) -> float:
    """LV Dice of the best bright component (holes filled), chosen with the reference: what thresholding could
    reach if it always picked the right blob."""
    components, _n = ndimage.label(image > otsu_threshold(image))
    hits = np.unique(components[reference & (components > 0)])
    scores = [dice(ndimage.binary_fill_holes(components == k), reference) for k in hits]
    return max(scores) if scores else (float("nan") if not reference.any() else 0.0)


def threshold_rule(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The threshold baseline on one ``(H, W)`` crop; returns LV, MYO, RV masks (see the module docstring)."""
    bright = image > otsu_threshold(image)
    components, n = ndimage.label(bright)
    areas = np.bincount(components.ravel(), minlength=n + 1)
    candidates = [k for k in range(1, n + 1) if areas[k] >= MIN_AREA]
    empty = np.zeros(image.shape, dtype=bool)
    if not candidates:
        return empty, empty, empty
    best = max(candidates, key=lambda k: roundness(components == k))
    lv = ndimage.binary_fill_holes(components == best)
    distance = ndimage.distance_transform_edt(~lv)
    myo = ~bright & ~lv & (distance <= BAND_PX)
    near = np.unique(components[(distance <= RV_REACH_PX) & bright & (components != best)])
    others = [k for k in near if k > 0 and areas[k] >= MIN_AREA]
    rv = ndimage.binary_fill_holes(components == max(others, key=lambda k: areas[k])) if others else empty
    return lv, myo, rv & ~lv


def dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Dice overlap; NaN when both are empty."""
    total = prediction.sum() + reference.sum()
    return float("nan") if total == 0 else float(2.0 * np.logical_and(prediction, reference).sum() / total)


def feret_diameter(mask: np.ndarray, n_directions: int = 90) -> float:
    """Largest extent of a mask (pixels) over ``n_directions`` projection directions."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return 0.0
    angles = np.linspace(0.0, math.pi, n_directions, endpoint=False)
    proj = np.outer(np.cos(angles), cols) + np.outer(np.sin(angles), rows)
    return float((proj.max(axis=1) - proj.min(axis=1)).max() + 1.0)


def robust_cov(values: np.ndarray) -> float:
    """``1.4826 MAD / median`` (NaN for fewer than 10 values)."""
    if values.size < 10:
        return float("nan")
    med = float(np.median(values))
    return float(1.4826 * np.median(np.abs(values - med)) / max(med, 1e-6))


def central_round_blob(image: np.ndarray, min_roundness: float = 0.6) -> np.ndarray:
    """LV of the centre-prior shortcut: among the bright components (Otsu, >= :data:`MIN_AREA` px) of roundness >=
    ``min_roundness``, the one whose centroid is nearest the crop centre, holes filled (empty if none)."""
    components, n = ndimage.label(image > otsu_threshold(image))
    areas = np.bincount(components.ravel(), minlength=n + 1)
    centre = (np.asarray(image.shape, dtype=np.float64) - 1.0) / 2.0
    best, best_d = 0, math.inf
    for k in range(1, n + 1):
        if areas[k] < MIN_AREA:
            continue
        mask = components == k
        if roundness(mask) < min_roundness:
            continue
        d = float(np.hypot(*(np.argwhere(mask).mean(axis=0) - centre)))
        if d < best_d:
            best, best_d = k, d
    if best == 0:
        return np.zeros(image.shape, dtype=bool)
    return ndimage.binary_fill_holes(components == best)


def highpass_noise(image: np.ndarray, valid: np.ndarray | None = None, sigma: float = 1.5) -> float:
    """``1.4826 MAD`` of ``image - gaussian(image, sigma)`` over the darkest quarter of the valid pixels (the rim
    next to invalid padding excluded); NaN with fewer than 50 such pixels."""
    valid = np.ones(image.shape, dtype=bool) if valid is None else valid
    inner = ndimage.binary_erosion(valid, structure=np.ones((3, 3), dtype=bool), border_value=1)
    if inner.sum() < 50:
        return float("nan")
    residual = image - ndimage.gaussian_filter(image, sigma, mode="nearest")
    dark = inner & (image <= np.quantile(image[valid], 0.25))
    values = residual[dark]
    if values.size < 50:
        return float("nan")
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def slice_statistics(image: np.ndarray, label: np.ndarray, valid: np.ndarray | None = None) -> dict[str, float]:
    """All per-sample statistics of one cropped mid-ventricular slice (image in [0, 1], medseg labels; ``valid``
    marks image pixels, False on the crop's zero padding)."""
    lv_pred, myo_pred, rv_pred = threshold_rule(image)
    valid = np.ones(image.shape, dtype=bool) if valid is None else valid
    inside = image[valid] if valid.any() else image.ravel()
    gx, gy = ndimage.sobel(image, axis=1), ndimage.sobel(image, axis=0)
    grad = np.hypot(gx, gy) / 8.0
    lv = label == 1
    blood = ndimage.binary_erosion(lv, structure=np.ones((3, 3), dtype=bool))
    dark = image <= np.quantile(image, 0.25)
    diffs = (image[:, 1:] - image[:, :-1])[dark[:, 1:] & dark[:, :-1]]
    noise = float(1.4826 * np.median(np.abs(diffs - np.median(diffs))) / math.sqrt(2)) if diffs.size else float("nan")
    return {
        "lv_dice": dice(lv_pred, lv),
        "lv_dice_best": best_component_dice(image, lv),
        "myo_dice": dice(myo_pred, label == 2),
        "rv_dice": dice(rv_pred, label == 3),
        "dark": float((image < 0.1).mean()),
        "bright": float((image > 0.5).mean()),
        "grad_median": float(np.median(grad)),
        "grad_p90": float(np.percentile(grad, 90)),
        "grad_p99": float(np.percentile(grad, 99)),
        "median": float(np.median(inside)),
        "p75": float(np.percentile(inside, 75)),
        "hp_noise": highpass_noise(image, valid),
        "probe_central_dice": dice(central_round_blob(image), lv),
        "blood_cov": robust_cov(image[blood]),
        "heart_extent": feret_diameter(label > 0) / CROP[1],
        "lv_diameter": 2.0 * math.sqrt(lv.sum() / math.pi),
        "noise": noise,
    }


@dataclass(frozen=True)
class Case:
    """One preprocessed subject folder (``{ED,ES}_{img,seg}.nii.gz``) of a domain."""

    domain: str
    name: str
    folder: Path


def find_domains(data_dir: PathLike) -> dict[str, list[Case]]:
    """Domains of a prepared data folder: ``ACDC``, ``MM-<vendor>`` (from ``MM/vendors.csv``), ``ACDC-C/<artefact>``.

    Raises:
        FileNotFoundError: if none of ``ACDC/``, ``MM/``, ``ACDC-C/`` holds subjects.
    """
    data_dir = Path(data_dir)
    domains: dict[str, list[Case]] = {}
    acdc = data_dir / "ACDC"
    if acdc.is_dir():
        cases = [Case("ACDC", p.name, p) for p in sorted(acdc.iterdir()) if (p / "ED_img.nii.gz").is_file()]
        if cases:
            domains["ACDC"] = cases
    table = data_dir / "MM" / "vendors.csv"
    if table.is_file():
        with open(table, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                folder = data_dir / "MM" / row["subject"]
                if (folder / "ED_img.nii.gz").is_file():
                    key = f"MM-{row['vendor']}"
                    domains.setdefault(key, []).append(Case(key, row["subject"], folder))
        domains = {k: domains[k] for k in sorted(domains, key=lambda k: (k != "ACDC", k))}
    acdc_c = data_dir / "ACDC-C"
    if acdc_c.is_dir():
        for artefact in sorted(p for p in acdc_c.iterdir() if p.is_dir()):
            cases = [Case(f"ACDC-C/{artefact.name}", p.name, p) for p in sorted(artefact.iterdir())
                     if (p / "ED_img.nii.gz").is_file()]
            if cases:
                domains[f"ACDC-C/{artefact.name}"] = cases
    if not domains:
        raise FileNotFoundError(f"no preprocessed subjects under {data_dir}; expected ACDC/, MM/ (with vendors.csv) "
                                "or ACDC-C/ as written by scripts/prepare_synthetic.sh")
    return domains


@dataclass(frozen=True)
class Sample:
    """The cropped mid-ventricular slice of one frame of a case, with its statistics."""

    case: Case
    frame: str
    image: np.ndarray  # (192, 192)
    label: np.ndarray
    stats: dict[str, float]
    lv_dice_all: list[float]
    fov_mm: float
    z_spacing: float
    volumes: dict[str, float]  # "lv", "rv" cavity volumes of the whole stack at this frame, ml
    group: str  # pathology group ("" when unknown)


def case_groups(data_dir: PathLike) -> dict[str, str]:
    """Pathology group per preprocessed subject name, from the raw layout when it is there: ``raw/ACDC/patientXXX/
    Info.cfg`` (``Group:``) for ACDC names ``XXX`` and the M&Ms CSV (``Pathology`` by ``External code``)."""
    data_dir = Path(data_dir)
    groups: dict[str, str] = {}
    raw = data_dir / "raw" / "ACDC"
    if raw.is_dir():
        for info in sorted(raw.glob("patient*/Info.cfg")):
            for line in info.read_text(encoding="utf-8-sig").splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "Group":
                    groups[info.parent.name.removeprefix("patient")] = value.strip()
    for table in sorted((data_dir / "raw" / "MnMs").glob("*.csv")):
        with open(table, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row.get("External code") and row.get("Pathology"):
                    groups[row["External code"]] = row["Pathology"]
    return groups


def load_samples(case: Case, group: str = "") -> Iterator[Sample]:
    """Mid-ventricular ED and ES samples of a case (none if its ED label has no LV)."""
    volumes = {}
    for frame in FRAMES:
        image = read_volume(case.folder / f"{frame}_img.nii.gz")
        label = read_volume(case.folder / f"{frame}_seg.nii.gz")
        volumes[frame] = (image, crop_or_pad(image.array.astype(np.float32), CROP)[0],
                          crop_or_pad(label.array.astype(np.uint8), CROP)[0], label)
    lv_slices = np.flatnonzero((volumes["ED"][2] == 1).any(axis=(1, 2)))
    if lv_slices.size == 0:
        logger.warning("%s: no LV in the ED label; skipped", case.folder)
        return
    z = int(lv_slices[len(lv_slices) // 2])
    for frame in FRAMES:
        volume, image, label, full_label = volumes[frame]
        valid = crop_or_pad(np.ones(volume.array.shape[1:], dtype=bool), CROP)[0]
        all_slices = [dice(threshold_rule(image[k])[0], label[k] == 1) for k in range(image.shape[0])
                      if (label[k] == 1).any()]
        voxel_ml = float(np.prod(full_label.spacing[:3])) / 1000.0
        cavities = {"lv": float((full_label.array == 1).sum()) * voxel_ml,
                    "rv": float((full_label.array == 3).sum()) * voxel_ml}
        yield Sample(case, frame, image[z], label[z], slice_statistics(image[z], label[z], valid), all_slices,
                     fov_mm=float(volume.array.shape[2] * volume.spacing[0]), z_spacing=float(volume.spacing[2]),
                     volumes=cavities, group=group)


def _nanstats(values: list[float]) -> tuple[float, float, float]:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return float("nan"), float("nan"), float("nan")
    return float(np.median(arr)), float(arr.mean()), float((arr > 0.85).mean())


def summarise(samples: list[Sample]) -> dict[str, float]:
    """Domain summary: Dice median / mean / share > 0.85 per structure, means of the other statistics."""
    out: dict[str, float] = {"n_subjects": float(len({s.case.name for s in samples})), "n_samples": float(len(samples))}
    for key in ("lv_dice", "lv_dice_best", "myo_dice", "rv_dice"):
        med, mean, share = _nanstats([s.stats[key] for s in samples])
        out[f"{key}_median"], out[f"{key}_mean"], out[f"{key}_share"] = med, mean, share
    med, mean, share = _nanstats([d for s in samples for d in s.lv_dice_all])
    out["lv_dice_all_median"], out["lv_dice_all_mean"], out["lv_dice_all_share"] = med, mean, share
    for key in ("dark", "bright", "grad_median", "grad_p90", "blood_cov", "heart_extent", "noise"):
        values = np.asarray([s.stats[key] for s in samples], dtype=np.float64)
        out[key] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    ed = [s.stats["lv_diameter"] for s in samples if s.frame == "ED"]
    out["lv_diameter_ed"] = float(np.mean(ed)) if ed else float("nan")
    ed_samples = [s for s in samples if s.frame == "ED"]
    # ED-only acceptance statistics (mid-ventricular ED slice of every subject).
    for key in ("dark", "bright", "grad_median", "grad_p90", "grad_p99", "hp_noise"):
        values = np.asarray([s.stats[key] for s in ed_samples], dtype=np.float64)
        out[f"ed_{key}"] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    for key in ("median", "p75"):
        values = np.asarray([s.stats[key] for s in ed_samples], dtype=np.float64)
        out[f"sd_{key}"] = float(np.std(values, ddof=1)) if values.size > 1 else float("nan")
    # Shortcut probes: LV accuracy = share of samples whose LV Dice exceeds 0.5.
    for key, stat in (("probe_round", "lv_dice"), ("probe_central", "probe_central_dice")):
        values = np.asarray([s.stats[stat] for s in samples], dtype=np.float64)
        values = values[np.isfinite(values)]
        out[f"{key}_dice"] = float(values.mean()) if values.size else float("nan")
        out[f"{key}_accuracy"] = float((values > 0.5).mean()) if values.size else float("nan")
    out["fov_mm"] = float(np.median([s.fov_mm for s in samples]))
    out["z_spacing"] = float(np.median([s.z_spacing for s in samples]))
    return out
