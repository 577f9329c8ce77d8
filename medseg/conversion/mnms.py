"""Preprocess raw M&Ms data (real or synthetic) into the medseg layout.

Input: the M&Ms release folder with subject folders ``<code>/`` under ``Training/Labeled/``, ``Validation/`` and
``Testing/``, each holding ``<code>_sa.nii.gz`` (4D cine, ``(T, Z, H, W)`` in SimpleITK order) and
``<code>_sa_gt.nii.gz`` (labels 1 LV, 2 MYO, 3 RV on the ED and ES frames), plus the metadata CSV (found by name
pattern, or ``--csv``) with columns ``External code, VendorName, Vendor, Centre, ED, ES`` (0-based frame indices;
``Vendor`` one of A, B, C, D in any case, stored upper-case).

Output: ``<output>/<code>/{ED,ES}_{img,seg}.nii.gz`` (same normalisation and resampling as ACDC, labels kept) and
``<output>/vendors.csv`` (``subject, vendor, vendor_name, centre``) for every input subject whose outputs exist.
Rebuilds and ``provenance.json`` work as for ACDC (see ``acdc_preprocess.py``).

Usage:
    python medseg/dataset_loader/mnms_preprocess.py --input data/synthetic/raw/MnMs --output data/synthetic/MM
"""

from __future__ import annotations

import csv
import io
import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path


import numpy as np
import pandas as pd

from medseg.io import provenance
from medseg.io.nifti import Volume, read_volume
from medseg.conversion.preprocessing import RunReport, clean_stray_subjects, outputs_complete
from medseg.conversion.preprocessing import preprocess_pair, run_subjects, start_subject
from medseg.conversion.preprocessing import write_subject
from medseg.utils.cli import ArgumentParser, HelpFormatter, run_cli
from medseg.io.atomic import atomic_write_text_if_changed, ensure_writable_dir
from medseg.utils.paths import path_kind

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
SUBJECT_FOLDERS = (Path("Training") / "Labeled", Path("Validation"), Path("Testing"))
#: Subjects of the release without labels: listed in the CSV, not preprocessed (and not warned about).
UNLABELED_FOLDER = Path("Training") / "Unlabeled"
REQUIRED_COLUMNS = ("External code", "Vendor", "ED", "ES")
CSV_PATTERNS = ("*M&Ms*[Ii]nformation*.csv", "*[Ii]nformation*.csv", "*M&Ms*.csv", "*MnMs*.csv")
VENDOR_COLUMNS = ("subject", "vendor", "vendor_name", "centre")
#: The M&Ms vendor codes (A Siemens, B Philips, C GE, D Canon); read case-insensitively and stored upper-case.
VENDORS = ("A", "B", "C", "D")
_SEPARATORS = {";": "';'", "\t": "a tab"}
#: How many names a warning lists before it says "and N more".
_SHOWN = 10


def find_metadata_csv(input_dir: PathLike, csv_path: PathLike | None = None) -> Path:
    """The metadata CSV: ``csv_path`` if given, else the one file matching the release naming patterns.

    Raises:
        FileNotFoundError: if none is found; ValueError if the pattern is ambiguous.
    """
    if csv_path is not None:
        if not Path(csv_path).is_file():
            kind = path_kind(csv_path)
            if kind != "missing":
                raise ValueError(f"--csv: {csv_path} is {kind}, not a regular file; expected the M&Ms metadata CSV")
            raise FileNotFoundError(f"metadata CSV not found: {csv_path}")
        return Path(csv_path)
    input_dir = Path(input_dir)
    for pattern in CSV_PATTERNS:
        matches = sorted(set(input_dir.glob(pattern)) | set(input_dir.glob(f"*/{pattern}")))
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ValueError(f"several metadata CSVs match {pattern!r} in {input_dir}: {[str(m) for m in matches]}; "
                             "pass --csv")
    raise FileNotFoundError(f"no M&Ms metadata CSV (e.g. '*M&Ms_Dataset_information*.csv') in {input_dir}; pass --csv")


def read_metadata(path: PathLike) -> dict[str, dict[str, object]]:
    """Read the metadata CSV into ``code → {vendor, vendor_name, centre, ED, ES}`` (ED/ES 0-based).

    ``Vendor`` must be one of :data:`VENDORS`; the case is not significant (``a`` is read as ``A``), the stored
    value is upper-case.

    Raises:
        ValueError: naming the file if it cannot be parsed, columns are missing (with a hint if the file seems to use
            another separator than ','), it has no subject rows, or a row has an empty code, a code listed twice, an
            empty or unknown vendor, or ED/ES that are not different non-negative integers.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read metadata CSV {path}: {err}") from err
    header = ",".join(str(c) for c in table.columns)
    table = table.loc[:, [c for c in table.columns if not str(c).startswith("Unnamed")]]
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        hint = next((f" (the header line contains {name}: the file seems to use {name} as separator; expected ',')"
                     for sep, name in _SEPARATORS.items() if sep in header), "")
        raise ValueError(f"{path}: missing columns {missing}; expected {list(REQUIRED_COLUMNS)} (+ VendorName, Centre)"
                         f"{hint}")
    if table.empty:
        raise ValueError(f"{path}: has a header but no subject rows; expected one row per subject with "
                         f"{list(REQUIRED_COLUMNS)}")
    rows: dict[str, dict[str, object]] = {}
    first_line: dict[str, int] = {}
    for number, (_, row) in enumerate(table.iterrows(), start=2):  # line 1 is the header
        code = row["External code"].strip()
        if not code:
            raise ValueError(f"{path}: line {number}: expected a subject code in 'External code', got an empty cell")
        if code in rows:
            raise ValueError(f"{path}: subject {code} is listed twice (lines {first_line[code]} and {number}); "
                             "expected one row per subject")
        vendor = row["Vendor"].strip().upper()
        if vendor not in VENDORS:
            got = repr(row["Vendor"].strip()) if row["Vendor"].strip() else "an empty cell"
            raise ValueError(f"{path}: subject {code}: Vendor must be one of {', '.join(VENDORS)} (any case), got {got}")
        for key in ("ED", "ES"):
            if not row[key].strip().isdigit():
                raise ValueError(f"{path}: subject {code}: {key} must be a 0-based frame index, got {row[key]!r}")
        if int(row["ED"]) == int(row["ES"]):
            raise ValueError(f"{path}: subject {code}: expected different ED and ES frames, got ED = ES = "
                             f"{int(row['ED'])}")
        first_line[code] = number
        rows[code] = {
            "vendor": vendor,
            "vendor_name": row.get("VendorName", "").strip(),
            "centre": row.get("Centre", "").strip(),
            "ED": int(row["ED"]),
            "ES": int(row["ES"]),
        }
    return rows


def find_subjects(input_dir: PathLike) -> dict[str, Path]:
    """Map subject code → folder for every ``<code>/`` under ``Training/Labeled``, ``Validation`` and ``Testing``.

    Raises:
        FileNotFoundError: if the input folder is missing or holds no subject folder.
        ValueError: if a subject code is found twice (naming both folders).
    """
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise FileNotFoundError(f"M&Ms input folder not found: {input_dir}")
    subjects: dict[str, Path] = {}
    for sub in SUBJECT_FOLDERS:
        root = input_dir / sub
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            if folder.name in subjects:
                raise ValueError(f"subject {folder.name} found twice: {subjects[folder.name]} and {folder}; expected "
                                 "each subject code once")
            subjects[folder.name] = folder
    if not subjects:
        raise FileNotFoundError(
            f"no subject folders under {input_dir}/{{Training/Labeled,Validation,Testing}}; expected the M&Ms layout"
        )
    return dict(sorted(subjects.items()))


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown if len(names) <= _SHOWN else f"{shown} and {len(names) - _SHOWN} more"


def warn_unmatched_rows(input_dir: PathLike, metadata_csv: PathLike, metadata: dict[str, dict[str, object]],
                        subjects: dict[str, Path]) -> list[str]:
    """Warn about CSV rows with no subject folder (subjects under ``Training/Unlabeled`` are expected to have none).

    Folders without a CSV row are not listed here: each of them fails with its own message.

    Returns:
        The codes of the rows that have no folder.
    """
    unlabeled = Path(input_dir) / UNLABELED_FOLDER
    known = {p.name for p in unlabeled.iterdir() if p.is_dir()} if unlabeled.is_dir() else set()
    unmatched = sorted(code for code in metadata if code not in subjects and code not in known)
    if unmatched:
        logger.warning("%s: %d subject(s) listed in the CSV have no folder under %s/{Training/Labeled,Validation,"
                       "Testing} and are ignored: %s", metadata_csv, len(unmatched), input_dir, _listed(unmatched))
    return unmatched


def _frame(volume: Volume, t: int) -> Volume:
    """3D frame ``t`` of a 4D volume, with the spatial part of its geometry."""
    direction = np.asarray(volume.direction).reshape(4, 4)[:3, :3]
    return Volume(volume.array[t], volume.spacing[:3], volume.origin[:3], tuple(direction.ravel()), volume.path)


def preprocess_subject(
    folder: PathLike, meta: dict[str, object] | None, output_root: PathLike, overwrite: bool = False
) -> bool:
    """Split one subject's 4D cine at ED/ES and preprocess both frames; False if already done.

    Raises:
        KeyError: if the subject is not in the metadata CSV.
        FileNotFoundError / ValueError: for missing or malformed volumes (naming the file).
    """
    folder = Path(folder)
    code = folder.name
    out_dir = Path(output_root) / code
    if not start_subject(out_dir, overwrite):
        return False
    if meta is None:
        raise KeyError(f"subject {code} ({folder}) is not listed in the metadata CSV; expected a row with its ED/ES")
    image_path, label_path = folder / f"{code}_sa.nii.gz", folder / f"{code}_sa_gt.nii.gz"
    image = read_volume(image_path, ndim=4)
    label = read_volume(label_path, ndim=4)
    if label.array.shape != image.array.shape:
        raise ValueError(f"label {label_path} has shape {label.array.shape} but its image {image_path} has shape "
                         f"{image.array.shape}; expected identical voxel grids")
    n_frames = image.array.shape[0]
    volumes = {}
    for name in ("ED", "ES"):
        t = int(meta[name])
        if not 0 <= t < n_frames:
            raise ValueError(f"{image_path}: {name} frame index {t} from the metadata CSV is outside the "
                             f"{n_frames} frames of the volume (expected 0-based indices 0..{n_frames - 1})")
        seg_frame = _frame(label, t)
        if not np.any(seg_frame.array):
            labelled = [int(k) for k in np.flatnonzero(label.array.reshape(n_frames, -1).any(axis=1))]
            raise ValueError(f"{label_path}: subject {code}: the {name} frame {t} from the metadata CSV has no labels; "
                             f"expected a labelled frame (labelled frames: {labelled})")
        img, seg = preprocess_pair(_frame(image, t), seg_frame, frame_name=f"{name} frame {t}")
        volumes[f"{name}_img.nii.gz"] = img
        volumes[f"{name}_seg.nii.gz"] = seg
    write_subject(out_dir, volumes)
    return True


def write_vendor_table(output_dir: PathLike, metadata: dict[str, dict[str, object]],
                       subjects: Iterable[str] | None = None) -> Path:
    """Write ``vendors.csv`` for every subject folder in ``output_dir`` with complete outputs (and, if ``subjects`` is
    given, only for those subjects: folders the input does not account for are not listed)."""
    output_dir = Path(output_dir)
    wanted = None if subjects is None else set(subjects)
    path = output_dir / "vendors.csv"
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(VENDOR_COLUMNS)
    for folder in sorted(p for p in output_dir.iterdir() if p.is_dir()):
        # this run verified or removed the outputs of every subject it handled
        wanted_here = wanted is None or folder.name in wanted
        if folder.name in metadata and wanted_here and outputs_complete(folder, verify=False):
            m = metadata[folder.name]
            writer.writerow([folder.name, m["vendor"], m["vendor_name"], m["centre"]])
    # unchanged content is not rewritten: experiments fingerprint their inputs by size and modification time
    atomic_write_text_if_changed(path, buffer.getvalue())
    return path


def preprocess_mnms(
    input_dir: PathLike, output_dir: PathLike, csv_path: PathLike | None = None, overwrite: bool = False, on_done=None
) -> RunReport:
    """Preprocess every M&Ms subject under ``input_dir``; failures are collected in the report.

    Output folders of subjects that are not in the input are removed with ``overwrite`` (if they hold only this
    converter's files) and reported as stale otherwise; ``provenance.json`` is marked complete only if the report is
    ok (it lists the failed subjects and stale folders otherwise).

    Raises:
        PermissionError: if the output folder cannot be created or written.
        FileNotFoundError / ValueError: if the subjects or the metadata CSV cannot be found or read, or a subject
            code is found twice.
    """
    subjects = find_subjects(input_dir)
    metadata_csv = find_metadata_csv(input_dir, csv_path)
    metadata = read_metadata(metadata_csv)
    warn_unmatched_rows(input_dir, metadata_csv, metadata, subjects)
    ensure_writable_dir(output_dir)
    made_from = provenance.made_from("mnms_preprocess", input_dir, {"metadata_csv": Path(metadata_csv).name})
    provenance.guard(output_dir, made_from, input_dir, overwrite)
    report = run_subjects(
        subjects, lambda code: preprocess_subject(subjects[code], metadata.get(code), output_dir, overwrite), on_done
    )
    clean_stray_subjects(output_dir, subjects, input_dir, overwrite, report)
    write_vendor_table(output_dir, metadata, subjects)
    provenance.finish(output_dir, made_from, input_dir, failed=report.failed, stale=report.stale)
    return report


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit code 0 all subjects done, 1 some failed, 2 user error (one line on stderr)."""
    parser = ArgumentParser(prog="mnms_preprocess.py",
                            description="Preprocess raw M&Ms into <output>/<code>/{ED,ES}_{img,seg}.nii.gz",
                            formatter_class=HelpFormatter)
    parser.add_argument("--input", required=True, help="M&Ms release folder (Training/Labeled, Validation, Testing)")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--csv", default=None,
                        help="metadata CSV, comma-separated, Vendor A-D in any case (default: found by name pattern in "
                             "--input)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo subjects whose outputs already exist, and remove output subject folders that no "
                             "input subject maps to (only those holding nothing but this converter's output files)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--verbose", "--debug", action="store_true", help="debug logging and error tracebacks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")

    def body() -> int:
        from tqdm import tqdm

        n = len(find_subjects(args.input))
        with tqdm(total=n, desc="M&Ms", unit="subj", disable=args.no_progress) as bar:
            report = preprocess_mnms(args.input, args.output, args.csv, args.overwrite, on_done=lambda _: bar.update())
        print(f"M&Ms -> {args.output}: {report.summary()}")
        return 0 if report.ok else 1

    return run_cli(parser.prog, body, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
