#!/usr/bin/env python
"""Benchmark one training iteration (standard and cooperative) and ``predict`` of the dual-thinking model.

Prints one JSON object: median seconds per iteration of standard and cooperative training and of
``predict(n_iter=1|2)`` (also as slices/s) at each requested setting (default: batch 20 at 192x192, the published
setting, and batch 4 at 128x128), plus the peak RSS of the process, on the current device. Random data; fp32. CPU seconds (user + system, all threads) are reported beside wall
seconds because wall times on a shared machine depend on the other processes (see ``load_average_1min_at_end``).

Examples:
    python scripts/benchmark_training_step.py --iters 3
    python scripts/benchmark_training_step.py --settings 4x128 --no-mallopt --no-channels-last
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

import torch

from medseg.models.advanced_triplet_recon_segmentation_model import AdvancedTripletReconSegmentationModel
from medseg.models.model_util import MaskSpec
from medseg.training.step import train_step
from medseg.utils.cli import HelpFormatter
from medseg.utils.device import resolve_device
from medseg.utils.memory import keep_freed_memory


def _peak_rss_gib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib * (1 if sys.platform != "darwin" else 1 / 1024) / 2**20


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, iters: int, warmup: int, device: torch.device) -> tuple[list[float], list[float]]:
    """Wall seconds and process CPU seconds (user + system, all threads) of each timed call."""
    for _ in range(warmup):
        fn()
    _sync(device)
    walls, cpus = [], []
    for _ in range(iters):
        start, cpu_start = time.perf_counter(), os.times()
        fn()
        _sync(device)
        cpu_end = os.times()
        walls.append(time.perf_counter() - start)
        cpus.append(cpu_end.user - cpu_start.user + cpu_end.system - cpu_start.system)
    return walls, cpus


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--settings", default="20x192,4x128", help="comma-separated BATCHxSIZE list")
    parser.add_argument("--iters", type=int, default=3, help="timed iterations per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations per measurement")
    parser.add_argument("--modes", default="standard,cooperative,predict", help="comma-separated subset")
    parser.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu or cuda[:k]")
    parser.add_argument("--no-mallopt", action="store_true", help="leave glibc's allocator at its defaults")
    parser.add_argument("--no-channels-last", action="store_true", help="use contiguous NCHW activations")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model initialisation and the random batch")
    args = parser.parse_args(argv)

    mallopt = False if args.no_mallopt else keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    modes = set(args.modes.split(","))
    report: dict = {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "mallopt": mallopt,
        "channels_last": not args.no_channels_last,
        "iters": args.iters,
        "warmup": args.warmup,
        "results": {},
    }
    image_spec, shape_spec = MaskSpec(loss_name="mse"), MaskSpec(loss_name="ce")
    for setting in args.settings.split(","):
        batch, size = (int(v) for v in setting.lower().split("x"))
        model = AdvancedTripletReconSegmentationModel(
            num_classes=4, use_gpu=device.type == "cuda", device=device,
            channels_last=not args.no_channels_last,
        )  # fmt: skip
        generator = torch.Generator().manual_seed(args.seed)
        images = torch.rand(batch, 1, size, size, generator=generator).to(device)
        labels = torch.randint(0, 4, (batch, size, size), generator=generator).to(device)
        result: dict = {}
        for name, latent_da in (("standard", False), ("cooperative", True)):
            if name not in modes:
                continue
            times, cpus = _time(
                lambda: train_step(model, images, labels, latent_da, image_code_spec=image_spec,
                                   shape_code_spec=shape_spec, generator=generator),
                args.iters, args.warmup, device,
            )  # fmt: skip
            result[f"{name}_s_per_iter"] = statistics.median(times)
            result[f"{name}_cpu_s_per_iter"] = statistics.median(cpus)
            result[f"{name}_times"] = [round(t, 4) for t in times]
        if "predict" in modes:
            for n_iter in (1, 2):
                times, cpus = _time(lambda: model.predict(images, n_iter=n_iter), args.iters, args.warmup, device)
                result[f"predict_n_iter_{n_iter}_s_per_batch"] = statistics.median(times)
                result[f"predict_n_iter_{n_iter}_cpu_s_per_batch"] = statistics.median(cpus)
                result[f"predict_n_iter_{n_iter}_slices_per_s"] = batch / statistics.median(times)
        result["peak_rss_gib_so_far"] = round(_peak_rss_gib(), 3)
        report["results"][f"batch{batch}_{size}x{size}"] = result
    report["peak_rss_gib"] = round(_peak_rss_gib(), 3)
    # other processes on the machine make wall times noisy: the load average and CPU seconds help to judge them
    report["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    if device.type == "cuda":
        report["peak_cuda_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
