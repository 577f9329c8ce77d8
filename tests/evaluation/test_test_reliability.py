"""medseg-test keeps going past bad volumes, checks its output folders first and fails when nothing was evaluated."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from corrupt_files import flip_bytes, truncate
from medseg.io.nifti import write_volume
from medseg.cli.test import main
from medseg.phantom.tiny import write_subjects

SHAPE = (3, 40, 48)


def error_lines(err: str) -> list[str]:
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("medseg-test: error: ")]


def checkpoint_copy(fresh_checkpoint: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run" / "0" / "model" / "best" / "checkpoints"
    shutil.copytree(fresh_checkpoint, target)
    return target


def bad_data(root: Path) -> Path:
    write_subjects(root / "ACDC", ["007", "008", "009"], shape=SHAPE)
    truncate(root / "ACDC" / "008" / "ES_img.nii.gz")  # header intact, voxels cut: found at the full read
    path = root / "ACDC" / "009" / "ED_seg.nii.gz"  # bits flipped in a volume large enough to keep its header
    write_volume(path, np.random.default_rng(0).integers(0, 4, SHAPE).astype(np.uint8))
    flip_bytes(path, n=64, at=0.7)
    bias = root / "ACDC-C" / "RandomBias"
    write_subjects(bias, ["a_0", "b_0", "c_0", "d_0", "e_0"], shape=SHAPE)
    (bias / "a_0" / "ED_img.nii.gz").write_text("a text file renamed to .nii.gz\n")
    (bias / "b_0" / "ES_img.nii.gz").write_bytes(b"")
    write_volume(bias / "d_0" / "ED_seg.nii.gz", np.zeros((3, 40, 40), np.uint8))  # shape mismatch
    write_volume(bias / "e_0" / "ED_img.nii.gz", np.zeros((40, 48), np.float32))  # 2D
    return root


@pytest.mark.slow
def test_bad_volumes_are_skipped_with_a_warning_and_counted(tmp_path, fresh_checkpoint, capsys):
    data = bad_data(tmp_path / "data")
    checkpoint = checkpoint_copy(fresh_checkpoint, tmp_path)
    code = main(["--methods", f"m={checkpoint}", "--data_root", str(data), "--datasets", "ACDC", "RandomBias",
                 "--n_iter", "1", "--no_progress", "--output_dir", str(tmp_path / "agg")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "10 volumes evaluated, 6 skipped" in captured.out
    for name in ("008/ES_img.nii.gz", "009/ED_seg.nii.gz", "a_0/ED_img.nii.gz", "b_0/ES_img.nii.gz",
                 "d_0/ED_seg.nii.gz", "e_0/ED_img.nii.gz"):
        assert name in captured.out, name  # each skipped volume is named in the printed warnings
    warnings = (tmp_path / "agg" / "warnings.txt").read_text()
    assert "6 volume(s) skipped" in warnings and "truncated" in warnings


def test_nothing_evaluated_is_a_failure(tmp_path, fresh_checkpoint, capsys):
    checkpoint = checkpoint_copy(fresh_checkpoint, tmp_path)
    (tmp_path / "data" / "ACDC").mkdir(parents=True)  # an empty ACDC/
    for datasets in (["Foo"], ["ACDC"]):
        code = main(["--methods", f"m={checkpoint}", "--data_root", str(tmp_path / "data"), "--datasets", *datasets,
                     "--no_progress", "--output_dir", str(tmp_path / "agg")])
        lines = error_lines(capsys.readouterr().err)
        assert code == 1 and len(lines) == 1 and "nothing was evaluated (0 volumes" in lines[0]


def test_output_folders_are_checked_before_inference(tmp_path, fresh_checkpoint, capsys, monkeypatch):
    import medseg.evaluation.runner as runner

    data = tmp_path / "data"
    write_subjects(data / "ACDC", ["007"], shape=SHAPE)
    checkpoint = checkpoint_copy(fresh_checkpoint, tmp_path)
    monkeypatch.setattr(runner, "load_model", lambda *a, **k: pytest.fail("inference started before the check"))
    (tmp_path / "blocker").write_text("a file where a folder should be")
    code = main(["--methods", f"m={checkpoint}", "--data_root", str(data), "--datasets", "ACDC", "--no_progress",
                 "--output_dir", str(tmp_path / "blocker" / "agg")])
    lines = error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1 and "--output_dir" in lines[0] and "blocker is a file" in lines[0]
    (checkpoint.parent / "report").write_text("blocks the per-method report folder beside the checkpoint")
    monkeypatch.chdir(tmp_path)  # the default aggregate folder is relative
    code = main(["--methods", f"m={checkpoint}", "--data_root", str(data), "--datasets", "ACDC", "--no_progress"])
    lines = error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1 and "report folder" in lines[0]


@pytest.mark.parametrize("name", ["/".join(["..", "..", "x"]), "..", "a/b"])  # path escapes
def test_dataset_names_cannot_escape_the_report_folders(tmp_path, fresh_checkpoint, capsys, name):
    (tmp_path / "data").mkdir()
    code = main(["--methods", f"m={checkpoint_copy(fresh_checkpoint, tmp_path)}", "--data_root",
                 str(tmp_path / "data"), "--datasets", name, "--no_progress"])
    lines = error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1 and "--datasets: expected a single file or folder name" in lines[0]


def test_non_finite_checkpoint_is_refused(tmp_path, fresh_checkpoint, capsys):
    import torch

    checkpoint = checkpoint_copy(fresh_checkpoint, tmp_path)
    (checkpoint / "manifest.json").unlink()  # a published-style folder of a diverged model
    state = torch.load(checkpoint / "image_encoder.pth", weights_only=True)
    next(iter(state.values())).view(-1)[0] = float("nan")
    torch.save(state, checkpoint / "image_encoder.pth")
    (tmp_path / "data").mkdir()
    code = main(["--methods", f"m={checkpoint}", "--data_root", str(tmp_path / "data"), "--no_progress"])
    lines = error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1 and "image_encoder.pth: expected finite weights, got NaN/Inf" in lines[0]


def test_torn_checkpoint_set_is_refused_before_testing(tmp_path, fresh_checkpoint, capsys):
    import json

    checkpoint = checkpoint_copy(fresh_checkpoint, tmp_path)
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    manifest["complete"] = False  # what a kill -9 in the middle of writing model/best leaves
    (checkpoint / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "data").mkdir()
    code = main(["--methods", f"m={checkpoint}", "--data_root", str(tmp_path / "data"), "--no_progress"])
    lines = error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1 and "expected a complete checkpoint set, got a torn one" in lines[0]


def test_model_of_a_coarser_grid_tested_with_the_native_crop_is_named(tmp_path):
    from medseg.evaluation.runner import _grid_note
    from medseg.evaluation.runs import Run

    run_dir = tmp_path / "run"
    checkpoints = run_dir / "model" / "best" / "checkpoints"
    checkpoints.mkdir(parents=True)
    run = Run("quick", checkpoints, 0)
    note = _grid_note(run, None)  # no record of the grid: the published 1.36719 mm is assumed, with a warning
    assert note is not None and "no record of the grid the model was trained on" in note
    (run_dir / "config.json").write_text('{"data": {"new_spacing": [2.73438, 2.73438, -1]}}')
    note = _grid_note(run, None)
    assert note is not None and "2.73438 mm grid" in note and "--crop_size 96" in note
    assert _grid_note(run, 96) is None
