"""The test sets of the cross-domain protocol, read patient-wise.

``<data_root>/ACDC`` (the 20 fixed ACDC test subjects), ``<data_root>/ACDC-C/<artefact>/`` (every subject folder,
e.g. ``RandomBias``) and ``<data_root>/MM`` (every subject folder, with ``vendors.csv``). Each frame is one
:class:`~medseg.data.base_dataset.BaseSegmentationDataset` (no resampling, no per-slice
normalisation, as in the published ED+ES protocol); frames are concatenated ED first, with cumulative patient
offsets.

A folder that is missing or holds no subject with image and label files raises :class:`DatasetUnavailable`, which the
runner turns into a warning in the reports instead of stopping the whole run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from medseg.data.splits import get_ACDC_split_policy
from medseg.data.base_dataset import BaseSegmentationDataset, PatientVolume
from medseg.io.nifti import read_volume_info
from medseg.evaluation.reports import read_vendors

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
DEFAULT_DATASETS = ("ACDC", "RandomBias", "RandomSpike", "RandomGhosting", "RandomMotion", "MM")
IMAGE_TEMPLATE = "{p_id}/{frame}_img.nii.gz"
LABEL_TEMPLATE = "{p_id}/{frame}_seg.nii.gz"


class DatasetUnavailable(Exception):
    """A test set cannot be evaluated (missing or empty folder); the message says why."""


class FramesSource:
    """Concatenation of per-frame datasets for patient-wise testing (ED patients first, then ES)."""

    def __init__(self, parts: Sequence[BaseSegmentationDataset]) -> None:
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [p.patient_number for p in self.parts])

    @property
    def patient_number(self) -> int:
        return int(self.offsets[-1])

    def get_patient_data_for_testing(
        self, pid_index: int, crop_size: int = 192, normalize_2D: bool = False  # noqa: N803 (published name)
    ) -> PatientVolume:
        if not 0 <= pid_index < self.patient_number:
            raise IndexError(f"patient index {pid_index} out of range [0, {self.patient_number})")
        part = int(np.searchsorted(self.offsets, pid_index, side="right") - 1)
        local = pid_index - int(self.offsets[part])
        return self.parts[part].get_patient_data_for_testing(local, crop_size=crop_size, normalize_2D=normalize_2D)


@dataclass
class TestSet:
    """A loaded test set: its folder, the patient source, the M&Ms vendor table and notes about skipped subjects."""

    name: str
    folder: Path
    source: FramesSource
    vendors: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "<pid>_<frame>" volumes whose files are unusable


def dataset_folder(data_root: PathLike, name: str) -> Path:
    """``ACDC`` → ``<root>/ACDC``, ``MM`` → ``<root>/MM``, any other name → ``<root>/ACDC-C/<name>``."""
    root = Path(data_root)
    if name in ("ACDC", "MM"):
        return root / name
    return root / "ACDC-C" / name


def _has_frame(folder: Path, pid: str, frame: str) -> bool:
    return (folder / IMAGE_TEMPLATE.format(p_id=pid, frame=frame)).is_file() and (
        folder / LABEL_TEMPLATE.format(p_id=pid, frame=frame)
    ).is_file()


def build_test_set(name: str, data_root: PathLike, frames: Sequence[str] = ("ED", "ES"), cval: int = 0) -> TestSet:
    """Open one test set for patient-wise testing.

    Args:
        name: ``ACDC``, ``MM`` or an ACDC-C artefact name.
        data_root: folder holding ``ACDC/``, ``ACDC-C/`` and ``MM/``.
        frames: frames to test, concatenated in this order.
        cval: fold for the ACDC test split (the 20 test subjects are the same for every fold).

    Raises:
        DatasetUnavailable: the folder is missing or has no subject with both image and label of a requested frame.
    """
    folder = dataset_folder(data_root, name)
    if not folder.is_dir():
        raise DatasetUnavailable(f"{name}: test set folder {folder} does not exist; skipped")
    if name == "ACDC":
        candidates = list(get_ACDC_split_policy("10", cval)["test"])
    else:
        candidates = sorted(p.name for p in folder.iterdir() if p.is_dir())
    notes: list[str] = []
    skipped: list[str] = []
    for pid in [pid for pid in candidates if not _is_utf8(pid)]:  # reports, tables and logs are UTF-8 text
        shown = os.fsencode(pid).decode("utf-8", "backslashreplace")
        note = (f"{name}: subject folder {folder / shown} skipped: expected a UTF-8 folder name (the subject id goes "
                "into the UTF-8 reports), got undecodable bytes; rename it")
        logger.warning(note)
        notes.append(note)
        skipped.extend(f"{shown}_{frame}" for frame in frames)
        candidates.remove(pid)
    parts = []
    for frame in frames:
        present = [pid for pid in candidates if _has_frame(folder, pid, frame)]
        missing = [pid for pid in candidates if pid not in present]
        if missing and present:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            note = (
                f"{name}: {len(missing)} subjects have no {frame} image/label pair under {folder} and are "
                f"skipped: {shown}"
            )
            logger.warning(note)
            notes.append(note)
        usable = []
        for pid in present:  # a bad file skips its volume (with a warning naming it), not the whole test run
            problem = _header_problem(folder, pid, frame)
            if problem is None:
                usable.append(pid)
                continue
            note = f"{name}: volume {pid}_{frame} skipped: {problem}"
            logger.warning(note)
            notes.append(note)
            skipped.append(f"{pid}_{frame}")
        present = usable
        if present:
            parts.append(
                BaseSegmentationDataset(
                    folder,
                    present,
                    frame=frame,
                    use_cache=False,
                    new_spacing=None,
                    image_format_name=IMAGE_TEMPLATE,
                    label_format_name=LABEL_TEMPLATE,
                    dataset_name=name,
                )
            )
    if not parts:
        if skipped:
            raise DatasetUnavailable(f"{name}: none of the {len(skipped)} volume(s) under {folder} is readable "
                                     f"({notes[-1]}); skipped")
        raise DatasetUnavailable(
            f"{name}: no subject under {folder} has {'/'.join(frames)} files "
            f"({IMAGE_TEMPLATE.replace('{p_id}', '<subject>')}, ...); skipped"
        )
    vendors = read_vendors(folder) if name == "MM" else None
    if name == "MM" and vendors is None:
        notes.append(f"MM: {folder / 'vendors.csv'} not found; no vendor breakdown")
    return TestSet(name, folder, FramesSource(parts), vendors, notes, skipped)


def _is_utf8(name: str) -> bool:
    """False for a file name holding bytes that are not UTF-8 (Python keeps them as surrogate escapes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _header_problem(folder: Path, pid: str, frame: str) -> str | None:
    """Why the image/label pair of ``pid``/``frame`` cannot be tested, from the headers (None if it looks usable)."""
    image_path = folder / IMAGE_TEMPLATE.format(p_id=pid, frame=frame)
    label_path = folder / LABEL_TEMPLATE.format(p_id=pid, frame=frame)
    try:
        image = read_volume_info(image_path, ndim=3)
        label = read_volume_info(label_path, ndim=3)
    except (OSError, ValueError) as err:
        return str(err)
    if image.shape != label.shape:
        return (f"label {label_path} has shape {label.shape} but its image {image_path} has shape {image.shape}; "
                "expected identical voxel grids")
    return None
