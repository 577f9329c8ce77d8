"""The training-length trend: the best model so far at every ``keep_best_every_num_epochs`` epochs of each run
(``model/best_at_<epoch>``, kept by the training loop), tested with the budget's last ``n_iter`` on every test set
once the run's training is finished (tasks of the experiment queued after every training, so they fill the slots
that finished trainings free), and one figure of in-domain and ``avg_ood`` Dice against epochs for both methods
(each run and the mean over runs) beside the image decoder's reconstruction quality (``recon/*`` of each run's
``metrics.csv``).

Folder: ``<out>/trend/<method>/cval<k>_seed<s>/epoch_<E>/volumes.csv`` (+ the test script's files); a state marker
per test (with the checkpoint hash, so a retrained model is tested again); ``<out>/trend/trend.csv`` (per run and
epoch), ``trend_means.csv``, ``recon.csv`` (the reconstruction columns of every run's ``metrics.csv``, kept so that a
report rebuilt from the saved tables has them) and ``trend.png``.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from medseg.experiments import figures, run_stats
from medseg.experiments.report import markdown_table
from medseg.experiments.state import ExperimentState, hash_files, now
from medseg.experiments.tasks import RunSpec, run_dir, run_test

if TYPE_CHECKING:
    from medseg.experiments.plan import ExperimentRequest, Plan
    from medseg.experiments.report import ReportInputs

logger = logging.getLogger(__name__)


RECON_FILE = "recon.csv"


def recon_beside(trend_csv: Path) -> Path:
    """The reconstruction table saved beside a trend table: ``recon.csv`` beside ``trend.csv``, and the published
    copies' names alike (``trend_recon.csv`` beside ``trend_trend.csv``)."""
    name = trend_csv.name
    stem = name[: -len("trend.csv")] if name.endswith("trend.csv") else name.removesuffix(".csv") + "_"
    return trend_csv.with_name(stem + RECON_FILE)


def milestones(n_epochs: int, every: int) -> list[int]:
    """Epoch counts at which the best model so far is kept: ``every, 2 every, ...`` up to ``n_epochs``."""
    return list(range(every, n_epochs + 1, every)) if every > 0 else []


def trend_dir(out_dir: Path, spec: RunSpec, epoch: int) -> Path:
    return out_dir / "trend" / spec.method / f"cval{spec.cval}_seed{spec.seed}" / f"epoch_{epoch}"


def task_id(spec: RunSpec, epoch: int) -> str:
    return f"trend_{spec.method}_cval{spec.cval}_seed{spec.seed}_epoch{epoch}"


def kept_model(request: ExperimentRequest, plan: Plan, spec: RunSpec, epoch: int) -> tuple[Path, list[Path]]:
    """The checkpoint folder of the best model after ``epoch`` epochs of a run, and its module files (sorted; none
    when the run stopped before that epoch, e.g. at the iteration cap)."""
    folder = run_dir(spec, request.budget, plan.save_dir, plan.data_root / "ACDC")
    checkpoints = folder / "model" / f"best_at_{epoch}" / "checkpoints"
    return checkpoints, sorted(checkpoints.glob("*.pth"))


def is_tested(request: ExperimentRequest, plan: Plan, state: ExperimentState, spec: RunSpec, epoch: int) -> bool:
    """Whether the trend test of ``(spec, epoch)`` is done: on exactly the kept files (a retrained model is tested
    again), or recorded as having no kept model to test. Asked once the run's training is finished."""
    done = state.marker(task_id(spec, epoch))
    if done is None:
        return False
    _, files = kept_model(request, plan, spec, epoch)
    return done.get("checkpoint_hash") == (hash_files(files) if files else None)


def all_tested(request: ExperimentRequest, plan: Plan, state: ExperimentState) -> bool:
    """Whether every trend test of the experiment is done (true when the budget keeps no model)."""
    budget = request.budget
    return all(state.marker(spec.train_id) is not None and is_tested(request, plan, state, spec, epoch)
               for spec in plan.specs for epoch in milestones(budget.n_epochs, budget.keep_best_every_num_epochs))


def trend_test_task(request: ExperimentRequest, plan: Plan, state: ExperimentState, spec: RunSpec,
                    epoch: int) -> bool:
    """Test the best model after ``epoch`` epochs of a finished run with the budget's last n_iter, unless done;
    True if a test ran. A run that kept no model at this epoch gets a marker saying so (nothing to test)."""
    tid = task_id(spec, epoch)
    if is_tested(request, plan, state, spec, epoch):
        state.log(tid, "skipped")
        return False
    checkpoints, files = kept_model(request, plan, spec, epoch)
    if not files:
        logger.info("%s: the run kept no model after %d epochs (it stopped before): nothing to test", tid, epoch)
        state.mark_done(tid, {"checkpoint_hash": None, "no_model": True, "seconds": 0.0, "finished": now()})
        state.log(tid, "no model")
        return False
    n_iter = request.budget.n_iter[-1]
    started = time.perf_counter()
    logger.info("%s: testing the best model after %d epochs", tid, epoch)
    run_test(spec, n_iter, run_dir(spec, request.budget, plan.save_dir, plan.data_root / "ACDC"), plan.data_root,
             request.budget, trend_dir(request.out_dir, spec, epoch), request.options, checkpoints=checkpoints)
    state.mark_done(tid, {"checkpoint_hash": hash_files(files), "seconds": round(time.perf_counter() - started, 1),
                          "n_iter": n_iter, "finished": now()})
    state.log(tid, "ran")
    return True


def collect(request: ExperimentRequest, plan: Plan, state: ExperimentState) -> pd.DataFrame:
    """Per (method, run, epoch): every test set's value, ``avg_all``, ``avg_ood`` (rows ``method, cval, seed, epoch``)."""
    budget = request.budget
    frames = []
    for spec in plan.specs:
        for epoch in milestones(budget.n_epochs, budget.keep_best_every_num_epochs):
            path = trend_dir(request.out_dir, spec, epoch) / "volumes.csv"
            if state.marker(task_id(spec, epoch)) is None or not path.is_file():
                continue
            volumes = pd.read_csv(path, dtype={"patient_id": str, "pid": str, "dataset": str})
            volumes = volumes.assign(method=spec.method, cval=spec.cval, seed=spec.seed)
            values = run_stats.run_values(volumes, list(budget.test_datasets))
            frames.append(values.assign(epoch=epoch))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


#: the reconstruction-quality columns of a run's metrics.csv that the trend keeps (``recon.csv``)
RECON_COLUMNS = ("recon/val_mse", "recon/val_psnr", "recon/hard_change")
RECON_KEYS = ("method", "cval", "seed", "epoch")


def read_recon(request: ExperimentRequest, plan: Plan) -> pd.DataFrame:
    """Rows ``method, cval, seed, epoch`` + :data:`RECON_COLUMNS` (those logged) of every run's metrics.csv: what
    ``trend/recon.csv`` keeps, so a report rebuilt from saved files (or pooled over folders) still has them."""
    frames = []
    for spec in plan.specs:
        path = run_dir(spec, request.budget, plan.save_dir, plan.data_root / "ACDC") / "log" / "metrics.csv"
        if path.is_file():
            metrics = pd.read_csv(path)
            kept = ["epoch", *(c for c in RECON_COLUMNS if c in metrics.columns)]
            frames.append(metrics[kept].assign(method=spec.method, cval=spec.cval, seed=spec.seed))
    if not frames:
        return pd.DataFrame(columns=list(RECON_KEYS))
    recon = pd.concat(frames, ignore_index=True)
    return recon[[*RECON_KEYS, *(c for c in RECON_COLUMNS if c in recon.columns)]]


def trend_section(request: ExperimentRequest, plan: Plan, inputs: ReportInputs,
                  state: ExperimentState | None = None, saved: pd.DataFrame | None = None,
                  saved_recon: pd.DataFrame | None = None) -> None:
    """Write the trend tables and figure and add them to the report inputs (nothing when the budget keeps none).

    ``saved``: rows of saved ``trend.csv`` files to show instead of the experiment folder's trend tests (a rebuilt
    report), with ``saved_recon`` the rows of the ``recon.csv`` saved beside them (None: the reconstruction panels
    stay empty).
    """
    budget = request.budget
    if not budget.keep_best_every_num_epochs:
        return
    state = state or ExperimentState(request.out_dir)
    trend = collect(request, plan, state) if saved is None else saved
    folder = request.out_dir / "trend"
    if trend.empty:
        inputs.extra_sections.append("## Training-length trend\n\nNo kept model has been tested yet (the trend "
                                     "tests run after every training has finished).")
        return
    folder.mkdir(parents=True, exist_ok=True)
    trend.to_csv(folder / "trend.csv", index=False, float_format="%.6f")
    means = figures.trend_means(trend)
    means.to_csv(folder / "trend_means.csv", index=False, float_format="%.6f")
    inputs.files += [folder / "trend.csv", folder / "trend_means.csv"]
    recon = read_recon(request, plan) if saved is None else saved_recon
    if recon is not None and len(recon):
        recon.to_csv(folder / RECON_FILE, index=False, float_format="%.6f")
        inputs.files.append(folder / RECON_FILE)
    figure = figures.trend_figure(trend, recon, folder / "trend.png",
                                  f"Best model so far every {budget.keep_best_every_num_epochs} epochs, n_iter "
                                  f"{budget.n_iter[-1]} (budget {budget.name})",
                                  "not logged by these runs" if saved is None else
                                  "not in the saved files\n(see each experiment's\nown report)")
    methods = list(dict.fromkeys(trend["method"]))
    lines = []
    if "avg_ood_difference" in means.columns:
        lines = [f"Mean over the runs both methods have, {methods[1]} − {methods[0]} per epoch: " + "; ".join(
            f"epoch {int(r.epoch)} ({int(r.n_runs)} run{'s' if r.n_runs != 1 else ''}): ACDC "
            f"{r.ACDC_difference:+.3f}, avg_ood {r.avg_ood_difference:+.3f}" for r in means.itertuples()) + "."]
    text = ("Each point is the best model (by validation Mean IoU) after that many epochs, tested with n_iter "
            f"{budget.n_iter[-1]}: thin lines are runs, thick lines the mean over runs. Right: the image decoder's "
            "reconstruction quality per epoch from each run's metrics.csv (validation PSNR of the clean "
            "reconstruction; mean |masked − clean| change of the decoded hard examples).")
    baseline, method = list(budget.methods)
    tests = run_stats.trend_tests(trend, baseline, method)
    tests.to_csv(folder / "trend_tests.csv", index=False, float_format="%.6f")
    inputs.files.append(folder / "trend_tests.csv")
    statistics = length_markdown(tests, run_stats.length_change(trend, baseline, method), baseline, method)
    if figure is not None:
        inputs.figures.append(("Training-length trend", " ".join([text, *lines]), figure))
        inputs.extra_sections.append("\n".join(["### Training-length trend: run-level tests", "", *statistics]))
    else:
        inputs.extra_sections.append("\n".join(["## Training-length trend", "", *statistics]))


def length_markdown(tests: pd.DataFrame, change: dict, baseline: str, method: str) -> list[str]:
    """The run-level test at every tested length and the verdict on the gain's change with length."""
    parts = [f"Paired t-test over the runs at every length ({method} − {baseline}; each run's best model so far; "
             "95 % t interval of the mean difference):", ""]
    rows = []
    for epoch, part in tests.groupby("epoch", sort=True):
        by = part.set_index("column")
        cells = [str(int(epoch)), str(int(by["n_runs"].max()))]
        for column in ("ACDC", "avg_ood"):
            if column not in by.index:
                cells += ["n/a", "n/a"]
                continue
            r = by.loc[column]
            ci = "n/a" if math.isnan(float(r["ci_low"])) else f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
            cells += [f"{r['mean_difference']:+.3f} {ci}", run_stats.format_p(r["p_value"])]
        rows.append(cells)
    parts.append(markdown_table(["epochs", "runs", "ACDC diff (95 % CI)", "ACDC p", "avg_ood diff (95 % CI)",
                                 "avg_ood p"], rows))
    verdict = change["verdict"]
    if verdict == "no test":
        parts += ["", "Change of the avg_ood gain with length: no run-level test (fewer than two runs with both "
                      "methods at two lengths)."]
        return parts
    per_run = "; ".join(f"cval {c} seed {s}: {e:+.3f} → {v:+.3f}" for (c, s), (e, v) in change["runs"].items())
    ci = ("n/a" if math.isnan(float(change["change_ci_low"])) else
          f"[{change['change_ci_low']:+.3f}, {change['change_ci_high']:+.3f}]")
    late_ci = ("n/a" if math.isnan(float(change["late_ci_low"])) else
               f"[{change['late_ci_low']:+.3f}, {change['late_ci_high']:+.3f}]")
    parts += ["", f"Change of the avg_ood gain from {change['reference']} to {change['last']} epochs over "
                  f"{change['n_runs']} runs: {change['early_gain']:+.3f} → {change['late_gain']:+.3f}, change "
                  f"{change['change']:+.3f} (95 % CI {ci}, p = {run_stats.format_p(change['change_p'])}); the gain at "
                  f"{change['last']} epochs has 95 % CI {late_ci}. Per run: {per_run}. **The gain "
                  f"{LENGTH_WORDS[verdict]}** (grows / shrinks: the change's interval excludes 0; vanishes: it "
                  "shrinks from a positive gain to one whose interval reaches 0; holds: the change's interval lies "
                  "within ±0.01)."]
    return parts


LENGTH_WORDS = {"grows": "grows with length", "shrinks": "shrinks with length",
                "vanishes": "vanishes with length", "holds": "holds with length (within ±0.01)",
                "undecided": "neither grows, holds nor vanishes detectably: the runs cannot tell"}
