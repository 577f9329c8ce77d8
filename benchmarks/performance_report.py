"""Markdown rendering of ``benchmarks/benchmark.py`` results (``docs/PERFORMANCE.md``).

Every number in the document comes from the results dict; the prose around the tables states what was measured,
what was tried and why, and labels the numbers that were not measured by this run (the earlier
measurements against the published implementation).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

MODES = ("standard", "cooperative")


def _f(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _jobs(results: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in results["jobs"].items() if k.startswith(prefix)}


def _precisions(results: dict[str, Any]) -> list[str]:
    return list(results["jobs"]["env"]["matmul_gflops"])


def _settings(results: dict[str, Any]) -> list[tuple[int, int]]:
    """The step-benchmark settings of a run, in run order."""
    seen = dict.fromkeys(tuple(int(v) for v in k.split("/")[1].split("x")) for k in results["jobs"]
                         if k.startswith("step/"))
    return list(seen)


def _step(results: dict[str, Any], setting: tuple[int, int], precision: str) -> dict[str, Any] | None:
    return results["jobs"].get(f"step/{setting[0]}x{setting[1]}/{precision}")


def best_neutral_precision(results: dict[str, Any]) -> tuple[str, str]:
    """The precision the targets are judged in, and why: the fastest one that is accuracy-neutral (bf16 only when
    the accuracy comparison says so)."""
    accuracy = results.get("accuracy")
    faster = [s for s in (_step(results, k, "bf16") for k in _settings(results)) if s is not None]
    fp32 = [s for s in (_step(results, k, "fp32") for k in _settings(results)) if s is not None]
    if faster and fp32 and faster[0]["cooperative"]["s"] >= fp32[0]["cooperative"]["s"]:
        return "fp32", "bf16 was not faster than fp32 in this run"
    if "bf16" in _precisions(results) and accuracy is not None and accuracy.get("neutral"):
        return "bf16", "bf16 is faster and within the accuracy criterion in the comparison under *Accuracy*"
    if "bf16" in _precisions(results) and accuracy is None:
        return "fp32", "bf16 has no accuracy comparison in this run, so the targets are judged in fp32"
    if "bf16" in _precisions(results):
        return "fp32", "bf16 is not accuracy-neutral in the comparison below"
    return "fp32", "this device has no bf16"


def _target_values(results: dict[str, Any], published: tuple[int, int], precision: str) -> dict[str, float | None]:
    step = _step(results, published, precision) or {}
    loop = results["jobs"].get(f"loop/{published[0]}x{published[1]}/cooperative/{precision}")
    if loop is None:  # a --quick run times the loop at the quickstart setting only
        loop = next((v for k, v in _jobs(results, "loop/").items() if k.endswith(f"cooperative/{precision}")), None)
    return {
        "cooperative_s_per_iter": step.get("cooperative", {}).get("s"),
        "standard_s_per_iter": step.get("standard", {}).get("s"),
        "predict_n_iter_2_slices_per_s": step.get("predict_n_iter_2", {}).get("slices_per_s"),
        "peak_rss_gib": step.get("peak_rss_gib_so_far"),
        "loop_overhead": None if loop is None else loop["overhead"],
    }


def _loop_setting(results: dict[str, Any], published: tuple[int, int]) -> str:
    """The setting the loop target is judged at: the published one if the loop ran there, else the first that ran."""
    keys = [k.split("/")[0] for k in _jobs(results, "loop/") if k.endswith("/cooperative/fp32")] or ["none"]
    wanted = f"{published[0]}x{published[1]}"
    setting = wanted if wanted in keys else keys[0]
    return setting.replace("x", " × ") + "²"


def _targets(results: dict[str, Any], targets: dict[str, float], published: tuple[int, int]) -> str:
    judged, why = best_neutral_precision(results)
    precisions = _precisions(results)
    values = {p: _target_values(results, published, p) for p in precisions}
    names = {
        "cooperative_s_per_iter": ("cooperative iteration, batch 20 × 192²", "s", True, 1.0),
        "standard_s_per_iter": ("standard iteration, batch 20 × 192²", "s", True, 1.0),
        "predict_n_iter_2_slices_per_s": ("predict n_iter 2, batch 20 × 192²", "slices/s", False, 1.0),
        "peak_rss_gib": ("peak RSS of the step benchmark, batch 20 × 192²", "GiB", True, 1.0),
        "loop_overhead": (f"training loop against its step (cooperative, {_loop_setting(results, published)})",
                          "%", True, 100.0),
    }
    rows = []
    for key, (label, unit, lower, scale) in names.items():
        target = targets[key] * scale
        cells = []
        for p in precisions:
            v = values[p][key]
            cells.append("not measured" if v is None else f"{v * scale:.2f} {unit}")
        v = values[judged][key]
        verdict = "–" if v is None else ("**met**" if (v * scale <= target if lower else v * scale >= target)
                                         else "not met")
        rows.append([label, *cells, f"{'≤' if lower else '≥'} {target:g} {unit}", verdict])
    step = _step(results, published, judged) or {}
    load = step.get("cooperative", {}).get("load_1min")
    return (f"Judged in **{judged}** ({why}); load during the {judged} step measurement: {_f(load, 1)}.\n\n"
            + _table(["step target", *precisions, "target", f"met in {judged}"], rows))


def _thread_note(results: dict[str, Any]) -> str:
    """How the thread count of this run relates to the targets (set for a 2-core machine)."""
    env = results["jobs"]["env"]
    if env["threads"] >= (env["logical_cpus"] or 1):
        return ""
    peak = env["matmul_gflops"].get("fp32", {}).get("gflops")
    return (f"**Threads.** This run used {env['threads']} intra-op thread(s) per process on {env['logical_cpus']} "
            "logical CPUs, because the machine was shared (see *Threads* below: under this load a second thread made "
            "the step slower, not faster). The targets assume the whole machine; the history below was measured "
            f"with both cores (its fp32 matmul rate was 205 GFLOP/s, this run's {_f(peak, 0)} GFLOP/s with "
            f"{env['threads']} thread(s) under load), so the seconds above are not comparable with it one to one.\n")


def _measured(results: dict[str, Any], settings: list[tuple[int, int]]) -> Iterator[tuple[tuple[int, int], str,
                                                                                           dict[str, Any]]]:
    """``(setting, precision, step job)`` of every step benchmark that ran."""
    for setting in settings:
        for precision in _precisions(results):
            step = _step(results, setting, precision)
            if step is not None:
                yield setting, precision, step


def _step_table(results: dict[str, Any], settings: list[tuple[int, int]]) -> str:
    env = results["jobs"]["env"]
    rows = []
    for setting, precision, step in _measured(results, settings):
        base = _step(results, setting, "fp32")
        peaks = env["matmul_gflops"][precision]
        for mode in MODES:
            e = step[mode]
            speedup = base[mode]["s"] / e["s"] if base is not None else None
            per_cpu_s = e["gflop"] / e["cpu_s"]
            core = peaks.get("per_core_gflops")
            rows.append([f"{setting[0]} × {setting[1]}²", precision, mode, _f(e["s"], 3), _f(e["cpu_s"], 2),
                         _f(e["gflop"], 1), _f(e["gflops"], 0), f"{100 * e['gflops'] / peaks['gflops']:.0f} %",
                         _f(per_cpu_s, 0) + (f" ({100 * per_cpu_s / core:.0f} %)" if core else ""),
                         _f(speedup, 2) + "×", _f(e["load_1min"], 1)])
    return _table(["batch × size", "precision", "mode", "s / iteration", "CPU s", "GFLOP / iteration", "GFLOP/s",
                   "of matmul peak", "GFLOP per CPU second (of one-core peak)", "speed-up vs fp32", "load"], rows)


def _threads_table(results: dict[str, Any]) -> str:
    jobs = _jobs(results, "threads/")
    if not jobs:
        return "Not measured in this run.\n"
    rows = [[n, _f(e["cooperative"]["s"], 2), _f(e["cooperative"]["cpu_s"], 2),
             _f(e["cooperative"]["cpu_s"] / e["cooperative"]["s"], 2), _f(e["cooperative"]["load_1min"], 1)]
            for n, e in sorted(jobs.items())]
    return _table(["intra-op threads", "s / iteration", "CPU s / iteration", "cores busy", "load"], rows)


def _predict_table(results: dict[str, Any], settings: list[tuple[int, int]]) -> str:
    rows = []
    for setting, precision, step in _measured(results, settings):
        for n in (1, 2):
            e = step[f"predict_n_iter_{n}"]
            rows.append([f"{setting[0]} × {setting[1]}²", precision, str(n), _f(e["slices_per_s"], 1),
                         _f(e["gflops"], 0), _f(e["load_1min"], 1)])
    return _table(["batch × size", "precision", "n_iter", "slices/s", "GFLOP/s", "load"], rows)


def _loop_table(results: dict[str, Any]) -> str:
    rows = []
    for key, e in _jobs(results, "loop/").items():
        setting, mode, precision = key.split("/")
        ends = e.get("epoch_end_seconds", [])[1:]  # the epoch ends inside the timed window (not epoch 0's)
        rows.append([setting.replace("x", " × ") + "²", mode, precision, _f(e["loop_s_per_iter"], 3),
                     _f(e.get("in_epoch_s_per_iter"), 3), ", ".join(_f(v, 1) for v in ends) or "–",
                     _f(e["step_s_per_iter"], 3), f"{100 * e['overhead']:+.1f} %", str(e["measured_iterations"]),
                     f"{e['load_1min_loop']} / {e['load_1min_step']}", _f(e["loop_peak_rss_gib"], 2)])
    return _table(["batch × size", "mode", "precision", "loop s / iteration", "of which in-epoch s / iteration",
                   "epoch end s (timed epochs)", "step s / iteration", "overhead", "iterations timed",
                   "load loop / step", "loop peak RSS GiB"], rows)


def _rss_table(results: dict[str, Any]) -> str:
    rows = [[k.replace("x", " × "), _f(v["peak_rss_gib_so_far"], 2)] for k, v in _jobs(results, "step/").items()]
    return _table(["step benchmark (setting / precision)", "peak RSS GiB (whole process)"], rows)


def _kernel_table(results: dict[str, Any]) -> str:
    kernels = results["jobs"].get("kernels")
    if kernels is None:
        return "Not run (``--skip-kernels``).\n"
    columns = ("fp32_nchw", "fp32_channels_last", "bf16_nchw", "bf16_channels_last")
    rows = []
    for name, entry in kernels["layers"].items():
        cells = []
        for column in columns:
            e = entry[column]
            total = e["forward_ms"] + e["backward_input_ms"] + e.get("backward_weight_ms", 0.0)
            cells.append(f"{_f(e['forward_ms'], 1)} / {_f(total, 1)}")
        fp32, bf16 = entry["fp32_channels_last"], entry["bf16_channels_last"]
        gain = sum(fp32[k] for k in fp32 if k.endswith("_ms")) / max(sum(bf16[k] for k in bf16 if k.endswith("_ms")),
                                                                    1e-6)
        rows.append([name, *cells, f"{gain:.2f}×"])
    loss = kernels["losses"]
    text = _kernel_findings(kernels) + "\n" + (f"Batch {kernels['batch']} at {kernels['size']}², 1 thread, CPU milliseconds "
            f"(forward / forward + both backward passes), load {kernels['load_1min_start']} → "
            f"{kernels['load_1min_end']}. bf16 = fp32 parameters under autocast, as in training.\n\n")
    text += _table(["layer", "fp32 NCHW", "fp32 channels-last", "bf16 NCHW", "bf16 channels-last",
                    "bf16 gain (channels-last)"], rows)
    text += (f"\nSoftmax + cross entropy over 4 classes (forward + backward, computed in fp32 from the logits): "
             f"{_f(loss['fp32']['softmax_ce_forward_backward_ms'], 1)} ms from fp32 logits, "
             f"{_f(loss['bf16']['softmax_ce_forward_backward_ms'], 1)} ms from bf16 logits.\n")
    return text


def _total_ms(entry: dict[str, float]) -> float:
    return sum(v for k, v in entry.items() if k.endswith("_ms"))


def _kernel_findings(kernels: dict[str, Any]) -> str:
    """What the layer table says, computed from it: bf16 gain per layer in each layout and the best layout."""
    gains, losses, layout_bf16, layout_fp32 = [], [], [], []
    for name, e in kernels["layers"].items():
        short = name.split(" (")[0]
        for layout in ("channels_last", "nchw"):
            ratio = _total_ms(e[f"fp32_{layout}"]) / max(_total_ms(e[f"bf16_{layout}"]), 1e-6)
            if layout == "channels_last":
                (gains if ratio >= 1.1 else losses if ratio <= 0.9 else []).append(f"{short} {ratio:.2f}×")
        for precision, out in (("bf16", layout_bf16), ("fp32", layout_fp32)):
            cl, nchw = _total_ms(e[f"{precision}_channels_last"]), _total_ms(e[f"{precision}_nchw"])
            if nchw < 0.9 * cl:
                out.append(f"{short} ({nchw:.1f} vs {cl:.1f} ms)")
    best = {}
    for name, e in kernels["layers"].items():
        best[name] = min(e, key=lambda column: _total_ms(e[column]))
    n_cl = sum(column.endswith("channels_last") for column in best.values())
    lines = [
        "Summary (computed from the table; forward + both backward passes, bf16 against fp32 in channels-last):",
        f"* bf16 gains ≥ 1.1× on: {', '.join(gains) or 'none'};",
        f"* bf16 loses (≤ 0.9×) on: {', '.join(losses) or 'none'} (the others are within ±10 %);",
        f"* layers faster in NCHW than in channels-last by > 10 %: bf16: {', '.join(layout_bf16) or 'none'}; "
        f"fp32: {', '.join(layout_fp32) or 'none'};",
        f"* the fastest of the four variants is channels-last for {n_cl} of {len(best)} layers. Switching layout "
        "between layers costs a copy of the activation each way, so one layout is kept for the whole network.",
    ]
    return "\n".join(lines) + "\n"


def _accuracy(results: dict[str, Any]) -> str:
    accuracy = results.get("accuracy")
    if accuracy is None:
        return ("Not part of this run. ``python benchmarks/compare_precision_accuracy.py`` trains the quickstart "
                "budget in fp32 and bf16 with the same seed and tests both; pass its JSON with ``--accuracy``.\n")
    rows = []
    for precision, e in accuracy["runs"].items():
        rows.append([precision, _f(e["best_val_iou"], 4), _f(e["last_val_iou"], 4), _f(e["test_dice"], 4),
                     _f(e.get("train_minutes"), 1)])
    text = (f"{accuracy['description']}\n\n"
            + _table(["precision", "best validation IoU", "last validation IoU", "test Dice (mean LV/MYO/RV)",
                      "training minutes (load-dependent)"], rows))
    text += (f"\nDifference bf16 − fp32: test Dice {accuracy['dice_difference'] * 100:+.2f} points, best validation "
             f"IoU {accuracy['iou_difference'] * 100:+.2f} points → **{'neutral' if accuracy['neutral'] else 'not neutral'}"
             f"** (criterion: within {accuracy['criterion_points']:g} Dice point).\n")
    dice = min(e["test_dice"] for e in accuracy["runs"].values())
    budget = accuracy.get("budget", {})
    if not budget.get("quickstart", True):
        text += (f"\nThis budget ({budget['iterations']} iterations at {budget['batch_size']} × {budget['crop']}²) is "
                 f"smaller than the quickstart budget the comparison is meant for ({budget['quickstart_iterations']} "
                 f"iterations at {budget['quickstart_batch_size']} × {budget['quickstart_crop']}²): it was what the "
                 "shared machine allowed in this session.")
    if dice < 0.5:
        text += (f" The models are far from converged (test Dice {dice:.3f}), so the pair shows that bf16 trains "
                 "like fp32 over the same iterations; it is weak evidence about accuracy at convergence, and the "
                 "default stays fp32.")
    return text + "\n"


def _bf16_decision(results: dict[str, Any]) -> str:
    """The decision of a full-length bf16 pair (``--bf16_decision``), which overrides the short comparison above."""
    decision = results.get("bf16_decision")
    if decision is None:
        return ("The decision itself needs a full-length run pair (docs/EXPERIMENT_PLAN.md, *The bf16 pair*); "
                "not included in this document.\n")
    from medseg.experiments.bf16_pair import markdown

    return markdown(decision, heading="###")


def _commands(results: dict[str, Any]) -> str:
    """The command lines that produced ``results``, rebuilt from what they recorded."""
    lines = []
    accuracy = results.get("accuracy")
    if accuracy is not None:
        b = accuracy.get("budget", {})
        options = "" if b.get("quickstart", True) else f" --crop {b['crop']} --epochs {b['epochs']} --batch {b['batch_size']}"
        if "test_dice_by_set" in next(iter(accuracy["runs"].values())):
            sets = [k for k in next(iter(accuracy["runs"].values()))["test_dice_by_set"] if k not in ("avg_all", "avg_ood")]
            options += " --datasets " + " ".join(sets)
        if b.get("threads"):
            options += f" --threads {b['threads']}"
        if b.get("n_workers") is not None:
            options += f" --n_workers {b['n_workers']}"
        lines.append(f"python benchmarks/compare_precision_accuracy.py{options}")
    decision = results.get("bf16_decision")
    if decision is not None:
        fp32 = decision["fp32"]
        fp32_side = (f"--fp32_trend {fp32['source']} --epoch {fp32['epoch']}" if fp32.get("epoch") is not None
                     else f"--fp32 {fp32['source']}")
        seed = "" if decision["seed"] is None else f" --seed {decision['seed']}"
        lines.append(f"python benchmarks/bf16_decision.py {fp32_side} --bf16 {decision['bf16']['source']} "
                     f"--cval {decision['cval']}{seed} --n_iter {decision['n_iter']} --json results/bf16_decision.json")
    options = " --quick" if results["quick"] else ""
    if results.get("threads_option"):
        options += f" --threads {results['threads_option']}"
    if accuracy is not None:
        options += " --accuracy results/precision_accuracy.json"
    if results.get("bf16_decision") is not None:
        options += " --bf16_decision results/bf16_decision.json"
    lines.append(f"python benchmarks/benchmark.py{options}")
    return "\n".join(lines) + "\n"


PAPER_RUNS, PAPER_METHODS, PAPER_EPOCHS = 3, 2, 600  # --budget paper: 3 runs x standard/cooperative x 600 epochs
LOADER_SAMPLES_PER_ITERATION = 10  # augmented samples per iteration (batch 20 = 10 augmented + 10 originals)

GPU_NOT_MEASURED = """## GPU

**Not measured (no GPU available to this task).** The CUDA path is written and checked on the CPU with stand-ins
(`tests/training/test_gpu_path.py`: CPU-read snapshots restored onto another device, a CUDA snapshot continued on the
CPU, the fp16 GradScaler state, the non-finite decision across two processes, one host read per iteration, TF32 off
by default); it has never been executed on a GPU here. Its check, `python scripts/check_cuda.py`, is ready and run by
the test suite on the CPU, where its CUDA-only sections are SKIP and the others PASS (`tests/test_check_cuda.py`);
its status on a GPU: **not run**. On a GPU machine run, in this order:

```
python scripts/check_cuda.py                                    # PASS/FAIL/SKIP per section, ~3-4 min (estimated)
python benchmarks/benchmark.py --device cuda --loop-settings 20x192 # rewrites this file with this section measured
```

The benchmark then measures, on the GPU: the training step in fp32, tf32, bf16 and fp16 at 20 × 192² (s/iteration
and the share of the GPU's dense matmul peak in the same dtype), `predict`, the training loop with 2 workers
against its step, the loader's samples/s for 0-8 workers (per worker), whether the loader can feed the step, and the
projected wall time of `--budget paper` (3 runs × 2 methods × 600 epochs).
"""


def _gpu_section(results: dict[str, Any], published: tuple[int, int]) -> str:
    """Measured GPU numbers (step per precision, share of the dense peak, loader vs step, the paper budget)."""
    env = results["jobs"]["env"]
    if not env.get("cuda"):
        return GPU_NOT_MEASURED
    rows, fastest = [], None
    for precision in _precisions(results):
        step = _step(results, published, precision)
        if not step or "cooperative" not in step:
            continue
        peak = env["matmul_gflops"].get(precision, {}).get("gflops")
        coop, std = step["cooperative"], step.get("standard", {})
        share = coop["gflops"] / peak if peak else None
        rows.append([precision, _f(coop["s"], 3), _f(std.get("s"), 3), _f(coop["gflops"], 0), _f(peak, 0),
                     f"{100 * share:.1f} %" if share is not None else "–",
                     _f(step.get("predict_n_iter_2", {}).get("slices_per_s"), 0)])
        if fastest is None or coop["s"] < fastest[1]:
            fastest = (precision, coop["s"], std.get("s"))
    loops = {k: v for k, v in results["jobs"].items() if k.startswith(f"loop/{published[0]}x{published[1]}/")}
    loader = {k: v for k, v in results["jobs"].get("loader", {}).items() if isinstance(v, dict)}
    lines = [f"## GPU\n\n{env['cuda']}: cooperative and standard training step at {published[0]} × {published[1]}², "
             "GFLOP/s against a dense matmul in the same dtype (the GPU's practical peak), `predict` n_iter 2.\n",
             _table(["precision", "cooperative s/iter", "standard s/iter", "GFLOP/s", "matmul peak GFLOP/s",
                     "share of peak", "predict slices/s"], rows)]
    if fastest is not None:
        precision, coop_s, std_s = fastest
        overhead = [v["overhead"] for k, v in loops.items() if k.endswith(f"/{precision}") and "overhead" in v]
        factor = 1 + (overhead[0] if overhead else 0.0)
        iters = next((v["iterations_per_epoch"] for v in results["jobs"].values() if isinstance(v, dict)
                      and "iterations_per_epoch" in v), 20)
        hours = PAPER_RUNS * PAPER_EPOCHS * iters * factor * (coop_s + (std_s or coop_s)) / 3600
        lines.append(f"\n**Projected `--budget paper`** in {precision}: {PAPER_RUNS} runs × (cooperative + standard) × "
                     f"{PAPER_EPOCHS} epochs × {iters} iterations × ({coop_s:.3f} + {std_s or coop_s:.3f}) s × "
                     f"{factor:.2f} (loop overhead{'' if overhead else ' not measured'}) ≈ **{hours:.1f} h** of "
                     "training on one GPU, plus the tests (minutes).\n")
        needed = LOADER_SAMPLES_PER_ITERATION / coop_s
        best = max(loader.items(), key=lambda kv: kv[1]["samples_per_s"], default=None)
        if best is not None:
            workers = int(best[0].split("_")[1])
            verdict = ("feeds the step" if best[1]["samples_per_s"] >= needed else
                       f"cannot feed the step: {needed / best[1]['samples_per_s']:.1f}× short; more workers "
                       "(one per free core), a cheaper elastic deformation, or augmenting on the GPU would fix it")
            lines.append(f"The cooperative step consumes {needed:.0f} augmented samples/s; the loader delivers "
                         f"{best[1]['samples_per_s']:.0f}/s with {workers} workers: it {verdict}.\n")
        lines.append(_table(["workers", "samples/s", "per worker"],
                            [[k.split("_")[1], _f(v["samples_per_s"], 1),
                              _f(v["samples_per_s"] / max(int(k.split("_")[1]), 1), 1)] for k, v in loader.items()]))
    lines.append("\nThe check of the CUDA path: `python scripts/check_cuda.py` (run it first on a new machine).\n")
    return "\n".join(lines)


def render(results: dict[str, Any], targets: dict[str, float], published: tuple[int, int],
           small: tuple[int, int]) -> str:
    env = results["jobs"]["env"]
    precisions = _precisions(results)
    loader = results["jobs"].get("loader", {})
    gpu = env["cuda"]
    device_line = (f"GPU: {gpu}." if gpu else
                   "**No GPU was available: the CUDA path (channels-last, bf16/fp16 autocast, fp16 GradScaler, pinned "
                   "memory with non-blocking copies, persistent workers) is written but was not measured.**")
    peaks = ", ".join(f"{p} {_f(v['gflops'], 0)} GFLOP/s (all threads, wall: {_f(v['wall_gflops'], 0)}; one core "
                      f"in CPU time × threads: {_f(v.get('cores_x_per_core_gflops'), 0)}; load {v['load_1min']})"
                      for p, v in env["matmul_gflops"].items())
    neutral, why = best_neutral_precision(results)
    parts = [
        "# Performance\n",
        "*Generated by `python benchmarks/benchmark.py` — do not edit by hand; re-run it (on a quiet machine) to refresh "
        "the numbers.*\n",
        f"Run of {results['started']} at commit `{results['git_commit']}`"
        f"{' (`--quick`: fewer repetitions, cooperative loop only)' if results['quick'] else ''}, "
        f"{results['minutes']} minutes. Machine: {env['cpu']}, {env['logical_cpus']} logical CPUs, torch "
        f"{env['torch']} ({env['threads']} intra-op thread(s) per process, CPU capability {env['cpu_capability']}, native bf16: "
        f"{'yes' if env['cpu_bf16'] else 'no'}). {device_line} Data for the loop and loader: {results['data']}.\n",
        f"**Load.** The machine was shared while this ran: 1-minute load average {results['load_1min_start']} at the "
        f"start and {results['load_1min_end']} at the end on {env['logical_cpus']} CPUs; every table gives the load "
        "during its measurement. Wall times grow with the load (a load of 2 on 2 CPUs is a quiet machine); CPU "
        "seconds are less affected. All times are medians of repeated runs.\n",
        "## Targets\n",
        _targets(results, targets, published),
        f"\nThe default precision stays **fp32** unless a lower one is both faster and accuracy-neutral; here "
        f"{'bf16 passes both tests, so the targets are judged in bf16; the shipped default remains fp32, because the accuracy comparison is short (see *Accuracy*) and bf16 needs a CPU with AVX512-BF16/AMX or a GPU. Pass `--precision bf16` to use it' if neutral == 'bf16' else why}.\n",
        f"{_thread_note(results)}\n",
        "## Training step\n",
        "One `train_step` on random data: `standard` = the four standard losses; `cooperative` = plus hard-example "
        "generation (masking type `random`, so on average 2 of 3 draws run a gradient probe) and the four hard losses. "
        f"GFLOP per iteration counted with the `torch.utils.flop_counter` formulas; the matmul peak is a "
        f"2048 × 2048 matmul in the same dtype on the same machine: {peaks}.\n",
        _step_table(results, [published, small]),
        f"\n### Threads\n\nCooperative fp32 step at {small[0]} × {small[1]}² with 1 and 2 intra-op threads "
        "(`OMP_NUM_THREADS`). On a machine whose other processes already keep the cores busy, a second thread can "
        "cost more than it gains: the threads meet at a barrier after every operation, and a thread that the "
        "scheduler has parked makes the other spin. The tables above ran with "
        f"{results['jobs']['env']['threads']} thread(s) per process.\n",
        _threads_table(results),
        "\n## Inference\n",
        "`predict` (eval mode, BatchNorm folded into the convolutions, inference mode); n_iter 1 = FTN, "
        "2 = FTN + one STN pass (the test protocol).\n",
        _predict_table(results, [published, small]),
        "\n## The training loop against its step\n",
        "The real `medseg-train` command line (in-process, 2 DataLoader workers, `config/ACDC/<mode>_training.json` "
        "with the crop of the setting, 3 epochs, seed 40, data setting 10): time per iteration from the first iteration of epoch 1 to the first of the last "
        "epoch, so each timed epoch includes data loading, augmentation, validation (`predict(n_iter=2)` on 106 "
        "slices), logging and the per-epoch snapshot; then the step benchmark at the same setting in the same "
        "process. Overhead = loop / step − 1.\n",
        _loop_table(results),
        "\n## Loader\n",
        "Training loader of the published config (augmentation `ACDC_affine_elastic_intensity`, batches of 10 "
        "augmented + 10 original slices, volume cache): augmented samples per second.\n",
        _table(["workers", "samples/s", "load"],
               [[k.split("_")[1], _f(v["samples_per_s"], 1), _f(v["load_1min"], 1)] for k, v in loader.items()
                if isinstance(v, dict)]),
        "\n" + _gpu_section(results, published),
        "\n## Peak memory\n",
        _rss_table(results),
        "\n## Layer micro-benchmark\n",
        _kernel_table(results),
        "\n## Accuracy: fp32 against bf16\n",
        _accuracy(results),
        _bf16_decision(results),
        "\n" + WHAT_WAS_TRIED,
        "\n" + HISTORY,
        "\n## Reproduce\n",
        "This document came from (one command each; the accuracy pair first, since the benchmark includes it):\n",
        "```\n" + _commands(results) + "```\n",
        "Other variants: `python benchmarks/benchmark.py` without `--quick` (more repetitions, standard training in the "
        "loop too, layer study at 20 × 192²; about twice as long), `--loop-settings 20x192` (the loop at the published "
        "setting), `python benchmarks/compare_precision_accuracy.py` without budget options (the full quickstart budget, "
        "about an hour), and the single measurements `python benchmarks/benchmark_training_step.py --settings 20x192 "
        "--precision fp32,bf16` and `python benchmarks/benchmark_kernels.py --batch 20 --size 192`.\n",
        f"Precisions measured on this device: {', '.join(precisions)}.\n",
    ]
    return "\n".join(parts)


WHAT_WAS_TRIED = """## What was tried

**Mixed precision (`learning.precision`, `--precision` on medseg-train/-test/-predict).** The networks enter
`torch.autocast` themselves and return fp32 (`medseg.nn.blocks.AutocastForward`), so every loss, softmax, sigmoid
and mask is computed in fp32; parameters, Adam states and BatchNorm running statistics stay fp32 (BatchNorm reads
bf16 activations and accumulates its batch statistics in fp32). One autocast region spans the iteration, so each
weight is cast once per iteration. The hard-example generation (the gradient probes of the targeted masking and the
decoding of the masked codes) runs the two decoders in fp32: with bf16 probes the channel/position scores differed
by up to 20 % and another 5–13 % of the entries would have been masked than in fp32; fp32 probes cost about 7 % of
a bf16 cooperative iteration (measured during development, batch 8 × 128², 1 thread). fp16 (CUDA only) uses a
`GradScaler` over one backward of standard + hard losses (the documented multi-optimiser pattern); its scale is
saved in the run snapshot, so an fp16 resume continues with the scale it had reached. `tf32` (CUDA) computes in fp32
with TensorFloat-32 convolutions; plain `fp32` turns PyTorch's default TF32 in cuDNN off.

Where a precision cannot run, the command refuses it before anything is written, with one error line naming the
option (`--precision` or the config key `learning.precision`): `fp16` on the CPU, and `bf16` on a CPU without native
bf16 instructions (AVX512-BF16 or AMX), where PyTorch would emulate bf16 more slowly than fp32. There is no silent
fallback, so a run's `config.json` always says the precision it trained in. The default is `fp32`.

**Measuring bf16's accuracy without native bf16 (`bf16_emulated`, training only).** On an AVX2 CPU PyTorch's own bf16
convolutions took about 12× fp32's time (batch 20 × 96², standard step: 25.8 s against 2.17 s, one thread), and
their backward passes were not correctly rounded (errors up to thousands of bf16 steps where sums cancel, against
float64; a native kernel sums in fp32 and rounds once). `bf16_emulated` runs the same bf16 mixed precision with a
dispatch mode that computes each bf16 convolution and matrix product, forward and backward, as the fp32 operation
on its bf16 operands rounded once to bf16: what a native kernel computes, up to the order of the fp32 sums (tested
within one bf16 step of float64). It costs 1.07× (standard) and 1.16× (cooperative) fp32's CPU time there, so a
full-length bf16 run of the accuracy decision fits a CPU without native bf16; its config records `bf16_emulated`.

**Layouts.** Activations are channels-last end to end on the CPU (the default of the model), in every precision;
on CUDA the training loop uses channels-last whenever it trains in bf16/fp16 (tensor cores, not measured here). The
decoders' logits gradients are converted once to channels-last before the final 1 × 1 convolution. What the layer
table of this run says about the layout choice is summarised under *Layer micro-benchmark* above.

**The loop.** DataLoader workers are persistent (no re-fork and no empty prefetch queue at every epoch start and
every validation); the epoch travels with every sampled index, so persistent workers still draw each epoch's
augmentation (`medseg.training.builders.EpochTaggedSampler`). The elastic deformation's Gaussian smoothing
(σ ≈ 17–34 px) is a zero-padded FFT convolution instead of a direct one (same result up to rounding) and the
per-class cubic label warp prefilters only the columns holding the class and the rows it reads (bit-identical);
together they cut the elastic sample from about 31 to about 20 ms CPU (development measurement under load).
Batches are copied to the device before the keep-orig concatenation (pinned, non-blocking on CUDA), hard examples
for TensorBoard are kept on the device and copied only when an image summary is written, validation predicts in the
training precision.

**Inference.** BatchNorm is folded into the convolutions of cached eval copies of the networks (earlier work); bf16
inference uses the same copies.

**Not adopted.**
* *Reusing forward activations across the masking probes.* The probe decodes the same detached code as the
  standard forward, in train mode with BN tracking on, so its output equals the standard decoder output; reusing it
  would need that graph retained through the standard backward, a second running-statistics update applied by
  hand, and a dropout-free decoder. The probes are 7 % of the cooperative FLOPs (11.5 of 167 GFLOP at
  8 × 128², counted); the saving does not justify reimplementing the model's step outside the model class.
* *`torch.compile`, CUDA graphs, `cudnn.benchmark`.* They need a GPU to be measured (none was available); none is
  enabled without numbers and equivalence tests on a GPU. `cudnn.benchmark` stays as `seed_everything` sets it
  (off for seeded runs, for reproducibility). On this CPU, compiling the training step would recompile for every
  combination of BN tracking, frozen decoders and no-grad decodes that one iteration uses.
* *Fusing BN + LeakyReLU / the residual add into the convolutions for inference* (oneDNN post-ops): not done; the
  element-wise layers are a small share of inference time next to the 16-channel full-resolution convolutions.
* *BatchNorm on a (N·H·W, C) view of the channels-last activation*: no faster than the channels-last kernel.

**Why the step targets are hard on this CPU.** Most of the FLOPs are in the full-resolution layers, which have 16
channels: a convolution with 16 input and 16 output channels is a thin matrix product that cannot reach the rate of
a large square matmul, in either precision (compare the GFLOP/s columns with the matmul peaks above).
"""

HISTORY = """## History (not measured by this run)

Numbers recorded before this work, measured side by side with the published implementation, batch 20 ×
192², fp32, on this 2-core CPU. The published implementation cannot be fetched on this machine, so it is not
re-measured here:

* medseg's cooperative iteration 3.5–4.1 s against 13.6–29.9 s for the original as shipped (3.9–7.3×); most of that
  is glibc allocator tuning, which the original also gets from `MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<bytes>`;
* against the allocator-tuned original: 4.28 s vs 5.6 s cooperative (1.30×), 1.23× standard, 4.1× predict;
* medseg before this work: 3.5–4.3 s cooperative, 1.7–1.9 s standard, ≈ 80 slices/s predict (n_iter 2);
  convolutions at about 215–265 GFLOP/s against an fp32 matmul rate of 205 GFLOP/s; a 2048² bf16 matmul at
  853–915 GFLOP/s.
"""
