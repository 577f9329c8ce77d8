"""Nothing corrupt is called done: every volume write is read back before it is renamed into place, and a rerun after
a fault (a full disk, a write ITK cut short without raising) repairs what is broken instead of skipping it."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from corrupt_files import truncate
from medseg.phantom.tiny import write_subjects

from medseg.conversion import acdc as acdc_preprocess, acdc_c as generate_artefacted_data, mnms as mnms_preprocess
from medseg.io import provenance
from medseg.io.nifti import check_nifti_file, nifti_file_problem, read_volume, write_volume
from medseg.phantom.generator import SyntheticSettings, write_acdc_subject, write_mnms_subject
from medseg.experiments import data as exp_data
from medseg.io import atomic as medseg_io

SPACING = (1.36719, 1.36719, 8.0)


@contextlib.contextmanager
def short_itk_writes(keep: float = 0.0):
    """Make the volume writers behave as on a full disk: they report nothing, but only ``keep`` of the bytes land
    (ITK prints "wrote only 0 of N bytes" and returns normally)."""
    real = sitk.WriteImage

    def short_write(image, name, *args, **kwargs):
        real(image, name, *args, **kwargs)
        truncate(Path(name), keep)

    real_bytes = Path.write_bytes

    def short_bytes(self, data):  # the writer's other path (a header copied from the source file)
        return real_bytes(self, data[: int(len(data) * keep)] if ".tmp" in self.name else data)

    patch = pytest.MonkeyPatch()
    patch.setattr(sitk, "WriteImage", short_write)
    patch.setattr(Path, "write_bytes", short_bytes)
    try:
        yield
    finally:
        patch.undo()


def _raw_acdc(root: Path, numbers=(1, 2)) -> Path:
    settings = SyntheticSettings(spacing_scale=2.0, acdc_frames=(4, 4), mnms_frames=(4, 4))
    for number in numbers:
        write_acdc_subject(root, number, seed=0, settings=settings)
    return root


# --------------------------------------------------------------------------------------------------- the writer
@pytest.mark.parametrize("keep", [0.0, 0.5])
def test_a_short_itk_write_is_an_error_naming_the_file_and_leaves_nothing(tmp_path, keep):
    target = tmp_path / "out" / "ED_img.nii.gz"
    with short_itk_writes(keep), pytest.raises(OSError, match=r"cannot write .*ED_img.nii.gz: the file did not read "
                                                              r"back complete .*MiB free"):
        write_volume(target, np.random.default_rng(0).random((3, 16, 16), dtype=np.float32), spacing=SPACING)
    assert not target.exists()
    assert not list(target.parent.iterdir())  # no temporary file either


def test_a_garbled_write_is_caught_by_the_voxel_comparison(tmp_path, monkeypatch):
    real = sitk.WriteImage

    def garbled(image, name, *args, **kwargs):
        real(sitk.Image(image) * 0, name, *args, **kwargs)  # same size and header, other voxels

    monkeypatch.setattr(sitk, "WriteImage", garbled)
    with pytest.raises(OSError, match="voxels read back differ"):
        write_volume(tmp_path / "x.nii.gz", np.ones((2, 8, 8), dtype=np.float32))


def test_a_write_on_the_source_header_path_is_verified_too(tmp_path, monkeypatch):
    source = write_volume(tmp_path / "src.nii.gz", np.ones((2, 8, 8), dtype=np.float32), spacing=SPACING)
    reference = read_volume(source)
    real = Path.write_bytes
    monkeypatch.setattr(Path, "write_bytes", lambda self, data: real(self, data[: len(data) // 3]))
    with pytest.raises(OSError, match=r"label.nii.gz: the file did not read back complete \(truncated file: "):
        write_volume(tmp_path / "label.nii.gz", np.zeros((2, 8, 8), dtype=np.uint8), reference)
    assert not (tmp_path / "label.nii.gz").exists()


def test_check_nifti_file_names_what_is_wrong(tmp_path):
    path = write_volume(tmp_path / "v.nii.gz", np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8))
    check_nifti_file(path, read_volume(path).array)
    assert nifti_file_problem(path) is None
    with pytest.raises(ValueError, match="header declares shape"):
        check_nifti_file(path, np.zeros((2, 8, 9), dtype=np.float32))
    truncate(path, 0.6)
    assert "truncated" in nifti_file_problem(path) or "corrupt gzip" in nifti_file_problem(path)
    path.write_bytes(b"")
    assert "empty" in nifti_file_problem(path)
    assert "not found" in nifti_file_problem(tmp_path / "missing.nii.gz")


def test_text_and_copy_writes_check_the_bytes_on_disk(tmp_path, monkeypatch):
    source = tmp_path / "vendors.csv"
    source.write_text("subject,vendor\nA00X,A\n")
    real = medseg_io.shutil.copyfile

    def half_copy(src, dst, *args, **kwargs):
        real(src, dst)
        truncate(Path(dst), 0.5)

    monkeypatch.setattr(medseg_io.shutil, "copyfile", half_copy)
    with pytest.raises(OSError, match=r"cannot write .*copy.csv: the copy of .*vendors.csv does not read back"):
        medseg_io.copy_file_verified(source, tmp_path / "copy.csv")
    assert not (tmp_path / "copy.csv").exists()
    monkeypatch.undo()
    real_fstat = os.fstat

    class Short:
        def __init__(self, st):
            self.st_size = st.st_size - 1

    monkeypatch.setattr(medseg_io.os, "fstat", lambda fd: Short(real_fstat(fd)))
    with pytest.raises(OSError, match=r"cannot write .*report.json: 9 of 10 bytes reached the disk"):
        medseg_io.atomic_write_text(tmp_path / "report.json", "0123456789")
    assert not (tmp_path / "report.json").exists()


def test_a_write_error_that_names_no_file_is_given_the_target_name(tmp_path, monkeypatch):
    source = tmp_path / "ED_seg.nii.gz"
    source.write_bytes(b"x" * 100)

    def no_space(src, dst, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(medseg_io.shutil, "copyfile", no_space)
    with pytest.raises(OSError, match=r"cannot write .*copy.nii.gz: No space left on device; .* MiB free") as info:
        medseg_io.copy_file_verified(source, tmp_path / "copy.nii.gz")
    assert info.value.errno == 28
    assert not list(p for p in tmp_path.iterdir() if p.name != "ED_seg.nii.gz")


def test_a_real_full_disk_is_caught(tmp_path):
    """A 1 MiB tmpfs (root only; skipped where mounting is not permitted)."""
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        noise = np.random.default_rng(0).random((8, 200, 200), dtype=np.float32)  # ~1.2 MB, incompressible
        with pytest.raises(OSError, match="big.nii.gz"):
            write_volume(mount / "big.nii.gz", noise)
        assert not (mount / "big.nii.gz").exists()
        assert not [p for p in mount.iterdir()]  # the temporary file is gone as well
        write_volume(mount / "small.nii.gz", np.zeros((2, 8, 8), dtype=np.float32))  # room again
        assert nifti_file_problem(mount / "small.nii.gz") is None
    finally:
        subprocess.run(["umount", str(mount)], check=False)


# ---------------------------------------------------------------------------------------------- preprocessors
def test_acdc_preprocess_rerun_repairs_a_broken_output_instead_of_skipping_it(tmp_path, capsys, caplog):
    raw, out = _raw_acdc(tmp_path / "raw"), tmp_path / "ACDC"
    args = ["--input", str(raw), "--output", str(out), "--no-progress"]
    assert acdc_preprocess.main(args) == 0
    broken = truncate(out / "002" / "ES_seg.nii.gz", 0.4)
    (out / "001" / "ED_img.nii.gz").write_bytes(b"")
    capsys.readouterr()
    assert acdc_preprocess.main(args) == 0
    printed = capsys.readouterr()
    assert "2 subjects written, 0 already done" in printed.out
    assert "002/ES_seg.nii.gz: truncated" in caplog.text and "001/ED_img.nii.gz: the file is empty" in caplog.text
    for path in (broken, out / "001" / "ED_img.nii.gz"):
        assert nifti_file_problem(path) is None
    assert provenance.read_record(out)["complete"]


def test_acdc_preprocess_on_a_full_disk_fails_the_subjects_and_a_rerun_repairs(tmp_path, capsys):
    raw, out = _raw_acdc(tmp_path / "raw"), tmp_path / "ACDC"
    args = ["--input", str(raw), "--output", str(out), "--no-progress"]
    with short_itk_writes(0.0):
        assert acdc_preprocess.main(args) == 1
    printed = capsys.readouterr()
    assert "2 failed" in printed.out and "did not read back complete" in printed.out
    record = provenance.read_record(out)
    assert not record["complete"] and set(record["failed"]) == {"001", "002"}
    assert not list(out.glob("*/*.nii.gz"))  # nothing broken under a final name
    assert acdc_preprocess.main(args) == 0
    assert provenance.read_record(out)["complete"]
    assert len(list(out.glob("*/*.nii.gz"))) == 8
    assert all(nifti_file_problem(p) is None for p in out.glob("*/*.nii.gz"))


def test_mnms_preprocess_rerun_repairs_a_broken_output(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "MM"
    settings = SyntheticSettings(spacing_scale=2.0, acdc_frames=(4, 4), mnms_frames=(4, 4))
    row = write_mnms_subject(raw, "A", 0, "A1B2C3", 1, seed=0, settings=settings)
    from medseg.phantom.generator import write_mnms_metadata

    write_mnms_metadata(raw, [row])
    assert mnms_preprocess.main(["--input", str(raw), "--output", str(out), "--no-progress"]) == 0
    broken = truncate(out / "A1B2C3" / "ED_img.nii.gz", 0.5)
    assert nifti_file_problem(broken) is not None
    assert mnms_preprocess.main(["--input", str(raw), "--output", str(out), "--no-progress"]) == 0
    assert nifti_file_problem(broken) is None and provenance.read_record(out)["complete"]
    assert "A1B2C3" in (out / "vendors.csv").read_text()


# -------------------------------------------------------------------------------------------------------- ACDC-C
def test_acdc_c_rerun_repairs_broken_cases(tmp_path):
    source = write_subjects(tmp_path / "ACDC", ["007"], shape=(2, 40, 48))
    out = tmp_path / "ACDC-C"
    kwargs = {"subjects": ["007"], "copies": 1, "artefacts": ["RandomBias"]}
    generate_artefacted_data.generate_acdc_c(source, out, **kwargs)
    image, label = out / "RandomBias" / "007_0" / "ES_img.nii.gz", out / "RandomBias" / "007_0" / "ED_seg.nii.gz"
    expected = read_volume(image).array
    truncate(image, 0.5)
    label.write_bytes(b"")
    generate_artefacted_data.generate_acdc_c(source, out, **kwargs)
    np.testing.assert_array_equal(read_volume(image).array, expected)  # the same seeded case, rewritten
    assert label.read_bytes() == (source / "007" / "ED_seg.nii.gz").read_bytes()


def test_acdc_c_on_a_full_disk_is_an_error_and_not_complete(tmp_path):
    source = write_subjects(tmp_path / "ACDC", ["007"], shape=(2, 40, 48))
    out = tmp_path / "ACDC-C"
    kwargs = {"subjects": ["007"], "copies": 1, "artefacts": ["RandomBias"]}
    with short_itk_writes(0.3), pytest.raises(OSError, match="ED_img.nii.gz: the file did not read back"):
        generate_artefacted_data.generate_acdc_c(source, out, **kwargs)
    assert not provenance.read_record(out)["complete"]
    generate_artefacted_data.generate_acdc_c(source, out, **kwargs)
    assert provenance.read_record(out)["complete"]
    assert all(nifti_file_problem(p) is None for p in out.rglob("*.nii.gz"))


# ------------------------------------------------------------------------------------------- the runner's copy
def test_resampled_copy_rewrites_broken_files(tmp_path):
    root = write_subjects(tmp_path / "data" / "ACDC", ["001", "002"], shape=(2, 40, 48)).parent
    files = [Path("ACDC") / pid / name for pid in ("001", "002") for name in exp_data.FILE_NAMES]
    out = tmp_path / "copy"
    assert exp_data.resample_copy(root, out, files, 2.73438) == len(files)
    assert exp_data.resample_copy(root, out, files, 2.73438) == 0  # complete: nothing written
    truncate(out / "ACDC" / "001" / "ED_img.nii.gz", 0.5)
    (out / "ACDC" / "002" / "ES_seg.nii.gz").write_bytes(b"")
    assert exp_data.resample_copy(root, out, files, 2.73438) == 2
    assert all(nifti_file_problem(out / rel) is None for rel in files)


def test_resampled_copy_on_a_full_disk_is_an_error(tmp_path):
    root = write_subjects(tmp_path / "data" / "ACDC", ["001"], shape=(2, 40, 48)).parent
    files = [Path("ACDC") / "001" / name for name in exp_data.FILE_NAMES]
    with short_itk_writes(0.0), pytest.raises(OSError, match="did not read back complete"):
        exp_data.resample_copy(root, tmp_path / "copy", files, 2.73438)
    assert not list((tmp_path / "copy").rglob("*.nii.gz"))


def test_the_runner_checks_a_made_copy_and_repairs_it(tmp_path):
    from medseg.experiments.runner import _prepare_data
    from medseg.experiments.state import ExperimentState

    root = write_subjects(tmp_path / "data" / "ACDC", ["001"], shape=(2, 40, 48)).parent
    files = [Path("ACDC") / "001" / name for name in exp_data.FILE_NAMES]

    class Budget:
        resamples = True
        spacing_mm = 2.73438

    class Request:
        budget, data_root, out_dir, progress = Budget(), root, tmp_path / "exp", None

    class Plan:
        data_root = tmp_path / "exp" / "data_2.73438mm"

    Plan.files = files
    state = ExperimentState(tmp_path / "exp")
    _prepare_data(Request(), Plan(), state, "fp")
    assert state.marker("data")["fingerprint"] == "fp"
    broken = truncate(Plan.data_root / "ACDC" / "001" / "ES_img.nii.gz", 0.5)
    _prepare_data(Request(), Plan(), state, "fp")  # the marker says done; the broken file is rewritten anyway
    assert nifti_file_problem(broken) is None
    log = [json.loads(line) for line in state.log_path.read_text().splitlines()]
    assert [entry["action"] for entry in log if entry["task"] == "data"] == ["ran", "ran"]
    _prepare_data(Request(), Plan(), state, "fp")
    assert json.loads(state.log_path.read_text().splitlines()[-1])["action"] == "skipped"

