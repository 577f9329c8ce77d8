"""Preprocessing shared by the ACDC and M&Ms converters: normalisation, in-plane resampling, label remapping,
and a per-subject runner that writes every subject all-or-nothing and reports every failure at the end.

A subject that is (re)done first loses its earlier outputs, so a failure leaves nothing of it; output subject folders
that no input subject maps to are removed on a rebuild (``--overwrite``) when they hold only this converter's files,
and are reported otherwise (:func:`clean_stray_subjects`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medseg.conversion.resample import TARGET_SPACING_XY, resample_in_plane  # noqa: F401 (re-exported)
from medseg.conversion.resample import resample_to_grid
from medseg.io.nifti import Volume, check_label_values, check_same_grid, nifti_file_problem, write_volume
from medseg.io.plausibility import (  # noqa: F401 (the ranges are re-exported)
    IN_PLANE_SPACING_RANGE,
    RAW_SCAN,
    SLICE_SPACING_RANGE,
    check_image_volume,
)
from medseg.utils.cli import describe
from medseg.io.atomic import TEMP_FILE_PATTERN, remove_stale_temp_files

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

MEDSEG_LABELS = frozenset({0, 1, 2, 3})  # 0 BG, 1 LV, 2 MYO, 3 RV
#: Raw ACDC (1 RV, 2 MYO, 3 LV) → medseg (1 LV, 2 MYO, 3 RV).
ACDC_TO_MEDSEG = {0: 0, 1: 3, 2: 2, 3: 1}
STRUCTURES = {1: "LV", 2: "MYO", 3: "RV"}  # medseg label values of the foreground structures
OUTPUT_NAMES = tuple(f"{frame}_{kind}.nii.gz" for frame in ("ED", "ES") for kind in ("img", "seg"))
#: Errors that make one subject fail without stopping a run over many subjects.
SUBJECT_ERRORS = (OSError, ValueError, KeyError, RuntimeError)


def normalize_percentile(array: np.ndarray, low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """Clip to the ``[low, high]`` percentiles of the whole array and scale to [0, 1].

    Args:
        array: intensities of one 3D volume, ``(Z, H, W)``.

    Returns:
        float32 array of the same shape, ``(x - p_low) / (p_high - p_low + 1e-10)`` after clipping.
    """
    array = np.asarray(array, dtype=np.float32)
    p_low, p_high = np.percentile(array, [low, high])
    clipped = np.clip(array, p_low, p_high)
    return ((clipped - p_low) / (p_high - p_low + 1e-10)).astype(np.float32)


def remap_labels(label: Volume, mapping: Mapping[int, int]) -> np.ndarray:
    """Map label values through ``mapping`` (every value present must be a key), returning uint8.

    Raises:
        ValueError: naming the file if a value has no mapping.
    """
    check_label_values(label, frozenset(mapping))
    lut = np.zeros(max(mapping) + 1, dtype=np.uint8)
    for old, new in mapping.items():
        lut[old] = new
    return lut[label.array.astype(np.int64)]


def preprocess_pair(
    image: Volume, label: Volume, label_map: Mapping[int, int] | None = None,
    spacing_xy: tuple[float, float] = TARGET_SPACING_XY, *, frame_name: str | None = None,
) -> tuple[Volume, Volume]:
    """Normalise, resample and relabel one ``(Z, H, W)`` image/label pair (the grids must already agree).

    Args:
        image: intensities (any numeric type).
        label: label map; its values must be keys of ``label_map`` (or 0..3 if ``label_map`` is None).
        label_map: old → new label values (None keeps medseg labels as they are).
        frame_name: which frame of the subject this is (e.g. ``"ED frame 1"``), for messages.

    Returns:
        ``(image, label)``: float32 in [0, 1] and uint8 0..3, both at ``spacing_xy`` in-plane.

    Raises:
        ValueError: naming the file, for mismatched grids, implausible spacing, unknown label values, a label map with
            no labelled voxel, or an unusable image. A frame without one of LV, MYO, RV is only logged as a warning.
    """
    check_same_grid(image, label)
    check_image_volume(image, RAW_SCAN)  # the one plausibility rule of a raw scan (medseg.io.plausibility)
    label_map = label_map if label_map is not None else {k: k for k in MEDSEG_LABELS}
    relabelled = label.with_array(remap_labels(label, label_map))
    check_label_structures(relabelled, frame_name)
    normalised = image.with_array(normalize_percentile(image.array))
    return resample_to_grid(normalised, spacing_xy), resample_to_grid(relabelled, spacing_xy, is_label=True)


def check_label_structures(label: Volume, frame_name: str | None = None) -> None:
    """A label map (medseg values) must label something; a missing LV, MYO or RV is logged as a warning.

    Raises:
        ValueError: naming the file (and the frame) if every voxel is background.
    """
    where = f"{label.name} ({frame_name})" if frame_name else label.name
    present = set(np.unique(label.array).tolist())
    if not present - {0}:
        raise ValueError(f"{where}: expected a labelled frame (LV, MYO and RV), got a label map with only background "
                         "(every voxel is 0)")
    missing = [name for value, name in STRUCTURES.items() if value not in present]
    if missing:
        logger.warning("%s: no %s voxel in this frame; expected LV, MYO and RV (kept as it is)", where,
                       " or ".join(missing))


def outputs_complete(folder: PathLike, names: Iterable[str] = OUTPUT_NAMES, *, verify: bool = True) -> bool:
    """True when every output file of a subject exists and (``verify``) reads back whole (then the subject is skipped
    unless overwriting). A file that is empty, truncated or corrupt (e.g. written while the disk was full) is logged as
    a warning naming it, and the subject counts as not done, so that a rerun repairs it."""
    folder = Path(folder)
    paths = [folder / name for name in names]
    if not all(path.is_file() for path in paths):
        return False
    if not verify:
        return True
    broken = broken_files(paths)
    if broken:
        logger.warning("%s: %d output file(s) are broken and will be rewritten: %s", folder, len(broken),
                       "; ".join(broken.values()))
        return False
    return True


def broken_files(paths: Iterable[PathLike]) -> dict[Path, str]:
    """The NIfTI files among ``paths`` that do not read back whole (path → why; see
    :func:`~medseg.io.nifti.check_nifti_file`)."""
    broken = {}
    for path in map(Path, paths):
        problem = nifti_file_problem(path)
        if problem is not None:
            broken[path] = problem
    return broken


def start_subject(folder: PathLike, overwrite: bool, names: Iterable[str] = OUTPUT_NAMES) -> bool:
    """Prepare a subject's output folder; True if the subject must be (re)done.

    Temp files a killed run left are removed. A subject that is (re)done (``overwrite``, or outputs incomplete) also
    loses its existing output files first, and its folder if that leaves it empty: if processing then fails, nothing
    of the subject remains, in particular no outputs made from an earlier input.
    """
    names = tuple(names)
    remove_stale_temp_files(folder)
    if not overwrite and outputs_complete(folder, names):
        return False
    removed = remove_outputs(folder, names)
    if removed:
        logger.info("%s: removed %d earlier output file(s) before redoing the subject", folder, len(removed))
    return True


def remove_outputs(folder: PathLike, names: Iterable[str] = OUTPUT_NAMES) -> list[Path]:
    """Delete the output files ``names`` of one subject folder, then the folder if it is left empty.

    Returns:
        The removed files.
    """
    folder = Path(folder)
    removed = []
    for name in names:
        path = folder / name
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(path)
    with contextlib.suppress(OSError):  # not empty (other files) or already gone: keep it
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return removed


def write_subject(folder: PathLike, volumes: Mapping[str, Volume]) -> list[Path]:
    """Write all outputs of one subject; if any write fails, the files already written for it are removed.

    Args:
        folder: subject output folder.
        volumes: file name → volume (images float32, labels uint8).
    """
    folder = Path(folder)
    written: list[Path] = []
    try:
        for name, volume in volumes.items():
            written.append(write_volume(folder / name, volume.array, volume))
    except BaseException:
        for path in written:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        raise
    return written


@dataclass
class RunReport:
    """Outcome of a run over many subjects."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # subject → error message
    stale: dict[str, str] = field(default_factory=dict)  # output folder with no input subject → why it is kept
    removed: list[str] = field(default_factory=list)  # output folders with no input subject, removed (rebuild)

    @property
    def ok(self) -> bool:
        """No subject failed and no output folder is left that the input does not account for."""
        return not self.failed and not self.stale

    def summary(self) -> str:
        lines = [f"{len(self.done)} subjects written, {len(self.skipped)} already done (skipped), "
                 f"{len(self.failed)} failed" + (f", {len(self.stale)} stale output folder(s)" if self.stale else "")]
        if self.removed:
            lines.append(f"  removed {len(self.removed)} output folder(s) with no subject in the input: "
                         f"{', '.join(self.removed)}")
        lines += [f"  FAILED {subject}: {message}" for subject, message in self.failed.items()]
        lines += [f"  STALE {name}: {message}" for name, message in self.stale.items()]
        if self.failed:
            lines.append("  failed subjects have no outputs (any earlier ones were removed); fix their input and run again")
        return "\n".join(lines)


def run_subjects(
    subjects: Iterable[str], process: Callable[[str], bool], on_done: Callable[[str], None] | None = None
) -> RunReport:
    """Run ``process(subject)`` for every subject, collecting failures instead of stopping at the first.

    Args:
        subjects: subject identifiers.
        process: returns True if it wrote the subject, False if it skipped it (already done); raises on bad input.
        on_done: optional callback after each subject (e.g. a progress bar update).
    """
    report = RunReport()
    for subject in subjects:
        try:
            (report.done if process(subject) else report.skipped).append(subject)
        except SUBJECT_ERRORS as err:
            message = describe(err)  # one line; a KeyError without the quotes str() adds
            logger.error("subject %s failed: %s", subject, message)
            report.failed[subject] = f"{type(err).__name__}: {message}"
        if on_done is not None:
            on_done(subject)
    return report


def _is_own_file(path: Path, names: frozenset[str]) -> bool:
    """A regular file this converter writes into a subject folder: an output, or one of its temp files."""
    if path.is_symlink() or not path.is_file():
        return False
    if path.name in names:
        return True
    match = TEMP_FILE_PATTERN.match(path.name)
    return match is not None and f"{match.group('stem')}{match.group('suffix')}" in names


def clean_stray_subjects(
    output_dir: PathLike, subjects: Iterable[str], input_dir: PathLike, overwrite: bool, report: RunReport,
    names: Iterable[str] = OUTPUT_NAMES,
) -> None:
    """Deal with output subject folders that no input subject maps to (left from an earlier, different input).

    Folders that hold only this converter's files (``names`` and their temp files) are removed when ``overwrite`` is
    set (a rebuild) and otherwise recorded in ``report.stale``; folders that also hold other files are never deleted
    and recorded in ``report.stale`` (readers such as the M&Ms dataset would take them for subjects). Folders without
    any of ``names`` are not subject outputs: they are left alone with a warning. Hidden folders are ignored.

    Args:
        output_dir: the converter's output folder.
        subjects: names of the output subject folders the input accounts for.
        input_dir: the input folder (named in messages).
        overwrite: the run rebuilds the folder.
        report: updated in place (``removed``, ``stale``).
    """
    output_dir, names = Path(output_dir), frozenset(names)
    expected = set(subjects)
    if not output_dir.is_dir():
        return
    for folder in sorted(p for p in output_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.name in expected:
            continue
        contents = sorted(folder.iterdir())
        ours = [p for p in contents if _is_own_file(p, names)]
        if not any(p.name in names for p in ours):
            logger.warning("%s: not a subject of %s and holds none of %s; left as it is", folder, input_dir,
                           sorted(names))
            continue
        foreign = [p.name for p in contents if p not in ours]
        if foreign:
            report.stale[folder.name] = (
                f"{folder} has no subject in {input_dir} (outputs of an earlier input?) and also holds other files "
                f"{foreign}, so it is not removed; remove it by hand"
            )
        elif overwrite:
            for path in ours:  # file by file: nothing but what was checked above is deleted
                path.unlink()
            folder.rmdir()
            report.removed.append(folder.name)
            logger.warning("removed %s: no subject %s in %s (outputs of an earlier input)", folder, folder.name,
                           input_dir)
        else:
            report.stale[folder.name] = (
                f"{folder} has no subject in {input_dir} (outputs of an earlier input?); remove it or rebuild with "
                "--overwrite"
            )
