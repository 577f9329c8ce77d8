"""Every command-line tool: a user error is exactly one line on stderr, ``<tool>: error: ...``, exit code 2 and no
traceback; ``--verbose``/``--debug`` adds the traceback."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from medseg.utils.cli import CommandFailed, UnsupportedInput, run_cli

REPO = Path(__file__).resolve().parents[2]

TOOLS = {
    "medseg-train": "medseg/cli/train.py",
    "medseg-test": "medseg/cli/test.py",
    "medseg-predict": "medseg/cli/predict.py",
    "acdc_preprocess.py": "medseg/conversion/acdc.py",
    "mnms_preprocess.py": "medseg/conversion/mnms.py",
    "generate_artefacted_data.py": "medseg/conversion/acdc_c.py",
    "make_synthetic_data.py": "medseg/phantom/make.py",
    "prepare_synthetic.py": "medseg/phantom/pipeline.py",
    "visualize_hard_examples.py": "scripts/visualize_hard_examples.py",
    "corruption_sensitivity.py": "scripts/corruption_sensitivity.py",
    "phantom_report.py": "scripts/phantom_report.py",
    "run_robustness_experiment.py": "scripts/run_robustness_experiment.py",
    "benchmark.py": "benchmarks/benchmark.py",
    "benchmark_data.py": "benchmarks/benchmark_data.py",
    "benchmark_kernels.py": "benchmarks/benchmark_kernels.py",
    "benchmark_training_step.py": "benchmarks/benchmark_training_step.py",
    "compare_precision_accuracy.py": "benchmarks/compare_precision_accuracy.py",
    "check_cuda.py": "scripts/check_cuda.py",
    "bf16_decision.py": "benchmarks/bf16_decision.py",
}


def entry_point(tool: str):
    """The ``main(argv)`` of a tool, imported from its file (scripts/ is not a package)."""
    if str(REPO / "benchmarks") not in sys.path:  # benchmark.py imports its sibling performance_report
        sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location(f"cli_{tool.replace('-', '_').replace('.', '_')}", REPO / TOOLS[tool])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
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
    """(tool, arguments, text the error line must contain): at least one user error per tool."""
    missing = str(tmp / "missing")
    (tmp / "empty").mkdir(exist_ok=True)
    (tmp / "a_file").write_text("not a folder")
    return [
        ("medseg-train", ["--set", "learning.lr=Infinity", "--device", "cpu"], "'learning.lr': expected a finite"),
        ("medseg-train", ["--json_config_path", missing + ".json"], "missing.json"),
        ("medseg-train", ["--set", "data.crop_size=[4000,4000,1]", "--device", "cpu"],
         "config key 'data.crop_size': expected H and W each a multiple of 16 from 16 to 1024"),
        ("medseg-test", ["--methods", f"m={missing}", "--data_root", str(tmp)], "missing"),
        ("medseg-test", ["--runs_dir", missing, "--data_root", str(tmp)], "--runs_dir"),
        ("medseg-test", ["--methods", f"m={missing}", "--data_root", str(tmp), "--cval", "9"],
         "argument --cval: invalid choice: 9"),
        ("medseg-test", ["--methods", f"m={missing}", "--data_root", str(tmp), "--crop_size", "4000"],
         "--crop_size: expected a multiple of 16 from 16 to 1024"),
        ("medseg-test", ["--methods", f"m={missing}", "--data_root", str(tmp), "--datasets", "ACDC", "ACDC"],
         "--datasets: expected each test set once, got ACDC more than once"),
        ("medseg-predict", ["--checkpoint", missing, "--input", missing + ".nii.gz", "--output",
                            str(tmp / "o.nii.gz")], "missing.nii.gz"),
        ("medseg-predict", ["--checkpoint", missing, "--input", str(tmp / "empty"), "--output", str(tmp / "o")],
         "no *.nii"),
        ("acdc_preprocess.py", ["--input", missing, "--output", str(tmp / "o")], "ACDC input folder not found"),
        ("mnms_preprocess.py", ["--input", str(tmp / "empty"), "--output", str(tmp / "o")], "no subject folders"),
        ("generate_artefacted_data.py", ["--input", missing, "--output", str(tmp / "o")], "missing"),
        ("generate_artefacted_data.py", ["--input", missing, "--output", str(tmp / "o"), "--copies", "0"],
         "--copies: expected an integer >= 1"),
        ("make_synthetic_data.py", ["--out", str(tmp / "o"), "--spacing-scale", "0"],
         "--spacing-scale: expected a finite number > 0, got 0.0"),
        ("make_synthetic_data.py", ["--out", str(tmp / "o"), "--spacing-scale", "inf"], "got inf"),
        ("make_synthetic_data.py", ["--out", str(tmp / "o"), "--workers", "-4"],
         "--workers: expected an integer >= 1, got -4"),
        ("prepare_synthetic.py", ["--out", str(tmp / "o"), "--workers", "0"], "--workers"),
        ("visualize_hard_examples.py", ["--checkpoint", missing, "--subject", missing, "--out", str(tmp / "o"),
                                        "--dpi", "0"], "--dpi: expected an integer from 10 to 1200, got 0"),
        ("visualize_hard_examples.py", ["--checkpoint", missing, "--subject", missing, "--out", str(tmp / "o"),
                                        "--prefix", os.path.join("..", "..", "x")], "--prefix: expected a file name prefix without folders"),
        ("visualize_hard_examples.py", ["--checkpoint", missing, "--subject", missing, "--out", str(tmp / "o"),
                                        "--prefix", str(tmp / "abs_")], "--prefix: expected a file name prefix"),
        ("visualize_hard_examples.py", ["--checkpoint", missing, "--subject", missing, "--out",
                                        str(tmp / "a_file" / "figures")], f"--out {tmp / 'a_file' / 'figures'}: "
                                        f"expected a folder, but {tmp / 'a_file'} is a file"),
        ("visualize_hard_examples.py", ["--checkpoint", missing, "--subject", missing, "--out", str(tmp / "o")],
         f"--checkpoint {missing} does not exist"),
        ("corruption_sensitivity.py", ["--checkpoint", f"m={tmp}", "--out", str(tmp / "o"), "--crop_size", "4000"],
         "--crop_size: expected a multiple of 16 from 16 to 1024"),
        ("phantom_report.py", [str(tmp), "--montage", "0"], "--montage: expected an integer >= 1, got 0"),
        ("run_robustness_experiment.py", ["--runs", "0:x"], "--runs: expected CVAL:SEED"),
        ("benchmark.py", ["--render-only", "--json", missing + ".json"], "missing.json: not found"),
        ("benchmark.py", ["--threads", "0"], "--threads: expected an integer >= 1, got 0"),
        ("benchmark_data.py", ["--seconds", "0"], "--seconds: expected a finite number > 0"),
        ("benchmark_kernels.py", ["--size", "100"], "--size: expected a multiple of 16"),
        ("benchmark_training_step.py", ["--settings", "20x"], "argument --settings: expected BATCHxSIZE"),
        ("compare_precision_accuracy.py", ["--precisions", "fp32"], "--precisions: expected two or more distinct"),
        ("compare_precision_accuracy.py", ["--summarise-only", "--save_dir", missing, "--out", str(tmp / "c.json")],
         "metrics.csv: not found"),
        ("check_cuda.py", ["--sections", "warp-drive"], "--sections: unknown sections ['warp-drive']"),
        ("bf16_decision.py", ["--fp32", missing + ".csv", "--bf16", missing + ".csv"],
         f"--fp32: {missing}.csv not found"),
    ]


N_CASES = 35


def test_every_tool_is_covered(tmp_path: Path) -> None:
    """Every console script of setup.py and every script in scripts/ (with a __main__) has a case, and goes
    through the one error path (run_cli)."""
    cases = user_errors(tmp_path)
    assert len(cases) == N_CASES and {tool for tool, _, _ in cases} == set(TOOLS)
    setup = (REPO / "setup.py").read_text()
    console = set(re.findall(r'"([\w-]+)=medseg[\w.]+:main"', setup))
    assert console and console <= set(TOOLS)
    scripts = {path.name for path in (REPO / "scripts").glob("*.py") if "__main__" in path.read_text()}
    assert scripts <= set(TOOLS), scripts - set(TOOLS)
    for tool, source in TOOLS.items():
        text = (REPO / source).read_text()
        assert "run_cli(" in text and ("ArgumentParser(" in text or "build_parser" in text), tool


@pytest.mark.parametrize("case", range(N_CASES))
def test_user_error_is_one_line_without_traceback(tmp_path: Path, case: int, capsys: pytest.CaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the training defaults are relative to the repository root
    tool, args, expected = user_errors(tmp_path)[case]
    capsys.readouterr()
    code = run_in_process(tool, args)  # an escaping exception (a traceback) fails the test
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith(("WARNING ", "INFO "))]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"{tool}: error: "), err
    assert expected in lines[0] and "Traceback" not in err


def test_the_figure_script_shows_the_traceback_with_verbose(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    code = run_in_process("visualize_hard_examples.py", ["--checkpoint", str(tmp_path / "none"), "--subject",
                                                         str(tmp_path), "--out", str(tmp_path / "o"), "--verbose"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1].startswith("visualize_hard_examples.py: error: --checkpoint")


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


def test_a_damaged_metrics_csv_names_the_file_and_the_line(tmp_path: Path) -> None:
    """Resuming a run (MetricsLog) or reading its curve (experiment report) with a garbage line in metrics.csv."""
    from medseg.experiments.curves import read_curve
    from medseg.training.run_files import MetricsLog

    path = tmp_path / "metrics.csv"
    path.write_text("epoch,global_iteration,dice/val_dice\n0,10,0.5\ngarbage\xff,,\n2,30,0.7\n", encoding="utf-8")
    message = rf"^{path}: line 3: expected a number in column 'epoch', got 'garbage\xff'"
    with pytest.raises(ValueError, match=message):
        MetricsLog(path, start_epoch=2)
    with pytest.raises(ValueError, match=message):
        read_curve(path)
    path.write_text("epoch,global_iteration,dice/val_dice\n0,10,0.5\n1,20,high\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^{path}: line 3: expected a number in column 'dice/val_dice', got 'high'"):
        read_curve(path)
    path.write_bytes(b"epoch,global_iteration\n0,\xff\xfe\n")
    with pytest.raises(ValueError, match=rf"^{path}: expected UTF-8 CSV text"):
        MetricsLog(path, start_epoch=1)


def test_run_tests_refuses_a_dataset_given_twice_before_any_work(tmp_path: Path) -> None:
    from medseg.evaluation.runner import run_tests
    from medseg.evaluation.runs import Run

    run = Run("m", tmp_path / "missing", 0)  # not even looked at: the datasets are checked first
    with pytest.raises(ValueError, match=r"--datasets: expected each test set once, got \['ACDC', 'ACDC'\]"):
        run_tests([run], tmp_path, ["ACDC", "ACDC"], tmp_path / "out")


def test_one_crop_rule_for_every_tool() -> None:
    """data.crop_size (medseg-train), medseg-test --crop_size, corruption_sensitivity.py --crop_size and the crop
    medseg-predict derives from a model's grid share one bound: a multiple of 16 from 16 to 1024."""
    from medseg.config import crop_size_problem
    from medseg.evaluation.scan import field_of_view_crop

    assert crop_size_problem(192) is None and crop_size_problem(1024) is None and crop_size_problem(16) is None
    for bad in (0, 8, 100, 1040, 4000, True, 192.0):
        assert crop_size_problem(bad) is not None, bad
    assert field_of_view_crop(2.73438) == (96, 96)
    with pytest.raises(ValueError, match="a 0.2 mm grid needs a 1312 x 1312 crop .* a multiple of 16 from 16 to 1024"):
        field_of_view_crop(0.2)
