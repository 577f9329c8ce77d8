"""The experiment's data: checking a preprocessed layout, fingerprinting it, and resampling a copy to the budget grid.

Layout (what ``scripts/prepare_synthetic.sh`` writes and what the preprocessing scripts write for real data)::

    <data_root>/ACDC/<pid>/{ED,ES}_{img,seg}.nii.gz
    <data_root>/ACDC-C/<artefact>/<pid>_<j>/{ED,ES}_{img,seg}.nii.gz
    <data_root>/MM/<subject>/{ED,ES}_{img,seg}.nii.gz  and  <data_root>/MM/vendors.csv

A budget whose ``spacing_mm`` differs from the preprocessing spacing gets a copy of the volumes it uses (the ACDC
subjects of its splits, every ACDC-C case and every M&Ms subject) resampled in-plane with the preprocessing's own
resampler (linear for images, nearest neighbour for labels, z kept), written file by file atomically and verified, so
an interrupted copy resumes where it stopped and a broken file (a full disk) is rewritten on the next call.

ACDC-C at the budget grid (copy version 3): the published corruption recipe
(:func:`medseg.conversion.acdc_c.corrupt_case`: same artefact parameters, same per-case seeds
from the ACDC-C folder's ``provenance.json``, default 0, same frame order) is applied to the resampled clean ACDC
images, with the published 192-pixel crop's field of view (96 × 96 at 2.73438 mm), so a spike's stripes, a ghost's
spacing and a motion's displacement are drawn at the model's resolution (the motion's and ghosts' parameters are in
pixels, as published, so they are the same number of the model's pixels). These sets keep the names
(``ACDC-C/RandomSpike`` ...). The native-grid sets resampled to the grid (anti-aliased, which low-passes a spike's
fine stripes away) stay as a second, named column ``ACDC-C/<artefact>_resampled``, outside ``avg_ood``.
"""

from __future__ import annotations

import filecmp
import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from medseg.conversion.acdc_c import corrupt_case, grid_crop
from medseg.conversion.resample import resample_to_grid
from medseg.data.splits import get_ACDC_split_policy
from medseg.evaluation.aggregate import RESAMPLED_SUFFIX
from medseg.evaluation.datasets import dataset_folder
from medseg.experiments.budgets import NATIVE_SPACING_MM
from medseg.io import provenance
from medseg.io.atomic import copy_file_verified, ensure_writable_dir
from medseg.io.nifti import nifti_file_problem, read_volume, write_volume

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
FILE_NAMES = ("ED_img.nii.gz", "ED_seg.nii.gz", "ES_img.nii.gz", "ES_seg.nii.gz")
VENDORS_FILE = "vendors.csv"
Progress = Callable[[int], None]  # called with the number of files just handled


def acdc_subjects(data_setting: str, cvals: Iterable[int]) -> list[str]:
    """ACDC subjects the experiment reads: training and validation of every cval, plus the 20 test subjects."""
    needed: set[str] = set()
    for cval in cvals:
        policy = get_ACDC_split_policy(data_setting, cval)
        needed.update(policy["train"], policy["validate"], policy["test"])
    return sorted(needed)


def split_notes(data_setting: str, cvals: Iterable[int]) -> list[str]:
    """Notes about published splits that put a subject in both training and validation (kept as published)."""
    notes = []
    for cval in cvals:
        policy = get_ACDC_split_policy(data_setting, cval)
        both = sorted(set(policy["train"]) & set(policy["validate"]))
        if both:
            notes.append(f"split {policy['name']} (cval {cval}): subjects {', '.join(both)} are in both training and "
                         "validation (the published split, kept for comparability; model selection sees them)")
    return notes


def check_layout(data_root: PathLike, datasets: Sequence[str], acdc_ids: Sequence[str]) -> list[str]:
    """Check that training data exists and report missing test sets.

    Returns:
        Notes about test sets that are missing (they are skipped by the tests and named in the report).

    Raises:
        FileNotFoundError: ``<data_root>/ACDC`` or one of the needed ACDC subjects' files is missing.
    """
    root = Path(data_root)
    acdc = root / "ACDC"
    if not acdc.is_dir():
        raise FileNotFoundError(
            f"--data_root {root}: no ACDC/ folder; expected the preprocessed layout <data_root>/ACDC/<pid>/"
            f"ED_img.nii.gz ... (bash scripts/prepare_synthetic.sh {root} makes one)"
        )
    missing = [f"{pid}/{name}" for pid in acdc_ids for name in FILE_NAMES if not (acdc / pid / name).is_file()]
    if missing:
        shown = ", ".join(missing[:6]) + (" ..." if len(missing) > 6 else "")
        raise FileNotFoundError(f"--data_root {root}: {len(missing)} ACDC files needed by the splits are missing "
                                f"under {acdc}: {shown}")
    notes = []
    for name in datasets:
        folder = dataset_folder(root, name)
        if not folder.is_dir() or not any(p.is_dir() for p in folder.iterdir()):
            notes.append(f"test set {name}: {folder} is missing or empty; it is skipped")
    return notes


def source_files(data_root: PathLike, datasets: Sequence[str], acdc_ids: Sequence[str]) -> list[Path]:
    """Every volume file the experiment reads, relative to ``data_root`` (plus ``MM/vendors.csv`` if present)."""
    root = Path(data_root)
    files: list[Path] = []
    for pid in acdc_ids:
        files.extend(Path("ACDC") / pid / name for name in FILE_NAMES)
    for name in datasets:
        if name == "ACDC":
            continue
        folder = dataset_folder(root, name)
        if not folder.is_dir():
            continue
        for subject in sorted(p for p in folder.iterdir() if p.is_dir()):
            files.extend(subject.relative_to(root) / n for n in FILE_NAMES if (subject / n).is_file())
        if name == "MM" and (folder / VENDORS_FILE).is_file():
            files.append(folder.relative_to(root) / VENDORS_FILE)
    return files


def fingerprint(data_root: PathLike, files: Sequence[Path]) -> str:
    """SHA-256 over the relative path, size and modification time of every file (changes when data is rewritten)."""
    digest = hashlib.sha256()
    root = Path(data_root)
    for rel in files:
        stat = (root / rel).stat()
        digest.update(f"{rel.as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


#: How the copy is resampled; ``version`` is checked before an existing copy is reused (version 1 had no
#: anti-aliasing filter, which aliased fine artefact stripes into coarse bands on the 2x coarser grid).
RESAMPLING: dict[str, Any] = {"images": "linear after a Gaussian anti-aliasing filter, sigma = f - 1 px",
                              "labels": "nearest", "z": "kept",
                              "ACDC-C": "the published corruption applied at the grid to the resampled clean images "
                                        "(same seeds and parameters, the 192-px field of view); the native-grid sets "
                                        "resampled as <artefact>" + RESAMPLED_SUFFIX,
                              "version": 3}
#: What each older version lacked (the refusal of a folder made with it says so).
OLDER_VERSIONS = {1: "no anti-aliasing filter", 2: "ACDC-C corrupted on the native grid and then resampled only"}


def copy_path(rel: Path) -> Path:
    """Where a source file goes in the resampled copy: ACDC-C sets under ``<artefact>_resampled``, the rest as is."""
    if rel.parts[0] == "ACDC-C" and len(rel.parts) > 2:
        return Path("ACDC-C", rel.parts[1] + RESAMPLED_SUFFIX, *rel.parts[2:])
    return rel


def resample_copy(
    data_root: PathLike, out_root: PathLike, files: Sequence[Path], spacing_mm: float,
    progress: Progress | None = None,
) -> int:
    """Write ``files`` of ``data_root`` resampled in-plane to ``spacing_mm`` under ``out_root``.

    An existing output is kept only if it reads back whole (a volume: its gzip stream, header and voxel count; the
    vendor table: identical to its source); a broken one (e.g. written while the disk was full) is named in a warning
    and written again. Every write is verified before it is renamed into place.

    Returns:
        The number of files resampled plus the number of ACDC-C cases drawn at the grid (0: the copy was
        complete).
    """
    src_root, dst_root = Path(data_root), Path(out_root)
    ensure_writable_dir(dst_root)
    written = 0
    broken: list[str] = []
    for rel in files:
        src, dst = src_root / rel, dst_root / copy_path(rel)
        problem = _copy_problem(src, dst)
        if problem is not None:
            if dst.is_file():
                broken.append(problem)
            if rel.name == VENDORS_FILE:
                copy_file_verified(src, dst)
            else:
                is_label = rel.name.endswith("_seg.nii.gz")
                volume = read_volume(src)
                resampled = resample_to_grid(volume, (spacing_mm, spacing_mm), is_label=is_label)
                write_volume(dst, resampled.array, resampled)
            written += 1
        if progress is not None:
            progress(1)
    if broken:
        logger.warning("resampled copy %s: rewrote %d broken file(s): %s", dst_root, len(broken),
                       "; ".join(broken[:5]) + (" ..." if len(broken) > 5 else ""))
    cases = corrupt_at_grid(src_root, dst_root, files, spacing_mm)
    for top in sorted({rel.parts[0] for rel in files}):
        if not written + cases and (dst_root / top / provenance.PROVENANCE_FILE).is_file():
            continue  # nothing changed: the record stays as it is (as its modification time)
        record_copy(src_root, dst_root, top, [rel for rel in files if rel.parts[0] == top], spacing_mm)
    logger.info("resampled copy at %.5f mm: %d of %d files resampled under %s, %d ACDC-C cases drawn at the grid",
                spacing_mm, written, len(files), dst_root, cases)
    return written + cases


def _copy_problem(src: Path, dst: Path) -> str | None:
    """Why ``dst`` (the copy of ``src``) must be written: missing, or not whole; None if it can be kept."""
    if not dst.is_file():
        return f"{dst}: missing"
    if dst.name == VENDORS_FILE:
        return None if filecmp.cmp(src, dst, shallow=False) else f"{dst}: differs from {src}"
    return nifti_file_problem(dst)


def acdc_c_seed(data_root: PathLike) -> int:
    """The base seed the ACDC-C folder of ``data_root`` was generated with (its ``provenance.json``; default 0, the
    generator's default, when the folder has no record)."""
    record = provenance.read_record(Path(data_root) / "ACDC-C")
    settings = (record or {}).get("made_from", {}).get("settings", {})
    seed = settings.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"{Path(data_root) / 'ACDC-C' / provenance.PROVENANCE_FILE}: settings.seed is not an integer "
                         f"({seed!r})")
    return seed


def corrupt_at_grid(src_root: Path, dst_root: Path, files: Sequence[Path], spacing_mm: float) -> int:
    """For every ACDC-C case ``<artefact>/<pid>_<j>`` among ``files``: the published corruption of the resampled clean
    ``ACDC/<pid>`` images (already in ``dst_root``), drawn with the case's seed, written to
    ``dst_root/ACDC-C/<artefact>/<pid>_<j>/`` with the resampled clean labels. Returns the number of cases written
    (cases whose files exist and read back whole are kept).

    Raises:
        FileNotFoundError: the clean subject of a case is not in the copy (naming it).
    """
    cases: dict[tuple[str, str], list[str]] = {}
    for rel in files:
        if rel.parts[0] == "ACDC-C" and len(rel.parts) == 4 and rel.name.endswith("_img.nii.gz"):
            cases.setdefault((rel.parts[1], rel.parts[2]), []).append(rel.name.split("_", 1)[0])
    if not cases:
        return 0
    seed = acdc_c_seed(src_root)
    crop = grid_crop(spacing_mm, NATIVE_SPACING_MM)
    written = 0
    for (artefact, case), frames in sorted(cases.items()):
        pid, _, copy = case.rpartition("_")
        if not pid or not copy.isdigit():
            raise ValueError(f"ACDC-C case folder {src_root / 'ACDC-C' / artefact / case}: expected <pid>_<copy>")
        out = dst_root / "ACDC-C" / artefact / case
        order = [f for f in ("ED", "ES") if f in frames] + sorted(f for f in frames if f not in ("ED", "ES"))
        if all(nifti_file_problem(out / f"{f}_{k}.nii.gz") is None for f in order for k in ("img", "seg")):
            continue  # whole (a file broken by a full disk is drawn again: the case's seed gives the same image)
        written += 1
        clean = {}
        for frame in order:
            path = dst_root / "ACDC" / pid / f"{frame}_img.nii.gz"
            if not path.is_file():
                raise FileNotFoundError(f"ACDC-C at the grid: the clean image of case {artefact}/{case} is missing: "
                                        f"{path}")
            clean[frame] = read_volume(path)
        corrupted = corrupt_case({f: v.array for f, v in clean.items()}, artefact, pid, int(copy), seed, crop)
        for frame in order:
            write_volume(out / f"{frame}_img.nii.gz", corrupted[frame], reference=clean[frame])
            copy_file_verified(dst_root / "ACDC" / pid / f"{frame}_seg.nii.gz", out / f"{frame}_seg.nii.gz")
    return written


def record_copy(src_root: Path, dst_root: Path, top: str, files: Sequence[Path], spacing_mm: float) -> Path:
    """Write ``<dst_root>/<top>/provenance.json``: the copy was resampled from these files of ``<src_root>/<top>``
    (digest of their bytes) to ``spacing_mm``, like every other prepared data folder records what it was made from."""
    description = provenance.made_from(
        "run_robustness_experiment resample", src_root / top,
        {"spacing_mm": spacing_mm, **RESAMPLING},
        files=[src_root / rel for rel in files])
    return provenance.write_record(dst_root / top, description, complete=True, source=src_root / top)
