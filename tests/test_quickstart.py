"""The quickstart's knobs: the training seed (SEED) and the data seed (DATA_SEED) are separate."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run_quickstart(tmp_path: Path, **env: str) -> list[list[str]]:
    """Run scripts/quickstart.sh with a stand-in interpreter that only records its command lines."""
    log = tmp_path / "calls.txt"
    stub = tmp_path / "python"
    stub.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> "{log}"\n')
    stub.chmod(0o755)
    environment = {k: v for k, v in os.environ.items() if k not in ("SEED", "DATA_SEED", "ACDC_C_COPIES", "THREADS", "JOBS")}
    environment.update(env, PYTHON=str(stub))
    done = subprocess.run(["bash", "scripts/quickstart.sh", str(tmp_path / "data"), str(tmp_path / "saved")],
                          cwd=REPO, env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "mean Dice" in done.stdout and "dice_boxplot.png" in done.stdout  # the output explains itself
    return [line.split() for line in log.read_text().splitlines()]


def _value(call: list[str], flag: str) -> str:
    return call[call.index(flag) + 1]


def test_training_seed_and_data_seed_are_separate(tmp_path):
    calls = _run_quickstart(tmp_path, SEED="41", DATA_SEED="7", ACDC_C_COPIES="2")
    prepare, experiment = calls
    assert prepare[0] == "medseg/phantom/pipeline.py"
    assert _value(prepare, "--data-seed") == "7" and _value(prepare, "--acdc-c-copies") == "2"
    # both methods train and test through the robustness experiment's first_run budget, run (cval 0, seed SEED)
    assert experiment[0] == "scripts/run_robustness_experiment.py"
    assert _value(experiment, "--budget") == "first_run" and _value(experiment, "--runs") == "0:41"
    assert _value(experiment, "--out") == str(tmp_path / "saved")
    assert _value(experiment, "--data_root") == str(tmp_path / "data")

    # another training seed leaves the data alone (same data seed, so the data is reused, not regenerated)
    (tmp_path / "calls.txt").unlink()
    prepare, experiment = _run_quickstart(tmp_path, SEED="99")
    assert _value(prepare, "--data-seed") == "0" and _value(experiment, "--runs") == "0:99"
    # one corrupted copy per ACDC-C case (the published 3 are for --budget cpu), both methods side by side
    assert _value(prepare, "--acdc-c-copies") == "1" and _value(experiment, "--jobs") == "2"
    assert "--threads" not in experiment  # torch's default unless asked
    (tmp_path / "calls.txt").unlink()
    _, experiment = _run_quickstart(tmp_path, THREADS="1")
    assert _value(experiment, "--threads") == "1"


def test_first_run_budget_matches_its_configs(tmp_path):
    """The quickstart configs say what the first run trains (the runner applies the budget to them), and the first run
    is a budget of its own, resolved like any other."""
    from medseg.config import load_config
    from medseg.experiments.budgets import load_budget
    from medseg.experiments.tasks import RunSpec, resolved_config

    budget = load_budget("first_run", REPO / "config")
    assert budget.runs == ((0, 40),) and set(budget.methods) == {"standard", "cooperative"}
    assert budget.precision == "bf16_where_native" and budget.test_crop_size * budget.spacing_mm == pytest.approx(
        192 * 1.36719, rel=1e-4)  # tested on the published field of view
    for name, path in budget.methods.items():
        config = load_config(REPO / "config" / path, [])
        assert config.learning.latent_da == (name == "cooperative")
        assert config.data.new_spacing[0] == budget.spacing_mm and config.data.crop_size[0] == budget.crop_size
        assert config.learning.n_epochs == budget.n_epochs and config.learning.lr == budget.lr
        assert config.learning.batch_size == budget.batch_size and config.data.pad_size[0] == budget.pad_size
        assert config.learning.lr_schedule == budget.lr_schedule
        # the budget's overrides change nothing in its own configs but the data folder and the precision
        raw = json.loads(resolved_config(RunSpec(name, REPO / "config" / path, 0, 40), budget.resolved("cpu"),
                                         tmp_path / "ACDC"))
        own = json.loads(config.to_json())
        assert raw["data"].pop("root_dir") == (tmp_path / "ACDC").as_posix()
        own["data"].pop("root_dir")
        assert raw["learning"].pop("precision") in ("fp32", "bf16")
        own["learning"].pop("precision")
        assert raw == own


def test_first_run_precision_follows_the_cpu(monkeypatch):
    """bf16 only where the CPU computes it natively; fp32 elsewhere (and then no override at all)."""
    from medseg.experiments import budgets
    from medseg.nn import precision

    first = budgets.load_budget("first_run", REPO / "config")
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(precision, "cpu_supports_bf16", lambda native=native: native)
        resolved = first.resolved("cpu")
        assert resolved.precision == expected
        assert ("learning.precision=bf16" in resolved.training_overrides("x/ACDC")) is native
    assert budgets.load_budget("cpu", REPO / "config").resolved("cpu").precision is None  # the configs' own


def test_old_quickstart_budget_name_is_refused_with_the_new_names():
    from medseg.experiments.budgets import load_budget

    with pytest.raises(FileNotFoundError, match="renamed.*cpu_run0.*first_run"):
        load_budget("quickstart", REPO / "config")


def test_cpu_run0_trains_run_0_of_the_cpu_budget(tmp_path):
    """cpu_run0 is the cpu budget's run 0 alone: same resolved training configs, same (cval, seed), so the cpu run's
    measurements (docs/RESULTS.md, cval 0) say what it reaches."""
    from medseg.experiments.budgets import load_budget
    from medseg.experiments.tasks import RunSpec, resolved_config

    run0, cpu = load_budget("cpu_run0", REPO / "config"), load_budget("cpu", REPO / "config")
    assert run0.runs == (cpu.runs[0],) == ((0, 40),)
    assert {k: v for k, v in run0.to_dict().items() if k not in ("name", "description", "runs")} == {
        k: v for k, v in cpu.to_dict().items() if k not in ("name", "description", "runs")}
    for method in ("standard", "cooperative"):
        spec = RunSpec(method, REPO / "config" / run0.methods[method], *run0.runs[0])
        assert resolved_config(spec, run0, tmp_path / "ACDC") == resolved_config(spec, cpu, tmp_path / "ACDC")


def test_compression_ablation_is_cpu_run_0_with_one_augmentation_changed(tmp_path):
    """The ablation budget trains the cpu budget's run 0 twice: standard training as in cpu, and the same config with
    only the augmentation policy (and the name) changed, so its comparison isolates the contrast compression."""
    from medseg.experiments.budgets import load_budget
    from medseg.experiments.tasks import RunSpec, resolved_config

    ablation, cpu = load_budget("compression_ablation", REPO / "config"), load_budget("cpu", REPO / "config")
    assert ablation.runs == (cpu.runs[0],)
    resolved = {}
    for key, budget, method in (("cpu", cpu, "standard"), ("standard", ablation, "standard"),
                                ("compression", ablation, "standard_compression")):
        spec = RunSpec(method, REPO / "config" / budget.methods[method], *budget.runs[0])
        resolved[key] = json.loads(resolved_config(spec, budget, tmp_path / "ACDC"))
    assert resolved["standard"] == resolved["cpu"]
    assert resolved["compression"]["data"].pop("data_aug_policy") == "ACDC_affine_elastic_intensity_compression"
    assert resolved["cpu"]["data"].pop("data_aug_policy") == "ACDC_affine_elastic_intensity"
    for raw in resolved.values():
        raw.pop("name")
    assert resolved["compression"] == resolved["cpu"]


def test_a_stopped_quickstart_says_how_to_continue(tmp_path):
    """Ctrl-C during the experiment (exit 130): the quickstart says to rerun itself, not a flag of another command."""
    stub = tmp_path / "python"
    stub.write_text('#!/usr/bin/env bash\ncase "$1" in *run_robustness_experiment.py) exit 130;; esac\n')
    stub.chmod(0o755)
    environment = {**os.environ, "PYTHON": str(stub)}
    done = subprocess.run(["bash", "scripts/quickstart.sh", str(tmp_path / "data"), str(tmp_path / "saved")],
                          cwd=REPO, env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 130
    assert "run the same command" in done.stdout and "bash scripts/quickstart.sh" in done.stdout
    assert "--resume" not in done.stdout + done.stderr and "Done in" not in done.stdout
