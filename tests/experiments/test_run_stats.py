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
    assert "Conservative check" not in text  # one seed per cval: the run-level test is the fold-level test
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


def test_bf16_decision_script(tmp_path, capsys) -> None:
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
    seeds = pd.concat([near, near.assign(seed=near["seed"] + 1)])  # two seeds of each cval: the run is named
    seeds.to_csv(tmp_path / "seeds.csv", index=False)
    assert script.main(["--fp32", str(tmp_path / "fp32.csv"), "--bf16", str(tmp_path / "seeds.csv")]) == 2
    assert "seeds.csv" in capsys.readouterr().err
    assert script.main(["--fp32", str(tmp_path / "fp32.csv"), "--bf16", str(tmp_path / "seeds.csv"),
                        "--seed", "40"]) == 0
    # the fp32 side as the first 75 epochs of a trend run: its trend.csv rows at epoch 75 (other epochs ignored)
    values = run_stats.run_values(fp32[fp32["n_iter"] == 2], DATASETS)
    trend = pd.concat([values.assign(epoch=75), values.assign(epoch=150, avg_ood=values["avg_ood"] + 0.3)])
    trend.to_csv(tmp_path / "trend.csv", index=False)
    from_trend = ["--fp32_trend", str(tmp_path / "trend.csv"), "--epoch", "75", "--bf16"]
    assert script.main([*from_trend, str(tmp_path / "near.csv")]) == 0
    assert "standard: ACDC +0.002, avg_ood +0.002" in capsys.readouterr().out  # LV +0.005: mean Dice +0.005/3
    assert script.main([*from_trend, str(tmp_path / "far.csv")]) == 1
    assert script.main(["--fp32_trend", str(tmp_path / "trend.csv"), "--epoch", "100", "--bf16",
                        str(tmp_path / "near.csv")]) == 2
    assert "trend.csv: no trend row at epoch 100 of cval 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --epoch without a trend
        script.main(["--fp32", str(tmp_path / "fp32.csv"), "--epoch", "75", "--bf16", str(tmp_path / "near.csv")])
    with pytest.raises(SystemExit):  # both fp32 sides
        script.main([*from_trend[:4], "--fp32", str(tmp_path / "fp32.csv"), "--bf16", str(tmp_path / "near.csv")])


def two_seed_volumes(first: dict[int, float], second: dict[int, float]) -> pd.DataFrame:
    """The three runs of :func:`volumes`, and three more runs of the same cvals with other seeds (41, 21, 11)."""
    more = volumes(second).assign(seed=lambda frame: frame["seed"] + 1)
    return pd.concat([volumes(first), more], ignore_index=True)


def test_two_seeds_of_one_cval_are_two_runs() -> None:
    """Runs are (cval, seed): pooled seeds are not averaged into one run per cval, and an unfinished run is named
    with its seed."""
    from medseg.experiments.tables import finished_runs, per_run_relative, run_names

    data = two_seed_volumes({0: 0.02, 1: 0.04, 2: 0.06}, {0: 0.01, 1: 0.03, 2: 0.05})
    part, runs, notes = finished_runs(data, ["standard", "cooperative"])
    assert runs == [(0, 40), (0, 41), (1, 20), (1, 21), (2, 10), (2, 11)] and notes == [] and len(part) == len(data)
    values = run_stats.run_values(data, DATASETS, VENDORS)
    assert len(values) == 12
    ood = run_stats.run_level_tests(values, "standard", "cooperative", ["avg_ood"]).set_index("column").loc["avg_ood"]
    diffs = np.array([0.02, 0.01, 0.04, 0.03, 0.06, 0.05])
    assert ood["n_runs"] == 6 and ood["df"] == 5 and ood["mean_difference"] == pytest.approx(diffs.mean())
    assert ood["t"] == pytest.approx(diffs.mean() / (diffs.std(ddof=1) / math.sqrt(6)))
    table = run_stats.per_run_table(values, "standard", "cooperative")
    assert list(zip(table["cval"], table["seed"], strict=True)) == runs
    assert list(table["avg_ood_difference"]) == pytest.approx(list(diffs))
    assert list(per_run_relative(data, "standard", "cooperative", ["RandomBias", "MM"])["seed"]) == [40, 41, 20, 21,
                                                                                                     10, 11]
    penalties = run_stats.vendor_penalties(values, "standard", "cooperative").set_index("vendor")
    assert penalties.at["A", "n_runs"] == 6 and penalties.at["A", "difference"] == pytest.approx(diffs.mean())
    wilcoxon = paired_tests(data, "standard", "cooperative", DATASETS, VENDORS).set_index("column")
    assert wilcoxon.at["ood", "n_volumes"] == 5 and wilcoxon.at["ood", "mean_difference"] == pytest.approx(diffs.mean())
    assert run_names(runs[:2]) == ["0 (seed 40)", "0 (seed 41)"] and run_names([(0, 40), (1, 20)]) == ["0", "1"]
    unfinished = data[~((data["method"] == "cooperative") & (data["seed"] == 41))]
    _, runs, notes = finished_runs(unfinished, ["standard", "cooperative"])
    assert (0, 41) not in runs and len(runs) == 5
    assert notes == ["cval 0 (seed 41): only standard tested so far; left out of the comparison until cooperative "
                     "is tested too"]


def test_bf16_decision_with_two_seeds_of_the_cval() -> None:
    from medseg.experiments.decisions import values_of_run

    data = two_seed_volumes({0: 0.02, 1: 0.04, 2: 0.06}, {0: 0.01, 1: 0.03, 2: 0.05})
    with pytest.raises(ValueError, match=r"seeds \[40, 41\]"):
        values_of_run(data, DATASETS, cval=0)
    run = values_of_run(data, DATASETS, cval=0, seed=41)
    assert run["cooperative"]["avg_ood"] - run["standard"]["avg_ood"] == pytest.approx(0.01)
    with pytest.raises(ValueError, match="seed 7"):
        values_of_run(data, DATASETS, cval=0, seed=7)


def test_report_pools_the_runs_of_two_saved_experiments(tmp_path, capsys) -> None:
    """--report_only --volumes A B --trend A' B' --runs <all six>: one report over the runs of two folders (a
    budget's runs and more seeds of its cvals), with the run-level test over six runs; a run in two files, or
    repeated cvals for an experiment folder, are refused."""
    import importlib.util
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("run_exp", repo / "scripts" / "run_robustness_experiment.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    data = two_seed_volumes({0: 0.02, 1: 0.04, 2: 0.06}, {0: 0.01, 1: 0.03, 2: 0.05})
    first, more = tmp_path / "first.csv", tmp_path / "more.csv"
    data[data["seed"].isin([40, 20, 10])].to_csv(first, index=False)
    data[data["seed"].isin([41, 21, 11])].to_csv(more, index=False)
    trend_rows = []
    for (cval, seed), shift in {(0, 40): 0.0, (1, 20): 0.01, (0, 41): 0.02}.items():
        for method, gain in (("standard", 0.0), ("cooperative", 0.03)):
            for epoch in (1, 2):
                trend_rows.append({"method": method, "cval": cval, "seed": seed, "epoch": epoch,
                                   "ACDC": 0.7 + shift, "avg_ood": 0.4 + shift + gain * epoch})
    trend = pd.DataFrame(trend_rows)
    trend[trend["seed"] != 41].to_csv(tmp_path / "trend_first.csv", index=False)
    trend[trend["seed"] == 41].to_csv(tmp_path / "trend_more.csv", index=False)
    import json

    budget = tmp_path / "pooled.json"
    smoke = json.loads((repo / "config" / "experiment" / "smoke.json").read_text())
    budget.write_text(json.dumps({**smoke, "name": "pooled", "keep_best_every_num_epochs": 1}))
    runs = ["0:40", "1:20", "2:10", "0:41", "1:21", "2:11"]
    out, md = tmp_path / "out", tmp_path / "docs" / "RESULTS.md"
    code = script.main(["--budget", str(budget), "--report_only", "--volumes", str(first), str(more), "--trend",
                        str(tmp_path / "trend_first.csv"), str(tmp_path / "trend_more.csv"), "--runs", *runs,
                        "--out", str(out), "--results_md", str(md), "--no_progress",
                        "--data_root", str(tmp_path / "absent")])
    assert code == 0
    text = md.read_text()
    assert "6 of 6 runs (cvals 0 (seed 40), 0 (seed 41), 1 (seed 20), 1 (seed 21), 2 (seed 10), 2 (seed 11))" in text
    assert "over 6 runs" in text and "first.csv" in text and "more.csv" in text and "Status: complete" in text
    # seeds of one cval share their training subjects: the check with the cval as the unit (fold means of the
    # differences 0.015, 0.035, 0.055: mean 0.035, sd 0.02, t = 0.035 / (0.02 / sqrt 3), df 2)
    check = "Conservative check, the cval as the unit (6 runs share 3 cvals"
    assert text.count(check) == 2 and f"t = {0.035 / (0.02 / math.sqrt(3)):.2f}, df 2" in text
    per_run = pd.read_csv(out / "n_iter_2" / "per_run.csv")
    assert list(per_run["seed"]) == [40, 41, 20, 21, 10, 11]
    assert list(per_run["avg_ood_difference"]) == pytest.approx([0.02, 0.01, 0.04, 0.03, 0.06, 0.05])
    means = pd.read_csv(out / "trend" / "trend_means.csv").set_index("epoch")
    assert list(means["n_runs"]) == [3, 3] and means.at[2, "avg_ood_difference"] == pytest.approx(0.06)
    assert "epoch 2 (3 runs): ACDC +0.000, avg_ood +0.060" in text
    # gains 0.03 / 0.06 at epochs 1 / 2 in every run: no spread, so no interval for the change
    assert "from 1 to 2 epochs over 3 runs: +0.030 → +0.060, change +0.030 (95 % CI n/a" in text
    assert "**The gain neither grows, holds nor vanishes detectably" in text
    foreign = script.main(["--budget", str(budget), "--report_only", "--volumes", str(first), "--trend",
                           str(tmp_path / "trend_more.csv"), "--runs", "0:40", "1:20", "2:10", "--out",
                           str(tmp_path / "o4"), "--no_progress"])
    assert foreign == 2 and "trend_more.csv: runs (cval, seed) [(0, 41)]" in capsys.readouterr().err
    twice = script.main(["--budget", str(budget), "--report_only", "--volumes", str(first), str(first), "--runs",
                         *runs, "--out", str(tmp_path / "o2"), "--no_progress"])
    assert twice == 2
    with pytest.raises(SystemExit):  # one experiment folder keeps one run per cval
        script.main(["--budget", "smoke", "--runs", "0:40", "0:41", "--out", str(tmp_path / "o3")])
    with pytest.raises(SystemExit):
        script.main(["--budget", "smoke", "--report_only", "--volumes", str(first), "--runs", "0:40", "0:40"])
