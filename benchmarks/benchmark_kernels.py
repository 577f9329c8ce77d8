#!/usr/bin/env python
"""Micro-benchmark of the layer types of the FCN_16 networks in fp32 and bf16, NCHW and channels-last.

For each layer (at the shapes it has in the networks for a BATCH x SIZE x SIZE input) it times the forward, the
backward to the input and the backward to the weights separately, and prints one JSON object with median
milliseconds and GFLOP/s (convolutions). Times are process CPU seconds (all threads), which are less
disturbed than wall seconds by other processes on a shared machine; the 1-minute load average is recorded.

bf16 is run the way training runs it: fp32 parameters under ``torch.autocast`` (the weight cast is part of the time).

Examples:
    python benchmarks/benchmark_kernels.py --batch 8 --size 128 --threads 1
    python benchmarks/benchmark_kernels.py --batch 20 --size 192 --repeats 5 --out results/kernels.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from medseg.utils.cli import ArgumentParser, HelpFormatter, run_cli
from medseg.utils.memory import keep_freed_memory


def layer_cases(size: int) -> list[tuple[str, Callable[[], nn.Module], tuple[int, int, int]]]:
    """``(name, module factory, (channels, H, W) of the input)`` for the distinct layer kinds of FCN_16."""
    h = size
    return [
        ("conv3x3 1->16 (image encoder input)", lambda: nn.Conv2d(1, 16, 3, padding=1), (1, h, h)),
        ("conv3x3 4->16 (shape encoder input)", lambda: nn.Conv2d(4, 16, 3, padding=1), (4, h, h)),
        ("conv3x3 16->16 full res", lambda: nn.Conv2d(16, 16, 3, padding=1), (16, h, h)),
        ("conv3x3 32->16 full res (decoder)", lambda: nn.Conv2d(32, 16, 3, padding=1), (32, h, h)),
        ("conv3x3 stride 2 16->16", lambda: nn.Conv2d(16, 16, 3, stride=2, padding=1), (16, h, h)),
        ("conv3x3 32->32 half res", lambda: nn.Conv2d(32, 32, 3, padding=1), (32, h // 2, h // 2)),
        ("conv3x3 128->128 1/16 res", lambda: nn.Conv2d(128, 128, 3, padding=1), (128, h // 16, h // 16)),
        ("conv1x1 32->16 full res (residual)", lambda: nn.Conv2d(32, 16, 1), (32, h, h)),
        ("conv1x1 16->4 full res (logits)", lambda: nn.Conv2d(16, 4, 1), (16, h, h)),
        ("convtranspose2x2 32 (image decoder)", lambda: nn.ConvTranspose2d(32, 32, 2, stride=2), (32, h // 2, h // 2)),
        ("batchnorm 16 full res (train)", lambda: nn.BatchNorm2d(16), (16, h, h)),
        ("leaky_relu 16 full res", lambda: nn.LeakyReLU(0.2), (16, h, h)),
        ("upsample nearest x2 32", lambda: nn.UpsamplingNearest2d(scale_factor=2), (32, h // 2, h // 2)),
    ]


def _cpu_ms(fn: Callable[[], object], repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append((time.process_time() - start) * 1e3)
    return statistics.median(times)


def _conv_flops(module: nn.Module, out: Tensor) -> float:
    if isinstance(module, nn.Conv2d):
        k = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        return 2.0 * out.numel() * k
    if isinstance(module, nn.ConvTranspose2d):
        k = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
        return 2.0 * out.numel() / module.out_channels * module.in_channels * k / (module.stride[0] * module.stride[1])
    return 0.0


def time_layer(factory: Callable[[], nn.Module], shape: tuple[int, ...], dtype: torch.dtype, channels_last: bool,
               repeats: int, warmup: int) -> dict[str, float]:
    """Forward, input-gradient and weight-gradient CPU milliseconds of one layer configuration."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    module = factory().to(memory_format=fmt)
    x = torch.randn(shape).contiguous(memory_format=fmt)
    if dtype is torch.bfloat16:
        x = x.to(dtype)  # the activations between layers are bf16 under autocast
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is torch.bfloat16)

    def forward() -> Tensor:
        with autocast:
            return module(x)

    with torch.no_grad():
        out = forward()
    grad = torch.randn_like(out)
    has_weight = any(p.requires_grad for p in module.parameters())
    result: dict[str, float] = {}
    with torch.no_grad():
        result["forward_ms"] = _cpu_ms(forward, repeats, warmup)
    x.requires_grad_(True)
    module.requires_grad_(False)
    result["backward_input_ms"] = _cpu_ms(
        lambda: torch.autograd.grad(forward(), x, grad), repeats, warmup) - result["forward_ms"]
    if has_weight:
        x.requires_grad_(False)
        module.requires_grad_(True)
        weight = next(module.parameters())
        result["backward_weight_ms"] = _cpu_ms(
            lambda: torch.autograd.grad(forward(), weight, grad), repeats, warmup) - result["forward_ms"]
    flops = _conv_flops(module, out)
    if flops:
        result["forward_gflops"] = flops / (max(result["forward_ms"], 1e-3) * 1e6)
    return {k: round(v, 3) for k, v in result.items()}


def time_losses(batch: int, size: int, dtype: torch.dtype, repeats: int, warmup: int) -> dict[str, float]:
    """Softmax + cross entropy over 4 classes (forward + backward), logits in ``dtype``."""
    logits = torch.randn(batch, 4, size, size).contiguous(memory_format=torch.channels_last).to(dtype)
    logits.requires_grad_(True)
    labels = torch.randint(0, 4, (batch, size, size))

    def step() -> None:
        loss = F.cross_entropy(logits.float(), labels) + F.softmax(logits.float() / 2, dim=1).mean()
        loss.backward()

    return {"softmax_ce_forward_backward_ms": round(_cpu_ms(step, repeats, warmup), 3)}


def measure_matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an ``n x n`` matmul in ``dtype`` (wall seconds: the peak uses all threads)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


def run(batch: int, size: int, repeats: int, warmup: int) -> dict:
    """Every layer in fp32/bf16 x NCHW/channels-last."""
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    layers = {}
    for name, factory, (channels, h, w) in layer_cases(size):
        layers[name] = {
            f"{p}{'_channels_last' if cl else '_nchw'}": time_layer(factory, (batch, channels, h, w), dtype, cl,
                                                                     repeats, warmup)
            for p, dtype in dtypes.items() for cl in (False, True)
        }
    losses = {p: time_losses(batch, size, dtype, repeats, warmup) for p, dtype in dtypes.items()}
    return {"layers": layers, "losses": losses}


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="benchmark_kernels.py", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--batch", type=int, default=8, help="slices per batch")
    parser.add_argument("--size", type=int, default=128, help="input height and width (the layers get the sizes they "
                        "have in the networks: full, half, 1/16 resolution)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before each measurement")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here (default: stdout only)")
    parser.add_argument("--verbose", "--debug", action="store_true", help="error tracebacks")
    args = parser.parse_args(argv)
    for flag in ("batch", "repeats", "threads"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag}: expected an integer >= 1, got {getattr(args, flag)}")
    if args.warmup < 0:
        parser.error(f"--warmup: expected an integer >= 0, got {args.warmup}")
    if args.size < 16 or args.size % 16:
        parser.error(f"--size: expected a multiple of 16 (the networks downsample four times), got {args.size}")
    return run_cli(parser.prog, lambda: measure(args), args.verbose)


def measure(args: argparse.Namespace) -> int:
    """Run the layer measurements and print (and write) the JSON; returns 0."""
    from medseg.io.atomic import atomic_write_text

    keep_freed_memory()
    torch.set_num_threads(args.threads)
    report = {"batch": args.batch, "size": args.size, "threads": torch.get_num_threads(),
              "load_average_1min_start": round(os.getloadavg()[0], 2)}
    report.update(run(args.batch, args.size, args.repeats, args.warmup))
    report["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    text = json.dumps(report, indent=1)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, text + "\n")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
