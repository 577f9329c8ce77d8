"""Subjects for the hard-example figures: folders and image files at 192 x 192, the default slice, the input batch."""

from __future__ import annotations

import numpy as np
import pytest
from medseg.phantom.tiny import SPACING, write_subjects

from medseg.io.nifti import write_volume
from medseg.visualization import default_slice, load_subject, slice_batch
from medseg.visualization.subjects import Subject, label_file_for


@pytest.fixture(scope="module")
def subject_dir(tmp_path_factory):
    return write_subjects(tmp_path_factory.mktemp("acdc"), ["007"], shape=(5, 72, 80)) / "007"


def test_subject_folder_is_padded_to_192(subject_dir):
    subject = load_subject(subject_dir, "ES")
    assert subject.name == "007" and subject.image.shape == (5, 192, 192) and subject.label.shape == (5, 192, 192)
    assert subject.image.dtype == np.float32 and subject.label.dtype == np.int64
    assert set(np.unique(subject.label)) == {0, 1, 2, 3}
    assert not subject.image[:, :60].any() and not subject.image[:, 132:].any()  # 72 rows padded by 60 on each side


def test_image_file_with_a_label_next_to_it(subject_dir, tmp_path):
    subject = load_subject(subject_dir / "ED_img.nii.gz")  # ED_img -> ED_seg is found
    assert subject.name == "ED_img" and subject.image.shape == (5, 192, 192) and subject.label is not None
    folder = load_subject(subject_dir, "ED")
    assert np.array_equal(subject.label, folder.label)  # same grid: already 1.36719 mm
    assert subject.image.min() >= 0 and subject.image.max() <= 1
    lone = write_volume(tmp_path / "scan.nii.gz", np.random.default_rng(0).random((3, 50, 60), dtype=np.float32),
                        spacing=(2.0, 2.0, 8.0))  # fmt: skip
    unlabelled = load_subject(lone)
    assert unlabelled.label is None and unlabelled.image.shape == (3, 192, 192)


def test_label_file_names(tmp_path):
    assert label_file_for(tmp_path / "ED_img.nii.gz").name == "ED_seg.nii.gz"
    assert label_file_for(tmp_path / "scan.nii").name == "scan_seg.nii"


def test_bad_subjects_are_refused(tmp_path, subject_dir):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_subject(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no ED_img.nii.gz"):
        load_subject(tmp_path / "empty")
    with pytest.raises(ValueError, match="frame must be one of"):
        load_subject(subject_dir, "mid")
    bad = tmp_path / "bad"
    write_volume(bad / "ED_img.nii.gz", np.linspace(0, 1, 2 * 32 * 32, dtype=np.float32).reshape(2, 32, 32),
                 spacing=SPACING)
    write_volume(bad / "ED_seg.nii.gz", np.full((2, 32, 32), 7, np.uint8), spacing=SPACING)
    with pytest.raises(ValueError, match="expected 0 BG, 1 LV, 2 MYO, 3 RV"):
        load_subject(bad)


def test_default_slice_is_mid_ventricular_with_most_foreground():
    label = np.zeros((8, 16, 16), np.int64)
    for k, size in enumerate([12, 11, 10, 9, 8, 6, 4, 0]):  # base (large) to apex; last slice unlabelled
        if size:
            label[k, :size, :size] = 1
            label[k, size : size + 2, :size] = 2
        if k < 5:
            label[k, 14:, :size] = 3  # RV on the five basal slices only
    subject = Subject("s", np.zeros((8, 16, 16), np.float32), label, source=None)
    # LV on slices 0..6, centre 3, reach 7/4: candidates 2..4 (complete), largest 2 -- not the basal slice 0
    assert default_slice(subject) == 2
    no_rv = Subject("s", subject.image, np.where(label == 3, 0, label), source=None)
    assert default_slice(no_rv) == 0  # no complete slice: the most foreground
    assert default_slice(Subject("s", subject.image, None, source=None)) == 4


def test_slice_batch_is_min_max_normalised(subject_dir):
    subject = load_subject(subject_dir)
    image, label = slice_batch(subject, [1, 3])
    assert image.shape == (2, 1, 192, 192) and label.shape == (2, 192, 192)
    assert float(image.min()) == pytest.approx(0.0, abs=1e-6) and float(image.amax(dim=(1, 2, 3)).min()) > 0.999
    with pytest.raises(IndexError, match="slices 0..4"):
        slice_batch(subject, [5])


def test_subject_on_the_models_coarser_grid(subject_dir, tmp_path):
    native = load_subject(subject_dir, "ED")
    coarse = load_subject(subject_dir, "ED", spacing_mm=2.73438)  # the quickstart's grid: same 262 mm field of view
    assert coarse.image.shape == (5, 96, 96) and coarse.label.shape == (5, 96, 96)
    assert coarse.label.dtype == np.int64 and set(np.unique(coarse.label)) <= set(np.unique(native.label))
    for k in (0, 1, 2, 3):  # nearest-neighbour labels keep each class's share of the field of view
        assert abs((coarse.label == k).mean() - (native.label == k).mean()) < 0.02
    assert load_subject(subject_dir, "ED", spacing_mm=1.36719).image.shape == (5, 192, 192)
    with pytest.raises(ValueError, match="spacing_mm"):
        load_subject(subject_dir, "ED", spacing_mm=0.0)


def test_checkpoint_spacing_reads_the_run_config(tmp_path):
    from medseg.visualization import checkpoint_spacing

    run = tmp_path / "run"
    checkpoints = run / "model" / "best" / "checkpoints"
    checkpoints.mkdir(parents=True)
    assert checkpoint_spacing(checkpoints) is None  # a published-style folder without the run config
    (run / "config.json").write_text('{"data": {"new_spacing": [2.73438, 2.73438, -1]}}')
    assert checkpoint_spacing(checkpoints) == pytest.approx(2.73438)
    (run / "config.json").write_text('{"data": {}}')  # a run config without new_spacing: medseg's default grid
    assert checkpoint_spacing(checkpoints) == pytest.approx(1.36719)
    (run / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):
        checkpoint_spacing(checkpoints)
