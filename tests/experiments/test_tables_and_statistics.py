"""Experiment tables, Wilcoxon tests over volumes and training-curve summaries on hand-made numbers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from medseg.experiments.curves import plateau_summary, plot_run_curves, read_curve
from medseg.experiments.paired_test import paired_tests, per_volume_means
from medseg.experiments.tables import (
    finished_runs,
    per_run_relative,
    relative_improvement,
    run_entries,
    vendor_table,
    write_summary,
)

REPO = Path(__file__).resolve().parents[2]
DATASETS = ["ACDC", "RandomBias", "MM"]
VENDORS = pd.DataFrame({"subject": ["A01", "B01"], "vendor": ["A", "B"], "vendor_name": ["Siemens", "Philips"],
                        "centre": ["1", "2"]})


def volumes() -> pd.DataFrame:
    """Two methods x two cvals; the cooperative method is better by +0.1 out of domain, equal on ACDC."""
    rows = []
    rng = np.random.default_rng(0)
    cases = {"ACDC": ["007_ED", "007_ES", "008_ED"], "RandomBias": ["007_0_ED", "008_1_ES"],
             "MM": ["A01_ED", "B01_ED"]}
    for method in ("standard", "cooperative"):
        for cval in (0, 1):
            for dataset, ids in cases.items():
                for k, patient in enumerate(ids):
                    base = 0.5 + 0.05 * k + 0.01 * cval
                    gain = 0.1 if (method == "cooperative" and dataset != "ACDC") else 0.0
                    values = base + gain + rng.uniform(-1e-3, 1e-3, 3)
                    rows.append({"method": method, "cval": cval, "seed": 40, "n_iter": 2, "dataset": dataset,
                                 "patient_id": patient, "pid": patient.rsplit("_", 1)[0],
                                 "LV_Dice": values[0], "MYO_Dice": values[1], "RV_Dice": values[2]})
    return pd.DataFrame(rows)


def test_summary_is_the_test_scripts_aggregate(tmp_path) -> None:
    data = volumes()
    entries = run_entries(data, ["standard", "cooperative"], {})
    assert [(e.run.method, e.run.cval) for e in entries] == [("standard", 0), ("standard", 1),
                                                             ("cooperative", 0), ("cooperative", 1)]
    table, paths = write_summary(entries, DATASETS, tmp_path, 2, [])
    assert paths["csv"].is_file() and paths["png"].is_file()
    by = table.set_index("method")
    assert by.at["cooperative", "avg_ood"] - by.at["standard", "avg_ood"] == pytest.approx(0.1, abs=2e-3)
    assert by.at["cooperative", "ACDC"] == pytest.approx(by.at["standard", "ACDC"], abs=2e-3)
    assert by.at["standard", "ACDC_std"] == pytest.approx(0.005, abs=1e-3)  # cvals differ by 0.01
    relative = relative_improvement(table, "standard", "cooperative").set_index("column")
    expected = (by.at["cooperative", "avg_ood"] / by.at["standard", "avg_ood"] - 1) * 100
    assert relative.at["avg_ood", "relative_percent"] == pytest.approx(expected, rel=1e-6)
    per_run = per_run_relative(data, "standard", "cooperative", ["RandomBias", "MM"])
    assert list(per_run["cval"]) == [0, 1] and (per_run["relative_percent"] > 15).all()


def test_vendor_table_and_pairing() -> None:
    data = volumes()
    table = vendor_table(data, VENDORS, ["standard", "cooperative"])
    assert list(table["vendor"]) == ["A", "B", "A", "B"] and set(table["n_runs"]) == {2}
    assert set(table["n_volumes"]) == {1}
    means = per_volume_means(data, VENDORS)
    assert set(means["n_runs"]) == {2}
    assert set(means.loc[means["dataset"] == "MM", "vendor"]) == {"A", "B"}


def test_wilcoxon_per_column_matches_scipy() -> None:
    data = volumes()
    result = paired_tests(data, "standard", "cooperative", DATASETS, VENDORS).set_index("column")
    assert list(result.index) == ["ACDC", "RandomBias", "MM", "MM/A", "MM/B", "all", "ood"]
    assert list(result["n_volumes"]) == [3, 2, 2, 1, 1, 7, 4]
    assert result.at["ood", "share_method_better"] == 1.0
    assert result.at["ood", "mean_difference"] == pytest.approx(0.1, abs=2e-3)
    means = per_volume_means(data, VENDORS)
    wide = means.pivot_table(index=["dataset", "patient_id"], columns="method", values="mean_Dice")
    ood = wide.drop(index="ACDC", level=0)
    expected = stats.wilcoxon(ood["cooperative"] - ood["standard"])
    assert result.at["ood", "p_value"] == pytest.approx(expected.pvalue)
    assert result.at["ood", "wilcoxon_statistic"] == pytest.approx(expected.statistic)


def test_identical_methods_give_no_p_value() -> None:
    data = volumes()
    same = data[data["method"] == "standard"]
    twin = same.assign(method="cooperative")
    result = paired_tests(pd.concat([same, twin]), "standard", "cooperative", DATASETS).set_index("column")
    assert math.isnan(result.at["all", "p_value"]) and result.at["all", "note"] == "all differences are zero"


def test_curves_and_plateau(tmp_path) -> None:
    path = tmp_path / "metrics.csv"
    epochs = np.arange(20)
    dice = 0.8 * (1 - np.exp(-epochs / 3))
    lines = ["epoch,global_iteration,iou/val_iou,dice/val_dice,loss/standard/seg"]
    lines += [f"{e},{(e + 1) * 19},{d * 0.9},{d},{1.0 / (e + 1)}" for e, d in zip(epochs, dice)]
    path.write_text("\n".join(lines) + "\n")
    curve = read_curve(path)
    assert str(curve["metric"]) == "dice/val_dice" and curve["iteration"][-1] == 380
    summary = plateau_summary(curve)
    assert summary["epochs"] == 20 and summary["best"] == pytest.approx(dice.max())
    assert 0 < summary["late_change"] < 0.01
    assert read_curve(tmp_path / "missing.csv") == {}
    figure = plot_run_curves({"standard": curve, "cooperative": curve}, "t", tmp_path / "c.png")
    assert figure is not None and figure.stat().st_size > 0
    assert plot_run_curves({"standard": {}}, "t", tmp_path / "none.png") is None


def test_partial_runs_report_says_k_of_3(tmp_path) -> None:
    """Cval 0 finished for both methods, cval 1 only for the baseline: the report covers run 0 alone, honestly."""
    from medseg.experiments.budgets import load_budget
    from medseg.experiments.report import IterResults, ReportInputs, render

    data = volumes()
    data = data[~((data["method"] == "cooperative") & (data["cval"] == 1))]
    part, runs, notes = finished_runs(data, ["standard", "cooperative"])
    assert runs == [(0, 40)] and set(part["cval"]) == {0}
    assert notes == ["cval 1: only standard tested so far; left out of the comparison until cooperative is tested "
                     "too"]
    table, _ = write_summary(run_entries(part, ["standard", "cooperative"], {}), DATASETS, tmp_path, 2, notes)
    assert list(table["n_cvals"]) == [1, 1] and "avg_ood_std" not in table.columns
    wilcoxon = paired_tests(part, "standard", "cooperative", DATASETS, VENDORS)
    assert list(wilcoxon["n_volumes"]) == [3, 2, 2, 1, 1, 7, 4]  # the volumes of the finished run, per column
    means = per_volume_means(part, VENDORS)
    wide = means.pivot_table(index=["dataset", "patient_id"], columns="method", values="mean_Dice")
    ood = wide.drop(index="ACDC", level=0)
    expected = stats.wilcoxon(ood["cooperative"] - ood["standard"]).pvalue
    assert wilcoxon.set_index("column").at["ood", "p_value"] == pytest.approx(expected)
    assert (wilcoxon.loc[wilcoxon["column"].isin(["all", "ood", "ACDC"]), "p_value"].notna()).all()
    from medseg.experiments import run_stats

    values = run_stats.run_values(part, DATASETS, VENDORS)
    results = IterResults(table, vendor_table(part, VENDORS, ["standard", "cooperative"]), wilcoxon,
                          relative_improvement(table, "standard", "cooperative"),
                          per_run_relative(part, "standard", "cooperative", ["RandomBias", "MM"]), runs=runs,
                          run_tests=run_stats.run_level_tests(values, "standard", "cooperative",
                                                              [*DATASETS, "avg_all", "avg_ood"]),
                          gain=run_stats.relative_gain(values, "standard", "cooperative"),
                          run_table=run_stats.per_run_table(values, "standard", "cooperative"),
                          penalties=run_stats.vendor_penalties(values, "standard", "cooperative"))
    budget = load_budget("smoke", REPO / "config")
    inputs = ReportInputs(budget=budget, complete=False, finished_tasks=5, total_tasks=18, per_iter={2: results},
                          plateau=pd.DataFrame(), curve_figures=[], seconds={}, commits=["abc"], invocations=[],
                          data_root="d", prepared_root="p", fingerprint="f" * 12, train_command="t",
                          test_command="t", files=[], notes=notes)
    text = render(inputs, lambda p: p.as_posix())
    assert "5 of 18 tasks finished, 0 of 3 runs complete" in text  # n_iter 1 of run 0 is missing
    assert "Test setting n_iter = 2; 1 of 3 runs (cval 0) finished." in text and "one run, so no std" in text
    assert "One run: no run-level test is possible, so no verdict on the paper's claim" in text
    assert "**One run: no run-level test is possible**" in text
    assert "These numbers cover only 1 of 3 runs (cval 0)" in text
    assert "**1 of 3 runs (cval 0).**" in text
    headline = [line for line in text.splitlines() if line.startswith("- **avg_ood**")]
    assert len(headline) == 1 and "±" not in headline[0]
    assert "| standard | " in text and "±" not in text.split("## Mean Dice per test set")[1].split("Relative")[0]
    assert "Wilcoxon signed-rank over 4 run-averaged out-of-domain volumes" in text
    assert "Within-run evidence only" in text and "only standard tested so far" in text
    assert "they differ only in `learning.latent_DA`" in text and "The paper's claim" in text
    # an ablation (two configs that differ elsewhere) is not judged against the paper's claim
    import dataclasses

    ablation = render(dataclasses.replace(inputs, method_difference=("data.data_aug_policy",)), lambda p: p.as_posix())
    assert "The paper's claim" not in ablation and "they differ only in `data.data_aug_policy`" in ablation
    assert "Not the paper's comparison (the methods differ in `data.data_aug_policy`" in ablation


def test_published_report_carries_its_figures_and_tables(tmp_path: Path) -> None:
    """--results_md copies every file the report links next to it, so docs/RESULTS.md works in a clone without the
    (git-ignored) output folder: PNGs to RESULTS_figures/, CSVs to RESULTS_data/, links relative to the report."""
    from medseg.experiments.budgets import load_budget
    from medseg.experiments.outputs import publish
    from medseg.experiments.report import ReportInputs

    out = tmp_path / "results" / "cpu"
    (out / "n_iter_2").mkdir(parents=True)
    (out / "curves").mkdir()
    table = out / "n_iter_2" / "summary.csv"
    table.write_text("method,ACDC\nstandard,0.7\n")
    curve = out / "curves" / "cval0_seed40.png"
    curve.write_bytes(b"\x89PNG fake")
    inputs = ReportInputs(budget=load_budget("smoke", REPO / "config"), complete=False, finished_tasks=0,
                          total_tasks=18, per_iter={}, plateau=pd.DataFrame(), curve_figures=[("cval 0", curve)], seconds={},
                          commits=["abc"], invocations=[], data_root="d", prepared_root="p", fingerprint="f" * 12,
                          train_command="t", test_command="t", files=[table], notes=[])
    target = tmp_path / "docs" / "RESULTS.md"
    publish(inputs, target, out)
    text = target.read_text()
    assert (tmp_path / "docs" / "RESULTS_data" / "n_iter_2_summary.csv").read_text() == table.read_text()
    assert (tmp_path / "docs" / "RESULTS_figures" / "curves_cval0_seed40.png").read_bytes() == curve.read_bytes()
    assert "(RESULTS_data/n_iter_2_summary.csv)" in text and "(RESULTS_figures/curves_cval0_seed40.png)" in text
    assert "results/cpu" not in text.split("## Files")[1].split("## Commands")[0]  # no link into the output folder
