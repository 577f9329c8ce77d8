"""Figures of the experiment beyond the test script's box plots: the two ACDC-C columns side by side, and the
training-length trend (Dice against epochs beside the image decoder's reconstruction quality)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from medseg.evaluation.aggregate import RESAMPLED_SUFFIX
from medseg.io.atomic import atomic_output_path
from medseg.io.nifti import read_volume

PathLike = str | os.PathLike


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: PathLike, dpi: int = 100) -> Path:
    path = Path(path)
    with atomic_output_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    _pyplot().close(fig)
    return path


def acdc_c_columns_figure(copy_root: PathLike, path: PathLike, case: str | None = None, frame: str = "ED",
                          artefacts: Sequence[str] = ("RandomBias", "RandomSpike", "RandomGhosting", "RandomMotion")
                          ) -> Path | None:
    """One row per artefact: the clean image, the corruption drawn at the grid and the native-grid corruption
    resampled to it (mid slice of one case, the first case of RandomSpike unless ``case`` is given). None if the copy
    has no pair of sets."""
    root = Path(copy_root) / "ACDC-C"
    shown = [a for a in artefacts if (root / a).is_dir() and (root / f"{a}{RESAMPLED_SUFFIX}").is_dir()]
    if not shown:
        return None
    if case is None:
        cases = sorted(p.name for p in (root / shown[0]).iterdir() if p.is_dir())
        if not cases:
            return None
        case = cases[0]
    pid = case.rpartition("_")[0]
    clean_path = Path(copy_root) / "ACDC" / pid / f"{frame}_img.nii.gz"
    plt = _pyplot()
    fig, axes = plt.subplots(len(shown), 3, figsize=(7.5, 2.6 * len(shown)), squeeze=False)
    clean = read_volume(clean_path).array if clean_path.is_file() else None
    for row, artefact in enumerate(shown):
        at_grid = read_volume(root / artefact / case / f"{frame}_img.nii.gz").array
        resampled = read_volume(root / f"{artefact}{RESAMPLED_SUFFIX}" / case / f"{frame}_img.nii.gz").array
        z = at_grid.shape[0] // 2
        panels = [(clean, "clean (resampled)"), (at_grid, f"{artefact}: drawn at the grid"),
                  (resampled, f"{artefact}{RESAMPLED_SUFFIX}:\nnative grid, then resampled")]
        for ax, (image, title) in zip(axes[row], panels):
            ax.axis("off")
            if image is None:
                continue
            ax.imshow(image[z], cmap="gray", interpolation="nearest")
            ax.set_title(title, fontsize=8)
    fig.suptitle(f"ACDC-C case {case} {frame}, mid slice, at the model's grid", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def trend_figure(trend: pd.DataFrame, recon: pd.DataFrame | None, path: PathLike,
                 title: str, recon_missing: str = "not logged by these runs") -> Path | None:
    """In-domain and ``avg_ood`` Dice against epochs (each run thin, the mean over runs thick, one colour per
    method), beside the image decoder's reconstruction quality per epoch (validation PSNR of the clean reconstruction
    and the mean |masked − clean| change of the decoded hard examples).

    Args:
        trend: rows ``method, cval, seed, epoch, ACDC, avg_ood`` (the best-so-far model at ``epoch`` tested with
            n_iter 2).
        recon: rows ``method, cval, seed, epoch`` + ``recon/val_psnr``, ``recon/hard_change`` of the runs'
            ``metrics.csv`` (:func:`medseg.experiments.trend.read_recon`; None or empty: no curves).
        recon_missing: the text of a reconstruction panel without any curve.
    """
    if trend.empty:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(16.0, 3.8))
    colours = {}
    for k, method in enumerate(dict.fromkeys(trend["method"])):
        colours[method] = f"C{k}"
    for ax, column, label in ((axes[0], "ACDC", "in-domain Dice (ACDC)"),
                              (axes[1], "avg_ood", "out-of-domain Dice (avg_ood)")):
        for method, part in trend.groupby("method", sort=False):
            for _, run in part.groupby(["cval", "seed"]):
                run = run.sort_values("epoch")
                ax.plot(run["epoch"], run[column], color=colours[method], alpha=0.35, linewidth=1, marker=".")
            mean = part.groupby("epoch")[column].mean()
            ax.plot(mean.index, mean.to_numpy(), color=colours[method], linewidth=2.5, marker="o",
                    label=f"{method} (mean of {len(part[['cval', 'seed']].drop_duplicates())} runs)")
        ax.set_xlabel("epochs trained (best model so far)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax, key, label in ((axes[2], "recon/val_psnr", "validation PSNR of the clean reconstruction (dB)"),
                           (axes[3], "recon/hard_change", "mean |masked − clean| of hard examples")):
        drawn = False
        usable = recon is not None and key in recon.columns
        for (method, _, _), frame in (recon.groupby(["method", "cval", "seed"], sort=False) if usable else ()):
            if frame[key].isna().all():
                continue
            frame = frame.sort_values("epoch")
            # metrics.csv counts epochs from 0: row e is the model after e + 1 epochs, as the kept models
            ax.plot(frame["epoch"] + 1, frame[key], color=colours.get(method, "k"), alpha=0.6, linewidth=1)
            drawn = True
        ax.set_xlabel("epochs trained")
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
        if not drawn:
            ax.text(0.5, 0.5, recon_missing, ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def trend_means(trend: pd.DataFrame) -> pd.DataFrame:
    """Mean over runs per epoch of ACDC and avg_ood for each method, and the differences (the second method minus
    the first, in order of appearance), over the runs (cval, seed) that both methods have at that epoch: a run one
    method lacks is left out of both means, so the difference stays paired. ``n_runs`` counts them per epoch."""
    methods = list(dict.fromkeys(trend["method"]))
    if len(methods) != 2:
        return trend.groupby(["method", "epoch"], sort=False)[["ACDC", "avg_ood"]].mean().reset_index()
    keys = ["cval", "seed", "epoch"]
    wide = trend.pivot_table(index=keys, columns="method", values=["ACDC", "avg_ood"])
    wide = wide.dropna(subset=[(c, m) for c in ("ACDC", "avg_ood") for m in methods])
    rows = []
    for epoch, part in wide.groupby(level="epoch", sort=True):
        row: dict[str, float | int] = {"epoch": int(epoch), "n_runs": len(part)}
        for column in ("ACDC", "avg_ood"):
            for name in methods:
                row[f"{column}_{name}"] = float(part[(column, name)].mean())
        for column in ("ACDC", "avg_ood"):
            row[f"{column}_difference"] = float((part[(column, methods[1])] - part[(column, methods[0])]).mean())
        rows.append(row)
    return pd.DataFrame(rows)