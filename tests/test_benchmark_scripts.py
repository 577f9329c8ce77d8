"""The benchmark scripts on tiny inputs: their measurements have the documented structure and the report renders
every table from them (no timing assertions: times on a shared machine are not reproducible)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

SCRIPTS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(SCRIPTS))

import benchmark  # noqa: E402
import benchmark_kernels  # noqa: E402
import performance_report  # noqa: E402
from benchmark_training_step import measure_setting  # noqa: E402

from medseg.nn.precision import cpu_supports_bf16  # noqa: E402

pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.slow]
PRECISIONS = ["fp32", "bf16"] if cpu_supports_bf16() else ["fp32"]


def _check_step_measurement(result: dict) -> None:
    for mode in ("standard", "cooperative", "predict_n_iter_1", "predict_n_iter_2"):
        entry = result[mode]
        assert entry["s"] > 0 and len(entry["times"]) == 1 and entry["gflop"] > 0 and entry["gflops"] > 0
    # cooperative = standard + hard-example generation + hard losses; predict with the STN does more than without
    assert result["cooperative"]["gflop"] > 1.5 * result["standard"]["gflop"]
    assert result["predict_n_iter_2"]["gflop"] > result["predict_n_iter_1"]["gflop"]
    assert result["predict_n_iter_1"]["slices_per_s"] == pytest.approx(2 / result["predict_n_iter_1"]["s"])


def test_conv_flop_formula() -> None:
    conv = torch.nn.Conv2d(4, 8, 3, padding=1)
    assert benchmark_kernels._conv_flops(conv, conv(torch.rand(1, 4, 16, 16))) == 2 * 8 * 16 * 16 * 4 * 9


def test_report_renders_measured_tables(tmp_path: Path) -> None:
    env = benchmark.worker_env({"device": "cpu", "precisions": PRECISIONS, "matmul_n": 64, "matmul_repeats": 1})
    assert set(env["matmul_gflops"]) == set(PRECISIONS)
    jobs = {"env": env}
    for precision in PRECISIONS:  # the small setting (2 x 48^2) is not measured: its rows are left out
        jobs[f"step/2x32/{precision}"] = measure_setting(2, 32, precision, {"standard", "cooperative", "predict"}, 1,
                                                          0, torch.device("cpu"))
        _check_step_measurement(jobs[f"step/2x32/{precision}"])
    kernels = benchmark_kernels.run(1, 32, repeats=1, warmup=0)
    assert {"fp32_nchw", "fp32_channels_last", "bf16_nchw", "bf16_channels_last"} <= set(
        kernels["layers"]["conv3x3 16->16 full res"])
    jobs["kernels"] = {"batch": 1, "size": 32, "threads": 1, "load_1min_start": 0.5, "load_1min_end": 0.5, **kernels}
    jobs["loop/2x32/cooperative/fp32"] = {
        "loop_s_per_iter": 1.1, "step_s_per_iter": 1.0, "overhead": 0.1, "measured_iterations": 3,
        "load_1min_loop": 1.0, "load_1min_step": 1.0, "loop_peak_rss_gib": 1.0, "iterations_per_epoch": 3,
        "epoch_seconds": [3.0, 3.0, 3.0], "run_seconds": 12.0, "in_epoch_s_per_iter": 1.05,
        "epoch_end_seconds": [0.5, 0.6]}  # a loop run takes minutes: its structure only
    results = {"quick": True, "started": "now", "git_commit": "abc", "load_1min_start": 1.0, "load_1min_end": 1.0,
               "minutes": 0.1, "data": "phantoms (temporary)", "jobs": jobs}
    text = performance_report.render(results, benchmark.TARGETS, (2, 32), (2, 48))
    assert text.startswith("# Performance")
    assert "| 2 × 32² | fp32 | cooperative |" in text and "| 2 × 32² | fp32 | standard |" in text
    assert "| 2 × 48² |" not in text  # no table rows for what was not measured
    assert "| 2 × 32² | cooperative | fp32 | 1.100 | 1.050 | 0.6 | 1.000 | +10.0 % |" in text
    assert "| conv3x3 16->16 full res |" in text and "## History (not measured by this run)" in text
    assert ("No GPU was available" in text) == (env["cuda"] is None)
    judged, _ = performance_report.best_neutral_precision(results)
    assert judged == "fp32"  # bf16 is never judged without an accuracy comparison that says it is neutral
    assert "## GPU" in text and ("Not measured (no GPU available to this task)" in text) == (env["cuda"] is None)


def test_gpu_section_from_gpu_measurements() -> None:
    """The GPU section's arithmetic on made-up GPU numbers (no GPU here): share of the peak, the paper budget, the
    loader against the step."""
    jobs = {
        "env": {"cuda": "A GPU", "matmul_gflops": {"fp32": {"gflops": 20000.0}, "bf16": {"gflops": 200000.0}}},
        "step/20x192/fp32": {"cooperative": {"s": 0.2, "gflops": 2000.0}, "standard": {"s": 0.1, "gflops": 1500.0},
                             "predict_n_iter_2": {"slices_per_s": 900.0}},
        "step/20x192/bf16": {"cooperative": {"s": 0.1, "gflops": 4000.0}, "standard": {"s": 0.05, "gflops": 3000.0}},
        "loop/20x192/cooperative/bf16": {"overhead": 0.2, "iterations_per_epoch": 20},
        "loader": {"workers_0": {"samples_per_s": 40.0}, "workers_4": {"samples_per_s": 80.0}},
    }
    text = performance_report._gpu_section({"jobs": jobs}, (20, 192))
    assert "| fp32 | 0.200 | 0.100 | 2000 | 20000 | 10.0 % | 900 |" in text
    assert "| bf16 | 0.100 | 0.050 | 4000 | 200000 | 2.0 % |" in text
    # 3 runs x 600 epochs x 20 iterations x (0.1 + 0.05) s x 1.2 = 6480 s
    assert "**1.8 h**" in text and "in bf16" in text and "(0.100 + 0.050) s × 1.20" in text
    # 10 augmented samples per iteration / 0.1 s = 100/s needed; 80/s with 4 workers
    assert "consumes 100 augmented samples/s" in text and "1.2× short" in text
    assert "| 4 | 80.0 | 20.0 |" in text


def test_tf32_is_a_cuda_precision_of_the_benchmark() -> None:
    assert "tf32" not in benchmark.available_precisions("cpu")
