"""Generate the synthetic cardiac cine MR data set in the raw ACDC and M&Ms formats.

Example:
    python medseg/phantom/make.py --out data/synthetic --preview docs/synthetic_preview.png
"""

from __future__ import annotations

import argparse
import logging
import math
import multiprocessing
import sys
import time
from pathlib import Path

from medseg.conversion.preprocessing import IN_PLANE_SPACING_RANGE
from medseg.io import provenance
from medseg.io.atomic import ensure_writable_dir
from medseg.phantom.appearance import SITES
from medseg.phantom.generator import SyntheticSettings, finish, plan_jobs, run_job
from medseg.phantom.preview import render_preview
from medseg.utils.cli import ArgumentParser, HelpFormatter, run_cli
from medseg.utils.paths import check_output_file, check_output_folder

#: the folder that holds the medseg package (a checkout or site-packages): the generator's code is hashed by its
#: path relative to it, so the digest is the same wherever the package is installed
PACKAGE_PARENT = Path(__file__).resolve().parents[2]
#: the files whose code decides what the generator writes (their digest is the generator's version)
GENERATOR_CODE = ("medseg/phantom/*.py",)
#: largest --seed (numpy and torch seeds are 32-bit here, as medseg-train's)
MAX_SEED = 2**32 - 1


def spacing_scale_range() -> tuple[float, float]:
    """The ``--spacing-scale`` values for which every site's in-plane pixel size stays inside the range the
    preprocessing accepts (:data:`IN_PLANE_SPACING_RANGE`), rounded inward to 0.01."""
    finest = min(style.spacing[0] for style in SITES.values())
    coarsest = max(style.spacing[1] for style in SITES.values())
    low, high = IN_PLANE_SPACING_RANGE
    return math.ceil(100 * low / finest) / 100, math.floor(100 * high / coarsest) / 100


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(prog="make_synthetic_data.py", description=__doc__.splitlines()[0],
                            formatter_class=HelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (raw data goes to OUT/raw/ACDC and OUT/raw/MnMs)")
    parser.add_argument("--n-acdc", type=int, default=100, help="number of ACDC patients (ids 001..N)")
    parser.add_argument("--n-mnms-per-vendor", type=int, default=20, help="M&Ms subjects per vendor A-D")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (the data set is a function of it)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (1 = in this process)")
    scale_low, scale_high = spacing_scale_range()
    pixel_low, pixel_high = IN_PLANE_SPACING_RANGE
    parser.add_argument("--spacing-scale", type=float, default=1.0,
                        help=f"multiply in-plane pixel sizes (> 1 makes smaller, faster volumes); {scale_low:g} to "
                             f"{scale_high:g}, so that pixels stay within the {pixel_low:g}..{pixel_high:g} mm the "
                             "preprocessing accepts")
    parser.add_argument("--preview", default=None,
                        help="also write a PNG montage of slices with label outlines to this path (default: none)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write over raw data that OUT/raw/provenance.json records as made with other settings "
                             "(another --seed, counts or --spacing-scale), or that has no such record")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--verbose", "--debug", action="store_true", help="error tracebacks")
    args = parser.parse_args(argv)
    try:
        check_output_folder(args.out, "--out")
        if args.preview is not None:
            check_output_file(args.preview, "--preview", (".png",))
    except ValueError as err:
        parser.error(str(err))
    if not 0 <= args.seed <= MAX_SEED:
        parser.error(f"--seed: expected an integer in [0, {MAX_SEED}], got {args.seed}")
    if not (math.isfinite(args.spacing_scale) and args.spacing_scale > 0):
        parser.error(f"--spacing-scale: expected a finite number > 0, got {args.spacing_scale}")
    if not scale_low <= args.spacing_scale <= scale_high:
        parser.error(f"--spacing-scale: expected {scale_low:g} to {scale_high:g} (pixels of {pixel_low:g}..{pixel_high:g}"
                     f" mm, the range the preprocessing accepts), got {args.spacing_scale:g}")
    for flag, value, low in (("--workers", args.workers, 1), ("--n-acdc", args.n_acdc, 0),
                             ("--n-mnms-per-vendor", args.n_mnms_per_vendor, 0)):
        if value < low:
            parser.error(f"{flag}: expected an integer >= {low}, got {value}")
    if args.n_acdc == 0 and args.n_mnms_per_vendor == 0:
        parser.error("--n-acdc and --n-mnms-per-vendor are both 0; expected at least one subject to generate")
    return args


def generator_record(n_acdc: int, n_mnms_per_vendor: int, seed: int, spacing_scale: float) -> dict:
    """What the raw data is a function of: the settings and a digest of the generator's code (the ``made_from`` of
    ``OUT/raw/provenance.json``)."""
    code = sorted(p for pattern in GENERATOR_CODE for p in PACKAGE_PARENT.glob(pattern))
    return {
        "step": "make_synthetic_data",
        "settings": {"n_acdc": n_acdc, "n_mnms_per_vendor": n_mnms_per_vendor, "seed": seed,
                     "spacing_scale": spacing_scale},
        "generator_code": provenance.digest_files(PACKAGE_PARENT, code)["sha256"],
    }


def check_raw_folder(raw: Path, wanted: dict, overwrite: bool) -> None:
    """Refuse to write over raw data made with other settings (e.g. another seed) or without a record, unless
    ``overwrite``: the data set would silently become another one.

    Raises:
        ValueError: naming the folder, what differs and ``--overwrite``.
    """
    if overwrite:
        return
    record = provenance.read_record(raw)
    if record is None:
        if any(p.is_dir() and any(p.iterdir()) for p in (raw / "ACDC", raw / "MnMs")):
            raise ValueError(f"{raw} already holds raw data without a {provenance.PROVENANCE_FILE}, so its settings are "
                             "unknown; pass --overwrite to write over it, or choose another --out")
        return
    recorded = record["made_from"].get("settings", {})
    if recorded != wanted["settings"]:
        changes = ", ".join(f"{key} {recorded.get(key)} -> {value}" for key, value in wanted["settings"].items()
                            if recorded.get(key) != value)
        raise ValueError(f"{raw} holds raw data made with other settings ({changes}); pass --overwrite to replace "
                         "it (and rebuild what was derived from it), or choose another --out")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_cli("make_synthetic_data.py", lambda: generate(args), args.verbose)


def generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    raw = Path(args.out) / "raw"
    wanted = generator_record(args.n_acdc, args.n_mnms_per_vendor, args.seed, args.spacing_scale)
    check_raw_folder(raw, wanted, args.overwrite)
    ensure_writable_dir(raw)
    record = provenance.read_record(raw)
    if record is None or record["made_from"] != wanted:
        provenance.write_record(raw, wanted, complete=False, source="medseg/phantom/make.py")
    settings = SyntheticSettings(spacing_scale=args.spacing_scale)
    jobs = plan_jobs(args.out, args.n_acdc, args.n_mnms_per_vendor, args.seed, settings)
    start = time.perf_counter()
    bar = tqdm(total=len(jobs), desc="synthetic subjects", unit="subj", disable=args.no_progress)
    if args.workers > 1:
        with multiprocessing.get_context("spawn" if sys.platform == "win32" else "fork").Pool(args.workers) as pool:
            rows = []
            for row in pool.imap(run_job, jobs, chunksize=1):
                rows.append(row)
                bar.update()
    else:
        rows = []
        for job in jobs:
            rows.append(run_job(job))
            bar.update()
    bar.close()
    finish(args.out, jobs, rows)
    # every volume was read back whole before it was renamed into place
    provenance.write_record(raw, wanted, complete=True, source="medseg/phantom/make.py",
                            output=provenance.digest_files(raw), verified=True)
    elapsed = time.perf_counter() - start
    print(f"wrote {args.n_acdc} ACDC patients and {4 * args.n_mnms_per_vendor} M&Ms subjects under "
          f"{Path(args.out) / 'raw'} in {elapsed:.1f} s")
    if args.preview:
        print(f"preview: {render_preview(args.out, args.preview)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
