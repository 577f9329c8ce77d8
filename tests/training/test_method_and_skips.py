"""A run names the method it trains (train.log, config.json, checkpoint manifest), and ``learning.on_non_finite:
skip`` cannot turn a run whose every step was skipped into a saved 'best' model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from training_helpers import REPO_ROOT, cli_args, run_dir, tiny_acdc, train_error  # noqa: F401

STD = str(REPO_ROOT / "config" / "ACDC" / "standard_training.json")
NAME = "ACDC/standard_training"


def test_every_step_skipped_stops_as_diverged(tiny_acdc: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import medseg.training.loop as loop

    real_step = loop.train_step

    def non_finite_step(*args, **kwargs):
        decide = kwargs["before_update"]  # the guard's decision, before the optimiser steps
        kwargs["before_update"] = lambda losses: decide(losses * math.nan)  # every step's loss is NaN
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", non_finite_step)
    line = train_error(capsys, cli_args(STD, tiny_acdc, tmp_path, "--set", "learning.on_non_finite=skip", epochs=2),
                       code=1)
    assert "training diverged: every optimiser step of epoch 0" in line and "was skipped as non-finite" in line
    run = run_dir(tmp_path, NAME)
    assert not (run / "model" / "best").exists() and not (run / "model" / "0").exists()


def test_the_run_names_its_method(tiny_acdc: Path, tmp_path: Path) -> None:
    from medseg.cli.train import main

    assert main(cli_args(STD, tiny_acdc, tmp_path, epochs=1)) == 0
    run = run_dir(tmp_path, NAME)
    assert "method: standard training (learning.latent_DA = false)" in (run / "log" / "train.log").read_text()
    assert json.loads((run / "config.json").read_text())["learning"]["latent_DA"] is False
    manifest = json.loads((run / "model" / "best" / "checkpoints" / "manifest.json").read_text())
    assert manifest["method"] == "standard training"
