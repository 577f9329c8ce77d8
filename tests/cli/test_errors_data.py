"""The data tools check their arguments before any work starts and name the flag (or the path) that is wrong:
prepare_synthetic.py, make_synthetic_data.py and the ACDC-C generator; --overwrite never deletes through a link."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import pytest
from medseg.phantom.tiny import write_subjects

from medseg.conversion import acdc_c
from medseg.io.nifti import read_volume
from medseg.training.run_files import RunPaths, clear_results

REPO = Path(__file__).resolve().parents[2]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(main, argv: list[str]) -> int:
    """Exit code of ``main(argv)``, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code)


def _one_line_error(capsys, code: int) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _fifo(tmp_path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    return fifo


PREPARE_BASE = ["--n-acdc", "1", "--n-mnms-per-vendor", "1", "--spacing-scale", "2", "--workers", "1",
                "--no-progress"]


@pytest.mark.parametrize("extra, flag", [
    (["--n-mnms-per-vendor", "0"], "--n-mnms-per-vendor: expected an integer >= 1, got 0"),
    (["--n-acdc", "0"], "--n-acdc: expected an integer >= 1, got 0"),
    (["--acdc-c-copies", "0"], "--acdc-c-copies: expected an integer in [1, 100], got 0"),
    (["--acdc-c-copies", "1000000000"], "--acdc-c-copies: expected an integer in [1, 100], got 1000000000"),
    (["--preview", "montage.jpg"], "--preview: expected a file name ending in .png, got montage.jpg"),
    (["--data-seed", "-1"], "--data-seed: expected an integer in [0, 4294967295], got -1"),
    (["--spacing-scale", "50"], "--spacing-scale: expected"),
])
def test_prepare_synthetic_refuses_bad_arguments_before_any_work(tmp_path, capsys, extra, flag):
    out = tmp_path / "data"
    code = _run(_script("prepare_synthetic").main, ["--out", str(out), *PREPARE_BASE, *extra])
    line = _one_line_error(capsys, code)
    assert line.startswith("prepare_synthetic.py: error: ") and flag in line
    assert not out.exists()  # nothing generated


def test_prepare_synthetic_refuses_an_empty_out_and_a_fifo(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = _run(_script("prepare_synthetic").main, ["--out", "", *PREPARE_BASE])
    assert "--out: expected a folder path, got an empty string" in _one_line_error(capsys, code)
    assert not list(tmp_path.iterdir())  # nothing written into the working folder
    fifo = _fifo(tmp_path)
    code = _run(_script("prepare_synthetic").main, ["--out", str(tmp_path / "d"), *PREPARE_BASE, "--preview", str(fifo)])
    assert f"--preview: {fifo} is a FIFO, not a regular file" in _one_line_error(capsys, code)
    code = _run(_script("prepare_synthetic").main, ["--out", str(fifo), *PREPARE_BASE])
    assert f"--out: expected a folder (or a path to create one), got {fifo}, which is a FIFO" in _one_line_error(
        capsys, code)


MAKE_BASE = ["--n-acdc", "1", "--n-mnms-per-vendor", "0", "--spacing-scale", "2", "--workers", "1", "--no-progress"]


@pytest.mark.parametrize("extra, flag", [
    (["--seed", "-1"], "--seed: expected an integer in [0, 4294967295], got -1"),
    (["--preview", "x.gif"], "--preview: expected a file name ending in .png, got x.gif"),
    (["--n-acdc", "0"], "--n-acdc and --n-mnms-per-vendor are both 0"),
])
def test_make_synthetic_data_refuses_bad_arguments(tmp_path, capsys, extra, flag):
    code = _run(_script("make_synthetic_data").main, ["--out", str(tmp_path / "o"), *MAKE_BASE, *extra])
    line = _one_line_error(capsys, code)
    assert line.startswith("make_synthetic_data.py: error: ") and flag in line
    assert not (tmp_path / "o").exists()


def test_make_synthetic_data_refuses_an_empty_out(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = _run(_script("make_synthetic_data").main, ["--out", "", *MAKE_BASE])
    assert "--out: expected a folder path, got an empty string" in _one_line_error(capsys, code)
    assert not list(tmp_path.iterdir())


def test_a_seed_change_into_a_generated_folder_is_refused_unless_overwrite(tmp_path, capsys):
    generator = _script("make_synthetic_data")
    out = tmp_path / "syn"
    assert generator.main(["--out", str(out), *MAKE_BASE, "--seed", "0"]) == 0
    first = (out / "raw" / "ACDC" / "patient001" / "patient001_frame01.nii.gz").read_bytes()
    capsys.readouterr()
    code = _run(generator.main, ["--out", str(out), *MAKE_BASE, "--seed", "1"])
    line = _one_line_error(capsys, code)
    assert "made with other settings (seed 0 -> 1)" in line and "--overwrite" in line
    assert (out / "raw" / "ACDC" / "patient001" / "patient001_frame01.nii.gz").read_bytes() == first
    assert generator.main(["--out", str(out), *MAKE_BASE, "--seed", "0"]) == 0  # same settings: fine
    assert generator.main(["--out", str(out), *MAKE_BASE, "--seed", "1", "--overwrite"]) == 0
    assert (out / "raw" / "ACDC" / "patient001" / "patient001_frame01.nii.gz").read_bytes() != first


@pytest.mark.parametrize("extra, flag", [
    (["--copies", "1000000000"], "--copies: expected at most 100 copies per subject and artefact, got 1000000000"),
    (["--seed", "-1"], "--seed: expected an integer in [0, 4294967295], got -1"),
    (["--output", ""], "--output: expected a folder path, got an empty string"),
])
def test_acdc_c_refuses_bad_arguments(tmp_path, capsys, extra, flag):
    source = write_subjects(tmp_path / "ACDC", ["007"], shape=(2, 16, 16))
    argv = ["--input", str(source), "--output", str(tmp_path / "C"), "--subjects", "007", *extra]
    line = _one_line_error(capsys, _run(acdc_c.main, argv))
    assert line.startswith("generate_artefacted_data.py: error: ") and flag in line
    assert not (tmp_path / "C").exists()
    with pytest.raises(ValueError, match="--copies: expected at most 100"):
        acdc_c.generate_acdc_c(source, tmp_path / "C", subjects=["007"], copies=10**9)


def test_acdc_c_generates_a_repeated_subject_once(tmp_path, caplog):
    source = write_subjects(tmp_path / "ACDC", ["008"], shape=(2, 16, 16))
    with caplog.at_level(logging.WARNING):
        cases = acdc_c.generate_acdc_c(source, tmp_path / "C", subjects=["008", "008"], copies=1,
                                       artefacts=["RandomBias"], frames=("ED",))
    assert cases == [tmp_path / "C" / "RandomBias" / "008_0"]
    assert "--subjects: 008 given more than once" in caplog.text


def test_a_fifo_is_not_a_regular_file_not_missing(tmp_path):
    fifo = _fifo(tmp_path)
    with pytest.raises(ValueError, match=f"{fifo} is a FIFO, not a regular file"):
        read_volume(fifo)
    source = write_subjects(tmp_path / "ACDC", ["007"], shape=(2, 16, 16))
    (source / "007" / "ED_img.nii.gz").unlink()
    os.mkfifo(source / "007" / "ED_img.nii.gz")
    with pytest.raises(ValueError, match="ED_img.nii.gz is a FIFO, not a regular file"):
        acdc_c.generate_acdc_c(source, tmp_path / "C", subjects=["007"], copies=1)


def test_overwrite_refuses_to_delete_through_a_symlinked_model_folder(tmp_path):
    elsewhere = tmp_path / "big_disk" / "model"
    (elsewhere / "best").mkdir(parents=True)
    (elsewhere / "best" / "keep.pth").write_bytes(b"weights")
    run = tmp_path / "run"
    run.mkdir()
    (run / "model").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ValueError, match=rf"--overwrite: {run / 'model'} is a symbolic link \(to {elsewhere}\)"):
        clear_results(RunPaths(run_dir=run, experiment_name="x/0"))
    assert (elsewhere / "best" / "keep.pth").read_bytes() == b"weights"


def test_acdc_preprocess_names_a_fifo_frame_as_not_a_regular_file(tmp_path, capsys):
    from medseg.conversion import acdc as acdc_preprocess

    patient = tmp_path / "raw" / "patient001"
    patient.mkdir(parents=True)
    (patient / "Info.cfg").write_text("ED: 1\nES: 5\n")
    _fifo(tmp_path)
    os.mkfifo(patient / "patient001_frame01.nii.gz")
    code = acdc_preprocess.main(["--input", str(tmp_path / "raw"), "--output", str(tmp_path / "out"),
                                 "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1 and "patient001_frame01.nii.gz is a FIFO, not a regular file" in out
