"""Train the cooperative (latent DA) or standard model on ACDC: the published command line.

    python medseg/train_adv_supervised_segmentation_triplet.py --json_config_path ./config/ACDC/cooperative_training.json \\
        --cval 0 --data_setting 10 --log --seed 40

Also ``python -m medseg.cli.train`` and the console script ``medseg-train``;
``torchrun --nproc_per_node=K medseg/train_adv_supervised_segmentation_triplet.py ...`` trains data-parallel.
Config values can be overridden without editing the file: ``--set data.root_dir=/data/ACDC --set learning.n_epochs=5``.
"""

from __future__ import annotations

import argparse
import sys

from medseg.config import PRECISIONS
from medseg.training.entry import run_training
from medseg.utils.cli import ArgumentParser, HelpFormatter, run_cli

#: largest ``--seed``: NumPy's legacy seeds are 32-bit, the per-sample generators need seeds >= 0 and the loader's
#: per-epoch torch seed (``seed * 100003 + epoch``) must stay below 2**64
SEED_MAX = 2**32 - 1
N_FOLDS = 5


def build_parser() -> argparse.ArgumentParser:
    """Argument parser with every published flag and default, plus the medseg extras."""
    parser = ArgumentParser(
        prog="medseg-train",
        description="Cooperative training and latent space data augmentation for cardiac segmentation (training).",
        formatter_class=HelpFormatter)
    parser.add_argument("--json_config_path", type=str, default="./config/ACDC/cooperative_training.json",
                        help="experiment config (published JSON schema)")
    parser.add_argument("--dataset_name", type=str, default="ACDC",
                        help="kept for compatibility; the dataset comes from the config's data.dataset_name")
    parser.add_argument("--cval", type=int, default=0, choices=range(N_FOLDS), metavar="{0-4}",
                        help="cross-validation fold: 0, 1, 2, 3 or 4 of the published ACDC splits")
    parser.add_argument("--data_setting", type=str, default="10",
                        help="training subjects: 'standard', 'one_shot', 'three_shot', a whole number of labelled "
                             "subjects 1-40 (e.g. 10) or a fraction of them in (0, 1) (e.g. 0.25); numbers are "
                             "written canonically in the run folder name (010 is 10)")
    parser.add_argument("--resume_pkl_path", type=str, default=None,
                        help="run snapshot (.pkl) to continue from (default: start a new run)")
    parser.add_argument("--resume", choices=["auto"], default=None,
                        help="'auto': continue from this run's last snapshot if there is one, else start a new run "
                             "(refused if the folder holds results but no snapshot) (default: start a new run)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh in a run folder that holds an earlier run's results (deletes them)")
    parser.add_argument("--save_dir", type=str, default="./saved/", help="root folder of all runs")
    parser.add_argument("--log", action="store_true", help="write TensorBoard summaries")
    parser.add_argument("--seed", type=int, default=None,
                        help=f"seed for Python, NumPy, torch and data loading, an integer in [0, {SEED_MAX}] "
                             "(default: a random seed, recorded in the run snapshot)")
    parser.add_argument("--n_workers", type=int, default=4, help="DataLoader worker processes")
    parser.add_argument("--no_pin_memory", action="store_true", help="do not pin DataLoader memory")
    parser.add_argument("--debug", action="store_true", help="faulthandler, debug logging and error tracebacks")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="compute device: auto = cuda if available, else cpu; cpu; cuda (under torchrun: one GPU "
                             "per process)")
    parser.add_argument("--no_progress", action="store_true", help="no tqdm progress bars")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="numerical precision, overrides learning.precision: fp32 (default; TF32 off on GPUs), "
                             "tf32 (CUDA: fp32 with TensorFloat-32 convolutions, faster, coarser), bf16 mixed "
                             "precision (CUDA, or a CPU with AVX512-BF16/AMX), bf16_emulated (bf16 mixed precision "
                             "on a CPU without native bf16, convolutions and matrix products emulated in fp32: to "
                             "measure bf16's accuracy, not faster than fp32), fp16 mixed precision (CUDA only) or "
                             "bf16_where_native (bf16 where the device computes it natively, else fp32; config.json "
                             "records which)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, dotted key, JSON value (repeatable), "
                             "e.g. --set learning.n_epochs=5 --set data.root_dir=data/synthetic/ACDC "
                             "(default: the config as it is)")
    return parser


def main(argv: list[str] | None = None, continue_hint: str | None = None) -> int:
    """Console-script entry point (``medseg-train``); returns the process exit code. ``continue_hint``: how an
    interrupted run continues, for programs that run the training for their user (default: ``--resume auto``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume_pkl_path and args.resume:
        parser.error("--resume_pkl_path and --resume auto are mutually exclusive")
    if args.overwrite and (args.resume_pkl_path or args.resume):
        parser.error("--overwrite (start afresh) and --resume/--resume_pkl_path (continue) are mutually exclusive")
    if args.n_workers < 0:
        parser.error(f"--n_workers: expected an integer >= 0, got {args.n_workers}")
    if args.seed is not None and not 0 <= args.seed <= SEED_MAX:
        parser.error(f"--seed: expected an integer in [0, {SEED_MAX}] (2**32 - 1), got {args.seed}")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda: CUDA is not available on this machine (use --device cpu or auto)")
    if args.precision is not None:
        args.overrides.append(f"learning.precision={args.precision}")
    return run_cli(parser.prog, lambda: run_training(args, continue_hint), args.debug, "--debug")


if __name__ == "__main__":
    sys.exit(main())
