"""Everything the experiment writes after its tasks: tables, statistics, curves and the report (see runner docs)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from medseg.evaluation.aggregate import in_averages
from medseg.evaluation.reports import read_vendors
from medseg.experiments import bf16_pair, curves, figures, run_stats, trend
from medseg.experiments.paired_test import paired_tests
from medseg.experiments.plan import ExperimentRequest, Plan, make_plan, test_dir
from medseg.experiments.report import IterResults, ReportInputs, render
from medseg.experiments.saved import SavedResults
from medseg.experiments.state import ExperimentState, code_version, now
from medseg.experiments.tables import (
    finished_runs,
    per_run_relative,
    relative_improvement,
    run_entries,
    vendor_table,
    write_summary,
)
from medseg.experiments.tasks import (
    TRAIN_SCRIPT,
    RunSpec,
    checkpoint_dir,
    resolved_config,
    run_dir,
    shell_command,
    training_argv,
)
from medseg.io.atomic import atomic_open, atomic_output_path, atomic_write_text

if TYPE_CHECKING:
    from medseg.experiments.budgets import Budget

logger = logging.getLogger(__name__)

TEST_SCRIPT = "medseg/test_ACDC_triplet_segmentation.py"


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        frame.to_csv(handle, index=False, float_format="%.6f")
    return path


def collect_volumes(request: ExperimentRequest, plan: Plan, state: ExperimentState) -> tuple[pd.DataFrame, list[str]]:
    """Per-volume Dice of every finished test (columns ``method, cval, seed, n_iter`` + the test's columns), and the
    tests' warnings."""
    frames, notes = [], []
    for spec in plan.specs:
        for n_iter in request.budget.n_iter:
            if state.marker(spec.test_id(n_iter)) is None:
                continue
            folder = test_dir(request.out_dir, spec, n_iter)
            volumes = pd.read_csv(folder / "volumes.csv", dtype={"patient_id": str, "pid": str, "dataset": str})
            volumes.insert(0, "n_iter", n_iter)
            volumes.insert(0, "seed", spec.seed)
            volumes.insert(0, "cval", spec.cval)
            volumes.insert(0, "method", spec.method)
            frames.append(volumes)
            warnings = folder / "warnings.txt"
            if warnings.is_file():
                notes += [f"{spec.test_id(n_iter)}: {line}" for line in warnings.read_text().splitlines() if line]
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), notes


def _iter_results(request: ExperimentRequest, plan: Plan, volumes: pd.DataFrame, notes: list[str],
                  vendors: pd.DataFrame | None) -> dict[int, IterResults]:
    budget = request.budget
    baseline, method = list(budget.methods)
    ckpts = {(s.method, s.cval, s.seed): checkpoint_dir(run_dir(s, budget, plan.save_dir, plan.data_root / "ACDC"))
             for s in plan.specs}
    datasets = list(budget.test_datasets)
    ood = [d for d in datasets if d != "ACDC" and in_averages(d)]
    per_iter = {}
    for n_iter in budget.n_iter:
        part = volumes[volumes["n_iter"] == n_iter] if len(volumes) else volumes
        part, runs, pending = finished_runs(part, list(budget.methods))
        notes += [f"n_iter {n_iter}, {note}" for note in pending]
        if part.empty:
            continue
        folder = request.out_dir / f"n_iter_{n_iter}"
        entries = run_entries(part, list(budget.methods), ckpts)
        table, paths = write_summary(entries, datasets, folder, n_iter, notes)
        values = run_stats.run_values(part, datasets, vendors)
        res = IterResults(table, vendor_table(part, vendors, list(budget.methods)),
                          paired_tests(part, baseline, method, datasets, vendors),
                          relative_improvement(table, baseline, method), per_run_relative(part, baseline, method, ood),
                          {k: v for k, v in paths.items() if k in ("csv", "png")}, runs,
                          run_tests=run_stats.run_level_tests(values, baseline, method,
                                                              [*datasets, "avg_all", "avg_ood"]),
                          gain=run_stats.relative_gain(values, baseline, method),
                          run_table=run_stats.per_run_table(values, baseline, method),
                          penalties=run_stats.vendor_penalties(values, baseline, method),
                          fold_test=run_stats.fold_level_test(values, baseline, method))
        res.figures["vendors"] = _write_csv(res.vendors, folder / "vendors.csv")
        res.figures["wilcoxon"] = _write_csv(res.wilcoxon, folder / "wilcoxon.csv")
        res.figures["relative"] = _write_csv(res.relative, folder / "relative_improvement.csv")
        res.figures["run_level"] = _write_csv(res.run_tests, folder / "run_level_tests.csv")
        res.figures["per_run"] = _write_csv(res.run_table, folder / "per_run.csv")
        res.figures["penalties"] = _write_csv(res.penalties, folder / "vendor_penalties.csv")
        per_iter[n_iter] = res
    return per_iter


def _curves(request: ExperimentRequest, plan: Plan) -> tuple[pd.DataFrame, list[tuple[str, Path]], Path]:
    rows, figures = [], []
    for cval, seed in plan.pairs():
        specs = [s for s in plan.specs if (s.cval, s.seed) == (cval, seed)]
        run_curves = {s.method: curves.read_curve(run_dir(s, request.budget, plan.save_dir, plan.data_root / "ACDC")
                                                  / "log" / "metrics.csv") for s in specs}
        title = f"cval {cval}, seed {seed}"
        figure = curves.plot_run_curves(run_curves, f"Training curves, {title} (budget {request.budget.name})",
                                        request.out_dir / "curves" / f"cval{cval}_seed{seed}.png")
        if figure is not None:
            figures.append((title, figure))
        for method, curve in run_curves.items():
            if curve:
                rows.append({"run": title, "method": method, **curves.plateau_summary(curve)})
    plateau = pd.DataFrame(rows, columns=["run", "method", "epochs", "iterations", "best", "last", "late_change"])
    return plateau, figures, _write_csv(plateau, request.out_dir / "curves" / "plateau.csv")


def _seconds(plan: Plan, state: ExperimentState, n_iters: tuple[int, ...]) -> dict[str, float]:
    seconds: dict[str, float] = {}
    data = state.marker("data")
    if data is not None:
        seconds["data resampling"] = float(data.get("seconds", 0.0))
    for method in dict.fromkeys(s.method for s in plan.specs):
        seconds[f"training {method}"] = 0.0
    seconds["testing"] = 0.0
    for spec in plan.specs:
        marker = state.marker(spec.train_id)
        if marker is not None:
            key = f"training {spec.method}"
            seconds[key] = seconds.get(key, 0.0) + float(marker.get("seconds", 0.0))
        for n_iter in n_iters:
            marker = state.marker(spec.test_id(n_iter))
            if marker is not None:
                seconds["testing"] = seconds.get("testing", 0.0) + float(marker.get("seconds", 0.0))
    return seconds


def _test_command(request: ExperimentRequest, plan: Plan, spec: RunSpec,
                  datasets: list[str] | None = None) -> str:
    budget = request.budget
    ckpt = checkpoint_dir(run_dir(spec, budget, plan.save_dir, plan.data_root / "ACDC"))
    argv = ["--methods", f"{spec.method}={ckpt}", "--data_root", str(plan.data_root),
            "--datasets", *(datasets or budget.test_datasets),
            "--frames", *budget.frames, "--n_iter", str(budget.n_iter[-1]), "--crop_size", str(budget.test_crop_size),
            "--output_dir", str(test_dir(request.out_dir, spec, budget.n_iter[-1]))]
    return shell_command(TEST_SCRIPT, argv)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: value}


def _method_difference(plan: Plan, budget: Budget) -> tuple[str, ...]:
    """Dotted keys whose resolved training configs differ between the two methods of the first run (name aside)."""
    first_run = plan.specs[0].cval
    specs = [s for s in plan.specs if s.cval == first_run]
    configs = [_flatten(json.loads(resolved_config(s, budget, plan.data_root / "ACDC"))) for s in specs[:2]]
    if len(configs) < 2:
        return ()
    keys = sorted((set(configs[0]) | set(configs[1])) - {"name"})
    return tuple(k for k in keys if configs[0].get(k) != configs[1].get(k))


def write_outputs(request: ExperimentRequest, plan: Plan, state: ExperimentState, complete: bool,
                  saved: SavedResults | None = None, rebuilt_by: str = "") -> Path:
    """Write the tables, curves and ``RESULTS.md`` from whatever has finished; returns the report path.

    ``saved``: rebuild from saved per-volume Dice instead of the experiment folder's tests (see :func:`rebuild`).
    """
    budget, out_dir = request.budget, request.out_dir
    if saved is None:
        volumes, notes = collect_volumes(request, plan, state)
    else:
        volumes, notes = saved.volumes, []
    notes = list(plan.notes) + notes
    files: list[Path] = []
    if len(volumes):
        files.append(_write_csv(volumes, out_dir / "volumes.csv"))
    mm_root = plan.data_root / "MM"
    if saved is not None and saved.vendors is not None:
        vendors = saved.vendors
    else:
        vendors = read_vendors(mm_root) if (mm_root / "vendors.csv").is_file() else None
    if vendors is not None:  # published beside the report, so that it can be rebuilt without the data
        files.append(_write_csv(vendors, out_dir / "MM_vendors.csv"))
    per_iter = _iter_results(request, plan, volumes, notes, vendors)
    for res in per_iter.values():
        files += [res.figures[k] for k in ("csv", "run_level", "per_run", "penalties", "vendors", "wilcoxon",
                                           "relative") if k in res.figures]
    plateau, curve_figures, plateau_csv = _curves(request, plan)
    if saved is not None and saved.plateau is not None and plateau.empty:
        plateau = saved.plateau
        plateau_csv = _write_csv(plateau, out_dir / "curves" / "plateau.csv")
    files.append(plateau_csv)
    manifest = state.manifest()
    invocations = manifest.get("invocations", [])
    tested: list[str] | None = None
    if saved is not None:  # the call that rebuilt the report; the tests named the sets the saved volumes hold
        invocations = [{"argv": request.argv, "time": now(), "commit": code_version(request.repo_root)}]
        present = set(saved.volumes["dataset"]) if len(saved.volumes) else set()
        tested = [d for d in budget.test_datasets if d in present] or None
    lengths = trend.milestones(budget.n_epochs, budget.keep_best_every_num_epochs)
    n_tasks = len(plan.specs) * (1 + len(budget.n_iter) + len(lengths))
    finished = sum(state.marker(s.train_id) is not None for s in plan.specs) + sum(
        state.marker(s.test_id(n)) is not None for s in plan.specs for n in budget.n_iter) + sum(
        state.marker(trend.task_id(s, e)) is not None for s in plan.specs for e in lengths)
    first = plan.specs[0]
    inputs = ReportInputs(
        budget=budget, complete=complete, finished_tasks=finished, total_tasks=n_tasks, per_iter=per_iter,
        plateau=plateau, curve_figures=curve_figures,
        seconds=_seconds(plan, state, budget.n_iter) if saved is None else {},
        commits=list(dict.fromkeys(i.get("commit", "unknown") for i in invocations)) if saved is None else [],
        invocations=invocations,
        data_root=str(request.data_root), prepared_root=str(plan.data_root),
        fingerprint=manifest.get("identity", {}).get("data_fingerprint", ""),
        train_command=shell_command(TRAIN_SCRIPT, training_argv(first, budget, plan.save_dir, plan.data_root / "ACDC",
                                                                request.options)),
        test_command=_test_command(request, plan, first, tested), files=files, notes=notes,
        method_difference=_method_difference(plan, budget), provenance=list(saved.provenance) if saved else [],
        rebuilt_by=rebuilt_by)
    if budget.resamples and (plan.data_root / "ACDC-C").is_dir():
        inputs.acdc_c_figure = figures.acdc_c_columns_figure(plan.data_root, out_dir / "figures" / "acdc_c_columns.png")
    trend.trend_section(request, plan, inputs, state, saved=saved.trend if saved is not None else None,
                        saved_recon=saved.recon if saved is not None else None)
    if request.bf16_decision is not None:
        decision = bf16_pair.read_record(request.bf16_decision)
        inputs.extra_sections.append(bf16_pair.markdown(decision))
        copy = out_dir / "bf16_decision.json"
        atomic_write_text(copy, json.dumps(decision, indent=2) + "\n")
        inputs.files.append(copy)
    report = out_dir / "RESULTS.md"
    atomic_write_text(report, render(inputs, lambda p: Path(os.path.relpath(p, out_dir)).as_posix()))
    if request.results_md is not None:
        publish(inputs, request.results_md, out_dir)
    logger.info("report: %s", report)
    return report


def rebuild(request: ExperimentRequest, saved: SavedResults | None = None) -> Path:
    """The report of ``request.out_dir`` rebuilt without training or testing: from its finished tests, or from
    ``saved`` results (then the data folder need not exist). Returns the report path."""
    budget = request.budget
    state = ExperimentState(request.out_dir)
    if saved is None:
        if not (request.out_dir / "experiment.json").is_file():
            raise FileNotFoundError(f"--report_only: {request.out_dir} holds no experiment (no experiment.json); "
                                    "give --volumes to rebuild from a saved volumes.csv")
        plan = make_plan(request)
    else:
        specs = [RunSpec(m, request.config_dir / c, cval, seed) for cval, seed in budget.runs
                 for m, c in budget.methods.items()]
        data_root = request.out_dir / f"data_{budget.spacing_mm:g}mm" if budget.resamples else request.data_root
        plan = Plan(specs, data_root, request.out_dir / "runs", [], [], [])
    request.out_dir.mkdir(parents=True, exist_ok=True)
    n_done = None
    if saved is not None:
        n_done = {(m, int(c), int(s))
                  for m, c, s in saved.volumes[["method", "cval", "seed"]].drop_duplicates().itertuples(index=False)}
    complete = (n_done is not None and len(n_done) == len(plan.specs)) or (
        saved is None and all(state.marker(s.test_id(n)) is not None for s in plan.specs for n in budget.n_iter)
        and trend.all_tested(request, plan, state))
    rebuilt_by = code_version(request.repo_root) if saved is None else ""
    return write_outputs(request, plan, state, complete=complete, saved=saved, rebuilt_by=rebuilt_by)


def publish(inputs: ReportInputs, target: Path, out_dir: Path) -> Path:
    """Write the report to ``target`` with every file it links copied beside it: PNG figures to
    ``<target stem>_figures/``, the tables (CSV) to ``<target stem>_data/``, so that a published report (e.g. in
    ``docs/``) stays whole without the output folder, which is not committed."""

    copied: dict[Path, str] = {}

    def link(path: Path) -> str:
        if path not in copied:
            kind = "figures" if path.suffix == ".png" else "data"
            name = Path(os.path.relpath(path, out_dir)).as_posix().replace("/", "_")
            copy = target.parent / f"{target.stem}_{kind}" / name
            with atomic_output_path(copy) as tmp:
                shutil.copyfile(path, tmp)
            copied[path] = Path(os.path.relpath(copy, target.parent)).as_posix()
        return copied[path]

    atomic_write_text(target, render(inputs, link))
    return target
