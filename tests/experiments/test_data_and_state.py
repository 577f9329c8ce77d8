"""The experiment's data preparation (layout check, fingerprint, resampled copy) and its bookkeeping files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from medseg.phantom.tiny import write_subjects, write_tiny_acdc, write_tiny_mm

from medseg.io.nifti import read_volume
from medseg.experiments import data as exp_data
from medseg.experiments.state import ExperimentMismatch, ExperimentState
from medseg.training.validation import foreground_dice


@pytest.fixture()
def root(tmp_path):
    ids = exp_data.acdc_subjects("10", [0])
    write_tiny_acdc(tmp_path / "ACDC", pids=ids, shape=(3, 40, 48))
    write_subjects(tmp_path / "ACDC-C" / "RandomBias", ["007_0"], shape=(3, 40, 48))
    write_tiny_mm(tmp_path / "MM", n_per_vendor=1, vendors="AB", shape=(3, 40, 48))
    return tmp_path


def test_acdc_subjects_cover_train_validate_and_test() -> None:
    ids = exp_data.acdc_subjects("10", [0, 1, 2])
    assert "007" in ids and "001" in ids  # a test and a training subject
    assert len(ids) == len(set(ids)) < 100
    notes = exp_data.split_notes("10", [0, 1])
    assert len(notes) == 1 and "002, 022" in notes[0] and "cval 1" in notes[0]


def test_layout_check_and_fingerprint(root) -> None:
    ids = exp_data.acdc_subjects("10", [0])
    datasets = ["ACDC", "RandomBias", "RandomMotion", "MM"]
    notes = exp_data.check_layout(root, datasets, ids)
    assert notes == [f"test set RandomMotion: {root / 'ACDC-C' / 'RandomMotion'} is missing or empty; it is skipped"]
    files = exp_data.source_files(root, datasets, ids)
    assert len(files) == 4 * len(ids) + 4 + 2 * 4 + 1
    before = exp_data.fingerprint(root, files)
    assert exp_data.fingerprint(root, files) == before
    write_subjects(root / "MM", ["A00X"], shape=(3, 40, 48), seed=5)  # data rewritten
    assert exp_data.fingerprint(root, files) != before
    (root / "ACDC" / ids[0] / "ES_seg.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="1 ACDC files needed by the splits are missing"):
        exp_data.check_layout(root, datasets, ids)


def test_resampled_copy_halves_the_grid_and_resumes(root, tmp_path) -> None:
    ids = exp_data.acdc_subjects("10", [0])
    files = exp_data.source_files(root, ["ACDC", "RandomBias", "MM"], ids)
    out = tmp_path / "copy"
    counted = []
    exp_data.resample_copy(root, out, files, 2.73438, progress=counted.append)
    assert len(counted) == len(files)
    image = read_volume(out / "MM" / "A00X" / "ED_img.nii.gz")
    label = read_volume(out / "MM" / "A00X" / "ED_seg.nii.gz")
    source = read_volume(root / "MM" / "A00X" / "ED_img.nii.gz")
    assert image.array.shape == (3, 20, 24) and label.array.shape == (3, 20, 24)
    assert image.spacing[:2] == pytest.approx((2.73438, 2.73438), abs=1e-5)
    assert image.spacing[2] == pytest.approx(source.spacing[2])
    assert set(np.unique(label.array)) <= {0, 1, 2, 3} and label.array.dtype == np.uint8
    assert (out / "MM" / "vendors.csv").read_text() == (root / "MM" / "vendors.csv").read_text()
    target = out / "ACDC" / ids[0] / "ED_img.nii.gz"
    stamp = target.stat().st_mtime_ns
    target_label = out / "ACDC" / ids[0] / "ED_seg.nii.gz"
    target_label.unlink()  # as if killed before this file
    exp_data.resample_copy(root, out, files, 2.73438)
    assert target.stat().st_mtime_ns == stamp and target_label.is_file()


def test_state_refuses_another_identity_and_keeps_invocations(tmp_path) -> None:
    state = ExperimentState(tmp_path / "exp")
    identity = {"budget": {"name": "cpu", "n_epochs": 100, "runs": [(0, 40)]}, "data_fingerprint": "abc"}
    state.open(identity, {"argv": ["--budget", "cpu"]})
    state.open(identity, {"argv": ["--budget", "cpu", "--max_tasks", "2"]})
    assert len(state.manifest()["invocations"]) == 2
    changed = {"budget": {"name": "cpu", "n_epochs": 120, "runs": [(0, 40)]}, "data_fingerprint": "abd"}
    with pytest.raises(ExperimentMismatch) as info:
        state.open(changed, {})
    message = str(info.value)
    assert "budget.n_epochs: 100 in the folder, 120 now" in message and "data_fingerprint" in message
    assert state.marker("t") is None
    state.mark_done("t", {"seconds": 1.0})
    assert state.marker("t")["seconds"] == 1.0
    state.log("t", "ran")
    assert [e["action"] for e in state.log_entries()] == ["ran"]
    (state.state_dir / "t.json").write_text("{broken")
    with pytest.raises(ValueError, match="t.json is not valid JSON"):
        state.marker("t")
    assert json.loads(state.manifest_path.read_text())["identity"]["budget"]["runs"] == [[0, 40]]


def test_validation_foreground_dice_from_pooled_iou() -> None:
    assert foreground_dice({0: 0.9, 1: 0.5, 2: 1.0, 3: float("nan")}) == pytest.approx((2 / 3 + 1.0) / 2)
    assert np.isnan(foreground_dice({0: 0.9}))
