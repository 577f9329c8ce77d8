"""The iteration cap: the published configs train every epoch; a binding cap is announced at the start,
and a run it ends early says so in train.log and in the last metrics.csv row."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest
from training_helpers import COOPERATIVE, REPO_ROOT, STANDARD, cli_args, in_repo_root, run_dir, tiny_acdc  # noqa: F401

from medseg.config import load_config
from medseg.cli.train import main
from medseg.training.loop import STOPPED_BY_CAP, announce_binding_cap, cap_reached


def test_cap_reached():
    assert not cap_reached(10**9, None)
    assert not cap_reached(49_999, 50_000) and cap_reached(50_000, 50_000)


def test_announce_binding_cap(caplog):
    with caplog.at_level(logging.WARNING, logger="medseg.training.loop"):
        # 'standard': about 133 iterations per epoch, 600 epochs = 79,800 > 50,000
        assert announce_binding_cap(50_000, 600, 0, 0, 133) == 375
        assert "will stop this run in epoch 375 of learning.n_epochs = 600" in caplog.text
        caplog.clear()
        assert announce_binding_cap(50_000, 600, 0, 0, 19) is None  # '10': about 11,400 iterations
        assert announce_binding_cap(None, 600, 0, 0, 133) is None
        assert announce_binding_cap(50_000, 600, 500, 40_000, 133) == 575  # resumed run
        assert "epoch 575" in caplog.text


@pytest.mark.parametrize("name", ["cooperative_training.json", "standard_training.json"])
def test_published_configs_have_no_binding_cap(name):
    """600 epochs in every data setting: the published configs set no iteration cap (the published runs trained all
    600 epochs because their cap never worked)."""
    config = load_config(REPO_ROOT / "config" / "ACDC" / name)
    assert config.learning.n_epochs == 600 and config.learning.max_iteration is None
    # even the largest setting (70 subjects x 2 frames x 20 slices, batch 10) trains every epoch
    assert announce_binding_cap(config.learning.max_iteration, 600, 0, 0, 70 * 2 * 20 // 10) is None


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "log" / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
@pytest.mark.parametrize("cap,stopped_inside", [(3, True), (4, False)])
def test_binding_cap_is_announced_and_recorded(tiny_acdc, tmp_path, in_repo_root, cap, stopped_inside):
    """one_shot, ES only: 4 slices, batch 2 + 2 originals -> 2 iterations per epoch; 3 epochs planned."""
    save_dir = tmp_path / "saved"
    assert main(cli_args(STANDARD, tiny_acdc, save_dir, "--set", f"learning.max_iteration={cap}", epochs=3)) == 0
    run = run_dir(save_dir, "ACDC/standard_training")
    rows = _rows(run)
    assert [r["epoch"] for r in rows] == ["0", "1"] and rows[-1]["global_iteration"] == str(cap)
    assert [r["stop_reason"] for r in rows] == ["", STOPPED_BY_CAP]
    log = (run / "log" / "train.log").read_text()
    assert f"learning.max_iteration = {cap} will stop this run in epoch 1 of learning.n_epochs = 3" in log
    where = "inside" if stopped_inside else "after"
    assert f"stopped by learning.max_iteration = {cap} at iteration {cap}, {where} epoch 1" in log


@pytest.mark.slow
def test_published_config_trains_every_epoch(tiny_acdc, tmp_path, in_repo_root):
    save_dir = tmp_path / "saved"
    assert main(cli_args(COOPERATIVE, tiny_acdc, save_dir, epochs=3)) == 0
    run = run_dir(save_dir, "ACDC/cooperative_training")
    rows = _rows(run)
    assert [r["epoch"] for r in rows] == ["0", "1", "2"] and all(r["stop_reason"] == "" for r in rows)
    assert "max_iteration" not in (run / "log" / "train.log").read_text()
