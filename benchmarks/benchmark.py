#!/usr/bin/env python
"""Measure medseg's speed and write ``docs/PERFORMANCE.md`` and ``docs/performance.json``.

What is measured, for every precision the device supports (CPU: fp32 and, with AVX512-BF16/AMX, bf16; CUDA: fp32,
tf32, bf16, fp16):

* the training step (``benchmarks/benchmark_training_step.py``): median seconds per iteration of standard and
  cooperative training at the published setting (batch 20 x 192^2) and a small one (batch 20 x 96^2),
  FLOPs per iteration (``torch.utils.flop_counter`` formulas) and achieved GFLOP/s against a matmul peak measured on
  the same machine in the same dtype;
* inference: ``predict`` slices/s with n_iter 1 and 2;
* the real training loop (the ``medseg-train`` command line in-process with ``config/ACDC/<mode>_training.json``
  and the crop of the setting: data loading, augmentation, validation, logging, snapshots) against the step at the
  same setting: the loop-vs-step overhead (default at batch 20 x 96^2; ``--loop-settings 20x192`` for the published
  one, about 4 more minutes per mode and precision);
* the training loader (augmentation, keep-orig pairs) in samples/s with 0 and 2 workers (CUDA: 0, 1, 2, 4 and 8, and
  per worker), and on CUDA whether it feeds the step and the projected wall time of ``--budget paper`` (the GPU
  section of the report; run ``scripts/check_cuda.py`` first, and ``--loop-settings 20x192`` for the published loop);
* peak RSS of each measurement (each runs in its own process);
* a layer micro-benchmark (``benchmarks/benchmark_kernels.py``);
* optionally the accuracy comparison of ``benchmarks/compare_precision_accuracy.py`` (``--accuracy FILE``).

Every number carries the 1-minute load average at its measurement: on a shared machine wall times grow with the
other processes' load. Times are medians of repeated measurements.

Duration on a quiet 2-core CPU: about 12 minutes (``--quick``: about 5 minutes, fewer repetitions, cooperative loop
only, layer benchmark at 96^2). Re-run it on a quiet machine to refresh the published numbers::

    python benchmarks/compare_precision_accuracy.py --crop 96 --epochs 6 --datasets ACDC   # optional, ~12 min
    python benchmarks/benchmark.py --accuracy results/precision_accuracy.json
    python benchmarks/benchmark.py --quick --md /tmp/PERFORMANCE.md --json /tmp/performance.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent

PUBLISHED = (20, 192)  # batch x size of config/ACDC/*.json
SMALL = (20, 96)  # the published batch at a quarter of the pixels
TARGETS = {  # the performance targets, batch 20 x 192^2, in the fastest accuracy-neutral precision
    "cooperative_s_per_iter": 2.0,
    "standard_s_per_iter": 1.0,
    "predict_n_iter_2_slices_per_s": 150.0,
    "peak_rss_gib": 3.0,
    "loop_overhead": 0.10,
}


# ------------------------------------------------------------------------------------------------------- workers
def _load() -> float:
    return round(os.getloadavg()[0], 2)


def worker_env(spec: dict[str, Any]) -> dict[str, Any]:
    """Machine description and matmul peaks per dtype: the best wall time with all threads and, on the CPU, the
    best single-thread CPU time times the threads; the peak is the larger of the two."""
    import torch

    from medseg.nn.precision import configure_tf32, cpu_supports_bf16

    device = torch.device(spec["device"])
    result: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu": _cpu_name(), "logical_cpus": os.cpu_count(), "cpu_bf16": cpu_supports_bf16(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "device": str(device),
        "cuda": torch.cuda.get_device_name(device) if device.type == "cuda" else None, "matmul_gflops": {},
    }
    dtypes = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    for name in spec["precisions"]:
        configure_tf32(name == "tf32")
        a = torch.randn(spec["matmul_n"], spec["matmul_n"], device=device).to(dtypes[name])
        b = torch.randn_like(a)
        best, load = float("inf"), _load()
        for _ in range(spec["matmul_repeats"] + 2):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            a @ b
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - start)
        flop = 2 * spec["matmul_n"] ** 3
        entry = {"wall_gflops": flop / best / 1e9, "load_1min": load}
        if device.type == "cpu":  # per-core rate in CPU seconds x cores: less disturbed by other processes
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            cpu_best = float("inf")
            for _ in range(spec["matmul_repeats"] + 1):
                start = time.process_time()
                a @ b
                cpu_best = min(cpu_best, time.process_time() - start)
            torch.set_num_threads(threads)
            entry["per_core_gflops"] = flop / cpu_best / 1e9
            entry["cores_x_per_core_gflops"] = entry["per_core_gflops"] * threads
        entry["gflops"] = max(entry["wall_gflops"], entry.get("cores_x_per_core_gflops", 0.0))
        result["matmul_gflops"][name] = entry
    result["load_1min"] = _load()
    return result


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def worker_step(spec: dict[str, Any]) -> dict[str, Any]:
    """Training step and predict of one setting and precision."""
    import torch
    from benchmark_training_step import measure_setting

    from medseg.utils.memory import tune_allocator

    device = torch.device(spec["device"])
    tune_allocator(device)
    result = measure_setting(spec["batch"], spec["size"], spec["precision"], set(spec["modes"]), spec["iters"],
                             spec["warmup"], device)
    result["load_1min_end"] = _load()
    return result


class _Timeline:
    """Progress-bar stand-in that timestamps every finished iteration of the real loop."""

    def __init__(self) -> None:
        self.epochs: list[list[float]] = []

    def __call__(self, total: int, initial: int, description: str) -> _Timeline:
        self.epochs.append([])
        return self

    def update(self, n: int = 1) -> None:
        self.epochs[-1].append(time.perf_counter())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        return None

    def close(self) -> None:
        return None


def worker_loop(spec: dict[str, Any]) -> dict[str, Any]:
    """The ``medseg-train`` command in-process, then the step benchmark at the same setting.

    The loop time per iteration runs from the first iteration of epoch 1 to the first iteration of the last epoch,
    so every measured epoch includes its end (validation, logging, snapshot, checkpoints); epoch 0 (worker start,
    first checkpoints) is excluded.
    """
    import torch
    from benchmark_training_step import measure_setting, peak_rss_gib

    from medseg.cli.train import build_parser
    from medseg.training import entry

    timeline = _Timeline()
    config = REPO / "config" / "ACDC" / f"{spec['mode']}_training.json"
    with tempfile.TemporaryDirectory(prefix="medseg_loop_") as save_dir:
        args = build_parser().parse_args([
            "--json_config_path", str(config), "--data_setting", "10", "--cval", "0", "--seed", "40",
            "--save_dir", save_dir, "--n_workers", str(spec["n_workers"]), "--device", spec["device"],
            "--precision", spec["precision"], "--set", f"data.root_dir={spec['data']}",
            "--set", f"learning.n_epochs={spec['epochs']}", "--set", f"learning.batch_size={spec['batch']}",
            "--set", f"data.crop_size=[{spec['size']},{spec['size']},1]",
        ])
        args.overrides.append(f"learning.precision={spec['precision']}")
        entry._tqdm_factory = timeline  # the progress bar of the command line: one timestamp per iteration
        start, load_start = time.perf_counter(), _load()
        code = entry.run_training(args)
        total = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"medseg-train exited with {code}")
    epochs = timeline.epochs
    first, last = epochs[1][0], epochs[-1][0]
    iterations = sum(len(e) for e in epochs[1:-1])
    loop_s = (last - first) / iterations
    result = {
        "loop_s_per_iter": loop_s, "iterations_per_epoch": len(epochs[0]), "measured_iterations": iterations,
        "epoch_seconds": [round(e[-1] - e[0], 2) for e in epochs], "run_seconds": round(total, 1),
        # last iteration of an epoch -> first of the next: the epoch end (validation, logging, checkpoints,
        # snapshot) plus one iteration, whose median step time is subtracted below
        "epoch_gap_seconds": [round(b[0] - a[-1], 2) for a, b in zip(epochs[:-1], epochs[1:])],
        "in_epoch_s_per_iter": statistics.median(
            (e[-1] - e[0]) / (len(e) - 1) for e in epochs[1:-1] if len(e) > 1) if len(epochs) > 2 else None,
        "load_1min_loop": round((load_start + _load()) / 2, 2), "loop_peak_rss_gib": round(peak_rss_gib(), 3),
    }
    step = measure_setting(spec["batch"], spec["size"], spec["precision"], {spec["mode"]}, spec["step_iters"], 1,
                           torch.device(spec["device"]))[spec["mode"]]
    result["step_s_per_iter"] = step["s"]
    result["load_1min_step"] = step["load_1min"]
    result["overhead"] = loop_s / step["s"] - 1
    result["epoch_end_seconds"] = [round(g - step["s"], 2) for g in result["epoch_gap_seconds"]]
    return result


def worker_loader(spec: dict[str, Any]) -> dict[str, Any]:
    """Augmented training samples per second of the training loader of the published config."""
    from medseg.config import load_config
    from medseg.training.builders import build_data

    config = load_config(REPO / "config" / "ACDC" / "cooperative_training.json", [f"data.root_dir={spec['data']}"])
    result: dict[str, Any] = {}
    for workers in spec["workers"]:
        data = build_data(config, "10", 0, seed=0, n_workers=workers, pin_memory=False)
        samples, start, load = 0, None, _load()
        for epoch in range(100):
            data.sampler.set_epoch(epoch)
            for batch in data.train_loader:
                if start is None:  # the first batch includes worker start-up
                    start = time.perf_counter()
                    continue
                samples += batch["image"].shape[0]
                if samples >= spec["samples"]:
                    break
            if samples >= spec["samples"]:
                break
        result[f"workers_{workers}"] = {"samples_per_s": samples / (time.perf_counter() - start),
                                        "load_1min": round((load + _load()) / 2, 2)}
    return result


def worker_kernels(spec: dict[str, Any]) -> dict[str, Any]:
    import benchmark_kernels
    import torch

    from medseg.utils.memory import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(1)
    result = {"batch": spec["batch"], "size": spec["size"], "threads": 1, "load_1min_start": _load()}
    result.update(benchmark_kernels.run(spec["batch"], spec["size"], spec["repeats"], 1))
    result["load_1min_end"] = _load()
    return result


WORKERS = {"env": worker_env, "step": worker_step, "loop": worker_loop, "loader": worker_loader,
           "kernels": worker_kernels}


# -------------------------------------------------------------------------------------------------------- driver
THREADS: int | None = None  # --threads of the driver


def run_job(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh process (own peak RSS, no state left by the previous one)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    threads = spec.get("threads", THREADS)
    if threads is not None:  # torch's intra-op threads (DataLoader workers use one each anyway)
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"benchmark job {spec} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["job_seconds"] = round(seconds, 1)
    label = ", ".join(f"{k}={v}" for k, v in spec.items() if k in ("kind", "batch", "size", "precision", "mode"))
    print(f"[benchmark] {label}: {seconds:.0f} s (load {_load()})", file=sys.stderr, flush=True)
    return result


def available_precisions(device: str) -> list[str]:
    import torch

    from medseg.nn.precision import precision_problem

    return [p for p in ("fp32", "tf32", "bf16", "fp16") if precision_problem(p, torch.device(device)) is None]


@contextlib.contextmanager
def training_data(root: Path) -> Iterator[Path]:
    """``root`` if it holds ACDC data, else temporary phantoms of the 10-subject split (ED and ES)."""
    if root.is_dir():
        yield root
        return
    from benchmark_data import write_phantoms

    from medseg.data.splits import get_ACDC_split_policy

    tmp = Path(tempfile.mkdtemp(prefix="medseg_bench_data_"))
    try:
        split = get_ACDC_split_policy("10", 0)
        write_phantoms(tmp, list(split["train"]) + list(split["validate"]))
        for pid in list(split["train"]) + list(split["validate"]):
            for kind in ("img", "seg"):
                shutil.copyfile(tmp / pid / f"ED_{kind}.nii.gz", tmp / pid / f"ES_{kind}.nii.gz")
        print(f"[benchmark] {root} not found: phantoms of 10 + 5 subjects in {tmp}", file=sys.stderr)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def plan(args: argparse.Namespace, precisions: list[str], data: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(key, job spec)`` of every measurement."""
    quick = args.quick
    iters, warmup = (3, 1) if quick else (5, 1)
    jobs: list[tuple[str, dict[str, Any]]] = [("env", {"kind": "env", "device": args.device, "precisions": precisions,
                                                        "matmul_n": 2048, "matmul_repeats": 3 if quick else 7})]
    for batch, size in (PUBLISHED, SMALL):
        for precision in precisions:
            jobs.append((f"step/{batch}x{size}/{precision}", {
                "kind": "step", "device": args.device, "batch": batch, "size": size, "precision": precision,
                "modes": ["standard", "cooperative", "predict"], "iters": iters, "warmup": warmup}))
    modes = ("cooperative",) if quick else ("cooperative", "standard")
    loops = [(setting, mode) for setting in args.loop_settings for mode in modes]
    for (batch, size), mode in loops:
        for precision in precisions:
            jobs.append((f"loop/{batch}x{size}/{mode}/{precision}", {
                "kind": "loop", "device": args.device, "batch": batch, "size": size, "mode": mode,
                "precision": precision, "epochs": 3, "n_workers": 2, "data": str(data),
                "step_iters": iters}))
    for threads in (1, 2):  # intra-op threads on a shared machine: waiting threads spin at every barrier
        jobs.append((f"threads/{threads}", {
            "kind": "step", "device": args.device, "batch": SMALL[0], "size": SMALL[1], "precision": "fp32",
            "modes": ["cooperative"], "iters": 3, "warmup": 1, "threads": threads}))
    workers = [0, 1, 2, 4, 8] if args.device.startswith("cuda") else [0, 2]  # a GPU machine has cores to spare
    jobs.append(("loader", {"kind": "loader", "workers": workers, "samples": 100 if quick else 300,
                            "data": str(data)}))
    if not args.skip_kernels:
        batch, size = SMALL if quick else PUBLISHED
        jobs.append(("kernels", {"kind": "kernels", "batch": batch, "size": size, "repeats": 3 if quick else 5}))
    return jobs


def main(argv: list[str] | None = None) -> int:
    from medseg.utils.cli import ArgumentParser, HelpFormatter, run_cli

    parser = ArgumentParser(prog="benchmark.py", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, cooperative loop only, layer benchmark at 96^2")
    parser.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu or cuda[:k]")
    parser.add_argument("--data", type=Path, default=REPO / "data" / "synthetic" / "ACDC",
                        help="preprocessed ACDC folder for the loop and loader (default: data/synthetic/ACDC; "
                             "temporary phantoms if missing)")
    parser.add_argument("--accuracy", type=Path, default=None,
                        help="JSON of benchmarks/compare_precision_accuracy.py to include (default: none, the "
                             "accuracy section says how to produce it)")
    parser.add_argument("--bf16_decision", type=Path, default=None,
                        help="decision record of a full-length bf16 pair (benchmarks/bf16_decision.py --json) to "
                             "include under Accuracy (default: none)")
    parser.add_argument("--loop-settings", type=_settings, default=[SMALL],
                        help="comma-separated BATCHxSIZE list of the loop-vs-step measurement (default: 20x96)")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS of every measurement (default: torch's, one per core); the "
                             "'threads' jobs compare 1 and 2 threads whatever this says")
    parser.add_argument("--skip-kernels", action="store_true", help="no layer micro-benchmark")
    parser.add_argument("--json", type=Path, default=REPO / "docs" / "performance.json",
                        help="all measurements as JSON (default: docs/performance.json)")
    parser.add_argument("--md", type=Path, default=REPO / "docs" / "PERFORMANCE.md",
                        help="the report (default: docs/PERFORMANCE.md)")
    parser.add_argument("--render-only", action="store_true",
                        help="measure nothing: rewrite --md from the measurements in --json (and --accuracy)")
    parser.add_argument("--worker", default=None,
                        help="internal: run the one measurement given as JSON and print its result (default: run "
                             "the whole suite, each measurement in its own process)")
    parser.add_argument("--verbose", "--debug", action="store_true", help="error tracebacks")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads: expected an integer >= 1, got {args.threads}")
    return run_cli(parser.prog, lambda: run_suite(args), args.verbose)


def _include_accuracy(results: dict[str, Any], args: argparse.Namespace) -> None:
    """Add the accuracy comparisons given on the command line (``--accuracy``, ``--bf16_decision``) to ``results``."""
    if args.accuracy is not None:
        results["accuracy"] = json.loads(args.accuracy.read_text())
    if args.bf16_decision is not None:
        from medseg.experiments.bf16_pair import read_record

        results["bf16_decision"] = read_record(args.bf16_decision)


def run_suite(args: argparse.Namespace) -> int:
    """The whole suite (or one --worker measurement, or --render-only); returns 0."""
    if args.worker is not None:
        spec = json.loads(args.worker)
        sys.stdout.write(json.dumps(WORKERS[spec["kind"]](spec)) + "\n")
        return 0

    from performance_report import render

    from medseg.io.atomic import atomic_write_text
    from medseg.utils.device import resolve_device

    if args.render_only:
        if not args.json.is_file():
            raise FileNotFoundError(f"--json {args.json}: not found; --render-only rewrites the report from earlier "
                                    "measurements (run the suite first)")
        results = json.loads(args.json.read_text())
        if results.get("data") != "phantoms (temporary)":
            results["data"] = shown_path(results["data"])
        _include_accuracy(results, args)
        atomic_write_text(args.json, json.dumps(results, indent=1) + "\n")
        atomic_write_text(args.md, render(results, TARGETS, PUBLISHED, SMALL))
        print(f"[benchmark] wrote {args.md} from {args.json}", file=sys.stderr)
        return 0
    global THREADS
    THREADS = args.threads
    args.device = str(resolve_device(args.device))
    precisions = available_precisions(args.device)
    started = time.time()
    results: dict[str, Any] = {"quick": args.quick, "threads_option": args.threads, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                               "git_commit": _git_commit(), "load_1min_start": _load(), "jobs": {}}
    with training_data(args.data) as data:
        results["data"] = shown_path(args.data) if data == args.data else "phantoms (temporary)"
        for key, spec in plan(args, precisions, data):
            results["jobs"][key] = run_job(spec)
    results["load_1min_end"] = _load()
    results["minutes"] = round((time.time() - started) / 60, 1)
    _include_accuracy(results, args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps(results, indent=1) + "\n")
    atomic_write_text(args.md, render(results, TARGETS, PUBLISHED, SMALL))
    print(f"[benchmark] wrote {args.md} and {args.json} in {results['minutes']} min", file=sys.stderr)
    return 0


def shown_path(path: Path | str) -> str:
    """``path`` relative to the repository when inside it (no machine-specific paths in the published files)."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def _settings(text: str) -> list[tuple[int, int]]:
    """``'20x96,20x192'`` -> ``[(20, 96), (20, 192)]``."""
    try:
        settings = [tuple(int(v) for v in item.lower().split("x", 1)) for item in text.split(",")]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected BATCHxSIZE[,BATCHxSIZE...], got {text!r}") from err
    if any(len(s) != 2 or s[0] < 1 or s[1] < 16 or s[1] % 16 for s in settings):
        raise argparse.ArgumentTypeError(f"expected BATCHxSIZE[,BATCHxSIZE...] with BATCH >= 1 and SIZE a multiple of "
                                         f"16, got {text!r}")
    return settings  # type: ignore[return-value]


def _git_commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        return done.stdout.strip() + ("+uncommitted changes" if dirty else "")
    except OSError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
