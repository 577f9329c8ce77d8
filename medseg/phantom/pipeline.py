"""Generate the synthetic data set and preprocess it into the training layout, keeping every folder in step.

    python medseg/phantom/pipeline.py --out data/synthetic [--data-seed 0] [--acdc-c-copies 3]

(``bash scripts/prepare_synthetic.sh DIR`` runs this with its environment knobs.) Result: ``DIR/raw/{ACDC,MnMs}`` (raw
formats), ``DIR/ACDC``, ``DIR/MM`` (+ ``vendors.csv``) and ``DIR/ACDC-C``, each with a ``provenance.json`` saying
what it was made from (:mod:`medseg.io.provenance`):

* ``DIR/raw/provenance.json``: the generator settings (subject counts, data seed, spacing scale), a digest of the
  generator's source code and a digest of the raw files written. If the settings equal the requested ones and the
  raw files are unchanged, the raw data is kept (not regenerated). Other settings (e.g. another ``--data-seed``) are
  refused unless ``--overwrite``; with it, or when the generator's code or the raw files changed, the raw data *and
  every folder derived from it* are deleted and rebuilt, so raw and preprocessed data never disagree.
* ``DIR/ACDC``, ``DIR/MM``, ``DIR/ACDC-C``: the digest of the input each was made from and the step's settings
  (e.g. the number of ACDC-C copies). A folder recorded as made from something else is rebuilt.

Folders holding data but no record (made by an older version or by hand) are never deleted: the script stops and
says what to remove (or, with ``--overwrite``, writes over them).
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import sys
import time
from pathlib import Path

from medseg.conversion import acdc as acdc_preprocess
from medseg.conversion import acdc_c as generate_artefacted_data
from medseg.conversion import mnms as mnms_preprocess
from medseg.conversion.preprocessing import broken_files
from medseg.data.splits import TEST_IDS
from medseg.io import provenance
from medseg.phantom import make as make_synthetic_data
from medseg.phantom.preview import render_preview
from medseg.utils.cli import ArgumentParser, HelpFormatter, run_cli
from medseg.utils.paths import check_output_file, check_output_folder


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="prepare_synthetic.py", description=__doc__.splitlines()[0],
                            formatter_class=HelpFormatter)
    parser.add_argument("--out", required=True, help="data folder to prepare (e.g. data/synthetic)")
    parser.add_argument("--n-acdc", type=int, default=100, help="ACDC-like subjects (ids 001..N)")
    parser.add_argument("--n-mnms-per-vendor", type=int, default=20, help="M&Ms-like subjects per vendor A-D")
    parser.add_argument("--data-seed", type=int, default=0,
                        help="seed of the synthetic subjects and of the ACDC-C corruptions (not the training seed)")
    parser.add_argument("--spacing-scale", type=float, default=1.0,
                        help="voxel spacing multiplier of the generator (2 = 4x fewer in-plane voxels, for tests)")
    parser.add_argument("--workers", type=int, default=2, help="generator worker processes")
    parser.add_argument("--acdc-c-copies", type=int, default=3,
                        help=f"corrupted copies per ACDC test subject and artefact (3 as published; at most "
                             f"{generate_artefacted_data.MAX_COPIES})")
    parser.add_argument("--preview", default=None, help="also write a PNG montage of the raw data (default: none)")
    parser.add_argument("--overwrite", action="store_true",
                        help="regenerate the raw data and redo every preprocessed subject and ACDC-C case, also over "
                             "folders without a provenance record or made with other settings (e.g. another "
                             "--data-seed; their files are overwritten; a subject folder that no input subject maps to "
                             "and that holds only converter outputs is removed, anything else is kept)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--verbose", "--debug", action="store_true", help="error tracebacks")
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace, generator) -> None:
    """Every argument is checked before any work starts (argparse-style error naming the flag)."""
    try:
        args.out = check_output_folder(args.out, "--out")
        if args.preview is not None:
            check_output_file(args.preview, "--preview", (".png",))
    except ValueError as err:
        parser.error(str(err))
    for flag, value, low, high in (("--n-acdc", args.n_acdc, 1, None), ("--n-mnms-per-vendor", args.n_mnms_per_vendor,
                                   1, None), ("--workers", args.workers, 1, None),
                                   ("--data-seed", args.data_seed, 0, generator.MAX_SEED),
                                   ("--acdc-c-copies", args.acdc_c_copies, 1, generate_artefacted_data.MAX_COPIES)):
        if value < low or (high is not None and value > high):
            expected = f">= {low}" if high is None else f"in [{low}, {high}]"
            parser.error(f"{flag}: expected an integer {expected}, got {value}")
    scale_low, scale_high = generator.spacing_scale_range()
    if not (math.isfinite(args.spacing_scale) and scale_low <= args.spacing_scale <= scale_high):
        parser.error(f"--spacing-scale: expected {scale_low:g} to {scale_high:g}, got {args.spacing_scale:g}")


def generator_settings(args: argparse.Namespace) -> dict:
    """What the raw data is a function of (compared with ``DIR/raw/provenance.json``)."""
    return make_synthetic_data.generator_record(args.n_acdc, args.n_mnms_per_vendor, args.data_seed,
                                              args.spacing_scale)


def _refuse_unrecorded(folders: list[Path]) -> str | None:
    unrecorded = [f for f in folders if provenance.status(f, {}) == "unrecorded"]
    if not unrecorded:
        return None
    shown = " ".join(str(f) for f in unrecorded)
    return (f"{shown}: data without a {provenance.PROVENANCE_FILE} (made by an older version of this script, or not by "
            f"it), so it cannot be checked against the requested settings and is not deleted automatically. Remove it "
            f"(rm -rf {shown}) and run again, or prepare another folder.")


def prepare_raw(args: argparse.Namespace, derived: list[Path]) -> int:
    """Keep ``DIR/raw`` if it was made with the requested settings, else rebuild it and drop what was derived from it."""
    raw = args.out / "raw"
    wanted = generator_settings(args)
    record = provenance.read_record(raw)
    same = record is not None and record["made_from"] == wanted and record.get("complete")
    if same and not args.overwrite:
        broken = {} if record.get("verified") else broken_raw_files(raw)
        if record.get("output") == provenance.digest_files(raw) and not broken:
            if not record.get("verified"):  # recorded by an older version: checked now, not again
                provenance.write_record(raw, wanted, complete=True, source=record.get("source", ""),
                                        output=record["output"], verified=True)
            print(f"[prepare_synthetic] raw data up to date ({raw}/provenance.json): not regenerated")
            if args.preview:  # the montage of the data that is there
                print(f"[prepare_synthetic] preview: {render_preview(args.out, args.preview)}")
            return 0
        if broken:
            print(f"[prepare_synthetic] {raw} holds {len(broken)} broken file(s) (e.g. written while the disk was "
                  f"full): {' '.join(map(str, broken))}")
        else:
            print(f"[prepare_synthetic] {raw} was changed after it was generated (its files differ from the record)")
    message = None if args.overwrite else _refuse_unrecorded([raw, *derived])
    if message:
        raise ValueError(message)
    if record is not None and record["made_from"].get("settings") != wanted["settings"] and not args.overwrite:
        recorded = record["made_from"].get("settings", {})
        changes = ", ".join(f"{key} {recorded.get(key)} -> {value}" for key, value in wanted["settings"].items()
                            if recorded.get(key) != value)
        raise ValueError(f"{raw} was generated with other settings ({changes}); pass --overwrite to delete it and "
                         f"everything derived from it ({' '.join(str(f) for f in derived if f.exists())}) and "
                         "regenerate, or choose another --out")
    stale = [f for f in (raw, *derived) if f.exists() and provenance.read_record(f) is not None]
    if stale:
        why = ("changed or incomplete" if record is not None and record["made_from"] == wanted
               else "made with other settings")
        print(f"[prepare_synthetic] {raw} was {why}: deleting {' '.join(map(str, stale))} and regenerating")
        for folder in stale:
            shutil.rmtree(folder)
    raw.mkdir(parents=True, exist_ok=True)
    provenance.write_record(raw, wanted, complete=False, source="medseg/phantom/make.py")
    argv = ["--out", str(args.out), "--n-acdc", str(args.n_acdc), "--n-mnms-per-vendor", str(args.n_mnms_per_vendor),
            "--seed", str(args.data_seed), "--workers", str(args.workers), "--spacing-scale", str(args.spacing_scale)]
    argv += ["--preview", args.preview] if args.preview else []
    argv += ["--no-progress"] if args.no_progress else []
    code = make_synthetic_data.main(argv)
    if code == 0:  # every volume the generator wrote was read back whole before it was renamed into place
        provenance.write_record(raw, wanted, complete=True, source="medseg/phantom/make.py",
                                output=provenance.digest_files(raw), verified=True)
    return code


def broken_raw_files(raw: Path) -> dict[Path, str]:
    """The raw volumes under ``raw`` that do not read back whole (path → why)."""
    return broken_files(sorted(raw.rglob("*.nii.gz")))


def rebuilding_stale(folder: Path, step):
    """Run ``step()``; if it refuses because ``folder`` is recorded as made from other data or settings, delete the
    folder (the record proves this tool made it) and run the step again. Unrecorded data is never deleted."""
    try:
        return step()
    except provenance.ProvenanceMismatch:
        if provenance.read_record(folder) is None:
            raise
        print(f"[prepare_synthetic] {folder} was made from other data or settings: rebuilding it")
        shutil.rmtree(folder)
        return step()


def _bar(args: argparse.Namespace, total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="subj", disable=args.no_progress)


def preprocess(args: argparse.Namespace) -> int:
    """Raw → ``DIR/ACDC``, ``DIR/MM``; returns 1 if a subject failed (the reports say which)."""
    out = args.out
    raw_acdc, raw_mnms = out / "raw" / "ACDC", out / "raw" / "MnMs"

    def acdc():
        with _bar(args, len(acdc_preprocess.find_patients(raw_acdc)), "ACDC") as bar:
            return acdc_preprocess.preprocess_acdc(raw_acdc, out / "ACDC", args.overwrite,
                                                   on_done=lambda _: bar.update())

    def mnms():
        with _bar(args, len(mnms_preprocess.find_subjects(raw_mnms)), "M&Ms") as bar:
            return mnms_preprocess.preprocess_mnms(raw_mnms, out / "MM", overwrite=args.overwrite,
                                                   on_done=lambda _: bar.update())

    ok = True
    for name, folder, step in (("ACDC", out / "ACDC", acdc), ("M&Ms", out / "MM", mnms)):
        report = rebuilding_stale(folder, step)
        print(f"[prepare_synthetic] {name} -> {folder}: {report.summary()}")
        ok = ok and report.ok
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args, make_synthetic_data)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_cli(parser.prog, lambda: prepare(args), args.verbose)


def prepare(args: argparse.Namespace) -> int:
    """Generate, preprocess and corrupt (each step reusing what is already complete); returns the exit code."""
    out: Path = args.out
    start = time.perf_counter()
    code = prepare_raw(args, [out / "ACDC", out / "MM", out / "ACDC-C"])
    if code:
        return code
    print(f"[prepare_synthetic] generation: {time.perf_counter() - start:.0f} s")
    step = time.perf_counter()
    code = preprocess(args)
    if code:
        return code
    print(f"[prepare_synthetic] preprocessing: {time.perf_counter() - step:.0f} s")
    step = time.perf_counter()
    # the published 20 test subjects; a smaller --n-acdc (tests, previews) has only some of them
    subjects = [pid for pid in TEST_IDS if int(pid) <= args.n_acdc]
    if not subjects:
        print(f"[prepare_synthetic] no ACDC test subject among the {args.n_acdc} generated: no ACDC-C")
        print(f"[prepare_synthetic] done in {time.perf_counter() - start:.0f} s: {out}/{{raw,ACDC,MM}}")
        return 0
    cases = rebuilding_stale(out / "ACDC-C", lambda: generate_artefacted_data.generate_acdc_c(
        out / "ACDC", out / "ACDC-C", subjects=subjects, copies=args.acdc_c_copies, seed=args.data_seed,
        overwrite=args.overwrite))
    print(f"[prepare_synthetic] ACDC-C -> {out / 'ACDC-C'}: {len(cases)} case folders, "
          f"{time.perf_counter() - step:.0f} s")
    print(f"[prepare_synthetic] done in {time.perf_counter() - start:.0f} s: {out}/{{raw,ACDC,MM,ACDC-C}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
