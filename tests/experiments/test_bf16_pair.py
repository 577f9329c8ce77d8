"""The bf16 pair: its sides read from the experiments' records, the pair check, the decision record and where it is
shown (the experiment report, docs/PERFORMANCE.md)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from medseg.experiments import bf16_pair, run_stats
from medseg.experiments.budgets import DEFAULT_DATASETS

REPO = Path(__file__).resolve().parents[2]
OOD = [d for d in DEFAULT_DATASETS if d != "ACDC"]
#: mean Dice of every volume, per method: (ACDC, each out-of-domain set)
FP32 = {"standard": (0.70, 0.40), "cooperative": (0.68, 0.45)}
BF16 = {"standard": (0.705, 0.395), "cooperative": (0.672, 0.452)}  # within 0.01 everywhere: neutral


def volumes(values: dict[str, tuple[float, float]], cval: int = 0, seed: int = 40) -> pd.DataFrame:
    """Two volumes per test set and method, every class at the method's value for that set, n_iter 1 and 2."""
    rows = []
    for method, (acdc, ood) in values.items():
        for n_iter in (1, 2):
            for dataset in DEFAULT_DATASETS:
                for patient in ("007", "008"):
                    value = acdc if dataset == "ACDC" else ood
                    rows.append({"method": method, "cval": cval, "seed": seed, "n_iter": n_iter, "dataset": dataset,
                                 "patient_id": f"{patient}_ED", "pid": patient, "LV_Dice": value,
                                 "MYO_Dice": value, "RV_Dice": value})
    return pd.DataFrame(rows)


def budget(**changes) -> dict:
    base = json.loads((REPO / "config" / "experiment" / "cpu_bf16_emulated.json").read_text())
    base.pop("description")
    return {**base, **changes}


def experiment(folder: Path, budget_dict: dict, fingerprint: str = "abc", commit: str = "1234567") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    record = {"identity": {"budget": budget_dict, "data_fingerprint": fingerprint, "method_configs": "cfg"},
              "invocations": [{"argv": [], "commit": commit}]}
    (folder / "experiment.json").write_text(json.dumps(record))
    return folder


@pytest.fixture
def pair(tmp_path: Path) -> dict[str, Path]:
    """A trend experiment (fp32, 150 epochs, best model kept every 25) and a 75-epoch bf16_emulated experiment."""
    trend_budget = budget(name="cpu_trend", n_epochs=150, keep_best_every_num_epochs=25, runs=[[0, 40], [1, 20]])
    del trend_budget["precision"]
    trend_dir = experiment(tmp_path / "cpu_trend", trend_budget, commit="ef9fcb9")
    values = run_stats.run_values(volumes(FP32).query("n_iter == 2"), list(DEFAULT_DATASETS))
    later = values.assign(epoch=150, avg_ood=values["avg_ood"] + 0.2)
    (trend_dir / "trend").mkdir()
    pd.concat([values.assign(epoch=75), later]).to_csv(trend_dir / "trend" / "trend.csv", index=False)
    bf16_dir = experiment(tmp_path / "cpu_bf16_emulated", budget(name="cpu_bf16_emulated"), commit="5f3d961")
    volumes(BF16).to_csv(bf16_dir / "volumes.csv", index=False)
    return {"trend": trend_dir / "trend" / "trend.csv", "bf16": bf16_dir / "volumes.csv", "root": tmp_path}


def load_script(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sides_come_from_the_experiment_records_and_must_be_a_pair(pair) -> None:
    fp32 = bf16_pair.side(pair["trend"], bf16_pair.find_experiment(pair["trend"]), epoch=75)
    bf16 = bf16_pair.side(pair["bf16"], bf16_pair.find_experiment(pair["bf16"]))
    assert (fp32["budget"], fp32["precision"], fp32["n_epochs"], fp32["commits"]) == ("cpu_trend", "fp32", 75,
                                                                                      ["ef9fcb9"])
    assert (bf16["budget"], bf16["precision"], bf16["n_epochs"]) == ("cpu_bf16_emulated", "bf16_emulated", 75)
    assert bf16_pair.pair_problems(fp32, bf16) == ([], "the same data fingerprint (the same source files, "
                                                       "unchanged)")
    assert bf16_pair.pair_problems({**fp32, "n_epochs": 100}, bf16)[0] == [
        "the fp32 run is 100 epochs long, the bf16 run 75"]
    other = {**bf16, "data_fingerprint": "def", "precision": "fp32", "regime": {**bf16["regime"], "lr": 0.001}}
    problems, _ = bf16_pair.pair_problems(fp32, other)
    assert problems == ["the bf16 side (" + pair["bf16"].as_posix() + ") trained in fp32",
                        "the two experiments used different data (data fingerprints differ, and there is no "
                        "prepared copy on both sides to compare)",
                        "their budgets differ in lr (0.0005 against 0.001)"]
    loose = bf16_pair.side(Path("published/volumes.csv"), None)  # no record beside a published copy: not checked
    assert bf16_pair.pair_problems(loose, bf16) == ([], "") and "budget" not in loose


def test_other_runs_fingerprint_other_files_so_their_prepared_data_is_compared(pair) -> None:
    """Experiments of other runs read other subject sets (other fingerprints on the same data): the resampled
    copies they trained and tested on are compared byte for byte in every volume both hold."""
    roots = [pair["trend"].parent.parent / "data_2.73438mm", pair["bf16"].parent / "data_2.73438mm"]
    for root, subjects in zip(roots, (("001", "002", "003"), ("001", "002"))):
        for subject in subjects:
            (root / "ACDC" / subject).mkdir(parents=True)
            (root / "ACDC" / subject / "ED_img.nii.gz").write_bytes(subject.encode() * 100)
        (root / "MM" / "A01").mkdir(parents=True)
        (root / "MM" / "A01" / "ED_img.nii.gz").write_bytes(b"mm")
    fp32 = bf16_pair.side(pair["trend"], bf16_pair.find_experiment(pair["trend"]), epoch=75)
    bf16 = bf16_pair.side(pair["bf16"], bf16_pair.find_experiment(pair["bf16"]))
    bf16["data_fingerprint"] = "other subjects"
    assert bf16_pair.pair_problems(fp32, bf16) == ([], "the prepared data (the resampled copies both trained and "
                                                       "tested on) are byte-identical in all 3 volumes both hold")
    (roots[1] / "ACDC" / "002" / "ED_img.nii.gz").write_bytes(b"changed")
    assert bf16_pair.pair_problems(fp32, bf16)[0] == [
        "the prepared data differ in 1 of the 3 volumes both hold (e.g. ACDC/002/ED_img.nii.gz)"]


def test_decision_script_writes_the_record_that_the_report_and_the_performance_doc_show(pair, capsys) -> None:
    script = load_script("bf16_decision", REPO / "benchmarks" / "bf16_decision.py")
    out = pair["root"] / "decision.json"
    args = ["--fp32_trend", str(pair["trend"]), "--epoch", "75", "--bf16", str(pair["bf16"]), "--json", str(out)]
    assert script.main(args) == 0
    record = bf16_pair.read_record(out)
    assert record["neutral"] and record["checked"] and record["bf16"]["precision"] == "bf16_emulated"
    assert record["differences"]["cooperative"]["avg_ood"] == pytest.approx(0.002)
    assert record["differences"]["cooperative"]["ACDC"] == pytest.approx(-0.008)
    assert record["fp32"]["values"]["standard"] == pytest.approx({"ACDC": 0.70, "avg_ood": 0.40})
    text = bf16_pair.markdown(record)
    assert "| cooperative | ACDC | 0.680 | 0.672 | -0.008 |" in text
    assert "budget `cpu_trend`, after 75 of its epochs, precision `fp32`, commit ef9fcb9" in text
    assert "Largest |bf16 − fp32|: 0.008 Dice" in text and "**bf16 is neutral**" in text
    assert "`bf16_emulated`" in text and "not bf16's speed" in text

    # another learning rate on the bf16 side: not a pair, refused with the reason
    record_path = pair["bf16"].parent / "experiment.json"
    changed = json.loads(record_path.read_text())
    changed["identity"]["budget"]["lr"] = 0.001
    record_path.write_text(json.dumps(changed))
    capsys.readouterr()
    assert script.main(args) == 2
    assert "not a run pair: their budgets differ in lr (0.0005 against 0.001)" in capsys.readouterr().err

    # the report shows the record as a section and publishes a copy beside it
    runner = load_script("run_exp", REPO / "scripts" / "run_robustness_experiment.py")
    md = pair["root"] / "docs" / "RESULTS.md"
    smoke = json.loads((REPO / "config" / "experiment" / "smoke.json").read_text())
    (pair["root"] / "smoke_bf16.json").write_text(json.dumps({**smoke, "precision": "bf16_emulated"}))
    common = ["--budget", str(pair["root"] / "smoke_bf16.json"), "--report_only", "--volumes", str(pair["bf16"]), "--runs", "0:40", "--out",
              str(pair["root"] / "report"), "--no_progress"]
    assert runner.main([*common, "--results_md", str(md), "--bf16_decision", str(out)]) == 0
    report = md.read_text()
    assert "## bf16 against fp32: the decision" in report
    assert "| precision (training; testing) | bf16_emulated; fp32 |" in report
    assert "| standard | avg_ood | 0.400 | 0.395 | -0.005 |" in report
    assert json.loads((md.parent / "RESULTS_data" / "bf16_decision.json").read_text()) == record
    bad = pair["root"] / "bad.json"
    bad.write_text(json.dumps({"neutral": True}))
    capsys.readouterr()
    assert runner.main([*common, "--bf16_decision", str(bad)]) == 2
    assert "bad.json: not a decision record (no fp32, bf16, cval" in capsys.readouterr().err

    # docs/PERFORMANCE.md: the section under Accuracy, and the command that made the record
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        report_module = load_script("performance_report", REPO / "benchmarks" / "performance_report.py")
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    section = report_module._bf16_decision({"bf16_decision": record})
    assert section.startswith("### bf16 against fp32: the decision") and "**bf16 is neutral**" in section
    commands = report_module._commands({"quick": True, "bf16_decision": record})
    assert (f"python benchmarks/bf16_decision.py --fp32_trend {pair['trend'].as_posix()} --epoch 75 --bf16 "
            f"{pair['bf16'].as_posix()} --cval 0 --n_iter 2 --json results/bf16_decision.json") in commands
    assert "--bf16_decision results/bf16_decision.json" in commands
