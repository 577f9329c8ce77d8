"""medseg-test skips (or warns about) test pairs whose scores would be meaningless: misregistered labels, blank images,
labels outside the model's classes, empty ground truths."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from medseg.data.base_dataset import BaseSegmentationDataset
from medseg.io.nifti import read_volume, write_volume
from medseg.evaluation.reports import evaluate_dataset
from medseg.phantom.tiny import write_subjects

SHAPE = (3, 40, 48)
ROTATED = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def rewrite(path, array=None, **geometry):
    """Rewrite a volume with another array and/or geometry keywords (the rest kept)."""
    volume = read_volume(path)
    write_volume(path, volume.array if array is None else array, volume, **geometry)


def damaged_root(root):
    """One subject per problem, plus a good one; returns (root, ids)."""
    ids = ["good", "shifted", "spacing", "rotated", "zero_image", "constant_image", "label5", "empty_gt"]
    write_subjects(root, ids, shape=SHAPE, frames=("ED",))
    rewrite(root / "shifted" / "ED_seg.nii.gz", origin=(10.0, 0.0, 0.0))  # the label 10 mm off its image
    rewrite(root / "spacing" / "ED_seg.nii.gz", spacing=(1.5, 1.5, 8.0))
    rewrite(root / "rotated" / "ED_seg.nii.gz", direction=ROTATED)
    rewrite(root / "zero_image" / "ED_img.nii.gz", np.zeros(SHAPE, np.float32))
    rewrite(root / "constant_image" / "ED_img.nii.gz", np.full(SHAPE, 0.4, np.float32))
    label = read_volume(root / "label5" / "ED_seg.nii.gz").array.copy()
    label[label == 3] = 5
    rewrite(root / "label5" / "ED_seg.nii.gz", label)
    rewrite(root / "empty_gt" / "ED_seg.nii.gz", np.zeros(SHAPE, np.uint8))
    return root, ids


def test_bad_pairs_are_skipped_and_an_empty_ground_truth_is_named(tmp_path, echo_model):
    root, ids = damaged_root(tmp_path / "MM")
    source = BaseSegmentationDataset(root, ids, frame="ED", use_cache=False, new_spacing=None, dataset_name="MM")
    result = evaluate_dataset(echo_model, source, "MM", n_iter=1, crop_size=48)
    assert result.detailed["patient_id"].tolist() == ["good_ED", "empty_gt_ED"]
    assert result.detailed.loc[1, ["LV_Dice", "MYO_Dice", "RV_Dice"]].tolist() == [0.0, 0.0, 0.0]
    notes = "\n".join(result.warnings)
    expected = {
        "shifted": r"patient #1 skipped: label \S*shifted/ED_seg.nii.gz has origin \(10.0, 0.0, 0.0\) but its image "
                   r"\S*shifted/ED_img.nii.gz has \(0.0, 0.0, 0.0\); expected identical voxel grids",
        "spacing": r"patient #2 skipped: label \S*spacing/ED_seg.nii.gz has spacing \(1.5, 1.5, 8.0\) but its image",
        "rotated": r"patient #3 skipped: label \S*rotated/ED_seg.nii.gz has direction",
        "zero_image": r"patient #4 skipped: \S*zero_image/ED_img.nii.gz: expected an image with contrast, got a "
                      r"constant volume \(every voxel is 0\)",
        "constant_image": r"patient #5 skipped: \S*constant_image/ED_img.nii.gz: expected an image with contrast",
        "label5": r"patient label5_ED skipped: \S*label5/ED_seg.nii.gz: label values \[5\] lie outside the model's "
                  r"classes 0..3",
        "empty_gt": r"\S*empty_gt/ED_seg.nii.gz: the ground truth of empty_gt_ED has no labelled voxel in the "
                    r"evaluated 48 x 48 field of view; it enters the means with Dice 0",
    }
    for name, pattern in expected.items():
        assert len([line for line in result.warnings if f"/{name}/" in line]) == 1, (name, notes)
        assert any(re.search(pattern, line) for line in result.warnings), (name, notes)
    assert "good" not in notes


def test_a_label_grid_within_the_tolerance_is_accepted(tmp_path, echo_model):
    root = write_subjects(tmp_path / "ACDC", ["001"], shape=SHAPE, frames=("ED",))
    rewrite(root / "001" / "ED_seg.nii.gz", origin=(0.004, 0.0, 0.0))  # rounding-level differences are no error
    source = BaseSegmentationDataset(root, ["001"], frame="ED", use_cache=False, new_spacing=None)
    result = evaluate_dataset(echo_model, source, "ACDC", n_iter=1, crop_size=48)
    assert result.detailed["patient_id"].tolist() == ["001_ED"] and result.warnings == []


@pytest.mark.slow
def test_medseg_test_counts_and_lists_the_skips(tmp_path, fresh_checkpoint, capsys):
    from medseg.cli.test import main

    damaged_root(tmp_path / "data" / "MM")
    checkpoint = tmp_path / "run" / "0" / "model" / "best" / "checkpoints"
    shutil.copytree(fresh_checkpoint, checkpoint)
    code = main(["--methods", f"m={checkpoint}", "--data_root", str(tmp_path / "data"), "--datasets", "MM",
                 "--frames", "ED", "--n_iter", "1", "--no_progress", "--crop_size", "48",
                 "--output_dir", str(tmp_path / "agg")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "2 volumes evaluated, 6 skipped" in captured.out
    warnings = (tmp_path / "agg" / "warnings.txt").read_text()
    for name in ("shifted", "spacing", "rotated", "zero_image", "constant_image", "label5", "empty_gt"):
        assert f"{name}/ED_" in warnings, name
    assert "6 volume(s) skipped" in warnings
