"""Preview montage of generated raw data: mid-ventricular slices with label outlines, one row per domain."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from medseg.dataset_loader.nifti import read_volume
from medseg.utils.io import atomic_output_path

PathLike = str | os.PathLike

#: Outline colours per structure (LV, MYO, RV).
COLOURS = {"MYO": "#50ff50", "LV": "#ff5050", "RV": "#4fa3ff"}


def _acdc_examples(acdc_root: Path, n: int) -> list[tuple[str, np.ndarray, dict[str, np.ndarray]]]:
    examples = []
    folders = sorted(acdc_root.glob("patient[0-9][0-9][0-9]"))
    for folder in folders[:: max(1, len(folders) // max(n, 1))][:n]:
        info = dict(line.split(":", 1) for line in (folder / "Info.cfg").read_text().splitlines() if ":" in line)
        frame = int(info["ED"])
        stem = folder / f"{folder.name}_frame{frame:02d}"
        image = read_volume(f"{stem}.nii.gz").array
        label = read_volume(f"{stem}_gt.nii.gz").array
        z = image.shape[0] // 2
        masks = {"MYO": label[z] == 2, "LV": label[z] == 3, "RV": label[z] == 1}
        examples.append((f"ACDC {folder.name[-3:]} ({info['Group'].strip()})", image[z], masks))
    return examples


def _mnms_examples(mnms_root: Path, vendor: str, n: int) -> list[tuple[str, np.ndarray, dict[str, np.ndarray]]]:
    csv_path = next(mnms_root.glob("*.csv"))
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["Vendor"] == vendor][:n]
    examples = []
    for row in rows:
        code = row["External code"]
        image_path = next(mnms_root.glob(f"*/**/{code}/{code}_sa.nii.gz"), None) or next(
            mnms_root.glob(f"*/{code}/{code}_sa.nii.gz")
        )
        image = read_volume(image_path, ndim=4).array
        label = read_volume(str(image_path).replace("_sa.nii.gz", "_sa_gt.nii.gz"), ndim=4).array
        frame = int(row["ES"]) if len(examples) % 2 else int(row["ED"])
        z = image.shape[1] // 2
        masks = {"MYO": label[frame, z] == 2, "LV": label[frame, z] == 1, "RV": label[frame, z] == 3}
        name = "ES" if len(examples) % 2 else "ED"
        examples.append((f"M&Ms {vendor} {row['VendorName']} {code} {name}", image[frame, z], masks))
    return examples


def render_preview(out: PathLike, png_path: PathLike, n_per_row: int = 3, dpi: int = 80) -> Path:
    """Write a montage of the generated data under ``out`` (``out/raw/ACDC``, ``out/raw/MnMs``) to ``png_path``.

    Rows: ACDC, then M&Ms vendors A–D; each panel is a mid-ventricular slice with LV/MYO/RV outlines, shown at the
    native matrix size (so that FOV and resolution differences are visible).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    rows = [_acdc_examples(out / "raw" / "ACDC", n_per_row)]
    mnms_root = out / "raw" / "MnMs"
    if any(mnms_root.glob("*.csv")):
        rows += [_mnms_examples(mnms_root, vendor, n_per_row) for vendor in "ABCD"]
    rows = [r for r in rows if r]
    if not rows:
        raise FileNotFoundError(f"no generated subjects found under {out / 'raw'} to preview")
    n_cols = 2 * max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.9 * n_cols, 2.05 * len(rows)), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, row in enumerate(rows):
        for j, (title, image, masks) in enumerate(row):
            lo, hi = np.percentile(image, [1, 99.5])
            full, zoomed = axes[i, 2 * j], axes[i, 2 * j + 1]
            full.imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            full.set_title(f"{title}\n{image.shape[0]}x{image.shape[1]}", fontsize=6)
            heart = np.argwhere(np.any(np.stack(list(masks.values())), axis=0))
            if heart.size == 0:
                continue
            (r0, c0), (r1, c1) = heart.min(axis=0), heart.max(axis=0)
            half = int(max(r1 - r0, c1 - c0) * 0.8) + 4
            rc, cc = (r0 + r1) // 2, (c0 + c1) // 2
            rows_, cols_ = slice(max(rc - half, 0), rc + half), slice(max(cc - half, 0), cc + half)
            full.add_patch(plt.Rectangle((cols_.start, rows_.start), 2 * half, 2 * half, fill=False,
                                         edgecolor="#ffff00", linewidth=0.5))
            zoomed.imshow(image[rows_, cols_], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            for name, mask in masks.items():
                if mask[rows_, cols_].any():
                    zoomed.contour(mask[rows_, cols_].astype(float), levels=[0.5], colors=COLOURS[name],
                                   linewidths=0.6)
            zoomed.set_title("LV red, MYO green, RV blue", fontsize=5.5)
    fig.tight_layout(pad=0.3)
    png_path = Path(png_path)
    with atomic_output_path(png_path) as tmp:
        fig.savefig(tmp, dpi=dpi)
        from PIL import Image  # installed with matplotlib

        # A fixed palette (grey ramp + outline colours) keeps the noisy montage small enough for the README.
        colours = [tuple(int(h[i : i + 2], 16) for i in (1, 3, 5)) for h in (*COLOURS.values(), "#ffff00")]
        greys = [(g, g, g) for g in np.linspace(0, 255, 256 - len(colours)).round().astype(int).tolist()]
        palette = Image.new("P", (1, 1))
        palette.putpalette([v for rgb in greys + colours for v in rgb])
        with Image.open(tmp) as rendered:
            paletted = rendered.convert("RGB").quantize(palette=palette, dither=Image.Dither.NONE)
        paletted.save(tmp, optimize=True)
    plt.close(fig)
    return png_path
