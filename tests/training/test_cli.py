"""Command line of the training entry point: published flags and defaults, --set, ways of starting it."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from medseg.cli.train import build_parser, main

from training_helpers import REPO_ROOT, in_repo_root  # noqa: F401


def test_published_defaults() -> None:
    args = build_parser().parse_args([])
    assert args.json_config_path == "./config/ACDC/cooperative_training.json"
    assert args.dataset_name == "ACDC"
    assert args.cval == 0
    assert args.data_setting == "10"
    assert args.resume_pkl_path is None
    assert args.save_dir == "./saved/"
    assert args.log is False and args.no_pin_memory is False and args.debug is False
    assert args.seed is None
    assert args.n_workers == 4
    assert args.device == "auto" and args.no_progress is False and args.overrides == [] and args.resume is None


def test_published_readme_command_parses() -> None:
    args = build_parser().parse_args(["--json_config_path", "./config/ACDC/cooperative_training.json", "--cval", "0",
                                      "--data_setting", "10", "--log", "--seed", "40"])
    assert args.log and args.seed == 40 and args.data_setting == "10" and args.cval == 0


def test_set_is_repeatable_and_extras_parse() -> None:
    args = build_parser().parse_args(["--set", "learning.n_epochs=5", "--set", "data.root_dir=x/y", "--device", "cpu",
                                      "--no_progress", "--resume", "auto", "--no_pin_memory", "--n_workers", "0"])
    assert args.overrides == ["learning.n_epochs=5", "data.root_dir=x/y"]
    assert args.device == "cpu" and args.no_progress and args.resume == "auto" and args.n_workers == 0


@pytest.mark.parametrize("argv", [["--device", "tpu"], ["--resume", "latest"], ["--cval", "one"]])
def test_invalid_flags_are_rejected(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)


def test_resume_flags_are_exclusive() -> None:
    with pytest.raises(SystemExit):
        main(["--resume_pkl_path", "a.pkl", "--resume", "auto"])


def test_bad_config_key_is_an_error(in_repo_root, capsys) -> None:
    assert main(["--set", "learning.n_epoch=3", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medseg-train: error: ") and "'learning.n_epoch'" in err[0]


@pytest.mark.parametrize("launcher", [
    [sys.executable, "medseg/train_adv_supervised_segmentation_triplet.py"],
    [sys.executable, "-m", "medseg.cli.train"],
])
def test_starts_as_file_and_as_module(launcher: list[str]) -> None:
    result = subprocess.run([*launcher, "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--json_config_path" in result.stdout and "--set" in result.stdout


@pytest.mark.skipif(shutil.which("medseg-train") is None, reason="package not installed (pip install -e .)")
def test_console_script() -> None:
    result = subprocess.run(["medseg-train", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--json_config_path" in result.stdout, result.stderr
