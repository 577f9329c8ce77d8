"""Generate the ACDC-C robustness test set from preprocessed ACDC volumes.

For each artefact (``RandomBias``, ``RandomSpike``, ``RandomGhosting``, ``RandomMotion``), each of the 20 published
test subjects, each copy ``j`` and BOTH frames (ED, ES):

1. read the ``(Z, H, W)`` image; 2. centre crop / zero pad in-plane to 192×192 (:func:`crop_or_pad`, which handles
inputs already 192 wide or smaller, where the published one failed); 3. per-slice min–max to [0, 1]; 4. treat the
stack as one 3D TorchIO volume (slice axis first, unit spacing); 5. corrupt; 6. per-slice min–max again; 7. paste
back onto a zero array of the original H×W (:func:`recover_image`); 8. write with the original geometry.

Output: ``<output>/<artefact>/<pid>_<j>/{ED,ES}_{img,seg}.nii.gz``; labels are byte copies of the input labels (no
symlinks). Every file is written atomically. The torch RNG is seeded per (artefact, subject, copy) from ``--seed``
inside ``torch.random.fork_rng`` (ED is drawn before ES), so the set is identical between runs. Existing output
files are kept unless ``--overwrite`` is given.

Usage::

    python medseg/dataset_loader/generate_artefacted_data.py --input DIR/ACDC --output DIR/ACDC-C \
        [--copies 3] [--seed 0] [--subjects 007 008] [--overwrite]
    python -m medseg.conversion.acdc_c --input ...
"""

from __future__ import annotations

import sys
from pathlib import Path


import argparse
import logging
import zlib
from collections.abc import Sequence

import numpy as np
import torch

from medseg.io import provenance
from medseg.data.splits import TEST_IDS
from medseg.data.crop import crop_or_pad, recover_image
from medseg.io.nifti import check_label_values, read_image_label_pair, write_volume
from medseg.io.plausibility import PREPROCESSED, check_image_volume
from medseg.conversion.preprocessing import MEDSEG_LABELS, broken_files
from medseg.data.intensity import rescale_slices
from medseg.robustness.corruptions import ARTEFACTS, build_corruption, corrupt_slice_stack
from medseg.utils.cli import ArgumentParser, HelpFormatter, run_cli
from medseg.io.atomic import copy_file_verified, ensure_writable_dir, remove_stale_temp_files
from medseg.utils.paths import check_name, check_output_folder, path_kind

logger = logging.getLogger(__name__)

FRAMES = ("ED", "ES")
CROP_HW = (192, 192)
#: Most corrupted copies per subject and artefact (3 as published; 100 x 20 subjects x 4 artefacts is 8000 cases).
MAX_COPIES = 100
#: Largest --seed (the seed of every case is drawn from it and the case's name).
MAX_SEED = 2**32 - 1


def case_seed(seed: int, artefact: str, pid: str, copy: int) -> int:
    """Deterministic 63-bit seed of one (artefact, subject, copy) case."""
    key = zlib.crc32(f"{artefact}/{pid}/{copy}".encode())
    return int(np.random.SeedSequence([int(seed), key]).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> 1)


def corrupt_volume(array: np.ndarray, artefact: str, crop_hw: tuple[int, int] = CROP_HW) -> np.ndarray:
    """Steps 2–7 for one ``(Z, H, W)`` image (torch RNG must be seeded by the caller). Returns ``(Z, H, W)`` float32.

    ``crop_hw``: the in-plane field the corruption sees (published: 192 × 192 at the preprocessing grid); on another
    grid, :func:`grid_crop` keeps the same field of view in millimetres.
    """
    cropped, info = crop_or_pad(array.astype(np.float32), crop_hw)  # (Z, 192, 192) at the published grid
    corrupted = corrupt_slice_stack(rescale_slices(cropped), build_corruption(artefact))
    return recover_image(corrupted, info, fill=0).astype(np.float32)


def grid_crop(spacing_mm: float, native_spacing_mm: float) -> tuple[int, int]:
    """The published 192-pixel crop's field of view on a grid of ``spacing_mm`` (e.g. 96 × 96 at 2.73438 mm)."""
    side = int(round(CROP_HW[0] * native_spacing_mm / spacing_mm))
    return side, side


def corrupt_case(images: dict[str, np.ndarray], artefact: str, pid: str, copy: int, seed: int,
                 crop_hw: tuple[int, int] = CROP_HW) -> dict[str, np.ndarray]:
    """One (artefact, subject, copy) case exactly as :func:`generate_acdc_c` draws it: torch's RNG seeded with
    :func:`case_seed` inside ``fork_rng`` (the caller's RNG untouched), the frames corrupted in the given order.

    Args:
        images: frame name → ``(Z, H, W)`` clean image, in drawing order (ED before ES).
    """
    out = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(case_seed(seed, artefact, pid, copy))
        for frame, array in images.items():
            out[frame] = corrupt_volume(array, artefact, crop_hw)
    return out


def generate_acdc_c(
    input_dir: str | Path,
    output_dir: str | Path,
    subjects: Sequence[str] | None = None,
    copies: int = 3,
    seed: int = 0,
    artefacts: Sequence[str] | None = None,
    frames: Sequence[str] = FRAMES,
    overwrite: bool = False,
) -> list[Path]:
    """Write the corrupted copies and return the case folders.

    Args:
        input_dir: preprocessed ACDC folder (``<pid>/{ED,ES}_{img,seg}.nii.gz``).
        output_dir: ACDC-C folder to create.
        subjects: subject ids (default: the 20 published test subjects).
        copies: corrupted copies per subject and artefact.
        seed: base seed.
        artefacts: subset of :data:`ARTEFACTS` (default: all four).
        frames: frames to corrupt.
        overwrite: rewrite existing files (otherwise existing outputs are kept).

    Raises:
        FileNotFoundError: a subject's image or label is missing (names the path).
        ValueError: unknown artefact, copies < 1, or an unreadable / mismatched input volume.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    subjects = list(TEST_IDS if subjects is None else subjects)
    artefacts = list(ARTEFACTS if artefacts is None else artefacts)
    unknown = [a for a in artefacts if a not in ARTEFACTS]
    if unknown:
        raise ValueError(f"unknown artefacts {unknown}; valid names: {list(ARTEFACTS)}")
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise ValueError(f"--copies: expected an integer >= 1, got {copies!r}")
    if copies > MAX_COPIES:
        raise ValueError(f"--copies: expected at most {MAX_COPIES} copies per subject and artefact, got {copies}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"--seed: expected an integer in [0, {MAX_SEED}], got {seed!r}")
    for pid in subjects:
        check_name(pid, "--subjects")
    repeated = sorted({pid for pid in subjects if subjects.count(pid) > 1})
    if repeated:
        logger.warning("--subjects: %s given more than once; each subject is generated once", ", ".join(repeated))
        subjects = list(dict.fromkeys(subjects))
    inputs = {}
    for pid in subjects:
        for frame in frames:
            paths = (input_dir / pid / f"{frame}_img.nii.gz", input_dir / pid / f"{frame}_seg.nii.gz")
            for path in paths:
                kind = path_kind(path)
                if kind == "missing":
                    raise FileNotFoundError(f"ACDC-C input: subject {pid!r} ({frame}) missing; expected {path}")
                if kind != "a regular file":
                    raise ValueError(f"ACDC-C input: {path} is {kind}, not a regular file; expected a NIfTI volume")
            inputs[pid, frame] = paths
    ensure_writable_dir(output_dir)
    settings = {"subjects": subjects, "copies": copies, "seed": seed, "artefacts": artefacts, "frames": list(frames)}
    made_from = provenance.made_from("generate_artefacted_data", input_dir, settings,
                                     files=[path for paths in inputs.values() for path in paths])
    provenance.guard(output_dir, made_from, input_dir, overwrite)
    written: list[Path] = []
    for artefact in artefacts:
        logger.info("ACDC-C %s: %d subjects x %d copies", artefact, len(subjects), copies)
        for pid in subjects:
            for j in range(copies):
                case_dir = output_dir / artefact / f"{pid}_{j}"
                written.append(case_dir)
                remove_stale_temp_files(case_dir)
                expected = [case_dir / f"{f}_{kind}.nii.gz" for f in frames for kind in ("img", "seg")]
                broken = {} if overwrite else broken_files(p for p in expected if p.is_file())
                if broken:
                    logger.warning("%s: %d file(s) are broken and will be rewritten: %s", case_dir, len(broken),
                                   "; ".join(broken.values()))
                    for path in broken:
                        path.unlink()
                if not overwrite and all(path.is_file() for path in expected):
                    continue  # cases are seeded independently, so skipping one keeps the others identical
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(case_seed(seed, artefact, pid, j))
                    for frame in frames:  # one seeded stream per case, frames in fixed order
                        image_path, label_path = inputs[pid, frame]
                        out_img = case_dir / f"{frame}_img.nii.gz"
                        out_seg = case_dir / f"{frame}_seg.nii.gz"
                        image, label = read_image_label_pair(image_path, label_path)
                        check_label_values(label, MEDSEG_LABELS)
                        check_image_volume(image, PREPROCESSED)  # corrupting raw or blank data makes no test set
                        corrupted = corrupt_volume(image.array, artefact)  # always drawn: keeps the stream aligned
                        if overwrite or not out_img.exists():
                            write_volume(out_img, corrupted, reference=image)
                        if overwrite or not out_seg.exists():
                            copy_file_verified(label_path, out_seg)
    provenance.finish(output_dir, made_from, input_dir)
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="generate_artefacted_data.py",
                            description="Generate the ACDC-C corrupted test set (both ED and ES).",
                            formatter_class=HelpFormatter)
    parser.add_argument("--input", required=True, help="preprocessed ACDC folder (DIR/ACDC)")
    parser.add_argument("--output", required=True, help="output folder (DIR/ACDC-C)")
    parser.add_argument("--copies", type=int, default=3,
                        help=f"corrupted copies per subject and artefact (1 to {MAX_COPIES})")
    parser.add_argument("--seed", type=int, default=0, help="base seed (the set is identical between runs)")
    parser.add_argument("--subjects", nargs="+", default=None,
                        help="subject ids (default: the 20 ACDC test ids; an id given twice is generated once)")
    parser.add_argument("--overwrite", action="store_true", help="rewrite existing output files")
    parser.add_argument("--verbose", "--debug", action="store_true", help="debug logging and error tracebacks")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; exit code 0 done, 2 user error (one line on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.copies < 1:
        parser.error(f"--copies: expected an integer >= 1, got {args.copies}")
    if args.copies > MAX_COPIES:
        parser.error(f"--copies: expected at most {MAX_COPIES} copies per subject and artefact, got {args.copies}")
    if not 0 <= args.seed <= MAX_SEED:
        parser.error(f"--seed: expected an integer in [0, {MAX_SEED}], got {args.seed}")
    try:
        check_output_folder(args.output, "--output")
        if not str(args.input).strip():
            raise ValueError("--input: expected the preprocessed ACDC folder, got an empty string")
    except ValueError as err:
        parser.error(str(err))

    def body() -> int:
        cases = generate_acdc_c(args.input, args.output, subjects=args.subjects, copies=args.copies, seed=args.seed,
                                overwrite=args.overwrite)
        logger.info("ACDC-C written to %s (%d case folders)", args.output, len(cases))
        return 0

    return run_cli(parser.prog, body, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
