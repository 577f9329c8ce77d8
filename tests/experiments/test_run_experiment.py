"""The robustness experiment end to end at --budget smoke on tiny data in the real preprocessed layout."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
from medseg.phantom.tiny import write_subjects, write_tiny_acdc, write_tiny_mm

REPO = Path(__file__).resolve().parents[2]
ARTEFACTS = ("RandomBias", "RandomSpike", "RandomGhosting", "RandomMotion")
DATASETS = ("ACDC", *ARTEFACTS, "MM")
METHODS = ("standard", "cooperative")
RUNS = ((0, 40), (1, 20), (2, 10))


def load_script():
    spec = importlib.util.spec_from_file_location("run_robustness_experiment",
                                                  REPO / "scripts" / "run_robustness_experiment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny ACDC (all 100 ids), ACDC-C (two test cases per artefact) and M&Ms (one subject per vendor), 1.367 mm."""
    root = tmp_path_factory.mktemp("real_layout")
    shape = (3, 72, 80)
    write_tiny_acdc(root / "ACDC", shape=shape)
    for k, artefact in enumerate(ARTEFACTS):
        write_subjects(root / "ACDC-C" / artefact, ["007_0", "013_1"], shape=shape, seed=10 + k)
    write_tiny_mm(root / "MM", n_per_vendor=1, shape=shape)
    return root


def run(script, data_root: Path, out: Path, *extra: str) -> int:
    return script.main(["--budget", "smoke", "--data_root", str(data_root), "--out", str(out), "--n_workers", "0",
                        "--device", "cpu", "--no_progress", *extra])


def ran_tasks(out: Path) -> list[str]:
    lines = (out / "log" / "tasks.jsonl").read_text().splitlines()
    return [e["task"] for e in map(json.loads, lines) if e["action"] == "ran"]


def run_folder(out: Path, method: str, cval: int) -> Path:
    return out / "runs" / "train_ACDC_10_n_cls_4" / "ACDC" / f"{method}_training" / str(cval)


@pytest.mark.slow
def test_smoke_experiment_interrupted_then_resumed(data_root: Path, tmp_path: Path, single_thread) -> None:
    script = load_script()
    out = tmp_path / "results" / "smoke"

    # first sitting: two trainings only, as if the machine had been switched off after them
    assert run(script, data_root, out, "--max_tasks", "2") == 0
    assert ran_tasks(out) == ["data", "train_standard_cval0_seed40", "train_cooperative_cval0_seed40"]
    first_best = run_folder(out, "standard", 0) / "model" / "best" / "checkpoints"
    mtimes = {p.name: p.stat().st_mtime_ns for p in first_best.iterdir()}
    assert "Status: **incomplete**: 2 of 18 tasks" in (out / "RESULTS.md").read_text()

    # a training killed after its last snapshot but before its completion marker continues, it does not restart
    (out / "state" / "train_cooperative_cval0_seed40.json").unlink()
    cooperative = run_folder(out, "cooperative", 0)
    cooperative_best = {p.name: p.stat().st_mtime_ns for p in (cooperative / "model" / "best" / "checkpoints").iterdir()}

    # second sitting: everything else; nothing finished is redone
    assert run(script, data_root, out) == 0
    ran = ran_tasks(out)
    assert ran.count("train_standard_cval0_seed40") == 1 and ran.count("data") == 1
    assert ran.count("train_cooperative_cval0_seed40") == 2
    assert len(ran) == 1 + 6 + 12 + 1 and len(set(ran)) == len(ran) - 1
    assert {p.name: p.stat().st_mtime_ns for p in first_best.iterdir()} == mtimes
    resumed = [e for e in map(json.loads, (out / "log" / "tasks.jsonl").read_text().splitlines())
               if e["task"] == "train_cooperative_cval0_seed40" and e["action"] == "started"]
    assert [e["resuming"] for e in resumed] == [False, True]
    assert "resumed from" in (cooperative / "log" / "train.log").read_text()
    assert len(pd.read_csv(cooperative / "log" / "metrics.csv")) == 2  # no epoch trained twice
    assert {p.name: p.stat().st_mtime_ns for p in (cooperative / "model" / "best" / "checkpoints").iterdir()} == \
        cooperative_best

    # third call: all done, nothing runs
    assert run(script, data_root, out) == 0
    assert ran_tasks(out) == ran

    check_outputs(out)


def check_outputs(out: Path) -> None:
    # the resampled copy of the data at the budget's spacing
    assert (out / "data_2.73438mm" / "MM" / "vendors.csv").is_file()
    assert (out / "data_2.73438mm" / "ACDC-C" / "RandomMotion" / "013_1" / "ES_seg.nii.gz").is_file()
    for top in ("ACDC", "ACDC-C", "MM"):  # the copy records what it was made from, like every prepared folder
        record = json.loads((out / "data_2.73438mm" / top / "provenance.json").read_text())
        assert record["complete"] and record["made_from"]["settings"]["spacing_mm"] == 2.73438
        assert record["made_from"]["input"]["files"] > 0
    for method in METHODS:
        for cval, seed in RUNS:
            folder = run_folder(out, method, cval)
            rows = pd.read_csv(folder / "log" / "metrics.csv")
            assert len(rows) == 2 and rows["dice/val_dice"].notna().all()
            assert (folder / "model" / "best" / "checkpoints").is_dir()
            for n_iter in (1, 2):
                test = out / "tests" / method / f"cval{cval}_seed{seed}" / f"iter_{n_iter}"
                volumes = pd.read_csv(test / "volumes.csv", dtype={"pid": str})
                assert volumes.groupby("dataset").size().to_dict() == {
                    "ACDC": 40, "MM": 8, **{a: 4 for a in ARTEFACTS}, **{f"{a}_resampled": 4 for a in ARTEFACTS}}
    for n_iter in (1, 2):
        folder = out / f"n_iter_{n_iter}"
        summary = pd.read_csv(folder / "summary.csv")
        assert list(summary["method"]) == list(METHODS)
        assert list(summary["n_cvals"]) == [3, 3]
        for column in (*DATASETS, "avg_all", "avg_ood", "avg_ood_std", "MM_RV_Dice"):
            assert column in summary.columns
        assert (folder / "dice_boxplot.png").stat().st_size > 0
        assert (folder / "summary.md").is_file()
        wilcoxon = pd.read_csv(folder / "wilcoxon.csv")
        tested = ["ACDC", *[n for a in ARTEFACTS for n in (a, f"{a}_resampled")], "MM"]
        assert list(wilcoxon["column"]) == [*tested, "MM/A", "MM/B", "MM/C", "MM/D", "all", "ood"]
        assert list(wilcoxon["n_volumes"]) == [40, *[4] * 8, 8, 2, 2, 2, 2, 64, 24]  # pools: without *_resampled
        vendors = pd.read_csv(folder / "vendors.csv")
        assert sorted(vendors["vendor"].unique()) == ["A", "B", "C", "D"] and set(vendors["n_runs"]) == {3}
        relative = pd.read_csv(folder / "relative_improvement.csv")
        assert list(relative["column"]) == ["ACDC", "avg_all", "avg_ood"]
        run_level = pd.read_csv(folder / "run_level_tests.csv")
        assert list(run_level["column"])[-2:] == ["avg_all", "avg_ood"] and set(run_level["n_runs"]) == {3}
        assert list(pd.read_csv(folder / "per_run.csv")["cval"]) == [0, 1, 2]
        assert set(pd.read_csv(folder / "vendor_penalties.csv")["vendor"]) == {"A", "B", "C", "D"}
    for cval, seed in RUNS:
        assert (out / "curves" / f"cval{cval}_seed{seed}.png").stat().st_size > 0
    assert len(pd.read_csv(out / "curves" / "plateau.csv")) == 6
    assert len(pd.read_csv(out / "volumes.csv")) == 2 * 3 * 2 * (64 + 16)

    report = (out / "RESULTS.md").read_text()
    assert "Status: complete (18 tasks)" in report
    for heading in ("## Headline", "## Mean Dice per test set, n_iter = 2", "## Mean Dice per test set, n_iter = 1",
                    "## Training curves", "## Commands", "## Warnings"):
        assert heading in report
    header = ("| method | ACDC | RandomBias | RandomBias_resampled | RandomSpike | RandomSpike_resampled | "
              "RandomGhosting | RandomGhosting_resampled | RandomMotion | RandomMotion_resampled | MM | avg_all | "
              "avg_ood |")
    assert report.count(header) == 2
    assert report.count("| standard | ") >= 2 and report.count("| cooperative | ") >= 2
    assert "The paper's claim" in report and "judged by the run-level tests" in report and "Wilcoxon" in report
    assert "### Run-level tests, n_iter = 2 (primary)" in report and "Per run:" in report
    assert "python medseg/train_adv_supervised_segmentation_triplet.py" in report
    assert "--resume auto" in report and "--crop_size 32" in report
    for link in ("n_iter_2/dice_boxplot.png", "curves/cval0_seed40.png", "n_iter_2/wilcoxon.csv"):
        assert f"]({link})" in report


@pytest.mark.slow
def test_changed_budget_is_refused_and_report_published(data_root: Path, tmp_path: Path, single_thread,
                                                        capsys) -> None:
    script = load_script()
    out = tmp_path / "smoke"
    assert run(script, data_root, out, "--max_tasks", "0") == 0
    assert ran_tasks(out) == ["data"]

    budget = json.loads((REPO / "config" / "experiment" / "smoke.json").read_text())
    budget["n_epochs"] = 3
    changed = tmp_path / "smoke3.json"
    changed.write_text(json.dumps(budget))
    code = script.main(["--budget", str(changed), "--data_root", str(data_root), "--out", str(out), "--no_progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "budget.n_epochs: 2 in the folder, 3 now" in err and "Use another --out" in err

    broken = tmp_path / "broken"
    write_tiny_acdc(broken / "ACDC", pids=["002", "003"], shape=(3, 72, 80))  # lacks the training subjects
    assert run(script, broken, tmp_path / "other") == 2
    assert "ACDC files needed by the splits are missing" in capsys.readouterr().err

    # a data copy made by the old resampling (no anti-aliasing filter) is not silently reused
    marker_path = out / "state" / "data.json"
    marker = json.loads(marker_path.read_text())
    assert marker["resampling_version"] == 3
    old = {k: v for k, v in marker.items() if k != "resampling_version"}
    marker_path.write_text(json.dumps(old))
    assert run(script, data_root, out, "--max_tasks", "0") == 2
    assert "resampled by an older method (version 1" in capsys.readouterr().err
    marker_path.write_text(json.dumps({**old, "resampling_version": 2}))  # ACDC-C resampled from the native grid only
    assert run(script, data_root, out, "--max_tasks", "0") == 2
    assert "(version 2: ACDC-C corrupted on the native grid and then resampled only)" in capsys.readouterr().err
    marker_path.write_text(json.dumps(marker))

    published = tmp_path / "docs" / "RESULTS.md"
    assert run(script, data_root, out, "--max_tasks", "0", "--results_md", str(published)) == 0
    text = published.read_text()
    assert text.startswith("# Robustness experiment: standard vs cooperative training (budget `smoke`)")
    assert "No test has finished yet." in text


def test_sigterm_outside_training_stops_like_ctrl_c(monkeypatch, tmp_path: Path, capsys) -> None:
    """SIGTERM between trainings (e.g. during a test) ends the call with 128 + 15 and a rerun hint; the handlers the
    caller had are back afterwards. (Inside a training, its own handler stops it with a snapshot: exit 143 too.)"""
    import os
    import signal

    import medseg.experiments.runner as runner

    def killed(request):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt")

    monkeypatch.setattr(runner, "run_experiment", killed)
    before = signal.getsignal(signal.SIGTERM)
    script = load_script()
    assert script.main(["--budget", "smoke", "--out", str(tmp_path / "o"), "--no_progress"]) == 128 + signal.SIGTERM
    assert "interrupted by SIGTERM; finished tasks are kept, run the same command again" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.slow
def test_parallel_jobs_give_the_serial_results(data_root: Path, tmp_path: Path, single_thread, capsys) -> None:
    """--jobs 2: every task runs once, in child processes of one thread, and every test volume's Dice equals the
    serial run's (same seeds, same data order, same single-threaded kernels); the console shows the tasks' progress
    (plain lines: the output is not a terminal)."""
    script = load_script()
    parallel, serial = tmp_path / "parallel", tmp_path / "serial"
    capsys.readouterr()
    assert run(script, data_root, parallel, "--jobs", "2", "--threads", "1") == 0
    progress = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[progress] ")]
    assert progress[0].startswith("[progress] started train standard (cval 0); 0 of 18 tasks done")
    assert any("train cooperative (cval 0)  epoch 2/2" in line and "val Dice" in line for line in progress)
    assert progress[-1].startswith("[progress] finished ") and "18 of 18 tasks done" in progress[-1]
    assert sum(line.startswith("[progress] finished ") for line in progress) == 18
    check_outputs(parallel)
    ran = ran_tasks(parallel)
    assert len(ran) == 1 + 6 + 12 and len(set(ran)) == len(ran)
    assert run(script, data_root, serial, "--max_tasks", "4") == 0  # run 0: both trainings, both n_iter 1 tests
    a = pd.read_csv(parallel / "volumes.csv", dtype={"pid": str})
    b = pd.read_csv(serial / "volumes.csv", dtype={"pid": str})
    keys = [c for c in b.columns if not c.endswith("_Dice")]  # method, cval, seed, n_iter, dataset, volume ids
    merged = b.merge(a, on=keys, suffixes=("_serial", "_parallel"))
    assert len(merged) == len(b) > 0
    for column in ("LV_Dice", "MYO_Dice", "RV_Dice"):
        assert (merged[f"{column}_serial"] - merged[f"{column}_parallel"]).abs().max() < 1e-6, column
    assert run(script, data_root, parallel, "--jobs", "2") == 0  # nothing left: all skipped, report rewritten
    assert ran_tasks(parallel) == ran
