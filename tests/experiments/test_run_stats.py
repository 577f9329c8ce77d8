"""Statistics over training runs on constructed data: known differences give the known t, p and intervals."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from medseg.experiments import run_stats
from medseg.experiments.paired_test import paired_tests

VENDORS = pd.DataFrame({"subject": ["A01", "B01"], "vendor": ["A", "B"], "vendor_name": ["Siemens", "Philips"],
                        "centre": ["1", "2"]})
DATASETS = ["ACDC", "RandomBias", "MM"]


def test_paired_t_known_difference() -> None:
    """Differences 0.02, 0.04, 0.06: mean 0.04, sd 0.02, t = 2*sqrt(3) with 2 df, two-sided p = 1 - t/sqrt(t^2+2)."""
    base = np.array([0.40, 0.45, 0.50])
    row = run_stats.paired_t(base, base + np.array([0.02, 0.04, 0.06]))
    assert row["n_runs"] == 3 and row["df"] == 2
    assert row["mean_difference"] == pytest.approx(0.04)
    assert row["sd_difference"] == pytest.approx(0.02)
    t = 2 * math.sqrt(3)
    assert row["t"] == pytest.approx(t)
    assert row["p_value"] == pytest.approx(1 - t / math.sqrt(t * t + 2))  # Student t with 2 df, closed form
    half = 4.302652729911275 * 0.02 / math.sqrt(3)  # t quantile 0.975 with 2 df
    assert row["ci_low"] == pytest.approx(0.04 - half) and row["ci_high"] == pytest.approx(0.04 + half)
    assert row["ci_low"] < 0 < row["ci_high"]  # not decisive with three runs
    assert row["p_value"] == pytest.approx(stats.ttest_rel(base + [0.02, 0.04, 0.06], base).pvalue)


def test_paired_t_one_run_and_no_spread() -> None:
    one = run_stats.paired_t([0.5], [0.6])
    assert one["note"] == run_stats.ONE_RUN_NOTE and math.isnan(one["p_value"]) and math.isnan(one["ci_low"])
    assert one["mean_difference"] == pytest.approx(0.1)
    flat = run_stats.paired_t([0.5, 0.6], [0.6, 0.7])
    assert math.isnan(flat["t"]) and "no spread" in flat["note"]
    nan_run = run_stats.paired_t([0.5, math.nan, 0.4], [0.6, 0.7, 0.45])  # a run without a value is left out
    assert nan_run["n_runs"] == 2


def test_ties_are_counted() -> None:
    diff = np.array([0.0, 0.0, 0.1, -0.1, 0.2, 0.3, 0.3, -0.3])
    assert run_stats.tie_counts(diff) == {"n_zero": 2, "n_tied": 5}
    assert run_stats.tie_counts(np.array([0.1, 0.2])) == {"n_zero": 0, "n_tied": 0}


def volumes(gains: dict[int, float], acdc_gain: float = 0.0) -> pd.DataFrame:
    """3 runs; every volume of run ``cval`` has Dice ``0.5 + 0.01 cval`` (ACDC 0.8), the cooperative method gains
    ``gains[cval]`` out of domain and ``acdc_gain`` in domain; vendor B is 0.1 below vendor A."""
    rows = []
    cases = {"ACDC": ["007_ED", "008_ED"], "RandomBias": ["007_0_ED", "008_1_ES", "009_2_ED"],
             "MM": ["A01_ED", "B01_ED"]}
    for method in ("standard", "cooperative"):
        for cval, seed in ((0, 40), (1, 20), (2, 10)):
            for dataset, ids in cases.items():
                for patient in ids:
                    value = 0.8 if dataset == "ACDC" else 0.5 + 0.01 * cval
                    if dataset == "MM" and patient.startswith("B"):
                        value -= 0.1
                    if method == "cooperative":
                        value += acdc_gain if dataset == "ACDC" else gains[cval]
                    rows.append({"method": method, "cval": cval, "seed": seed, "n_iter": 2, "dataset": dataset,
                                 "patient_id": patient, "pid": patient.rsplit("_", 1)[0],
                                 "LV_Dice": value, "MYO_Dice": value, "RV_Dice": value})
    return pd.DataFrame(rows)


def test_run_values_tests_and_per_run_table() -> None:
    data = volumes({0: 0.02, 1: 0.04, 2: 0.06})
    values = run_stats.run_values(data, DATASETS, VENDORS)
    std0 = values[(values["method"] == "standard") & (values["cval"] == 0)].iloc[0]
    assert std0["ACDC"] == pytest.approx(0.8) and std0["RandomBias"] == pytest.approx(0.5)
    assert std0["MM"] == pytest.approx(0.45) and std0["avg_ood"] == pytest.approx(0.475)
    assert std0["penalty/A"] == pytest.approx(0.5 - 0.8) and std0["penalty/B"] == pytest.approx(0.4 - 0.8)
    tests = run_stats.run_level_tests(values, "standard", "cooperative", [*DATASETS, "avg_ood"]).set_index("column")
    ood = tests.loc["avg_ood"]
    assert ood["mean_difference"] == pytest.approx(0.04) and ood["t"] == pytest.approx(2 * math.sqrt(3))
    assert math.isnan(tests.loc["ACDC", "t"])  # equal in every run: no spread
    gain = run_stats.relative_gain(values, "standard", "cooperative")
    base = np.array([0.475, 0.485, 0.495])
    rel = np.array([0.02, 0.04, 0.06]) / base * 100
    assert gain["relative_percent"] == pytest.approx(rel.mean())
    half = 4.302652729911275 * rel.std(ddof=1) / math.sqrt(3)
    assert gain["ci_low_percent"] == pytest.approx(rel.mean() - half)
    assert gain["ci_high_percent"] == pytest.approx(rel.mean() + half)
    table = run_stats.per_run_table(values, "standard", "cooperative")
    assert list(table["cval"]) == [0, 1, 2] and list(table["seed"]) == [40, 20, 10]
    assert list(table["avg_ood_difference"]) == pytest.approx([0.02, 0.04, 0.06])
    assert list(table["ACDC_difference"]) == pytest.approx([0, 0, 0])
    assert list(table["avg_ood_relative_percent"]) == pytest.approx(list(rel))
    penalties = run_stats.vendor_penalties(values, "standard", "cooperative").set_index("vendor")
    assert penalties.at["B", "standard_penalty"] == pytest.approx(np.mean([0.4, 0.41, 0.42]) - 0.8)
    assert penalties.at["A", "difference"] == pytest.approx(0.04)  # the gain on M&Ms, ACDC unchanged
    verdict, sentence = run_stats.verdict(tests.reset_index(), gain, "standard", "cooperative", 0.01)
    assert verdict == "undecided" and "Not decided" in sentence and "over 3 runs" in sentence


def test_verdict_from_run_level_tests() -> None:
    consistent = volumes({0: 0.05, 1: 0.051, 2: 0.052})
    values = run_stats.run_values(consistent, DATASETS, VENDORS)
    tests = run_stats.run_level_tests(values, "standard", "cooperative", [*DATASETS, "avg_ood"])
    gain = run_stats.relative_gain(values, "standard", "cooperative")
    assert tests.set_index("column").at["avg_ood", "p_value"] < 0.001
    assert run_stats.verdict(tests, gain, "standard", "cooperative", 0.01)[0] == "reproduced"
    worse_in_domain = volumes({0: 0.05, 1: 0.051, 2: 0.052}, acdc_gain=-0.05)
    values = run_stats.run_values(worse_in_domain, DATASETS, VENDORS)
    tests = run_stats.run_level_tests(values, "standard", "cooperative", [*DATASETS, "avg_ood"])
    assert run_stats.verdict(tests, gain, "standard", "cooperative", 0.01)[0] == "undecided"  # ACDC: no spread
    one = consistent[consistent["cval"] == 0]
    values = run_stats.run_values(one, DATASETS, VENDORS)
    tests = run_stats.run_level_tests(values, "standard", "cooperative", [*DATASETS, "avg_ood"])
    short, sentence = run_stats.verdict(tests, run_stats.relative_gain(values, "standard", "cooperative"),
                                        "standard", "cooperative", 0.01)
    assert short == "no test" and sentence.startswith("One run: no run-level test is possible")


def test_wilcoxon_rows_count_ties() -> None:
    data = volumes({0: 0.02, 1: 0.04, 2: 0.06})
    result = paired_tests(data, "standard", "cooperative", DATASETS, VENDORS).set_index("column")
    assert result.at["ACDC", "n_zero"] == 2 and result.at["ACDC", "note"] == "all differences are zero"
    assert result.at["ood", "n_zero"] == 0 and result.at["ood", "n_tied"] == 5  # every ood volume gains 0.04


def test_report_rebuilt_from_saved_volumes(tmp_path, monkeypatch) -> None:
    """--report_only --volumes: the report and its tables come back from a saved volumes.csv, no data folder, no
    training; the headline is the run-level test."""
    import importlib.util
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("run_exp", repo / "scripts" / "run_robustness_experiment.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    saved = tmp_path / "saved"
    saved.mkdir()
    volumes({0: 0.02, 1: 0.04, 2: 0.06}).to_csv(saved / "volumes.csv", index=False)
    VENDORS.to_csv(saved / "MM_vendors.csv", index=False)
    out, md = tmp_path / "out", tmp_path / "docs" / "RESULTS.md"
    code = script.main(["--budget", "smoke", "--report_only", "--volumes", str(saved / "volumes.csv"), "--vendors",
                        str(saved / "MM_vendors.csv"), "--note", "ACDC-C columns: resampled", "--out", str(out),
                        "--results_md", str(md), "--no_progress", "--data_root", str(tmp_path / "absent")])
    assert code == 0
    text = md.read_text()
    assert "Rebuilt without training or testing from the saved per-volume Dice" in text
    assert "ACDC-C columns: resampled" in text and "Status: complete" in text
    assert "**Not decided** over 3 runs" in text and "t = 3.46, df 2" in text
    assert "### Run-level tests, n_iter = 2 (primary)" in text and "Domain-shift penalty per M&Ms vendor" in text
    assert (tmp_path / "docs" / "RESULTS_data" / "n_iter_2_run_level_tests.csv").is_file()
    assert (tmp_path / "docs" / "RESULTS_data" / "MM_vendors.csv").is_file()
    per_run = pd.read_csv(out / "n_iter_2" / "per_run.csv")
    assert list(per_run["avg_ood_difference"]) == pytest.approx([0.02, 0.04, 0.06])
    with pytest.raises(SystemExit):
        script.main(["--budget", "smoke", "--volumes", str(saved / "volumes.csv")])  # needs --report_only
    bad = volumes({0: 0.0, 1: 0.0, 2: 0.0}).assign(seed=41)
    bad.to_csv(saved / "other_seeds.csv", index=False)
    assert script.main(["--budget", "smoke", "--report_only", "--volumes", str(saved / "other_seeds.csv"),
                        "--out", str(tmp_path / "o2"), "--no_progress"]) == 2


def test_bf16_decision_rule() -> None:
    from medseg.experiments.decisions import bf16_decision, runs_decide, values_of_run

    fp32 = {"standard": {"ACDC": 0.76, "avg_ood": 0.45}, "cooperative": {"ACDC": 0.74, "avg_ood": 0.48}}
    close = {"standard": {"ACDC": 0.765, "avg_ood": 0.44}, "cooperative": {"ACDC": 0.731, "avg_ood": 0.489}}
    decision = bf16_decision(fp32, close)
    assert decision.neutral and decision.differences["standard"]["avg_ood"] == pytest.approx(-0.01)
    assert "becomes the default" in decision.lines()[-1]
    far = {**close, "cooperative": {"ACDC": 0.74, "avg_ood": 0.4949}}
    assert not bf16_decision(fp32, far).neutral and "fp32 stays" in bf16_decision(fp32, far).lines()[-1]
    with pytest.raises(ValueError, match="cooperative"):
        bf16_decision(fp32, {"standard": close["standard"]})
    with pytest.raises(ValueError, match="avg_ood"):
        bf16_decision(fp32, {**close, "standard": {"ACDC": 0.7, "avg_ood": math.nan}})
    run0 = values_of_run(volumes({0: 0.02, 1: 0.04, 2: 0.06}), DATASETS, cval=0)
    assert run0["cooperative"]["avg_ood"] - run0["standard"]["avg_ood"] == pytest.approx(0.02)
    assert runs_decide({"ci_low_percent": 0.5, "ci_high_percent": 9.0})
    assert not runs_decide({"ci_low_percent": -0.5, "ci_high_percent": 9.0})
    assert not runs_decide({"ci_low_percent": math.nan, "ci_high_percent": math.nan})


def test_bf16_decision_script(tmp_path) -> None:
    import importlib.util
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("bf16_decision", repo / "benchmarks" / "bf16_decision.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    fp32 = volumes({0: 0.02, 1: 0.04, 2: 0.06})
    fp32.to_csv(tmp_path / "fp32.csv", index=False)
    near = fp32.assign(LV_Dice=fp32["LV_Dice"] + 0.005)  # every value 0.005 higher: neutral
    near.to_csv(tmp_path / "near.csv", index=False)
    far = fp32.assign(LV_Dice=fp32["LV_Dice"] - 0.06)  # mean Dice 0.02 lower: not neutral
    far.to_csv(tmp_path / "far.csv", index=False)
    assert script.main(["--fp32", str(tmp_path / "fp32.csv"), "--bf16", str(tmp_path / "near.csv")]) == 0
    assert script.main(["--fp32", str(tmp_path / "fp32.csv"), "--bf16", str(tmp_path / "far.csv")]) == 1
    assert script.main(["--fp32", str(tmp_path / "fp32.csv"), "--bf16", str(tmp_path / "far.csv"),
                        "--cval", "5"]) == 2
