"""Preprocess raw ACDC data (real or synthetic) into the medseg training layout.

Input: a folder of ``patientXXX/`` subject folders, or the real distribution with ``training/`` and ``testing/``
folders of them. Each subject has ``Info.cfg`` (``ED:``/``ES:`` 1-based frame numbers) and
``patientXXX_frameYY.nii.gz`` + ``patientXXX_frameYY_gt.nii.gz`` (raw labels 1 RV, 2 MYO, 3 LV).

Output: ``<output>/<pid>/{ED,ES}_{img,seg}.nii.gz`` (pid ``001`` …): float32 images clipped to the [2, 98] percentiles
and scaled to [0, 1], uint8 labels 0 BG, 1 LV, 2 MYO, 3 RV, resampled in-plane to 1.36719 mm with z spacing, origin
and direction kept. Subjects already complete are skipped unless ``--overwrite``; a subject that is redone loses its
earlier outputs first, and output folders of patients no longer in the input are removed with ``--overwrite`` (if they
hold only this converter's files) or reported as STALE. ``provenance.json`` says ``"complete": true`` only if no subject
failed and no stale folder is left.

Usage:
    python medseg/dataset_loader/acdc_preprocess.py --input data/synthetic/raw/ACDC --output data/synthetic/ACDC
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path


from medseg.io import provenance
from medseg.io.nifti import read_volume
from medseg.conversion.preprocessing import ACDC_TO_MEDSEG, RunReport, clean_stray_subjects
from medseg.conversion.preprocessing import preprocess_pair, run_subjects, start_subject
from medseg.conversion.preprocessing import write_subject
from medseg.utils.cli import ArgumentParser, HelpFormatter, run_cli
from medseg.io.atomic import ensure_writable_dir
from medseg.utils.paths import path_kind

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
PATIENT_PATTERN = re.compile(r"^patient(\d{3})$")


def find_patients(input_dir: PathLike) -> dict[str, Path]:
    """Map pid (``"001"``) → patient folder, searching ``input_dir`` and its ``training``/``testing`` folders.

    Folders whose name is not ``patientNNN`` are not patients (see :func:`scan_patients`).

    Raises:
        FileNotFoundError: if the input folder does not exist or holds no patient folders.
        ValueError: if a pid appears twice.
    """
    return scan_patients(input_dir)[0]


def scan_patients(input_dir: PathLike) -> tuple[dict[str, Path], list[Path]]:
    """:func:`find_patients`, plus the non-hidden folders that were passed over because their name is not
    ``patientNNN`` (e.g. ``patient26`` or ``Patient027``, likely typos).

    Raises:
        FileNotFoundError: if the input folder does not exist or holds no patient folders.
        ValueError: if a pid appears twice.
    """
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise FileNotFoundError(f"ACDC input folder not found: {input_dir}")
    roots = [input_dir] + [p for p in sorted(input_dir.iterdir()) if p.is_dir() and p.name.lower() in
                           ("training", "testing")]
    patients: dict[str, Path] = {}
    ignored: list[Path] = []
    for root in roots:
        for folder in sorted(root.iterdir()):
            if not folder.is_dir() or folder in roots or folder.name.startswith("."):
                continue
            match = PATIENT_PATTERN.match(folder.name)
            if not match:
                ignored.append(folder)
                continue
            pid = match.group(1)
            if pid in patients:
                raise ValueError(f"patient {pid} found twice: {patients[pid]} and {folder}")
            patients[pid] = folder
    if not patients:
        raise FileNotFoundError(
            f"no patientXXX folders in {input_dir} (nor in its training/ or testing/ folders); expected the raw ACDC "
            "layout"
        )
    return patients, ignored


def read_info(path: PathLike) -> dict[str, str]:
    """Read an ACDC ``Info.cfg`` (``key: value`` lines; UTF-8, with or without a byte-order mark).

    Raises:
        FileNotFoundError: if it is missing.
        ValueError: if a key is given twice, or ``ED`` or ``ES`` is missing or not a positive integer.
    """
    path = Path(path)
    if not path.is_file():
        kind = path_kind(path)
        if kind != "missing":
            raise ValueError(f"{path} is {kind}, not a regular file; expected an Info.cfg with 'ED: <frame>' and "
                             "'ES: <frame>' lines")
        raise FileNotFoundError(f"missing {path}; expected an Info.cfg with 'ED: <frame>' and 'ES: <frame>' lines")
    info: dict[str, str] = {}
    first_line: dict[str, int] = {}
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if ":" in line:
            key, value = line.split(":", 1)
            key = key.strip()
            if key in info:
                raise ValueError(f"{path}: key {key!r} is given twice (lines {first_line[key]} and {number}); "
                                 f"expected one '{key}: ...' line")
            info[key] = value.strip()
            first_line[key] = number
    for key in ("ED", "ES"):
        value = info.get(key)
        if value is None or not value.isdigit() or int(value) < 1:
            raise ValueError(f"{path}: expected a line '{key}: <1-based frame number>', got {value!r}")
    if int(info["ED"]) == int(info["ES"]):
        raise ValueError(f"{path}: expected different ED and ES frames, got ED: {info['ED']} and ES: {info['ES']}")
    return info


def frame_files(folder: Path, frame: int) -> tuple[Path, Path]:
    """Image and label files of a 1-based frame (``.nii.gz``, or ``.nii`` if only that exists).

    Raises:
        FileNotFoundError: naming the missing file and the Info.cfg entry that asked for it.
    """
    paths = []
    for suffix in ("", "_gt"):
        stem = folder / f"{folder.name}_frame{frame:02d}{suffix}"
        candidates = [Path(f"{stem}.nii.gz"), Path(f"{stem}.nii")]
        found = next((p for p in candidates if p.is_file()), None)
        odd = next((p for p in candidates if path_kind(p) not in ("missing", "a regular file")), None)
        if found is None and odd is not None:
            raise ValueError(f"{odd} is {path_kind(odd)}, not a regular file; expected the NIfTI volume of frame "
                             f"{frame} that Info.cfg of {folder.name} names")
        if found is None:
            raise FileNotFoundError(f"missing {candidates[0]}: Info.cfg of {folder.name} names frame {frame}")
        paths.append(found)
    return paths[0], paths[1]


def preprocess_patient(folder: PathLike, output_root: PathLike, overwrite: bool = False) -> bool:
    """Preprocess one patient folder; returns False if its outputs already exist and ``overwrite`` is off.

    A patient that is (re)done first loses its earlier outputs; everything is read and checked before anything is
    written, and a failed write removes the files already written for this patient, so a failed patient leaves no
    output behind.
    """
    folder = Path(folder)
    pid = PATIENT_PATTERN.match(folder.name).group(1) if PATIENT_PATTERN.match(folder.name) else folder.name
    out_dir = Path(output_root) / pid
    if not start_subject(out_dir, overwrite):
        return False
    info = read_info(folder / "Info.cfg")
    volumes = {}
    for name in ("ED", "ES"):
        frame = int(info[name])
        image_path, label_path = frame_files(folder, frame)
        image = read_volume(image_path, ndim=3)
        label = read_volume(label_path, ndim=3)
        image, label = preprocess_pair(image, label, ACDC_TO_MEDSEG, frame_name=f"{name} frame {frame}")
        volumes[f"{name}_img.nii.gz"] = image
        volumes[f"{name}_seg.nii.gz"] = label
    write_subject(out_dir, volumes)
    return True


def preprocess_acdc(input_dir: PathLike, output_dir: PathLike, overwrite: bool = False, on_done=None) -> RunReport:
    """Preprocess every patient under ``input_dir`` into ``output_dir``; failures are collected in the report.

    Output folders of patients that are not in the input are removed with ``overwrite`` (if they hold only this
    converter's files) and reported as stale otherwise; ``provenance.json`` is marked complete only if the report is
    ok (it lists the failed subjects and stale folders otherwise).

    Raises:
        PermissionError: if the output folder cannot be created or written (nothing is attempted then).
        FileNotFoundError: if the input holds no patients.
        provenance.ProvenanceMismatch: ``output_dir`` was made from other input data (its ``provenance.json``
            differs) or holds unrecorded data, and ``overwrite`` is off.
    """
    patients, ignored = scan_patients(input_dir)
    if ignored:
        logger.warning("%s: ignored %d folder(s) not named patientNNN (three digits): %s", input_dir, len(ignored),
                       ", ".join(str(p) for p in ignored))
    ensure_writable_dir(output_dir)
    made_from = provenance.made_from("acdc_preprocess", input_dir)
    provenance.guard(output_dir, made_from, input_dir, overwrite)
    report = run_subjects(patients, lambda pid: preprocess_patient(patients[pid], output_dir, overwrite), on_done)
    clean_stray_subjects(output_dir, patients, input_dir, overwrite, report)
    provenance.finish(output_dir, made_from, input_dir, failed=report.failed, stale=report.stale)
    return report


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit code 0 all subjects done, 1 some failed, 2 user error (one line on stderr)."""
    parser = ArgumentParser(prog="acdc_preprocess.py",
                            description="Preprocess raw ACDC into <output>/<pid>/{ED,ES}_{img,seg}.nii.gz",
                            formatter_class=HelpFormatter)
    parser.add_argument("--input", required=True, help="raw ACDC folder (patientXXX/ folders, or training/ testing/)")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo subjects whose outputs already exist, and remove output subject folders that no "
                             "input subject maps to (only those holding nothing but this converter's output files)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--verbose", "--debug", action="store_true", help="debug logging and error tracebacks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")

    def body() -> int:
        from tqdm import tqdm

        n = len(find_patients(args.input))
        with tqdm(total=n, desc="ACDC", unit="subj", disable=args.no_progress) as bar:
            report = preprocess_acdc(args.input, args.output, args.overwrite, on_done=lambda _: bar.update())
        print(f"ACDC -> {args.output}: {report.summary()}")
        return 0 if report.ok else 1

    return run_cli(parser.prog, body, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
