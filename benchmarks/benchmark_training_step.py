#!/usr/bin/env python
"""Benchmark one training iteration (standard and cooperative) and ``predict`` of the dual-thinking model.

Prints one JSON object: median seconds per iteration of standard and cooperative training and of
``predict(n_iter=1|2)`` (also as slices/s) at each requested setting (default: batch 20 at 192x192, the published
setting, and batch 4 at 128x128) and precision (default fp32), the floating-point operations of each
(``torch.utils.flop_counter``) and the achieved GFLOP/s, plus the peak RSS of the process, on the current device.
Random data. CPU seconds (all threads) are reported beside wall seconds because wall times on a shared machine
depend on the other processes; the 1-minute load average is recorded with every measurement.

Examples:
    python benchmarks/benchmark_training_step.py --iters 3
    python benchmarks/benchmark_training_step.py --settings 20x192 --precision fp32,bf16
    python benchmarks/benchmark_training_step.py --settings 4x128 --no-mallopt --no-channels-last
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
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from medseg.method.mask_options import MaskOptions
from medseg.models.advanced_triplet_recon_segmentation_model import AdvancedTripletReconSegmentationModel
from medseg.nn.blocks import set_compute_precision
from medseg.nn.precision import (
    PRECISIONS,
    check_precision,
    compute_precision,
    configure_tf32,
    emulated_bf16,
    make_grad_scaler,
)
from medseg.training.guards import NonFiniteGuard
from medseg.training.step import LOSS_KEYS, train_step
from medseg.utils.cli import ArgumentParser, HelpFormatter, run_cli
from medseg.utils.device import resolve_device
from medseg.utils.memory import tune_allocator

MODES = ("standard", "cooperative", "predict")


class FlopCount(TorchDispatchMode):
    """Counts floating-point operations with the formulas of ``torch.utils.flop_counter`` (convolutions, matmuls,
    their backward passes). A plain dispatch mode: ``FlopCounterMode``'s module tracking does not support the
    ``torch.autograd.grad`` calls of the masking probes."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def peak_rss_gib() -> float:
    """Peak resident set size of this process so far (GiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib * (1 if sys.platform != "darwin" else 1 / 1024) / 2**20


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], iters: int, warmup: int, device: torch.device) -> dict[str, Any]:
    """Wall and process-CPU seconds of each timed call, their medians and the load average meanwhile."""
    for _ in range(warmup):
        fn()
    _sync(device)
    walls, cpus = [], []
    load_before = os.getloadavg()[0]
    for _ in range(iters):
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        cpus.append(time.process_time() - cpu_start)
        walls.append(time.perf_counter() - start)
    return {
        "s": statistics.median(walls), "cpu_s": statistics.median(cpus), "times": [round(t, 4) for t in walls],
        "load_1min": round((load_before + os.getloadavg()[0]) / 2, 2),
    }


def count_flops(fn: Callable[[], Any]) -> int:
    """Floating-point operations of one call of ``fn``."""
    with FlopCount() as counter:
        fn()
    return int(counter.total)


def measure_setting(batch: int, size: int, precision: str, modes: set[str], iters: int, warmup: int,
                    device: torch.device, channels_last: bool = True, seed: int = 0) -> dict[str, Any]:
    """Time standard/cooperative iterations and predict(n_iter=1|2) on random data of one setting.

    Returns:
        ``{'<mode>': {'s', 'cpu_s', 'times', 'load_1min', 'gflop', 'gflops'}, 'predict_n_iter_K': {...,
        'slices_per_s'}, 'peak_rss_gib_so_far': float}``.
    """
    torch.manual_seed(seed)
    configure_tf32(precision == "tf32")  # as the training loop: TF32 only when asked for
    model = AdvancedTripletReconSegmentationModel(num_classes=4, use_gpu=device.type == "cuda", device=device,
                                                  channels_last=channels_last)
    set_compute_precision(model.model.values(), compute_precision(precision))
    scaler = make_grad_scaler(precision, device)
    generator = torch.Generator().manual_seed(seed)
    # as the training loop: masking draws on a CPU generator, the input noise on the device, one guarded host read
    noise = torch.Generator(device=device).manual_seed(seed + 1) if device.type == "cuda" else None
    guard = NonFiniteGuard(model.model, "stop")
    images = torch.rand(batch, 1, size, size, generator=generator).to(device)
    labels = torch.randint(0, 4, (batch, size, size), generator=generator).to(device)
    specs = {"image_code_spec": MaskOptions(loss_name="mse"), "shape_code_spec": MaskOptions(loss_name="ce")}
    result: dict[str, Any] = {}
    for name, latent_da in (("standard", False), ("cooperative", True)):
        if name not in modes:
            continue

        def step(latent_da: bool = latent_da) -> None:
            guard.before_step("benchmark")
            train_step(model, images, labels, latent_da, generator=generator, precision=compute_precision(precision),
                       scaler=scaler, noise_generator=noise,
                       before_update=lambda v: guard.decide(v, LOSS_KEYS[:-1], check_gradients=scaler is None),
                       **specs)

        entry = time_calls(step, iters, warmup, device)
        # FLOPs are linear in the batch: count one slice. 'random' masking probes in 2 of 3 draws on average, so
        # cooperative training counts the probing (targeted) and the dropout iteration
        kinds = ("channel", "dropout") if latent_da else ("dropout",)
        flops = [count_flops(lambda spec=s: train_step(
            model, images[:1], labels[:1], latent_da, generator=generator, precision=compute_precision(precision),
            scaler=scaler,
            image_code_spec=MaskOptions("mse", spec), shape_code_spec=MaskOptions("ce", spec))) * batch for s in kinds]
        entry["gflop"] = (2 * flops[0] + flops[1]) / 3 / 1e9 if latent_da else flops[0] / 1e9
        entry["gflops"] = entry["gflop"] / entry["s"]
        result[name] = entry
    if "predict" in modes:
        for n_iter in (1, 2):
            entry = time_calls(lambda n=n_iter: model.predict(images, n_iter=n), iters, warmup, device)
            with torch.no_grad():  # predict runs under inference mode, which dispatch modes do not see: count it so
                model.eval()
                entry["gflop"] = count_flops(lambda n=n_iter: _predict_graph(model, images[:1], n)) * batch / 1e9
            entry["gflops"] = entry["gflop"] / entry["s"]
            entry["slices_per_s"] = batch / entry["s"]
            result[f"predict_n_iter_{n_iter}"] = entry
    result["peak_rss_gib_so_far"] = round(peak_rss_gib(), 3)
    if device.type == "cuda":
        result["peak_cuda_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    return result


def _predict_graph(model: AdvancedTripletReconSegmentationModel, images: torch.Tensor, n_iter: int) -> None:
    """The computation of ``predict`` (eval mode, without the BN-folded copies: same convolution shapes)."""
    _, pred = model.fast_predict(images)
    for _ in range(n_iter - 1):
        pred = model.recon_shape(pred, is_label_map=False)


def _settings(text: str) -> list[tuple[int, int]]:
    """``'20x192,4x128'`` -> ``[(20, 192), (4, 128)]`` (batch >= 1, size a multiple of 16)."""
    try:
        settings = [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",")]
    except ValueError:
        settings = []
    if not settings or any(len(s) != 2 or s[0] < 1 or s[1] < 16 or s[1] % 16 for s in settings):
        raise argparse.ArgumentTypeError(f"expected BATCHxSIZE[,BATCHxSIZE...] with BATCH >= 1 and SIZE a multiple "
                                         f"of 16, got {text!r}")
    return settings  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="benchmark_training_step.py", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--settings", type=_settings, default="20x192,4x128", help="comma-separated BATCHxSIZE list")
    parser.add_argument("--precision", default="fp32",
                        help=f"comma-separated subset of {','.join(PRECISIONS)} (validated for the device)")
    parser.add_argument("--iters", type=int, default=3, help="timed iterations per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations per measurement")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset")
    parser.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu or cuda[:k]")
    parser.add_argument("--no-mallopt", action="store_true", help="leave glibc's allocator at its defaults")
    parser.add_argument("--no-channels-last", action="store_true", help="use contiguous NCHW activations")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model initialisation and the random batch")
    parser.add_argument("--verbose", "--debug", action="store_true", help="error tracebacks")
    args = parser.parse_args(argv)
    if args.iters < 1 or args.warmup < 0:
        parser.error(f"--iters: expected an integer >= 1 and --warmup >= 0, got {args.iters} and {args.warmup}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads: expected an integer >= 1, got {args.threads}")
    return run_cli(parser.prog, lambda: measure(parser, args), args.verbose)


def measure(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run every setting and print the JSON report; returns 0."""

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    mallopt = False if args.no_mallopt else tune_allocator(device)
    precisions = args.precision.split(",")
    for precision in precisions:
        try:
            check_precision(precision, device, key="--precision")
        except ValueError as err:
            parser.error(str(err))
    modes = set(args.modes.split(","))
    if not modes <= set(MODES):
        parser.error(f"--modes must be a subset of {MODES}, got {sorted(modes)}")
    report: dict = {
        "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "python": platform.python_version(), "mallopt": mallopt, "channels_last": not args.no_channels_last,
        "iters": args.iters, "warmup": args.warmup, "results": {},
    }
    for batch, size in args.settings:
        for precision in precisions:
            with emulated_bf16(precision):  # bf16_emulated: as the training loop runs it
                report["results"][f"batch{batch}_{size}x{size}_{precision}"] = measure_setting(
                    batch, size, precision, modes, args.iters, args.warmup, device, not args.no_channels_last,
                    args.seed)
    report["peak_rss_gib"] = round(peak_rss_gib(), 3)
    report["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
