"""Dose–response of a trained model to graded image corruptions of its in-domain test volumes.

ACDC-C draws each artefact at one random strength, so a test set's mean Dice mixes mild and severe cases and a
collapse (e.g. RandomSpike) cannot tell a cliff from the tail of a smooth decline. This module sweeps one parameter at
a time on the clean test volumes, the network's input grid, and reports mean Dice per level:

* ``spike``: the published spike pipeline (per-slice min–max, one TorchIO k-space spike of fixed ``intensity`` ×
  the largest k-space magnitude on the slice stack, per-slice min–max again; ACDC-C draws 1–3). The spike position
  is fixed per volume, so only the intensity changes along the sweep;
* ``compression``: the contrast loss a strong spike causes after the second min–max, without its stripes:
  ``x → (1 − c)·x + c/2`` (tissue contrast × (1 − c), every grey level pulled toward mid-grey);
* ``noise``: additive Gaussian noise of standard deviation σ, clipped to [0, 1] (training adds σ = 0.05).

Level 0 of every family is the clean (min–max normalised) volume. Randomness is seeded per volume and restored
afterwards (the caller's RNG state is untouched).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
import torchio as tio

from medseg.data.intensity import rescale_slices
from medseg.evaluation.reports import evaluate_dataset
from medseg.io.atomic import atomic_output_path
from medseg.robustness.corruptions import corrupt_slice_stack

ScalarFn = Callable[[np.ndarray, float, int], np.ndarray]


def _spike(stack: np.ndarray, level: float, seed: int) -> np.ndarray:
    if level == 0:
        return rescale_slices(stack)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # same spike position at every intensity of one volume
        return corrupt_slice_stack(rescale_slices(stack), tio.RandomSpike(num_spikes=(1, 1), intensity=(level, level)))


def _compression(stack: np.ndarray, level: float, seed: int) -> np.ndarray:
    del seed
    return ((1.0 - level) * rescale_slices(stack) + 0.5 * level).astype(np.float32)


def _noise(stack: np.ndarray, level: float, seed: int) -> np.ndarray:
    clean = rescale_slices(stack)
    if level == 0:
        return clean
    noise = np.random.default_rng(seed).standard_normal(clean.shape).astype(np.float32)
    return np.clip(clean + np.float32(level) * noise, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class Family:
    """A graded corruption: ``apply(stack (Z, H, W), level, seed) -> stack`` in [0, 1]; ``levels`` start at 0."""

    name: str
    parameter: str
    levels: tuple[float, ...]
    apply: ScalarFn
    description: str
    published_range: tuple[float, float] | None = None  # the range ACDC-C draws from, shaded in the plot


FAMILIES: Mapping[str, Family] = {
    "spike": Family("spike", "intensity", (0.0, 0.25, 0.5, 1.0, 2.0, 3.0), _spike,
                    "published spike pipeline at a fixed intensity (ACDC-C draws 1-3)", (1.0, 3.0)),
    "compression": Family("compression", "c", (0.0, 0.1, 0.2, 0.3, 0.4, 0.5), _compression,
                          "x -> (1 - c) x + c/2: contrast x (1 - c), pulled toward mid-grey, no stripes"),
    "noise": Family("noise", "sigma", (0.0, 0.05, 0.1, 0.15, 0.2), _noise,
                    "additive Gaussian noise, clipped to [0, 1] (training adds sigma 0.05)"),
}


def volume_seed(seed: int, patient_id: str) -> int:
    """Seed of one volume's corruption: stable across runs, levels and processes."""
    return (seed * 1_000_003 + zlib.crc32(patient_id.encode())) % (2**31)


class CorruptedSource:
    """A patient source whose test volumes pass through ``family`` at ``level`` (labels and geometry unchanged)."""

    def __init__(self, source: Any, family: Family, level: float, seed: int = 0) -> None:
        self.source, self.family, self.level, self.seed = source, family, float(level), seed

    @property
    def patient_number(self) -> int:
        return int(self.source.patient_number)

    def get_patient_data_for_testing(self, pid_index: int, crop_size: int = 192, normalize_2D: bool = False):
        patient = self.source.get_patient_data_for_testing(pid_index, crop_size=crop_size, normalize_2D=normalize_2D)
        stack = torch.as_tensor(patient.image).float().numpy()[:, 0]  # (N, H, W)
        out = self.family.apply(stack, self.level, volume_seed(self.seed, patient.patient_id))
        return replace(patient, image=torch.from_numpy(np.ascontiguousarray(out))[:, None])


class PatientSubset:
    """The first ``max_subjects`` subjects of a frame-concatenated source (:class:`FramesSource`): their ED and ES."""

    def __init__(self, source: Any, max_subjects: int) -> None:
        if max_subjects < 1:
            raise ValueError(f"max_subjects must be >= 1, got {max_subjects}")
        self.source = source
        self.indices = [int(offset) + k for part, offset in zip(source.parts, source.offsets)
                        for k in range(min(max_subjects, int(part.patient_number)))]

    @property
    def patient_number(self) -> int:
        return len(self.indices)

    def get_patient_data_for_testing(self, pid_index: int, crop_size: int = 192, normalize_2D: bool = False):
        return self.source.get_patient_data_for_testing(self.indices[pid_index], crop_size=crop_size,
                                                        normalize_2D=normalize_2D)


def sweep(
    models: Mapping[str, Any],
    source: Any,
    families: Sequence[str] = tuple(FAMILIES),
    n_iters: Sequence[int] = (1, 2),
    crop_size: int = 192,
    seed: int = 0,
    device: torch.device | None = None,
    on_step: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Mean Dice of every model × family × level × n_iter on ``source``'s volumes.

    Args:
        models: name → loaded model (``predict(x, softmax=False, n_iter)``).
        source: in-domain test volumes (``patient_number``, ``get_patient_data_for_testing``).
        families: keys of :data:`FAMILIES`.
        n_iters: test settings (1 = FTN, 2 = FTN + STN).
        crop_size: in-plane crop of the test volumes (the model's grid: 96 for the cpu budget's 2.734 mm).
        seed: base seed of the corruptions.
        device: model device.
        on_step: called with a label after each evaluated (model, family, level, n_iter).

    Returns:
        One row per combination: ``model, family, parameter, level, n_iter, volumes, mean_dice, LV_Dice, MYO_Dice,
        RV_Dice, zero_share`` (share of volumes with Dice 0 on every class, e.g. an empty prediction). Dice as in the
        test protocol (:meth:`~medseg.evaluation.reports.DatasetResult.mean_dice`).
    """
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown corruption families {unknown}; valid: {list(FAMILIES)}")
    rows = []
    for name, model in models.items():
        for family_name in families:
            family = FAMILIES[family_name]
            for level in family.levels:
                corrupted = CorruptedSource(source, family, level, seed)
                for n_iter in n_iters:
                    result = evaluate_dataset(model, corrupted, f"{family_name}={level}", n_iter=n_iter,
                                              device=device, crop_size=crop_size)
                    dice = result.detailed[result.dice_columns]
                    rows.append({
                        "model": name, "family": family_name, "parameter": family.parameter, "level": level,
                        "n_iter": n_iter, "volumes": len(dice), "mean_dice": result.mean_dice(),
                        **{c: float(dice[c].mean()) for c in result.dice_columns},
                        "zero_share": float((dice.max(axis=1) == 0).mean()) if len(dice) else float("nan"),
                    })
                    if on_step is not None:
                        on_step(f"{name} {family_name}={level} n_iter {n_iter}")
    return pd.DataFrame(rows)


def sweep_markdown(table: pd.DataFrame) -> str:
    """One markdown table per (family, n_iter): rows = levels, columns = models (mean Dice)."""
    parts = []
    for (family_name, n_iter), group in table.groupby(["family", "n_iter"], sort=False):
        family = FAMILIES[family_name]
        wide = group.pivot(index="level", columns="model", values="mean_dice")
        models = list(dict.fromkeys(group["model"]))
        parts.append(f"**{family_name}** ({family.description}), n_iter {n_iter}, "
                     f"{int(group['volumes'].iloc[0])} volumes: mean Dice (LV/MYO/RV)\n")
        parts.append(f"| {family.parameter} | " + " | ".join(models) + " |")
        parts.append("|---|" + "|".join(":---:" for _ in models) + "|")
        for level, row in wide.iterrows():
            parts.append(f"| {level:g} | " + " | ".join(f"{row[m]:.3f}" for m in models) + " |")
        parts.append("")
    return "\n".join(parts)


def sweep_plot(table: pd.DataFrame, path) -> None:
    """Mean Dice against level, one panel per family, one line per model and n_iter (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(dict.fromkeys(table["family"]))
    fig, axes = plt.subplots(1, len(families), figsize=(4.2 * len(families), 3.4), squeeze=False)
    for ax, family_name in zip(axes[0], families):
        group = table[table["family"] == family_name]
        for (model, n_iter), line in group.groupby(["model", "n_iter"], sort=False):
            ax.plot(line["level"], line["mean_dice"], marker="o", linestyle="-" if n_iter == 2 else "--",
                    label=f"{model}, n_iter {n_iter}")
        if FAMILIES[family_name].published_range is not None:
            ax.axvspan(*FAMILIES[family_name].published_range, color="0.93", zorder=0, label="ACDC-C range")
        ax.set_title(family_name)
        ax.set_xlabel(FAMILIES[family_name].parameter)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean Dice (LV/MYO/RV)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_output_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
