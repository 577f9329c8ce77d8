"""Saved results a report is rebuilt from without the experiment folder's tests: the per-volume Dice of finished
experiments (their ``volumes.csv``; several are pooled), their trend tables, the M&Ms vendor table and the
training-curve summary, checked against the budget."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from medseg.evaluation.reports import read_vendors_table
from medseg.experiments.tables import run_keys
from medseg.experiments.trend import RECON_KEYS, recon_beside

if TYPE_CHECKING:
    from medseg.experiments.budgets import Budget


@dataclass
class SavedResults:
    """What a report can be rebuilt from without the experiment folder's tests: the per-volume Dice of a finished
    experiment (its ``volumes.csv``, e.g. ``docs/RESULTS_data/volumes.csv``), the M&Ms vendor table and the
    training-curve summary if saved, and lines saying where they come from (shown in the report)."""

    volumes: pd.DataFrame
    vendors: pd.DataFrame | None = None
    plateau: pd.DataFrame | None = None
    provenance: list[str] = field(default_factory=list)
    trend: pd.DataFrame | None = None  # rows of saved trend/trend.csv files (the training-length trend)
    recon: pd.DataFrame | None = None  # rows of the recon.csv saved beside them (reconstruction quality per epoch)


VOLUME_KEYS = ("method", "cval", "seed", "n_iter", "dataset", "patient_id", "pid", "LV_Dice", "MYO_Dice", "RV_Dice")
TREND_KEYS = ("method", "cval", "seed", "epoch", "ACDC", "avg_ood")


def read_saved(volumes_csv: Path | Sequence[Path], budget: Budget, vendors_csv: Path | None = None,
               plateau_csv: Path | None = None, notes: list[str] | None = None,
               commit: str | None = None, trend_csv: Sequence[Path] = ()) -> SavedResults:
    """Read saved results for :func:`rebuild`, checked against the budget (its methods, runs and n_iter).

    Several ``volumes.csv`` (and ``trend/trend.csv``) files are pooled: the runs of two experiment folders, e.g. a
    budget's runs and more runs of other seeds, make one report (the budget's ``runs`` must then name all of them).
    A run is a (cval, seed) pair; the same run in two files is refused.

    Raises:
        FileNotFoundError: a named file is missing.
        ValueError: a column is missing, a run is in two files, or a file holds methods/runs the budget does not
            name (naming the file).
    """
    paths = [Path(volumes_csv)] if isinstance(volumes_csv, (str, os.PathLike)) else [Path(p) for p in volumes_csv]
    trend_paths = [Path(p) for p in trend_csv]
    if not paths:
        raise ValueError("saved results: no volumes.csv given")
    for path in (*paths, vendors_csv, plateau_csv, *trend_paths):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"saved results: {path} not found")
    volumes = pd.concat([_read_saved_volumes(path, budget) for path in paths], ignore_index=True)
    _refuse_repeated_runs([(path, _read_runs(path)) for path in paths], "volumes")
    volumes = volumes[volumes["n_iter"].isin(list(budget.n_iter))].reset_index(drop=True)
    trends = []
    for path in trend_paths:
        trends.append(_checked(pd.read_csv(path), path, budget, TREND_KEYS, "an experiment's trend/trend.csv"))
    _refuse_repeated_runs([(path, run_keys(frame)) for path, frame in zip(trend_paths, trends, strict=True)], "trend")
    recon_paths = [recon_beside(p) for p in trend_paths if recon_beside(p).is_file()]
    recons = [_checked(pd.read_csv(p), p, budget, RECON_KEYS, "a trend's recon.csv") for p in recon_paths]
    vendors = read_vendors_file(vendors_csv) if vendors_csv is not None else None
    plateau = pd.read_csv(plateau_csv) if plateau_csv is not None else None
    listed = ", ".join(f"`{p.as_posix()}`" for p in paths)
    lines = [f"Rebuilt without training or testing from the saved per-volume Dice {listed}"
             + (f", trend {', '.join(f'`{p.as_posix()}`' for p in trend_paths)}" if trend_paths else "")
             + (f" with reconstruction quality {', '.join(f'`{p.as_posix()}`' for p in recon_paths)}"
                if recon_paths else "")
             + (f", vendors `{Path(vendors_csv).as_posix()}`" if vendors_csv else "")
             + (f", training-curve summary `{Path(plateau_csv).as_posix()}`" if plateau_csv else "")
             + ": the compute times, commands and curve figures of the runs are not in these files (see the git "
               "history of the published report for the report written when the runs finished)"
             + (f"; rebuilt by commit `{commit}`" if commit else "") + "."]
    lines += list(notes or [])
    trend_frame = pd.concat(trends, ignore_index=True) if trends else None
    recon_frame = pd.concat(recons, ignore_index=True) if recons else None
    return SavedResults(volumes, vendors, plateau, lines, trend_frame, recon_frame)


def _read_saved_volumes(path: Path, budget: Budget) -> pd.DataFrame:
    volumes = pd.read_csv(path, dtype={"patient_id": str, "pid": str, "dataset": str, "method": str})
    return _checked(volumes, path, budget, VOLUME_KEYS, "the experiment's volumes.csv")


def _checked(frame: pd.DataFrame, path: Path, budget: Budget, keys: Sequence[str], expected: str) -> pd.DataFrame:
    """``frame`` read from ``path`` if it has ``keys`` and only the budget's methods and runs (else ValueError)."""
    missing = [k for k in keys if k not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {expected}")
    unknown = sorted(set(frame["method"].astype(str)) - set(budget.methods))
    if unknown:
        raise ValueError(f"{path}: methods {unknown} are not the budget's ({', '.join(budget.methods)})")
    foreign = sorted(set(run_keys(frame)) - set(budget.runs))
    if foreign:
        raise ValueError(f"{path}: runs (cval, seed) {foreign} are not the budget's {list(budget.runs)}; pass "
                         "--runs to name them")
    return frame


def _read_runs(path: Path) -> list[tuple[int, int]]:
    return run_keys(pd.read_csv(path, usecols=["cval", "seed"]))


def _refuse_repeated_runs(files: list[tuple[Path, list[tuple[int, int]]]], what: str) -> None:
    """A run (cval, seed) may come from one file only: two files with the same run would count it twice."""
    seen: dict[tuple[int, int], Path] = {}
    for path, runs in files:
        for run in runs:
            if run in seen:
                raise ValueError(f"{path}: run (cval, seed) {run} is also in {seen[run]}; each run's {what} must "
                                 "come from one file")
            seen[run] = path


def read_vendors_file(path: Path) -> pd.DataFrame:
    """A vendors table saved beside a report (``MM_vendors.csv``) or a data folder's ``MM/vendors.csv``.

    Raises:
        ValueError: naming the file if ``subject`` or ``vendor`` is missing.
    """
    return read_vendors_table(path)
