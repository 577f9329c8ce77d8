"""Every command-line tool: a user error is exactly one line on stderr, ``<tool>: error: ...``, exit code 2 and no
traceback; ``--verbose``/``--debug`` adds the traceback (issue 10)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medseg.utils.cli import CommandFailed, UnsupportedInput, run_cli

REPO = Path(__file__).resolve().parents[1]

TOOLS = {
    "medseg-train": "medseg/train_adv_supervised_segmentation_triplet.py",
    "medseg-test": "medseg/test_ACDC_triplet_segmentation.py",
    "medseg-predict": "medseg/predict.py",
    "acdc_preprocess.py": "medseg/dataset_loader/acdc_preprocess.py",
    "mnms_preprocess.py": "medseg/dataset_loader/mnms_preprocess.py",
    "generate_artefacted_data.py": "medseg/dataset_loader/generate_artefacted_data.py",
    "make_synthetic_data.py": "scripts/make_synthetic_data.py",
}


def entry_point(tool: str):
    """The ``main(argv)`` of a tool, imported from its file (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"cli_{tool.replace('-', '_').replace('.', '_')}", REPO / TOOLS[tool])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def run_in_process(tool: str, args: list[str]) -> int:
    try:
        return entry_point(tool)(args)
    except SystemExit as exit_info:  # argparse usage errors
        return int(exit_info.code)


def run(tool: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / TOOLS[tool]), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def user_errors(tmp: Path) -> list[tuple[str, list[str], str]]:
    """(tool, arguments, text the error line must contain): one user error per tool, and a few more."""
    missing = str(tmp / "missing")
    (tmp / "empty").mkdir(exist_ok=True)
    return [
        ("medseg-train", ["--set", "learning.lr=Infinity", "--device", "cpu"], "'learning.lr': expected a finite"),
        ("medseg-train", ["--json_config_path", missing + ".json"], "missing.json"),
        ("medseg-test", ["--methods", f"m={missing}", "--data_root", str(tmp)], "missing"),
        ("medseg-test", ["--runs_dir", missing, "--data_root", str(tmp)], "--runs_dir"),
        ("medseg-predict", ["--checkpoint", missing, "--input", missing + ".nii.gz", "--output",
                            str(tmp / "o.nii.gz")], "missing.nii.gz"),
        ("medseg-predict", ["--checkpoint", missing, "--input", str(tmp / "empty"), "--output", str(tmp / "o")],
         "no *.nii"),
        ("acdc_preprocess.py", ["--input", missing, "--output", str(tmp / "o")], "ACDC input folder not found"),
        ("mnms_preprocess.py", ["--input", str(tmp / "empty"), "--output", str(tmp / "o")], "no subject folders"),
        ("generate_artefacted_data.py", ["--input", missing, "--output", str(tmp / "o")], "missing"),
        ("generate_artefacted_data.py", ["--input", missing, "--output", str(tmp / "o"), "--copies", "0"],
         "--copies: expected an integer >= 1, got 0"),
        ("make_synthetic_data.py", ["--out", str(tmp / "o"), "--spacing-scale", "0"],
         "--spacing-scale: expected a finite number > 0, got 0.0"),
        ("make_synthetic_data.py", ["--out", str(tmp / "o"), "--spacing-scale", "inf"], "got inf"),
        ("make_synthetic_data.py", ["--out", str(tmp / "o"), "--workers", "-4"],
         "--workers: expected an integer >= 1, got -4"),
    ]


def test_every_tool_is_covered(tmp_path: Path) -> None:
    assert {tool for tool, _, _ in user_errors(tmp_path)} == set(TOOLS)


@pytest.mark.parametrize("case", range(13))
def test_user_error_is_one_line_without_traceback(tmp_path: Path, case: int, capsys: pytest.CaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the training defaults are relative to the repository root
    tool, args, expected = user_errors(tmp_path)[case]
    capsys.readouterr()
    code = run_in_process(tool, args)  # an escaping exception (a traceback) fails the test
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"{tool}: error: "), err
    assert expected in lines[0] and "Traceback" not in err


@pytest.mark.slow
def test_user_error_of_a_launched_script_is_one_line() -> None:
    result = run("medseg-train", "--set", "data.num_classes=5", "--device", "cpu")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "medseg-train: error: config/ACDC/cooperative_training.json: config key 'data.num_classes': expected the "
        "same value as segmentation_model.num_classes (4), got 5"]


@pytest.mark.slow
@pytest.mark.parametrize(("tool", "args", "flag"), [
    ("acdc_preprocess.py", ["--input", "nowhere", "--output", "o"], "--verbose"),
    ("medseg-train", ["--set", "learning.lr=NaN", "--device", "cpu"], "--debug"),
])
def test_traceback_only_with_the_debug_flag(tmp_path: Path, tool: str, args: list[str], flag: str) -> None:
    result = run(tool, *args, flag, cwd=REPO)
    assert result.returncode == 2 and "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"{tool}: error: ")


def test_run_cli_exit_codes(capsys: pytest.CaptureFixture) -> None:
    def failing(exc: BaseException):
        def body() -> int:
            raise exc
        return body

    assert run_cli("t", lambda: 0) == 0
    assert run_cli("t", failing(FileNotFoundError("x.nii.gz: not found"))) == 2
    assert run_cli("t", failing(CommandFailed("nothing was evaluated"))) == 1
    assert run_cli("t", failing(KeyboardInterrupt())) == 130
    assert run_cli("t", failing(TypeError("a bug\nin two lines"))) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["t: error: x.nii.gz: not found", "t: error: nothing was evaluated", "t: interrupted",
                   "t: error: unexpected TypeError: a bug in two lines (run again with --verbose for the traceback and "
                   "report it)"]


def test_unsupported_input_is_a_user_error_but_not_every_not_implemented_error(capsys: pytest.CaptureFixture) -> None:
    def failing(exc: BaseException):
        def body() -> int:
            raise exc
        return body

    assert run_cli("t", failing(UnsupportedInput("data_setting '41': at most 40 labelled subjects"))) == 2
    assert run_cli("t", failing(NotImplementedError("a gap in the code"))) == 1  # still reported as a bug
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "t: error: data_setting '41': at most 40 labelled subjects"
    assert err[1].startswith("t: error: unexpected NotImplementedError: a gap in the code") and "report it" in err[1]


@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_a_user_error(name: str, capsys: pytest.CaptureFixture,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """medseg-train and medseg-test resolve their --device here: exit code 2, not 'report it'."""
    import torch

    from medseg.utils.device import DeviceUnavailable, resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceUnavailable) as info:
        resolve_device(name)
    assert isinstance(info.value, RuntimeError)  # the type callers caught before
    assert run_cli("medseg-test", lambda: int(resolve_device(name).index or 0)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"medseg-test: error: device {name!r} requested but CUDA is not available on this machine"]


def test_cuda_index_beyond_the_devices_and_bad_names(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from medseg.utils.device import DeviceUnavailable, resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(DeviceUnavailable, match="'cuda:3' requested but this machine has 1 CUDA device"):
        resolve_device("cuda:3")
    for bad in ("cudax", "cuda:", "cuda:a", "gpu"):
        with pytest.raises(ValueError, match="unknown device"):
            resolve_device(bad)
