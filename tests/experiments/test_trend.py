"""The training-length trend and the ACDC-C columns end to end on tiny data (one run, two epochs, the best model
kept every epoch), and the trend figure on constructed numbers."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from medseg.phantom.tiny import write_subjects, write_tiny_acdc, write_tiny_mm

from medseg.experiments.figures import trend_figure, trend_means
from medseg.experiments.trend import milestones

REPO = Path(__file__).resolve().parents[2]
ARTEFACTS = ("RandomBias", "RandomSpike", "RandomGhosting", "RandomMotion")


def test_milestones() -> None:
    assert milestones(150, 25) == [25, 50, 75, 100, 125, 150] and milestones(10, 0) == []
    assert milestones(60, 25) == [25, 50]


def test_trend_figure_and_means_on_constructed_data(tmp_path: Path) -> None:
    rows = []
    for method, gain in (("standard", 0.0), ("cooperative", 0.03)):
        for cval in (0, 1, 2):
            for epoch in (25, 50, 75, 100):
                rows.append({"method": method, "cval": cval, "seed": 40, "epoch": epoch,
                             "ACDC": 0.6 + epoch / 1000 + 0.01 * cval, "avg_ood": 0.4 + gain * epoch / 100})
    trend = pd.DataFrame(rows)
    means = trend_means(trend).set_index("epoch")
    assert list(means.index) == [25, 50, 75, 100]
    assert means.loc[100, "avg_ood_difference"] == pytest.approx(0.03)
    assert means.loc[50, "ACDC_difference"] == pytest.approx(0.0)
    assert means.loc[25, "ACDC_standard"] == pytest.approx(0.635)
    assert list(means["n_runs"]) == [3, 3, 3, 3]
    # a run that one method lacks at an epoch (cooperative cval 2 not tested at 100) leaves both means there, so the
    # difference stays paired: the standard mean at 100 is over cvals 0 and 1 only
    partial = trend_means(trend[~((trend["method"] == "cooperative") & (trend["cval"] == 2)
                                  & (trend["epoch"] == 100))]).set_index("epoch")
    assert partial.at[100, "n_runs"] == 2 and partial.at[75, "n_runs"] == 3
    assert partial.at[100, "ACDC_standard"] == pytest.approx(0.7 + 0.005)
    assert partial.at[100, "avg_ood_difference"] == pytest.approx(0.03)
    recon = pd.DataFrame({"method": "standard", "cval": 0, "seed": 40, "epoch": np.arange(100),
                          "recon/val_psnr": np.linspace(15, 25, 100), "recon/hard_change": np.linspace(0.01, 0.1, 100)})
    figure = trend_figure(trend, recon, tmp_path / "trend.png", "t")
    assert figure is not None and figure.stat().st_size > 10_000
    assert trend_figure(trend.iloc[:0], None, tmp_path / "none.png", "t") is None


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trend_layout")
    shape = (3, 72, 80)
    write_tiny_acdc(root / "ACDC", shape=shape)
    for k, artefact in enumerate(ARTEFACTS):
        write_subjects(root / "ACDC-C" / artefact, ["007_0"], shape=shape, seed=10 + k)
    write_tiny_mm(root / "MM", n_per_vendor=1, shape=shape)
    return root


@pytest.mark.slow
def test_trend_budget_end_to_end(data_root: Path, tmp_path: Path, single_thread, capsys) -> None:
    """Two task processes: the trend tests run as tasks of their own once the run's trainings are finished."""
    spec = importlib.util.spec_from_file_location("run_exp", REPO / "scripts" / "run_robustness_experiment.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    budget = json.loads((REPO / "config" / "experiment" / "smoke.json").read_text())
    budget.update(name="smoke_trend", runs=[[0, 40]], n_iter=[2], keep_best_every_num_epochs=1)
    path = tmp_path / "smoke_trend.json"
    path.write_text(json.dumps(budget))
    out = tmp_path / "out"
    capsys.readouterr()
    assert script.main(["--budget", str(path), "--data_root", str(data_root), "--out", str(out), "--n_workers", "0",
                        "--device", "cpu", "--no_progress", "--results_md", str(tmp_path / "docs" / "R.md"),
                        "--jobs", "2", "--threads", "1"]) == 0
    progress = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[progress] ")]
    assert progress[-1].startswith("[progress] finished ") and "8 of 8 tasks done" in progress[-1]
    trend_lines = [line for line in progress if "finished trend test " in line]
    assert len(trend_lines) == 4 and any("trend test cooperative epoch 2" in line for line in trend_lines)
    for method in ("standard", "cooperative"):
        run = out / "runs" / "train_ACDC_10_n_cls_4" / "ACDC" / f"{method}_training" / "0"
        metrics = pd.read_csv(run / "log" / "metrics.csv")
        for column in ("recon/val_mse", "recon/val_psnr", "recon/hard_change"):  # the new columns after a smoke run
            assert column in metrics.columns and metrics[column].notna().all()
        assert (metrics["recon/val_mse"] > 0).all() and (metrics["recon/hard_change"] > 0).all()
        for epoch in (1, 2):
            assert (run / "model" / f"best_at_{epoch}" / "checkpoints").is_dir()
            volumes = pd.read_csv(out / "trend" / method / "cval0_seed40" / f"epoch_{epoch}" / "volumes.csv")
            # the ACDC-C sets drawn at the grid and the resampled native-grid sets are both tested
            assert {"RandomSpike", "RandomSpike_resampled", "ACDC", "MM"} <= set(volumes["dataset"])
    trend = pd.read_csv(out / "trend" / "trend.csv")
    assert len(trend) == 4 and set(trend["epoch"]) == {1, 2}
    summary = pd.read_csv(out / "n_iter_2" / "summary.csv")
    assert "RandomSpike_resampled" in summary.columns
    text = (tmp_path / "docs" / "R.md").read_text()
    assert "## Training-length trend" in text and "R_figures/trend_trend.png" in text
    assert "Status: complete (8 tasks)" in text  # 2 trainings, 2 tests, 4 trend tests
    assert "## ACDC-C at the model's grid" in text and "R_figures/figures_acdc_c_columns.png" in text
    assert "One run: no run-level test is possible" in text
    assert "| precision (training; testing) | the method configs' `learning.precision` (default fp32); fp32 |" in text
    assert "### Training-length trend: run-level tests" in text and "| 2 | 1 |" in text
    assert "Change of the avg_ood gain with length: no run-level test" in text  # one run
    assert len(pd.read_csv(out / "trend" / "trend_tests.csv")) == 4  # 2 epochs x (ACDC, avg_ood)
    assert "rebuilt from the folder's finished tests" not in text
    # a later --report_only on the folder rebuilds the same tables and says which commit rebuilt them
    trend_tests = (out / "trend" / "trend_tests.csv").read_bytes()
    assert script.main(["--budget", str(path), "--data_root", str(data_root), "--out", str(out), "--report_only",
                        "--no_progress"]) == 0
    rebuilt = (out / "RESULTS.md").read_text()
    assert "Status: complete (8 tasks)" in rebuilt
    assert "(training and testing); the tables, statistics and figures were rebuilt from the folder's finished " \
           "tests by commit" in rebuilt
    assert (out / "trend" / "trend_tests.csv").read_bytes() == trend_tests
    assert (tmp_path / "docs" / "R_figures" / "figures_acdc_c_columns.png").stat().st_size > 10_000
    # the runs' reconstruction quality is kept beside the trend table and published with it, so that a report
    # rebuilt from the published files (or pooled over folders) still plots it
    recon = pd.read_csv(out / "trend" / "recon.csv")
    assert list(recon.columns) == ["method", "cval", "seed", "epoch", "recon/val_mse", "recon/val_psnr",
                                   "recon/hard_change"]
    assert len(recon) == 4 and set(recon["epoch"]) == {0, 1} and recon["recon/val_psnr"].notna().all()
    published = tmp_path / "docs" / "R_data"
    assert pd.read_csv(published / "trend_recon.csv").equals(recon)
    assert script.main(["--budget", str(path), "--report_only", "--volumes", str(published / "volumes.csv"),
                        "--trend", str(published / "trend_trend.csv"), "--out", str(tmp_path / "again"),
                        "--no_progress"]) == 0
    assert f"with reconstruction quality `{(published / 'trend_recon.csv').as_posix()}`" in \
        (tmp_path / "again" / "RESULTS.md").read_text()
    assert pd.read_csv(tmp_path / "again" / "trend" / "recon.csv").equals(recon)


def test_trend_tests_are_tasks_queued_after_the_trainings(data_root: Path, tmp_path: Path, monkeypatch) -> None:
    """Every (run, kept length) is one task after every training and test; a kept model is tested once, again when
    its files change (a retrained run), and a length the run never reached is recorded as having nothing to test, so
    the experiment can be complete."""
    from medseg.experiments import runner, trend
    from medseg.experiments.budgets import load_budget
    from medseg.experiments.plan import ExperimentRequest, make_plan
    from medseg.experiments.state import ExperimentState
    from medseg.experiments.tasks import RunOptions, run_dir

    settings = json.loads((REPO / "config" / "experiment" / "smoke.json").read_text())
    settings.update(name="smoke_trend", runs=[[0, 40], [1, 20]], n_iter=[1, 2], keep_best_every_num_epochs=1)
    (tmp_path / "b.json").write_text(json.dumps(settings))
    budget = load_budget(tmp_path / "b.json", REPO / "config")
    request = ExperimentRequest(budget=budget, data_root=data_root, out_dir=tmp_path / "out",
                                config_dir=REPO / "config", repo_root=REPO, options=RunOptions(device="cpu"))
    plan = make_plan(request)
    tasks = runner.experiment_tasks(plan, budget)
    kinds = [kind for kind, _, _ in tasks]
    assert kinds == ["train"] * 2 + ["test"] * 4 + ["train"] * 2 + ["test"] * 4 + ["trend"] * 8
    assert {(s.method, s.cval, e) for k, s, e in tasks if k == "trend"} == {
        (m, c, e) for m in ("standard", "cooperative") for c in (0, 1) for e in (1, 2)}

    calls = []
    monkeypatch.setattr(trend, "run_test", lambda spec, n_iter, *args, checkpoints, **kw: calls.append(
        (spec.method, n_iter, checkpoints.parent.name)))
    state = ExperimentState(request.out_dir)
    spec = plan.specs[0]
    kept = run_dir(spec, budget, plan.save_dir, plan.data_root / "ACDC") / "model" / "best_at_1" / "checkpoints"
    kept.mkdir(parents=True)
    (kept / "seg.pth").write_bytes(b"model after epoch 1")
    first, second = ("trend", spec, 1), ("trend", spec, 2)
    assert not runner._finished(request, plan, state, first)
    state.mark_done(spec.train_id, {"seconds": 1.0})
    assert not runner._finished(request, plan, state, first)
    assert runner._run_task(request, plan, "c0ffee", first, state) is True
    assert calls == [(spec.method, 2, "best_at_1")]  # the budget's last n_iter, on the kept model
    assert runner._finished(request, plan, state, first)
    assert runner._run_task(request, plan, "c0ffee", first, state) is False and len(calls) == 1
    (kept / "seg.pth").write_bytes(b"retrained")
    assert not runner._finished(request, plan, state, first)
    assert runner._run_task(request, plan, "c0ffee", first, state) is True and len(calls) == 2
    # no model kept after 2 epochs (the run stopped before): nothing to test, and the task counts as finished
    assert runner._run_task(request, plan, "c0ffee", second, state) is False and len(calls) == 2
    assert state.marker(trend.task_id(spec, 2))["no_model"] is True
    assert runner._finished(request, plan, state, second)
    actions = [(e["task"], e["action"]) for e in state.log_entries()]
    assert actions == [(trend.task_id(spec, 1), "ran"), (trend.task_id(spec, 1), "skipped"),
                       (trend.task_id(spec, 1), "ran"), (trend.task_id(spec, 2), "no model")]


def _gains(late: dict[tuple[int, int], float], early: float = 0.02) -> pd.DataFrame:
    """Three runs at 25 ... 150 epochs; cooperative − standard avg_ood is ``early`` up to 75 epochs and the run's
    ``late`` value from 100 on; ACDC equal."""
    rows = []
    for (cval, seed), gain in late.items():
        for epoch in (25, 50, 75, 100, 125, 150):
            for method in ("standard", "cooperative"):
                bonus = 0.0 if method == "standard" else (early if epoch <= 75 else gain)
                rows.append({"method": method, "cval": cval, "seed": seed, "epoch": epoch, "ACDC": 0.8,
                             "avg_ood": 0.5 + 0.01 * cval + bonus})
    return pd.DataFrame(rows)


def test_the_reconstruction_table_beside_a_trend_table() -> None:
    from medseg.experiments.trend import recon_beside

    assert recon_beside(Path("out/trend/trend.csv")) == Path("out/trend/recon.csv")
    assert recon_beside(Path("docs/RESULTS_data/trend_trend.csv")) == Path("docs/RESULTS_data/trend_recon.csv")
    assert recon_beside(Path("saved/first.csv")) == Path("saved/first_recon.csv")


def test_run_level_trend_tests_and_the_length_verdict() -> None:
    from medseg.experiments import run_stats

    assert run_stats.reference_epoch([25, 50, 75, 100, 125, 150]) == 75
    assert run_stats.reference_epoch([25, 50]) == 25 and run_stats.reference_epoch([10, 40, 50, 60, 90]) == 40
    runs = [(0, 40), (1, 20), (2, 10)]
    grows = _gains(dict(zip(runs, (0.05, 0.06, 0.07), strict=True)))
    tests = run_stats.trend_tests(grows, "standard", "cooperative").set_index(["epoch", "column"])
    late = tests.loc[(150, "avg_ood")]
    assert late["n_runs"] == 3 and late["mean_difference"] == pytest.approx(0.06)
    assert late["t"] == pytest.approx(0.06 / (0.01 / math.sqrt(3)))
    assert math.isnan(tests.loc[(75, "avg_ood"), "t"])  # 0.02 in every run: no spread
    change = run_stats.length_change(grows, "standard", "cooperative")
    assert (change["reference"], change["last"], change["n_runs"]) == (75, 150, 3)
    assert change["change"] == pytest.approx(0.04) and change["verdict"] == "grows"
    assert change["runs"][(1, 20)] == pytest.approx((0.02, 0.06))
    half = 4.302652729911275 * 0.01 / math.sqrt(3)
    assert change["change_ci_low"] == pytest.approx(0.04 - half)
    # falls to about 0 in every run: vanishes; falls but stays clearly positive: shrinks
    vanishes = run_stats.length_change(_gains(dict(zip(runs, (-0.004, 0.0, 0.005), strict=True)), early=0.03),
                                       "standard", "cooperative")
    assert vanishes["verdict"] == "vanishes"
    shrinks = run_stats.length_change(_gains(dict(zip(runs, (0.010, 0.011, 0.012), strict=True)), early=0.03),
                                      "standard", "cooperative")
    assert shrinks["verdict"] == "shrinks"
    holds = run_stats.length_change(_gains(dict(zip(runs, (0.019, 0.020, 0.021), strict=True))),
                                    "standard", "cooperative")
    assert holds["verdict"] == "holds"  # the change's interval lies within ±0.01
    noisy = run_stats.length_change(_gains(dict(zip(runs, (-0.05, 0.02, 0.09), strict=True))),
                                    "standard", "cooperative")
    assert noisy["verdict"] == "undecided"
    one = run_stats.length_change(_gains({(0, 40): 0.05}), "standard", "cooperative")
    assert one["verdict"] == "no test" and one["n_runs"] == 1
    # a run one method lacks at the last length is left out of the change
    partial = grows[~((grows["method"] == "cooperative") & (grows["cval"] == 2) & (grows["epoch"] == 150))]
    assert run_stats.length_change(partial, "standard", "cooperative")["n_runs"] == 2


def test_length_section_reads_the_verdict() -> None:
    from medseg.experiments import run_stats
    from medseg.experiments.trend import length_markdown

    runs = [(0, 40), (1, 20), (2, 10)]
    grows = _gains(dict(zip(runs, (0.05, 0.06, 0.07), strict=True)))
    lines = length_markdown(run_stats.trend_tests(grows, "standard", "cooperative"),
                            run_stats.length_change(grows, "standard", "cooperative"), "standard", "cooperative")
    text = "\n".join(lines)
    assert "| 150 | 3 | +0.000 n/a | n/a | +0.060 [+0.035, +0.085] |" in text
    assert "from 75 to 150 epochs over 3 runs: +0.020 → +0.060, change +0.040" in text
    assert "**The gain grows with length**" in text and "cval 2 seed 10: +0.020 → +0.070" in text
