"""Budget files: the three shipped budgets load, bad files fail naming the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.config import load_config
from medseg.experiments.budgets import BUDGET_NAMES, DEFAULT_RUNS, load_budget

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config"


@pytest.mark.parametrize("name", BUDGET_NAMES)
def test_shipped_budgets_load_and_resolve_to_valid_training_configs(name: str) -> None:
    budget = load_budget(name, CONFIG)
    assert budget.name == name
    # the paper's three runs; the first run (README command (a)) is the first of them
    assert budget.runs == (DEFAULT_RUNS[:1] if name == "first_run" else DEFAULT_RUNS)
    # the comparison budgets train on the paper's 10 subjects; the first run on the 70 of 'standard', which
    # segments after about 800 iterations where 10 subjects do not
    assert budget.data_setting == ("standard" if name == "first_run" else "10") and budget.n_iter == (1, 2)
    assert list(budget.methods) == ["standard", "cooperative"]
    for method, path in budget.methods.items():
        config = load_config(CONFIG / path, budget.training_overrides("data/x/ACDC"))
        assert config.learning.latent_da is (method == "cooperative")
        assert config.data.crop_size == (budget.crop_size, budget.crop_size, 1)
        assert config.data.new_spacing[:2] == (budget.spacing_mm, budget.spacing_mm)
        assert config.learning.n_epochs == budget.n_epochs and config.learning.lr == budget.lr
        assert config.learning.lr_schedule == budget.lr_schedule and config.learning.batch_size == budget.batch_size
        assert config.data.root_dir == "data/x/ACDC"


def test_paper_budget_is_the_published_setting() -> None:
    paper = load_budget("paper", CONFIG)
    assert (paper.n_epochs, paper.batch_size, paper.crop_size, paper.test_crop_size, paper.lr) == (
        600, 20, 192, 192, 1e-4)
    assert not paper.resamples and paper.lr_schedule == "constant"
    cpu = load_budget("cpu", CONFIG)
    assert cpu.resamples and cpu.crop_size * cpu.spacing_mm == pytest.approx(192 * 1.36719, rel=1e-4)


def test_calibration_budget_is_cpu_with_one_short_run() -> None:
    calib, cpu = load_budget("calib", CONFIG), load_budget("cpu", CONFIG)
    assert calib.runs == ((0, 40),) and calib.n_epochs < cpu.n_epochs
    same = ("spacing_mm", "pad_size", "crop_size", "test_crop_size", "batch_size", "lr", "lr_schedule", "datasets",
            "n_iter")
    assert all(getattr(calib, k) == getattr(cpu, k) for k in same)


def test_tuned_budgets_differ_from_cpu_only_in_the_optimiser_regime() -> None:
    cpu, tuned, calib = (load_budget(n, CONFIG) for n in ("cpu", "cpu_tuned", "calib_tuned"))
    regime = {"n_epochs", "batch_size", "lr", "lr_schedule", "name", "description"}
    for other in (tuned, calib):
        assert {k: v for k, v in other.to_dict().items() if k not in regime | {"runs"}} == {
            k: v for k, v in cpu.to_dict().items() if k not in regime | {"runs"}}
    assert (cpu.batch_size, cpu.lr_schedule) == (20, "constant")  # the published regime, lr scaled for the length
    assert (tuned.batch_size, tuned.lr_schedule, calib.lr_schedule) == (10, "cosine", "cosine")
    assert calib.runs == ((0, 40),) and (calib.batch_size, calib.lr) == (tuned.batch_size, tuned.lr)


def write(tmp_path: Path, **changes) -> Path:
    raw = json.loads((CONFIG / "experiment" / "smoke.json").read_text())
    raw.update(changes)
    path = tmp_path / "budget.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"crop_size": 40}, "key 'crop_size': expected a multiple of 16"),
        ({"pad_size": 16}, "key 'pad_size': expected at least crop_size"),
        ({"lr": -1}, "key 'lr': expected a positive finite number"),
        ({"n_epochs": 0}, "key 'n_epochs': expected a positive integer"),
        ({"runs": [[0, 1], [0, 2]]}, "key 'runs': expected distinct cvals"),
        ({"epochs": 3}, "unknown key(s) ['epochs']"),
        ({"methods": {"a": "x.json"}}, "key 'methods'"),
        ({"lr_schedule": "linear"}, "key 'lr_schedule': expected one of ['constant', 'cosine']"),
    ],
)
def test_bad_budget_names_file_and_key(tmp_path: Path, changes: dict, message: str) -> None:
    path = write(tmp_path, **changes)
    with pytest.raises(ValueError) as info:
        load_budget(path, CONFIG)
    assert message in str(info.value) and str(path) in str(info.value)


def test_missing_budget_and_missing_key(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="budget file .*nope.json not found"):
        load_budget(tmp_path / "nope.json", CONFIG)
    raw = json.loads((CONFIG / "experiment" / "smoke.json").read_text())
    del raw["lr"]
    path = tmp_path / "b.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=r"missing key\(s\) \['lr'\]"):
        load_budget(path, CONFIG)


def test_new_spacing_config_key_is_validated(tmp_path: Path) -> None:
    config = load_config(CONFIG / "ACDC" / "standard_training.json")
    assert config.data.new_spacing == (1.36719, 1.36719, -1.0)
    with pytest.raises(ValueError, match="config key 'data.new_spacing'"):
        load_config(CONFIG / "ACDC" / "standard_training.json", ["data.new_spacing=[0,1]"])
