"""Tiny on-disk datasets in the preprocessed medseg layout, for fast tests.

``<root>/<pid>/{ED,ES}_{img,seg}.nii.gz``: float32 images in [0, 1], uint8 labels 0 BG, 1 LV, 2 MYO, 3 RV,
in-plane spacing 1.36719 mm. Each slice holds a bright LV disk inside a dark myocardial ring and an RV crescent,
on a noisy background; the apical slice has no RV and the last slice is unlabelled (as real stacks often are).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from medseg.io.nifti import write_volume

SPACING = (1.36719, 1.36719, 8.0)


def phantom(shape: tuple[int, int, int], rng: np.random.Generator, es: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One (Z, H, W) image/label pair."""
    z, h, w = shape
    yy, xx = np.mgrid[:h, :w]
    cy, cx = h / 2 + rng.uniform(-3, 3), w / 2 + rng.uniform(-3, 3)
    image = rng.normal(0.3, 0.05, size=shape).astype(np.float32)
    label = np.zeros(shape, dtype=np.uint8)
    for k in range(z - 1):  # last slice unlabelled
        shrink = 1.0 - 0.5 * k / max(z - 1, 1)
        r_lv = min(h, w) * (0.12 if es else 0.16) * shrink
        r_myo = r_lv + min(h, w) * 0.06
        dist = np.hypot(yy - cy, xx - cx)
        sl = label[k]
        sl[dist < r_myo] = 2
        sl[dist < r_lv] = 1
        if k < z - 2:  # apical labelled slice has no RV
            dist_rv = np.hypot(yy - cy, xx - (cx - r_myo * 1.4))
            sl[(dist_rv < r_myo * 1.1) & (sl == 0)] = 3
        image[k][sl == 1] = 0.9
        image[k][sl == 3] = 0.8
        image[k][sl == 2] = 0.15
    image += rng.normal(0, 0.02, size=shape).astype(np.float32)
    image = np.clip(image, 0, 1)
    return image.astype(np.float32), label


def write_subjects(
    root: Path,
    pids: Iterable[str],
    shape: tuple[int, int, int] = (4, 72, 80),
    frames: Iterable[str] = ("ED", "ES"),
    seed: int = 0,
) -> Path:
    """Write subjects ``<root>/<pid>/{frame}_{img,seg}.nii.gz`` and return ``root``."""
    root = Path(root)
    for i, pid in enumerate(pids):
        rng = np.random.default_rng([seed, i])
        for frame in frames:
            image, label = phantom(shape, rng, es=(frame == "ES"))
            write_volume(root / pid / f"{frame}_img.nii.gz", image, spacing=SPACING)
            write_volume(root / pid / f"{frame}_seg.nii.gz", label, spacing=SPACING)
    return root


def acdc_ids(*numbers: int) -> list[str]:
    return [f"{n:03d}" for n in numbers]


def write_tiny_acdc(root: Path, pids: Iterable[str] | None = None, **kwargs) -> Path:
    """All 100 ACDC ids by default (small volumes, ~1 s to write)."""
    return write_subjects(root, pids if pids is not None else acdc_ids(*range(1, 101)), **kwargs)


def write_tiny_mm(root: Path, n_per_vendor: int = 1, vendors: str = "ABCD", **kwargs) -> Path:
    """An M&Ms-like preprocessed folder with ``vendors.csv`` (subject, vendor, vendor_name, centre)."""
    root = Path(root)
    rows = []
    for v in vendors:
        for j in range(n_per_vendor):
            rows.append({"subject": f"{v}{j:02d}X", "vendor": v, "vendor_name": f"Vendor{v}", "centre": "1"})
    write_subjects(root, [r["subject"] for r in rows], **kwargs)
    with open(root / "vendors.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["subject", "vendor", "vendor_name", "centre"])
        writer.writeheader()
        writer.writerows(rows)
    return root
