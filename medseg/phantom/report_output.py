"""Outputs of the phantom report: the markdown table, a JSON copy, intensity histograms and a montage per domain.

Statistics come from :mod:`~medseg.phantom.report`; every figure shows images at one fixed grey
scale ([0, 1] of the preprocessed layout), so domains can be compared by eye.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from medseg.phantom.report import Sample, case_groups, find_domains, load_samples, summarise
from medseg.phantom.preview import save_paletted
from medseg.io.atomic import atomic_write_text, ensure_writable_dir

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

#: Target ranges of the ACDC-like domain (first-order statistics of real cine), checked in the markdown table.
TARGETS: dict[str, tuple[float, float]] = {
    "lv_dice_median": (0.0, 0.85),
    "myo_dice_mean": (0.0, 0.60),
    "dark": (0.25, 0.40),
    "bright": (0.17, 0.28),
    "grad_median": (0.018, 0.030),
    "grad_p90": (0.11, 0.16),
    "blood_cov": (0.10, 0.18),
    "heart_extent": (0.40, 0.55),
}

#: Acceptance ranges of the ACDC-like domain on its mid-ventricular ED slices (measured on real short-axis cine; docs/PHANTOM.md):
#: between-subject spread of brightness, grain and edge sharpness, and the first-order ranges above on ED alone.
ED_TARGETS: dict[str, tuple[float, float]] = {
    "sd_median": (0.06, 0.10),
    "sd_p75": (0.14, 0.21),
    "ed_hp_noise": (0.010, 0.017),
    "ed_grad_p99": (0.25, 0.30),
    "ed_dark": (0.25, 0.40),
    "ed_bright": (0.17, 0.28),
    "ed_grad_median": (0.018, 0.030),
    "ed_grad_p90": (0.11, 0.16),
}
ED_COLUMNS = (
    ("sd_median", "SD median", "{:.3f}"), ("sd_p75", "SD p75", "{:.3f}"), ("ed_hp_noise", "hp noise", "{:.4f}"),
    ("ed_grad_p99", "grad p99", "{:.3f}"), ("ed_dark", "px < 0.1", "{:.3f}"), ("ed_bright", "px > 0.5", "{:.3f}"),
    ("ed_grad_median", "grad median", "{:.3f}"), ("ed_grad_p90", "grad p90", "{:.3f}"),
    ("probe_round_accuracy", "probe round: LV found", "{:.0%}"), ("probe_round_dice", "probe round: LV Dice", "{:.2f}"),
    ("probe_central_accuracy", "probe central: LV found", "{:.0%}"),
    ("probe_central_dice", "probe central: LV Dice", "{:.2f}"),
)
#: Plausible ranges of whole-heart cavity volumes (ml) per ACDC group for adults (cine MR literature; the ACDC
#: groups are defined by them: DCM LV EDV > 100 ml/m² and EF < 40 %, HCM normal volumes and EF, MINF EF < 40 %,
#: RV abnormal RV EDV > 110 ml/m² or RV EF < 40 %).
VOLUME_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "NOR": {"lv_ED": (100, 200), "lv_ES": (30, 85), "rv_ED": (100, 210), "rv_ES": (35, 105)},
    "DCM": {"lv_ED": (220, 380), "lv_ES": (150, 320), "rv_ED": (110, 260), "rv_ES": (50, 190)},
    "HCM": {"lv_ED": (90, 200), "lv_ES": (15, 70), "rv_ED": (80, 190), "rv_ES": (25, 95)},
    "MINF": {"lv_ED": (160, 320), "lv_ES": (90, 240), "rv_ED": (100, 220), "rv_ES": (45, 150)},
    "RV": {"lv_ED": (85, 180), "lv_ES": (30, 90), "rv_ED": (190, 360), "rv_ES": (100, 270)},
}
#: M&Ms pathology names → ACDC groups.
_GROUP_ALIASES = {"IHD": "MINF", "ARV": "RV", "HCM": "HCM", "DCM": "DCM", "NOR": "NOR", "MINF": "MINF", "RV": "RV"}

#: (key, column title, format) of the two markdown tables.
DICE_COLUMNS = (
    ("n_subjects", "subjects", "{:.0f}"),
    ("lv_dice_median", "LV median", "{:.2f}"), ("lv_dice_mean", "LV mean", "{:.2f}"),
    ("lv_dice_share", "LV > 0.85", "{:.0%}"),
    ("myo_dice_median", "MYO median", "{:.2f}"), ("myo_dice_mean", "MYO mean", "{:.2f}"),
    ("myo_dice_share", "MYO > 0.85", "{:.0%}"),
    ("rv_dice_median", "RV median", "{:.2f}"), ("rv_dice_mean", "RV mean", "{:.2f}"),
    ("rv_dice_share", "RV > 0.85", "{:.0%}"),
    ("lv_dice_best_median", "LV best-blob median", "{:.2f}"),
    ("lv_dice_all_median", "LV all slices median", "{:.2f}"),
)
IMAGE_COLUMNS = (
    ("dark", "px < 0.1", "{:.3f}"), ("bright", "px > 0.5", "{:.3f}"),
    ("grad_median", "grad median", "{:.3f}"), ("grad_p90", "grad p90", "{:.3f}"),
    ("blood_cov", "blood CoV", "{:.3f}"), ("heart_extent", "heart extent", "{:.3f}"),
    ("lv_diameter_ed", "ED LV diam. px", "{:.1f}"), ("noise", "noise", "{:.4f}"),
    ("fov_mm", "FOV width mm", "{:.0f}"), ("z_spacing", "slice spacing mm", "{:.1f}"),
)


def _cell(summary: Mapping[str, float], key: str, fmt: str, check: bool,
          targets: Mapping[str, tuple[float, float]] = TARGETS) -> str:
    value = summary.get(key, float("nan"))
    if not math.isfinite(value):
        return "–"
    text = fmt.format(value)
    if check and key in targets:
        lo, hi = targets[key]
        text += " ✓" if lo <= value <= hi else " ✗"
    return text


def markdown_table(summaries: Mapping[str, Mapping[str, float]], columns: Sequence[tuple[str, str, str]],
                   targets: Mapping[str, tuple[float, float]] = TARGETS) -> str:
    """A markdown table, one row per domain; the ACDC row marks each target range as met (✓) or not (✗)."""
    lines = ["| domain | " + " | ".join(title for _, title, _ in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for domain, summary in summaries.items():
        cells = [_cell(summary, key, fmt, domain == "ACDC", targets) for key, _, fmt in columns]
        lines.append(f"| {domain} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def volume_summary(samples: Mapping[str, Sequence[Sample]]) -> dict[str, dict[str, dict[str, float]]]:
    """Median, 10th and 90th percentile of the LV / RV cavity volumes (ml) at ED and ES per data set (``ACDC``, all
    ``MM-*`` pooled as ``M&Ms``; ACDC-C copies are left out) and pathology group."""
    pools: dict[str, dict[str, dict[str, list[float]]]] = {}
    for domain, items in samples.items():
        if domain.startswith("ACDC-C"):
            continue
        pool = "ACDC" if domain == "ACDC" else "M&Ms"
        for s in items:
            group = _GROUP_ALIASES.get(s.group, s.group or "?")
            cell = pools.setdefault(pool, {}).setdefault(group, {})
            for cavity in ("lv", "rv"):
                cell.setdefault(f"{cavity}_{s.frame}", []).append(s.volumes[cavity])
    out: dict[str, dict[str, dict[str, float]]] = {}
    for pool, groups in pools.items():
        for group in sorted(groups):
            stats: dict[str, float] = {}
            for key, values in groups[group].items():
                arr = np.asarray(values, dtype=np.float64)
                stats[f"{key}_median"] = float(np.median(arr))
                stats[f"{key}_p10"], stats[f"{key}_p90"] = (float(v) for v in np.percentile(arr, [10, 90]))
                stats["n"] = float(arr.size)
            out.setdefault(pool, {})[group] = stats
    return out


def volume_table(volumes: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """Markdown table of :func:`volume_summary`: median [p10–p90] ml, ✓ / ✗ for the median against
    :data:`VOLUME_RANGES`."""
    keys = ("lv_ED", "lv_ES", "rv_ED", "rv_ES")
    lines = ["| data | group | subjects | LV ED ml | LV ES ml | RV ED ml | RV ES ml "
             "| real range (LV ED / ES, RV ED / ES) |", "|---|---|---|---|---|---|---|---|"]
    for pool, groups in volumes.items():
        for group, stats in groups.items():
            ranges = VOLUME_RANGES.get(group)
            cells = []
            for key in keys:
                if f"{key}_median" not in stats:
                    cells.append("–")
                    continue
                med = stats[f"{key}_median"]
                text = f"{med:.0f} [{stats[f'{key}_p10']:.0f}–{stats[f'{key}_p90']:.0f}]"
                if ranges is not None:
                    lo, hi = ranges[key]
                    text += " ✓" if lo <= med <= hi else " ✗"
                cells.append(text)
            real = " / ".join(f"{ranges[k][0]}–{ranges[k][1]}" for k in keys) if ranges else "–"
            lines.append(f"| {pool} | {group} | {stats['n']:.0f} | " + " | ".join(cells) + f" | {real} |")
    return "\n".join(lines)


#: Line colours of the figures (matplotlib's first ten and the outline colours), kept exactly by the palette.
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf", "#ff5050", "#50ff50", "#4fa3ff")


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    save_paletted(fig, path, _PALETTE, dpi=72)
    plt.close(fig)
    return path


def plot_histograms(samples: Mapping[str, Sequence[Sample]], path: PathLike) -> Path:
    """Intensity histograms of the mid-ventricular crops, one line per domain: one panel for the ACDC-like domain and
    the M&Ms-like vendors, one for the ACDC-C sets; a panel without data is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = ("ACDC-like and M&Ms-like vendors", "ACDC-C artefact sets")
    panels: list[list[str]] = [[], []]
    for domain in samples:
        panels[1 if domain.startswith("ACDC-C") else 0].append(domain)
    shown = [(title, domains) for title, domains in zip(titles, panels) if domains]
    fig, axes = plt.subplots(1, max(len(shown), 1), figsize=(5.5 * max(len(shown), 1) + 0.5, 3.8), squeeze=False)
    bins = np.linspace(0.0, 1.0, 51)
    for ax, (title, domains) in zip(axes[0], shown):
        for domain in domains:
            values = np.concatenate([s.image.ravel() for s in samples[domain]])
            hist, _ = np.histogram(values, bins=bins, density=True)
            ax.plot(0.5 * (bins[1:] + bins[:-1]), hist, label=domain, linewidth=1.2 if domain == "ACDC" else 0.9)
        ax.set_yscale("log")
        ax.set_xlabel("preprocessed intensity (192 × 192 crop, mid-ventricular slices)")
        ax.set_ylabel("density")
        ax.set_title(title, fontsize=9)
        ax.axvline(0.1, color="0.6", linewidth=0.6, linestyle=":")
        ax.axvline(0.5, color="0.6", linewidth=0.6, linestyle=":")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, Path(path))


def plot_montage(domain: str, samples: Sequence[Sample], path: PathLike, n_subjects: int = 6) -> Path:
    """ED (top) and ES (bottom) mid-ventricular crops of the first subjects of a domain at the grey scale [0, 1];
    a third row repeats ED with the label outlines (LV red, MYO green, RV blue)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(s.case.name for s in samples))[:n_subjects]
    by_key = {(s.case.name, s.frame): s for s in samples}
    fig, axes = plt.subplots(3, len(names), figsize=(2.0 * len(names), 6.4), squeeze=False)
    for j, name in enumerate(names):
        for i, frame in enumerate(("ED", "ES", "ED")):
            ax = axes[i, j]
            ax.axis("off")
            sample = by_key.get((name, frame))
            if sample is None:
                continue
            ax.imshow(sample.image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            if i == 2:
                for value, colour in ((2, "#50ff50"), (3, "#4fa3ff"), (1, "#ff5050")):  # LV last: stays visible
                    if (sample.label == value).any():
                        ax.contour(sample.label == value, levels=[0.5], colors=colour, linewidths=0.6)
            ax.set_title(f"{name} {frame}", fontsize=7)
    fig.suptitle(f"{domain}: mid-ventricular slices, 192 × 192 crop, grey scale [0, 1]", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return _save(fig, Path(path))


def _slug(domain: str) -> str:
    return domain.replace("/", "_").replace(" ", "_")


def write_report(data_dir: PathLike, out_dir: PathLike, n_montage: int = 6,
                 on_case: Callable[[str], None] | None = None) -> Path:
    """Measure every domain of a prepared data folder and write ``report.md``, ``report.json`` (per domain),
    ``volumes.json`` (per data set and group), ``histograms.png`` and ``montage_<domain>.png`` to ``out_dir``;
    returns the markdown path.

    Raises:
        FileNotFoundError: if the folder holds no preprocessed domain (see
            :func:`~medseg.phantom.report.find_domains`).
    """
    domains = find_domains(data_dir)
    out_dir = Path(out_dir)
    ensure_writable_dir(out_dir)
    samples: dict[str, list[Sample]] = {}
    groups = case_groups(data_dir)
    for domain, cases in domains.items():
        items = []
        for case in cases:
            items.extend(load_samples(case, "" if domain.startswith("ACDC-C") else groups.get(case.name, "")))
            if on_case is not None:
                on_case(case.name)
        if items:
            samples[domain] = items
    summaries = {domain: summarise(items) for domain, items in samples.items()}
    figures = [plot_histograms(samples, out_dir / "histograms.png")]
    for domain, items in samples.items():
        figures.append(plot_montage(domain, items, out_dir / f"montage_{_slug(domain)}.png", n_montage))
    volumes = volume_summary(samples)
    atomic_write_text(out_dir / "report.json", json.dumps(summaries, indent=2) + "\n")
    atomic_write_text(out_dir / "volumes.json", json.dumps(volumes, indent=2) + "\n")
    lines = [
        "# Phantom report",
        "",
        f"Data: `{Path(data_dir).name}`; statistics of the mid-ventricular slice at ED and ES of every subject, on the "
        "preprocessed layout and the test path's 192 × 192 centre crop (definitions: "
        "`medseg/phantom/report.py`, `docs/PHANTOM.md`). ✓ / ✗: the ACDC-like domain's value "
        "is inside / outside its first-order target range (docs/PHANTOM.md).",
        "",
        "## Threshold-rule baseline (Dice)",
        "",
        markdown_table(summaries, DICE_COLUMNS),
        "",
        "## Image statistics",
        "",
        markdown_table(summaries, IMAGE_COLUMNS),
        "",
        "## Mid-ventricular ED slices: spread over subjects, grain, sharpness; shortcut probes",
        "",
        "SD median / SD p75: standard deviation over subjects of the crop's median / 75th-percentile intensity; hp "
        "noise: high-pass residual (σ = 1.5 px) in the darkest quarter; grad p99: 99th percentile of |Sobel| / 8. "
        "Probes (ED and ES samples): *round* is the threshold rule (Otsu + roundest bright blob), *central* the "
        "round (≥ 0.6) bright blob nearest the crop centre; LV found = share of samples with LV Dice > 0.5. "
        "✓ / ✗: the ACDC-like domain against the real-cine ranges (docs/PHANTOM.md).",
        "",
        markdown_table(summaries, ED_COLUMNS, ED_TARGETS),
        "",
        "## Ventricular volumes per group",
        "",
        "Whole-stack cavity volumes (LV label incl. papillary muscles and trabeculae; RV cavity), median [10th–90th "
        "percentile] ml; ✓ / ✗: the median inside / outside the plausible adult range.",
        "",
        volume_table(volumes),
        "",
        "## Figures",
        "",
        *[f"![{p.stem}]({p.name})" for p in figures],
        "",
    ]
    path = out_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))
    logger.info("wrote the phantom report of %d domains to %s", len(summaries), out_dir)
    return path
