"""Preview montage of generated raw data: one row per site, the whole field of view and zoomed base / mid / apex
slices with label outlines."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.io.nifti import read_volume
from medseg.io.atomic import atomic_output_path

PathLike = str | os.PathLike

#: Outline colours per structure (LV, MYO, RV).
COLOURS = {"LV": "#ff5050", "MYO": "#50ff50", "RV": "#4fa3ff"}
COLUMNS = ("whole FOV, mid ED", "base ED", "mid ED", "mid ES", "apex ED")


@dataclass(frozen=True)
class PreviewSubject:
    """One subject's ED and ES stacks ``(Z, H, W)`` with medseg-convention masks."""

    title: str
    ed: np.ndarray
    es: np.ndarray
    ed_label: np.ndarray  # medseg labels 1 LV, 2 MYO, 3 RV
    es_label: np.ndarray
    spacing: float


def _acdc_subject(folder: Path) -> PreviewSubject:
    info = dict(line.split(":", 1) for line in (folder / "Info.cfg").read_text().splitlines() if ":" in line)
    arrays = []
    for key in ("ED", "ES"):
        stem = folder / f"{folder.name}_frame{int(info[key]):02d}"
        image = read_volume(f"{stem}.nii.gz")
        raw = read_volume(f"{stem}_gt.nii.gz").array
        arrays += [image.array, np.array([0, 3, 2, 1], dtype=np.uint8)[raw]]  # raw ACDC 1 RV, 2 MYO, 3 LV
    return PreviewSubject(f"ACDC-like {folder.name[-3:]} ({info['Group'].strip()})", arrays[0], arrays[2],
                          arrays[1], arrays[3], image.spacing[0])


def _mnms_subjects(root: Path) -> list[PreviewSubject]:
    """The first subject of every (vendor, centre) of the M&Ms-like release."""
    csv_path = next(root.glob("*.csv"), None)
    if csv_path is None:
        return []
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    chosen: dict[tuple[str, str], dict[str, str]] = {}
    for row in rows:
        chosen.setdefault((row["Vendor"], row["Centre"]), row)
    subjects = []
    for (vendor, centre), row in sorted(chosen.items()):
        code = row["External code"]
        path = next(root.glob(f"*/{code}/{code}_sa.nii.gz"), None) or next(root.glob(f"*/*/{code}/{code}_sa.nii.gz"))
        image = read_volume(path, ndim=4)
        label = read_volume(str(path).replace("_sa.nii.gz", "_sa_gt.nii.gz"), ndim=4).array
        ed, es = int(row["ED"]), int(row["ES"])
        title = f"{vendor} {row['VendorName']} c{centre} {code} ({row['Pathology']})"
        subjects.append(PreviewSubject(title, image.array[ed], image.array[es], label[ed], label[es],
                                       image.spacing[0]))
    return subjects


def _zoom_box(label: np.ndarray, shape: tuple[int, int], spacing: float) -> tuple[slice, slice]:
    """A square of 130 mm around the heart of a stack (or the centre)."""
    heart = np.argwhere(label.any(axis=0))
    half = round(65.0 / spacing)
    rc, cc = (heart.min(axis=0) + heart.max(axis=0)) // 2 if heart.size else (shape[0] // 2, shape[1] // 2)
    r0 = int(np.clip(rc - half, 0, max(shape[0] - 2 * half, 0)))
    c0 = int(np.clip(cc - half, 0, max(shape[1] - 2 * half, 0)))
    return slice(r0, r0 + 2 * half), slice(c0, c0 + 2 * half)


def render_preview(out: PathLike, png_path: PathLike, dpi: int = 80) -> Path:
    """Write a montage of the generated data under ``out`` (``out/raw/ACDC``, ``out/raw/MnMs``) to ``png_path``.

    Rows: the first ACDC-like subject, then the first subject of each M&Ms-like vendor and centre. Columns: the whole
    mid-ventricular slice at its native matrix (FOV and resolution differ between sites), then 130 mm squares of the
    basal, mid and apical slices with LV / MYO / RV outlines.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    acdc = sorted((out / "raw" / "ACDC").glob("patient[0-9][0-9][0-9]"))
    subjects = ([_acdc_subject(acdc[0])] if acdc else []) + _mnms_subjects(out / "raw" / "MnMs")
    if not subjects:
        raise FileNotFoundError(f"no generated subjects found under {out / 'raw'} to preview")
    fig, axes = plt.subplots(len(subjects), len(COLUMNS), figsize=(1.75 * len(COLUMNS) + 1.3, 1.8 * len(subjects)),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, sub in enumerate(subjects):
        lv_slices = np.flatnonzero((sub.ed_label == 1).any(axis=(1, 2)))
        labelled = np.flatnonzero(sub.ed_label.any(axis=(1, 2)))
        mid = int(lv_slices[len(lv_slices) // 2])
        panels = [(sub.ed, sub.ed_label, mid, False), (sub.ed, sub.ed_label, int(labelled[0]), True),
                  (sub.ed, sub.ed_label, mid, True), (sub.es, sub.es_label, mid, True),
                  (sub.ed, sub.ed_label, int(labelled[-1]), True)]
        lo, hi = np.percentile(sub.ed, [1, 99.5])
        box = _zoom_box(sub.ed_label, sub.ed.shape[1:], sub.spacing)
        for j, (stack, label, z, zoom) in enumerate(panels):
            ax = axes[i, j]
            image, mask = (stack[z][box], label[z][box]) if zoom else (stack[z], label[z])
            ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            if zoom:
                # MYO and RV first, LV last: the LV outline runs along the inner MYO edge and must stay visible.
                for value, name in ((2, "MYO"), (3, "RV"), (1, "LV")):
                    if (mask == value).any():
                        ax.contour(mask == value, levels=[0.5], colors=COLOURS[name], linewidths=0.6)
            else:
                ax.text(2, image.shape[0] - 4, f"{image.shape[0]}×{image.shape[1]}, {sub.spacing:.2f} mm",
                        color="yellow", fontsize=5.5)
            if i == 0:
                ax.set_title(COLUMNS[j], fontsize=7)
        fig.text(0.005, 1.0 - (i + 0.5) / len(subjects), sub.title.replace(" (", "\n("), fontsize=6.5,
                 va="center", ha="left")
    fig.text(0.5, 0.003, "outlines: LV red, MYO green, RV blue", fontsize=6.5, ha="center", va="bottom")
    fig.subplots_adjust(left=1.3 / (1.75 * len(COLUMNS) + 1.3), right=0.995, top=1.0 - 0.22 / len(subjects),
                        bottom=0.02, wspace=0.03, hspace=0.05)
    path = save_paletted(fig, png_path, tuple(COLOURS.values()) + ("#ffff00",), dpi)
    plt.close(fig)
    return path


def save_paletted(fig, png_path: PathLike, colours: tuple[str, ...], dpi: int = 80) -> Path:
    """Save a matplotlib figure atomically as a PNG with a fixed palette (a grey ramp plus ``colours``): noisy
    greyscale montages stay small enough to keep in the repository."""
    from PIL import Image  # installed with matplotlib

    png_path = Path(png_path)
    with atomic_output_path(png_path) as tmp:
        fig.savefig(tmp, dpi=dpi)
        rgb = [tuple(int(h[i : i + 2], 16) for i in (1, 3, 5)) for h in colours]
        greys = [(g, g, g) for g in np.linspace(0, 255, 256 - len(rgb)).round().astype(int).tolist()]
        palette = Image.new("P", (1, 1))
        palette.putpalette([v for colour in greys + rgb for v in colour])
        with Image.open(tmp) as rendered:
            paletted = rendered.convert("RGB").quantize(palette=palette, dither=Image.Dither.NONE)
        paletted.save(tmp, optimize=True)
    return png_path
