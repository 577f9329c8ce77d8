"""Synthetic cardiac cine MR data written in the raw ACDC and M&Ms distribution formats.

The real datasets need registration, so the project ships this generator. It writes:

* ``<out>/raw/ACDC/patientXXX/``: ``Info.cfg`` (``ED``, ``ES`` 1-based, ``Group``, ``Height``, ``NbFrame``,
  ``Weight``), ``patientXXX_frameYY.nii.gz`` (int16, ``(Z, H, W)`` in SimpleITK order) and
  ``patientXXX_frameYY_gt.nii.gz`` (uint8, raw ACDC labels **1 RV, 2 MYO, 3 LV**) for the ED and ES frames;
* ``<out>/raw/MnMs/{Training/Labeled,Validation,Testing}/<code>/<code>_sa.nii.gz`` (int16 4D, H×W×Z×T on disk, i.e.
  ``(T, Z, H, W)`` in SimpleITK order) and ``<code>_sa_gt.nii.gz`` (labels **1 LV, 2 MYO, 3 RV** on the ED and ES frames
  only) plus the metadata CSV (leading index column, ``External code, VendorName, Vendor, Centre, ED, ES`` with 0-based
  frame indices, ...).

Volumes have rotated direction cosines and random origins like scanner data. The heart comes from
:mod:`~medseg.phantom.heart`, the torso from :mod:`~medseg.phantom.anatomy`, the
site styles from :mod:`~medseg.phantom.appearance`, the bSSFP acquisition from
:mod:`~medseg.phantom.mri`; :mod:`~medseg.phantom.stack` renders a stack
(``docs/PHANTOM.md`` describes the whole model).
Everything is deterministic for a given seed: subject ``i`` of domain ``d`` draws from
``np.random.default_rng([seed, d, i])``, so the output does not depend on the number of worker processes.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.io.nifti import write_volume
from medseg.phantom.appearance import CENTRES, sample_group, site_style
from medseg.phantom.heart import GROUPS, LV, MYO, RV
from medseg.phantom.stack import Stack, SyntheticSettings, render_stack
from medseg.io.atomic import atomic_open, atomic_write_text

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

ACDC_DIR = Path("raw") / "ACDC"
MNMS_DIR = Path("raw") / "MnMs"
MNMS_CSV_NAME = "211230_M&Ms_Dataset_information_diagnosis_opendataset.csv"
MNMS_CSV_COLUMNS = ("External code", "VendorName", "Vendor", "Centre", "ED", "ES", "Age", "Pathology", "Sex", "Height",
                    "Weight")
VENDORS: dict[str, tuple[str, tuple[int, ...]]] = {
    "A": ("Siemens", CENTRES["A"]),
    "B": ("Philips", CENTRES["B"]),
    "C": ("GE", CENTRES["C"]),
    "D": ("Canon", CENTRES["D"]),
}
DOMAIN_IDS = {"ACDC": 0, "A": 1, "B": 2, "C": 3, "D": 4}
#: medseg labels (1 LV, 2 MYO, 3 RV) → raw ACDC labels (1 RV, 2 MYO, 3 LV).
MEDSEG_TO_ACDC = np.array([0, 3, 2, 1], dtype=np.uint8)
_MNMS_PATHOLOGY = {"NOR": "NOR", "DCM": "DCM", "HCM": "HCM", "MINF": "IHD", "RV": "ARV"}


def acdc_group(patient_number: int) -> str | None:
    """Pathology group of the real ACDC training set (20 subjects per group, in id order); None beyond 100."""
    if 1 <= patient_number <= 100:
        return ("DCM", "HCM", "MINF", "NOR", "RV")[(patient_number - 1) // 20]
    return None


def write_acdc_subject(root: PathLike, patient_number: int, seed: int, settings: SyntheticSettings) -> Path:
    """Generate and write ``<root>/patientXXX/`` (raw ACDC layout); returns the folder."""
    rng = np.random.default_rng([seed, DOMAIN_IDS["ACDC"], patient_number])
    group = acdc_group(patient_number) or str(rng.choice(sorted(GROUPS)))
    nb_frames = int(rng.integers(settings.acdc_frames[0], settings.acdc_frames[1] + 1))
    ed = 1
    es = int(round(nb_frames * rng.uniform(0.33, 0.45)))
    height, weight = rng.uniform(150.0, 195.0), rng.uniform(50.0, 110.0)
    stack = render_stack("ACDC", group, (0.0, 1.0), rng, settings)
    name = f"patient{patient_number:03d}"
    folder = Path(root) / name
    geometry = {"spacing": stack.spacing, "origin": stack.origin, "direction": stack.direction}
    for t, frame in enumerate((ed, es)):
        stem = folder / f"{name}_frame{frame:02d}"
        write_volume(f"{stem}.nii.gz", stack.images[t], **geometry)
        write_volume(f"{stem}_gt.nii.gz", MEDSEG_TO_ACDC[stack.labels[t]], **geometry)
    info = (f"ED: {ed}\nES: {es}\nGroup: {group}\nHeight: {height:.1f}\nNbFrame: {nb_frames}\n"
            f"Weight: {weight:.1f}\n")
    atomic_write_text(folder / "Info.cfg", info)
    return folder


def contraction_curve(n_frames: int, ed: int, es: int) -> np.ndarray:
    """Contraction state per frame ``(T,)``: 0 at ED, 1 at ES, smooth systole and a faster early diastole."""
    t = np.arange(n_frames, dtype=np.float64)
    cycle = (t - ed) % n_frames
    systole = es - ed
    c = np.where(
        cycle <= systole,
        0.5 - 0.5 * np.cos(math.pi * cycle / systole),
        0.5 + 0.5 * np.cos(math.pi * np.clip((cycle - systole) / (0.6 * (n_frames - systole)), 0.0, 1.0)),
    )
    return c


def mnms_folder(vendor: str, index: int, n_per_vendor: int) -> Path:
    """Release folder of a subject: vendors A and B are the labelled training set, C and D validation/testing."""
    if vendor in ("A", "B"):
        return Path("Training") / "Labeled"
    return Path("Validation") if index < (n_per_vendor + 1) // 2 else Path("Testing")


def mnms_codes(n_per_vendor: int, seed: int) -> dict[str, list[str]]:
    """Unique six-character subject codes (M&Ms style, e.g. ``A1D0Q7``) for each vendor."""
    rng = np.random.default_rng([seed, 99])
    letters, digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789"
    seen: set[str] = set()
    codes: dict[str, list[str]] = {v: [] for v in VENDORS}
    for vendor in VENDORS:
        while len(codes[vendor]) < n_per_vendor:
            code = "".join(
                str(rng.choice(list(letters if k % 2 == 0 else digits))) for k in range(6)
            )
            if code not in seen:
                seen.add(code)
                codes[vendor].append(code)
    return codes


def write_mnms_subject(
    root: PathLike, vendor: str, index: int, code: str, n_per_vendor: int, seed: int, settings: SyntheticSettings
) -> dict[str, object]:
    """Generate and write one M&Ms subject under ``root``; returns its metadata CSV row."""
    rng = np.random.default_rng([seed, DOMAIN_IDS[vendor], index])
    vendor_name, centres = VENDORS[vendor]
    centre = int(centres[index % len(centres)])
    group = sample_group(site_style(vendor, centre), rng)
    n_frames = int(rng.integers(settings.mnms_frames[0], settings.mnms_frames[1] + 1))
    ed = 0 if rng.random() < 0.8 else 1
    es = ed + max(1, int(round(n_frames * rng.uniform(0.3, 0.42))))
    stack = render_stack(vendor, group, contraction_curve(n_frames, ed, es).tolist(), rng, settings, centre)
    gt = np.zeros_like(stack.labels)
    gt[[ed, es]] = stack.labels[[ed, es]]
    direction = np.eye(4)
    direction[:3, :3] = np.asarray(stack.direction).reshape(3, 3)
    geometry = {"spacing": (*stack.spacing, 1.0), "origin": (*stack.origin, 0.0), "direction": direction.ravel()}
    folder = Path(root) / mnms_folder(vendor, index, n_per_vendor) / code
    write_volume(folder / f"{code}_sa.nii.gz", stack.images, **geometry)
    write_volume(folder / f"{code}_sa_gt.nii.gz", gt, **geometry)
    return {
        "External code": code,
        "VendorName": vendor_name,
        "Vendor": vendor,
        "Centre": centre,
        "ED": ed,
        "ES": es,
        "Age": int(rng.integers(18, 85)),
        "Pathology": _MNMS_PATHOLOGY[group],
        "Sex": str(rng.choice(["M", "F"])),
        "Height": round(float(rng.uniform(150.0, 195.0)), 1),
        "Weight": round(float(rng.uniform(50.0, 110.0)), 1),
    }


def write_mnms_metadata(root: PathLike, rows: Sequence[dict[str, object]]) -> Path:
    """Write the M&Ms metadata CSV (leading unnamed index column, as in the real release)."""
    path = Path(root) / MNMS_CSV_NAME
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("," + ",".join(MNMS_CSV_COLUMNS) + "\n")
        for i, row in enumerate(rows):
            handle.write(f"{i}," + ",".join(str(row[c]) for c in MNMS_CSV_COLUMNS) + "\n")
    return path


@dataclass(frozen=True)
class Job:
    """One subject to generate (a picklable unit of work for worker processes)."""

    out: str
    domain: str  # "ACDC" or a vendor letter
    index: int  # ACDC patient number (1-based) or index within the vendor
    seed: int
    settings: SyntheticSettings
    code: str = ""
    n_per_vendor: int = 0


def plan_jobs(
    out: PathLike, n_acdc: int = 100, n_mnms_per_vendor: int = 20, seed: int = 0,
    settings: SyntheticSettings = SyntheticSettings(),
) -> list[Job]:
    """All subjects of a data set; the heavier M&Ms jobs come first so that worker pools balance well."""
    if n_acdc < 0 or n_mnms_per_vendor < 0:
        raise ValueError(f"subject counts must be >= 0, got n_acdc={n_acdc}, n_mnms_per_vendor={n_mnms_per_vendor}")
    out = str(out)
    codes = mnms_codes(n_mnms_per_vendor, seed)
    jobs = [Job(out, v, i, seed, settings, codes[v][i], n_mnms_per_vendor) for i in range(n_mnms_per_vendor)
            for v in VENDORS]
    jobs += [Job(out, "ACDC", i, seed, settings) for i in range(1, n_acdc + 1)]
    return jobs


def run_job(job: Job) -> dict[str, object] | None:
    """Generate one subject; returns its M&Ms metadata row (None for ACDC)."""
    if job.domain == "ACDC":
        write_acdc_subject(Path(job.out) / ACDC_DIR, job.index, job.seed, job.settings)
        return None
    return write_mnms_subject(Path(job.out) / MNMS_DIR, job.domain, job.index, job.code, job.n_per_vendor, job.seed,
                              job.settings)


def finish(out: PathLike, jobs: Sequence[Job], rows: Sequence[dict[str, object] | None]) -> None:
    """Write the M&Ms metadata CSV for the finished jobs (rows in vendor, index order)."""
    mnms = sorted((job.domain, job.index, row) for job, row in zip(jobs, rows) if row is not None)
    if mnms:
        write_mnms_metadata(Path(out) / MNMS_DIR, [row for _, _, row in mnms])


def generate_dataset(
    out: PathLike, n_acdc: int = 100, n_mnms_per_vendor: int = 20, seed: int = 0,
    settings: SyntheticSettings = SyntheticSettings(),
) -> None:
    """Generate a whole data set in this process (the CLI does the same with worker processes)."""
    jobs = plan_jobs(out, n_acdc, n_mnms_per_vendor, seed, settings)
    rows = [run_job(job) for job in jobs]
    finish(out, jobs, rows)
    logger.info("wrote %d ACDC and %d M&Ms subjects under %s", n_acdc, 4 * n_mnms_per_vendor, out)


__all__ = [
    "LV", "MYO", "RV", "MEDSEG_TO_ACDC", "SyntheticSettings", "Stack", "Job", "render_stack", "write_acdc_subject",
    "write_mnms_subject", "write_mnms_metadata", "plan_jobs", "run_job", "finish", "generate_dataset",
    "contraction_curve", "acdc_group", "mnms_codes",
]
