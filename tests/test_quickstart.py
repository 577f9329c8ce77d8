"""The quickstart's knobs: the training seed (SEED) and the data seed (DATA_SEED) are separate."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

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
    assert prepare[0] == "scripts/prepare_synthetic.py"
    assert _value(prepare, "--data-seed") == "7" and _value(prepare, "--acdc-c-copies") == "2"
    # both methods train and test through the robustness experiment's quickstart budget, run (cval 0, seed SEED)
    assert experiment[0] == "scripts/run_robustness_experiment.py"
    assert _value(experiment, "--budget") == "quickstart" and _value(experiment, "--runs") == "0:41"
    assert _value(experiment, "--out") == str(tmp_path / "saved")
    assert _value(experiment, "--data_root") == str(tmp_path / "data")

    # another training seed leaves the data alone (same data seed, so the data is reused, not regenerated)
    (tmp_path / "calls.txt").unlink()
    prepare, experiment = _run_quickstart(tmp_path, SEED="99")
    assert _value(prepare, "--data-seed") == "0" and _value(experiment, "--runs") == "0:99"
    # the published ACDC-C (3 corrupted copies per case), both methods side by side
    assert _value(prepare, "--acdc-c-copies") == "3" and _value(experiment, "--jobs") == "2"
    assert "--threads" not in experiment  # torch's default unless asked
    (tmp_path / "calls.txt").unlink()
    _, experiment = _run_quickstart(tmp_path, THREADS="1")
    assert _value(experiment, "--threads") == "1"


def test_quickstart_budget_matches_its_configs():
    """The quickstart configs say what the quickstart budget trains (the runner applies the budget to them)."""
    from medseg.config import load_config
    from medseg.experiments.budgets import load_budget

    budget = load_budget("quickstart", REPO / "config")
    assert budget.runs == ((0, 40),) and set(budget.methods) == {"standard", "cooperative"}
    for name, path in budget.methods.items():
        config = load_config(REPO / "config" / path, [])
        assert config.learning.latent_da == (name == "cooperative")
        assert config.data.new_spacing[0] == budget.spacing_mm and config.data.crop_size[0] == budget.crop_size
        assert config.learning.n_epochs == budget.n_epochs and config.learning.lr == budget.lr
        assert config.learning.batch_size == budget.batch_size and config.data.pad_size[0] == budget.pad_size


def test_quickstart_trains_run_0_of_the_cpu_budget(tmp_path):
    """The quickstart's models are the cpu budget's run 0: same resolved training config but the name, the cadence
    of epoch snapshots and the inert published ``use_gpu``, same (cval, seed), so the cpu run's measurements say what the quickstart reaches."""
    from medseg.experiments.budgets import load_budget
    from medseg.experiments.tasks import RunSpec, resolved_config

    quick, cpu = load_budget("quickstart", REPO / "config"), load_budget("cpu", REPO / "config")
    assert quick.runs[0] == cpu.runs[0] == (0, 40)
    for method in ("standard", "cooperative"):
        resolved = []
        for budget in (quick, cpu):
            spec = RunSpec(method, REPO / "config" / budget.methods[method], *budget.runs[0])
            raw = json.loads(resolved_config(spec, budget, tmp_path / "ACDC"))
            assert raw["learning"]["n_epochs"] == 75 and raw["learning"]["latent_DA"] == (method == "cooperative")
            raw.pop("name")
            raw["output"].pop("save_epoch_every_num_epochs")
            raw["learning"].pop("use_gpu")  # a published key kept without effect (the device comes from --device)
            resolved.append(raw)
        assert resolved[0] == resolved[1]


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
