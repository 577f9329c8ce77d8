"""Patient-wise evaluation of one model on one test set and the per-method report files.

Files written to ``report_dir(checkpoint_dir, dataset)`` (``.../model/best/report/<dataset>/``), all atomically:

* ``iter_{n}_summary.csv``: header ``statistic,LV_Dice,MYO_Dice,RV_Dice`` (+ other metric columns), row 1 =
  ``mean``, row 2 = ``std`` (population standard deviation over patients/frames, ``ddof=0``), ``%.3f`` (the original's
  file, with the rows labelled);
* ``iter_{n}_detailed.csv``: ``patient_id`` + the metric columns, one row per patient/frame, no index;
* ``iter_{n}_describe.csv``: ``DataFrame.describe()`` of the metric columns (count/mean/std (sample)/min/quartiles/max;
  the original wrote it as ``{dataset}['ED', 'ES']_iter_{n}_summary.csv``);
* ``iter_{n}_vendor_summary.csv`` and ``iter_{n}_vendor_detailed.csv`` for M&Ms (vendor breakdown from
  ``vendors.csv``);
* ``iter_{n}_info.json``: what was evaluated (checkpoint, data folder, frames, metrics), NaN counts and warnings;
* with predictions: ``predictions/{patient_id}_pred.nii.gz`` in the original image geometry.

Means and standard deviations skip NaN values (undefined distances); their number is in ``info.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from medseg.evaluation import metrics as seg_metrics
from medseg.io.nifti import write_volume
from medseg.evaluation.geometry import to_reference_grid
from medseg.evaluation.inference import CLASS_NAMES, predict_stack
from medseg.io.atomic import atomic_open, atomic_write_text

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike


class PatientSource(Protocol):
    """What the evaluation needs from a test dataset (the datasets' patient-wise testing API)."""

    patient_number: int

    def get_patient_data_for_testing(self, pid_index: int, crop_size: int = 192, normalize_2D: bool = False) -> Any:
        ...


@dataclass
class DatasetResult:
    """Per-patient metrics of one run on one test set.

    Attributes:
        dataset: test-set name (``ACDC``, ``RandomBias``, ..., ``MM``).
        detailed: one row per patient/frame: ``patient_id``, ``pid`` and the metric columns.
        metric_columns: the metric column names in report order (``LV_Dice, MYO_Dice, RV_Dice, ...``).
        warnings: messages about skipped patients, unexpected labels and undefined distances.
        nan_counts: number of NaN values per metric column.
    """

    dataset: str
    detailed: pd.DataFrame
    metric_columns: list[str]
    warnings: list[str] = field(default_factory=list)
    nan_counts: dict[str, int] = field(default_factory=dict)

    @property
    def dice_columns(self) -> list[str]:
        return [c for c in self.metric_columns if c.endswith("_Dice")]

    def patient_mean_dice(self) -> pd.Series:
        """Per-patient Dice averaged over classes (for box plots)."""
        return self.detailed[self.dice_columns].mean(axis=1)

    def mean_dice(self) -> float:
        """Mean over classes of the patient-mean Dice (the paper's per-dataset number)."""
        if self.detailed.empty or not self.dice_columns:
            return float("nan")
        return float(np.nanmean(self.detailed[self.dice_columns].mean(axis=0).to_numpy()))


def metric_columns(metric_names: Sequence[str], classes: dict[int, str] = CLASS_NAMES) -> list[str]:
    """Column names, metric-major: ``LV_Dice, MYO_Dice, RV_Dice, LV_HD95, ...``."""
    return [f"{name}_{metric}" for metric in metric_names for name in classes.values()]


def evaluate_dataset(
    model: Any,
    source: PatientSource,
    dataset: str,
    metric_names: Sequence[str] = ("Dice",),
    n_iter: int = 2,
    batch_slices: int = 10,
    device: torch.device | None = None,
    predictions_dir: Path | None = None,
    num_classes: int = 4,
    on_patient: Callable[[], None] | None = None,
    normalize_2D: bool = False,  # noqa: N803 (published name)
    crop_size: int = 192,
) -> DatasetResult:
    """Predict every patient/frame of ``source`` and compute the per-class metrics on the 3D stack.

    Args:
        model: loaded model (``predict(x, softmax=False, n_iter)``).
        source: test dataset (``patient_number`` and ``get_patient_data_for_testing``).
        dataset: name used in messages and reports.
        metric_names: metrics of :mod:`medseg.evaluation.metrics` (``Dice``, ``HD``, ``HD95``, ``ASSD``).
        n_iter: 1 = FTN, 2 = FTN + STN.
        batch_slices: slices per forward pass.
        device: model device.
        predictions_dir: if given, write ``{patient_id}_pred.nii.gz`` there in the original image geometry.
        num_classes: classes the model predicts; a patient whose ground truth holds values outside
            ``[0, num_classes)`` is skipped with a warning (they would count as background for every scored class).
        on_patient: called after each patient (progress bars).
        normalize_2D: min–max each slice to [0, 1] before predicting (off in the published protocol).
        crop_size: in-plane centre crop / zero pad of the test volumes (the published 192; smaller for models
            trained on a coarser grid, e.g. 96 at 2.734 mm covers the same field of view).

    Returns:
        The :class:`DatasetResult`. A patient whose files cannot be read, whose image and label grids differ, whose
        image is constant or whose labels are not the model's classes is skipped with a warning; an empty ground
        truth is scored (Dice 0) with a warning.
    """
    columns = metric_columns(metric_names)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for index in range(int(source.patient_number)):
        try:
            patient = source.get_patient_data_for_testing(index, crop_size=crop_size, normalize_2D=normalize_2D)
        except (OSError, ValueError, RuntimeError) as err:
            message = f"{dataset}: patient #{index} skipped: {err}"
            logger.warning(message)
            notes.append(message)
            if on_patient is not None:
                on_patient()
            continue
        gt = torch.as_tensor(patient.label).cpu().numpy()
        unexpected = sorted(int(v) for v in np.unique(gt) if v < 0 or v >= num_classes)
        if unexpected:  # scored as background they would silently lower the Dice (training refuses them)
            message = (
                f"{dataset}: patient {patient.patient_id} skipped: {patient.label_path}: label values {unexpected} "
                f"lie outside the model's classes 0..{num_classes - 1}; expected only these (check the label "
                "convention of the files)"
            )
            logger.warning(message)
            notes.append(message)
            if on_patient is not None:
                on_patient()
            continue
        if not gt.any():
            message = (
                f"{dataset}: {patient.label_path}: the ground truth of {patient.patient_id} has no labelled voxel in "
                f"the evaluated {gt.shape[-2]} x {gt.shape[-1]} field of view; it enters the means with Dice 0 for "
                "every class"
            )
            logger.warning(message)
            notes.append(message)
        pred = predict_stack(model, patient.image, n_iter=n_iter, batch_slices=batch_slices, device=device)
        spacing = seg_metrics.spacing_from_itk(patient.spacing)
        scores = seg_metrics.class_metrics(pred, gt, CLASS_NAMES, metric_names, spacing)
        rows.append({"patient_id": patient.patient_id, "pid": patient.pid, **{c: scores[c] for c in columns}})
        if predictions_dir is not None:
            save_prediction(pred, patient, predictions_dir)
        if on_patient is not None:
            on_patient()
    detailed = pd.DataFrame(rows, columns=["patient_id", "pid", *columns])
    nan_counts = {c: int(detailed[c].isna().sum()) for c in columns}
    for column, count in nan_counts.items():
        if count:
            message = f"{dataset}: {column} undefined (empty prediction or ground truth) for {count} of {len(detailed)}"
            logger.info(message)
            notes.append(message)
    return DatasetResult(dataset, detailed, columns, notes, nan_counts)


def save_prediction(pred: np.ndarray, patient: Any, predictions_dir: Path) -> Path:
    """Write ``pred (Z, 192, 192)`` as ``{patient_id}_pred.nii.gz`` on the grid of ``patient.reference``."""
    reference = patient.reference
    labels = to_reference_grid(pred, patient.crop_info, reference, tuple(patient.spacing))
    return write_volume(Path(predictions_dir) / f"{patient.patient_id}_pred.nii.gz", labels.astype(np.uint8), reference)


# ---------------------------------------------------------------------------------------------------------- files
def summary_frame(result: DatasetResult) -> pd.DataFrame:
    """Row ``mean`` and row ``std`` (population, NaN skipped), one column per metric; the index is ``statistic``."""
    values = result.detailed[result.metric_columns].to_numpy(dtype=np.float64)
    with warnings.catch_warnings():  # all-NaN columns give NaN, which is what we want
        warnings.simplefilter("ignore", category=RuntimeWarning)
        means = np.nanmean(values, axis=0) if len(values) else np.full(len(result.metric_columns), np.nan)
        stds = np.nanstd(values, axis=0, ddof=0) if len(values) else np.full(len(result.metric_columns), np.nan)
    frame = pd.DataFrame([means, stds], columns=result.metric_columns, index=["mean", "std"])
    frame.index.name = "statistic"
    return frame


def _write_csv(frame: pd.DataFrame, path: Path, **kwargs: Any) -> Path:
    with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        frame.to_csv(handle, **kwargs)
    return path


def read_vendors(mm_root: PathLike) -> pd.DataFrame | None:
    """Read ``<MM>/vendors.csv`` (columns ``subject, vendor, vendor_name, centre``); None if absent.

    Raises:
        ValueError: naming the file if a column is missing.
    """
    path = Path(mm_root) / "vendors.csv"
    if not path.is_file():
        return None
    return read_vendors_table(path)


def read_vendors_table(path: PathLike) -> pd.DataFrame:
    """A vendors table (``subject, vendor`` and optionally ``vendor_name, centre``; missing optional columns empty).

    Raises:
        ValueError: naming the file if ``subject`` or ``vendor`` is missing.
    """
    table = pd.read_csv(path, dtype=str)
    missing = {"subject", "vendor"} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}; expected subject, vendor, vendor_name, centre")
    for optional in ("vendor_name", "centre"):
        if optional not in table.columns:
            table[optional] = ""
    return table[["subject", "vendor", "vendor_name", "centre"]].fillna("")


def vendor_tables(result: DatasetResult, vendors: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-patient rows with vendor columns, and per-vendor means/stds (population) of every metric.

    Returns:
        ``(detailed, summary)``: ``detailed`` has ``patient_id, subject, vendor, vendor_name, centre`` + metrics;
        ``summary`` has ``vendor, vendor_name, n`` and ``{metric}_mean`` / ``{metric}_std`` columns, plus
        ``Dice_mean`` (mean over classes). Subjects missing from ``vendors.csv`` get vendor ``unknown``.
    """
    detailed = result.detailed.rename(columns={"pid": "subject"}).merge(vendors, on="subject", how="left")
    detailed[["vendor", "vendor_name", "centre"]] = detailed[["vendor", "vendor_name", "centre"]].fillna("unknown")
    detailed = detailed[["patient_id", "subject", "vendor", "vendor_name", "centre", *result.metric_columns]]
    rows = []
    for (vendor, name), group in detailed.groupby(["vendor", "vendor_name"], sort=True):
        row: dict[str, Any] = {"vendor": vendor, "vendor_name": name, "n": len(group)}
        for column in result.metric_columns:
            values = group[column].to_numpy(dtype=np.float64)
            finite = values[~np.isnan(values)]
            row[f"{column}_mean"] = float(finite.mean()) if finite.size else math.nan
            row[f"{column}_std"] = float(finite.std(ddof=0)) if finite.size else math.nan
        dice = [row[f"{c}_mean"] for c in result.dice_columns]
        row["Dice_mean"] = float(np.mean(dice)) if dice else math.nan
        rows.append(row)
    return detailed, pd.DataFrame(rows)


def write_dataset_report(
    result: DatasetResult,
    out_dir: PathLike,
    n_iter: int,
    info: dict[str, Any] | None = None,
    vendors: pd.DataFrame | None = None,
) -> list[Path]:
    """Write the per-method report files of one dataset (see the module docstring). Returns the written paths."""
    out_dir = Path(out_dir)
    prefix = f"iter_{n_iter}"
    written = [
        _write_csv(summary_frame(result), out_dir / f"{prefix}_summary.csv", float_format="%.3f"),
        _write_csv(
            result.detailed[["patient_id", *result.metric_columns]], out_dir / f"{prefix}_detailed.csv", index=False
        ),
    ]
    describe = result.detailed[result.metric_columns].astype(float).describe()
    describe.index.name = "statistic"
    written.append(_write_csv(describe, out_dir / f"{prefix}_describe.csv"))
    if vendors is not None:
        vendor_detailed, vendor_summary = vendor_tables(result, vendors)
        written.append(_write_csv(vendor_detailed, out_dir / f"{prefix}_vendor_detailed.csv", index=False))
        written.append(
            _write_csv(vendor_summary, out_dir / f"{prefix}_vendor_summary.csv", index=False, float_format="%.4f")
        )
    payload = {
        **(info or {}),
        "dataset": result.dataset,
        "n_iter": n_iter,
        "n_patients": int(len(result.detailed)),
        "metric_columns": result.metric_columns,
        "nan_counts": result.nan_counts,
        "warnings": result.warnings,
        "dice_convention": "Dice of two empty masks = 0.0 (as published); undefined distances are NaN and skipped",
    }
    info_path = out_dir / f"{prefix}_info.json"
    atomic_write_text(info_path, json.dumps(payload, indent=2, default=str) + "\n")
    written.append(info_path)
    return written
