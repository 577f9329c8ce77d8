"""``medseg.training.api``: training as a function call gives the options the ``medseg-train`` command line gives."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from medseg.cli.train import build_parser
from medseg.experiments.budgets import load_budget
from medseg.experiments.tasks import RunOptions, RunSpec, training_argv, training_arguments
from medseg.training.api import TrainArguments

REPO = Path(__file__).resolve().parents[2]


def _as_namespace_dict(arguments: TrainArguments) -> dict:
    values = asdict(arguments)
    values["overrides"] = list(values["overrides"])
    return values


def test_defaults_are_the_command_line_defaults():
    assert vars(build_parser().parse_args([])) == _as_namespace_dict(TrainArguments())


def test_the_experiment_trains_with_the_command_it_reports(tmp_path):
    budget = load_budget("smoke", REPO / "config")
    spec = RunSpec("cooperative", REPO / "config" / "ACDC" / "cooperative_training.json", 1, 41)
    for options in (RunOptions(), RunOptions(device="cpu", n_workers=0, progress=False)):
        argv = training_argv(spec, budget, tmp_path / "runs", tmp_path / "ACDC", options)
        arguments = training_arguments(spec, budget, tmp_path / "runs", tmp_path / "ACDC", options)
        assert vars(build_parser().parse_args(argv)) == _as_namespace_dict(arguments)
        assert arguments.overrides  # the budget's settings travel as --set overrides
