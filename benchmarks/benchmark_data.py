"""Throughput of the training data pipeline.

Prints training-transform samples/s with 1 and 2 DataLoader workers, the DataLoader batch rate at batch 10 with the
10 original pairs (``keep_orig_image_label_pair``), and the effect of the volume cache (construction time, memory,
samples/s with and without it).

    python benchmarks/benchmark_data.py [--root data/synthetic/ACDC] [--seconds 6]

Without ``--root`` (or if it does not exist) a temporary set of 10 phantom subjects of 10×220×240 voxels (a typical
preprocessed ACDC size) is written for the split ``10``/cval 0 and removed afterwards.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from medseg.data.acdc import CardiacACDCDataset
from medseg.data.splits import get_ACDC_split_policy
from medseg.data.transforms import Transformations
from medseg.io.nifti import write_volume
from medseg.utils.cli import ArgumentParser, HelpFormatter, run_cli

logger = logging.getLogger("benchmark_data")


def write_phantoms(root: Path, pids: list[str], shape: tuple[int, int, int] = (10, 220, 240)) -> None:
    """Disk/ring/crescent phantoms with noise, ``<root>/<pid>/ED_{img,seg}.nii.gz``; the last slice unlabelled."""
    z, h, w = shape
    yy, xx = np.mgrid[:h, :w]
    for i, pid in enumerate(pids):
        rng = np.random.default_rng(i)
        image = rng.normal(0.3, 0.05, shape).astype(np.float32)
        label = np.zeros(shape, np.uint8)
        for k in range(z - 1):
            r = 30 * (1 - 0.5 * k / z)
            d = np.hypot(yy - h / 2, xx - w / 2)
            label[k][d < r + 12] = 2
            label[k][d < r] = 1
            label[k][(np.hypot(yy - h / 2, xx - w / 2 + 1.6 * r) < r + 14) & (label[k] == 0)] = 3
            image[k][label[k] == 1], image[k][label[k] == 2], image[k][label[k] == 3] = 0.9, 0.15, 0.8
        image = np.clip(image, 0, 1)
        write_volume(root / pid / "ED_img.nii.gz", image, spacing=(1.36719, 1.36719, 10.0))
        write_volume(root / pid / "ED_seg.nii.gz", label, spacing=(1.36719, 1.36719, 10.0))


def rate(loader: DataLoader, seconds: float, per_batch: int) -> float:
    """Items per second over at least ``seconds`` (the first batch, worker start-up, is excluded)."""
    count, start = 0, None
    while True:
        for _ in loader:
            if start is None:
                start = time.perf_counter()
                continue
            count += 1
            if time.perf_counter() - start >= seconds:
                return count * per_batch / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="benchmark_data.py", description=__doc__.splitlines()[0],
                            formatter_class=HelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("data/synthetic/ACDC"), help="preprocessed ACDC folder")
    parser.add_argument("--seconds", type=float, default=6.0, help="measuring time per configuration")
    parser.add_argument("--verbose", "--debug", action="store_true", help="error tracebacks")
    args = parser.parse_args(argv)
    if not (0 < args.seconds < float("inf")):
        parser.error(f"--seconds: expected a finite number > 0, got {args.seconds}")
    logging.basicConfig(level=logging.WARNING)
    return run_cli(parser.prog, lambda: measure(args), args.verbose)


def measure(args: argparse.Namespace) -> int:
    """The measurements (printed); returns 0."""
    torch.set_num_threads(1)

    tmp = None
    root = args.root
    if not root.is_dir():
        tmp = tempfile.TemporaryDirectory(prefix="medseg_bench_")
        root = Path(tmp.name) / "ACDC"
        write_phantoms(root, get_ACDC_split_policy("10", 0)["train"])
        print(f"{args.root} not found: wrote 10 phantom subjects of 10x220x240 to {root}")
    train = Transformations("ACDC_affine_elastic_intensity", (224, 224, 1), (192, 192, 1)).get_transformation()["train"]

    def dataset(use_cache: bool, keep_orig: bool = False) -> CardiacACDCDataset:
        return CardiacACDCDataset(root_dir=root, split="train", data_setting_name="10", cval=0, frame="ED",
                                  transform=train, keep_orig_image_label_pair=keep_orig, use_cache=use_cache, seed=0)

    start = time.perf_counter()
    cached = dataset(True)
    build_cached = time.perf_counter() - start
    start = time.perf_counter()
    uncached = dataset(False)
    build_uncached = time.perf_counter() - start
    print(f"dataset: {len(cached)} slices of {cached.patient_number} subjects")
    mib = cached.cache_nbytes() / 2**20
    print(f"cache: construction {build_cached:.2f} s (uncached {build_uncached:.2f} s), {mib:.1f} MiB")

    for workers in (0, 1, 2):
        loader = DataLoader(cached, batch_size=None, shuffle=True, num_workers=workers)
        print(f"train transform, cached, {workers} worker(s): {rate(loader, args.seconds, 1):7.1f} samples/s")
    loader = DataLoader(uncached, batch_size=None, shuffle=True, num_workers=2)
    print(f"train transform, uncached, 2 workers:   {rate(loader, args.seconds, 1):7.1f} samples/s (cache effect)")
    loader = DataLoader(uncached, batch_size=None, shuffle=True, num_workers=0)
    print(f"train transform, uncached, 0 workers:   {rate(loader, args.seconds, 1):7.1f} samples/s")

    pairs = dataset(True, keep_orig=True)
    for workers in (1, 2):
        loader = DataLoader(pairs, batch_size=10, shuffle=True, num_workers=workers, drop_last=True)
        print(f"batch 10 (+10 original pairs), {workers} worker(s): {rate(loader, args.seconds, 1):6.2f} batches/s")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
