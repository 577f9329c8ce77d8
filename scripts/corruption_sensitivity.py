"""Dose-response of trained models to graded corruptions of the in-domain ACDC test volumes.

Sweeps spike intensity, contrast compression and noise; writes mean Dice per level as a CSV, a markdown table and a plot.

ACDC-C draws each artefact at one random strength; this sweep shows whether a low score is a cliff or the end of a
smooth decline, and which part of an artefact (e.g. the spike's stripes or the contrast it takes away) costs the Dice.

Example (the cpu budget's models, on the budget's 2.734 mm copy of the data, 96 px test crop):
    python scripts/corruption_sensitivity.py --data_root results/cpu/data_2.73438mm --crop_size 96 \\
        --checkpoint standard=results/cpu/runs/train_ACDC_10_n_cls_4/ACDC/standard_training/0/model/best/checkpoints \\
        --checkpoint cooperative=results/cpu/runs/train_ACDC_10_n_cls_4/ACDC/cooperative_training/0/model/best/checkpoints \\
        --out results/cpu/sensitivity
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from medseg.utils.cli import ArgumentParser, HelpFormatter, run_cli

FAMILY_NAMES = ("spike", "compression", "noise")  # medseg.robustness.sensitivity.FAMILIES (kept import-free here)


def _checkpoint(text: str) -> tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=CHECKPOINT_DIR (e.g. standard=saved/.../checkpoints), got {text!r}")
    return name, Path(folder)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(prog="corruption_sensitivity.py", description=__doc__.splitlines()[0],
                            formatter_class=HelpFormatter)
    parser.add_argument("--checkpoint", type=_checkpoint, action="append", required=True, metavar="NAME=DIR",
                        help="a model: its name in the tables and its .../model/best/checkpoints folder (repeatable)")
    parser.add_argument("--data_root", default="data/synthetic",
                        help="prepared data root; its ACDC/ test subjects are corrupted (the grid the models saw)")
    parser.add_argument("--crop_size", type=int, default=192, help="in-plane test crop (96 on the cpu budget's grid)")
    parser.add_argument("--families", nargs="+", choices=FAMILY_NAMES, default=list(FAMILY_NAMES),
                        help="corruptions to sweep: spike (published spike at fixed intensities 0.25-3), compression "
                             "(contrast pulled toward mid-grey, no stripes), noise (additive Gaussian)")
    parser.add_argument("--n_iter", type=int, nargs="+", choices=(1, 2), default=[1, 2],
                        help="test settings: 1 = FTN alone, 2 = FTN + STN")
    parser.add_argument("--subjects", type=int, default=None, help="first N ACDC test subjects (default: all 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the corruptions (per volume)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", required=True, help="folder for sensitivity.csv, sensitivity.md, sensitivity.png")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--verbose", "--debug", action="store_true", help="error tracebacks")
    args = parser.parse_args(argv)
    for flag in ("subjects", "threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag}: expected an integer >= 1, got {value}")
    from medseg.config import crop_size_problem

    crop_problem = crop_size_problem(args.crop_size)  # the rule of medseg-test --crop_size and data.crop_size
    if crop_problem is not None:
        parser.error(f"--crop_size: expected {crop_problem}, got {args.crop_size}")
    names = [name for name, _ in args.checkpoint]
    if len(set(names)) != len(names):
        parser.error(f"--checkpoint: model names must be unique, got {names}")
    return args


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from medseg.evaluation.datasets import DatasetUnavailable, build_test_set
    from medseg.evaluation.inference import load_model
    from medseg.io.atomic import atomic_write_text, ensure_writable_dir
    from medseg.robustness.sensitivity import FAMILIES, PatientSubset, sweep, sweep_markdown, sweep_plot
    from medseg.utils.device import resolve_device

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    models = {name: load_model(folder, device) for name, folder in args.checkpoint}
    try:
        test_set = build_test_set("ACDC", args.data_root)
    except DatasetUnavailable as err:  # nothing to sweep: a usage error, not a skipped test set
        raise FileNotFoundError(f"--data_root {args.data_root}: {str(err).removesuffix('; skipped')}; expected the "
                                f"ACDC test subjects as ACDC/<id>/{{ED,ES}}_{{img,seg}}.nii.gz") from None
    source = test_set.source
    if args.subjects is not None:
        source = PatientSubset(source, args.subjects)
    out = ensure_writable_dir(args.out)
    steps = len(models) * len(args.n_iter) * sum(len(FAMILIES[f].levels) for f in args.families)
    with tqdm(total=steps, desc="sensitivity", disable=args.no_progress) as bar:
        table = sweep(models, source, args.families, args.n_iter, crop_size=args.crop_size, seed=args.seed,
                      device=device, on_step=lambda label: (bar.set_postfix_str(label), bar.update()))
    csv_text = table.to_csv(index=False, float_format="%.4f")
    atomic_write_text(out / "sensitivity.csv", csv_text)
    header = (f"# Corruption sensitivity\n\nData: `{args.data_root}` (ACDC test split, "
              f"{source.patient_number} volumes, crop {args.crop_size}); seed {args.seed}; models: "
              + ", ".join(f"{name} = `{folder}`" for name, folder in args.checkpoint) + ".\n\n")
    atomic_write_text(out / "sensitivity.md", header + sweep_markdown(table))
    sweep_plot(table, out / "sensitivity.png")
    print(f"sensitivity: {out / 'sensitivity.md'}, {out / 'sensitivity.csv'}, {out / 'sensitivity.png'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_cli("corruption_sensitivity.py", lambda: run(args), args.verbose)


if __name__ == "__main__":
    sys.exit(main())
