"""Which checkpoints medseg-test evaluates and where their reports go."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.evaluation.runs import (
    Run,
    cval_from_path,
    discover_runs,
    parse_method_specs,
    report_dir,
    report_location,
)


def make_run(root: Path, *parts: str) -> Path:
    path = root.joinpath(*parts, "model", "best", "checkpoints")
    path.mkdir(parents=True)
    return path


def test_discover_runs_one_method_per_config_name(tmp_path):
    make_run(tmp_path, "train_ACDC_10_n_cls_4", "cooperative_training", "0")
    make_run(tmp_path, "train_ACDC_10_n_cls_4", "cooperative_training", "1")
    make_run(tmp_path, "train_ACDC_10_n_cls_4", "standard_training", "0")
    (tmp_path / "train_ACDC_10_n_cls_4" / "standard_training" / "0" / "model" / "3").mkdir()
    runs = discover_runs(tmp_path)
    assert [(r.method, r.cval) for r in runs] == [
        ("cooperative_training", 0),
        ("cooperative_training", 1),
        ("standard_training", 0),
    ]
    assert [r.cval for r in discover_runs(tmp_path, cvals=[1])] == [1]


def test_discover_runs_disambiguates_settings(tmp_path):
    make_run(tmp_path, "train_ACDC_10_n_cls_4", "coop", "0")
    make_run(tmp_path, "train_ACDC_full_n_cls_4", "coop", "0")
    assert sorted(r.method for r in discover_runs(tmp_path)) == [
        "train_ACDC_10_n_cls_4/coop",
        "train_ACDC_full_n_cls_4/coop",
    ]


def test_discover_runs_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing"):
        discover_runs(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="no run folder"):
        discover_runs(tmp_path)


def test_parse_method_specs_with_cval_template():
    specs = ["coop=saved/x/{cval}/model/best/checkpoints", "std=saved/y/2/model/best/checkpoints"]
    runs = parse_method_specs(specs, [0, 2])
    assert [(r.method, r.cval, str(r.checkpoint_dir)) for r in runs] == [
        ("coop", 0, "saved/x/0/model/best/checkpoints"),
        ("coop", 2, "saved/x/2/model/best/checkpoints"),
        ("std", 2, "saved/y/2/model/best/checkpoints"),
    ]
    with pytest.raises(ValueError, match="NAME=CHECKPOINT_DIR"):
        parse_method_specs(["just_a_path"])
    with pytest.raises(ValueError, match="no --cval"):
        parse_method_specs(["a=x/{cval}"])


def test_report_dir_replaces_checkpoints_component():
    assert report_dir("a/0/model/best/checkpoints", "MM") == Path("a/0/model/best/report/MM")
    assert cval_from_path("a/3/model/best/checkpoints") == 3
    assert Run("m", Path("x"), 1).label == "m (cval 1)"


def test_report_location_with_output_dir_is_outside_the_checkpoint(tmp_path):
    run = Run("train_x/coop", make_run(tmp_path, "train_x", "coop", "2"), 2)
    out = report_location(run, "MM", tmp_path / "data", tmp_path / "data" / "MM", tmp_path / "reports")
    assert out == tmp_path / "reports" / "train_x_coop" / "2" / "MM"
    no_fold = report_location(Run("m", tmp_path / "ckpt"), "ACDC", tmp_path, tmp_path / "ACDC", tmp_path / "r")
    assert no_fold == tmp_path / "r" / "m" / "no_cval" / "ACDC"


def test_report_location_never_reuses_the_reports_of_another_data_root(tmp_path):
    run = Run("coop", make_run(tmp_path, "coop", "0"), 0)
    published = run.checkpoint_dir.parent / "report" / "ACDC"
    first, second = tmp_path / "synthetic", tmp_path / "real"
    assert report_location(run, "ACDC", first, first / "ACDC") == published  # nothing there yet
    published.mkdir(parents=True)
    (published / "iter_2_info.json").write_text(json.dumps({"data_folder": str(first / "ACDC")}))
    assert report_location(run, "ACDC", first, first / "ACDC") == published  # same data: its own reports
    other = report_location(run, "ACDC", second, second / "ACDC")
    assert other.parent == published.parent and other.name.startswith("ACDC@real-")
    assert report_location(run, "ACDC", second, second / "ACDC") == other  # stable
    (published / "iter_2_info.json").unlink()
    (published / "iter_2_summary.csv").write_text("LV_Dice\n0.5\n")  # reports that do not say where they came from
    assert report_location(run, "ACDC", first, first / "ACDC") != published


def test_test_data_on_another_grid_than_the_model_is_a_warning(tmp_path):
    """medseg-test does not resample: volumes whose pixels are not the model's grid are counted in a warning naming
    the first; every volume is checked (not only the first readable one), unreadable ones are left to the
    evaluation's own skips."""
    import json

    from medseg.data.base_dataset import BaseSegmentationDataset
    from medseg.io.nifti import read_volume, write_volume
    from medseg.evaluation.datasets import FramesSource
    from medseg.evaluation.runner import _data_grid_note, _grid_note
    from medseg.evaluation.runs import Run
    from medseg.phantom.tiny import write_subjects

    checkpoints = tmp_path / "run" / "model" / "best" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (tmp_path / "run" / "config.json").write_text(json.dumps({"data": {"new_spacing": [2.73438, 2.73438, -1]}}))
    run = Run("standard", checkpoints, 0)
    root = write_subjects(tmp_path / "MM", ["a", "b", "c"], shape=(2, 24, 24), frames=("ED",))
    for pid in ("a", "b", "c"):
        for kind in ("img", "seg"):
            path = root / pid / f"ED_{kind}.nii.gz"
            volume = read_volume(path)
            write_volume(path, volume.array, volume, spacing=(2.73438, 2.73438, 8.0))
    source = FramesSource([BaseSegmentationDataset(root, ["a", "b", "c"], frame="ED", use_cache=False,
                                                   new_spacing=None, dataset_name="MM")])
    (root / "a" / "ED_img.nii.gz").write_bytes(b"unreadable")  # damaged after the test set was opened
    assert _data_grid_note(run, "MM", source, 96) is None
    for kind in ("img", "seg"):  # the last volume only: a check of the first readable one would miss it
        path = root / "c" / f"ED_{kind}.nii.gz"
        volume = read_volume(path)
        write_volume(path, volume.array, volume, spacing=(1.36719, 1.36719, 8.0))
    note = _data_grid_note(run, "MM", source, 96)
    assert "MM: 1 of 2 test volume(s)" in note and "c/ED_img.nii.gz: 1.36719 mm pixels" in note
    assert "2.73438 mm" in note
    assert _grid_note(run, 96) is None and "--crop_size 96" in _grid_note(run, 192)
    unknown = Run("published", tmp_path / "elsewhere" / "checkpoints", 0)
    assert "no record of the grid" in _grid_note(unknown, 192)


def test_a_method_or_a_checkpoint_given_twice_is_refused(tmp_path):
    """Two runs under one (method, fold) would be averaged as two folds and write into one report folder."""
    from medseg.evaluation.runs import parse_method_specs

    first = tmp_path / "a" / "0" / "model" / "best" / "checkpoints"
    second = tmp_path / "b" / "0" / "model" / "best" / "checkpoints"
    with pytest.raises(ValueError, match=r"method 'm' is given twice for cval 0"):
        parse_method_specs([f"m={first}", f"m={second}"])
    with pytest.raises(ValueError, match=r"checkpoint folder .* is given twice"):
        parse_method_specs([f"m={first}", f"n={first}"])
    template = str(tmp_path / "a" / "{cval}" / "model" / "best" / "checkpoints")
    with pytest.raises(ValueError, match="given twice for cval 0"):
        parse_method_specs([f"m={template}"], [0, 0])
    folds = parse_method_specs([f"m={first}", f"m={tmp_path / 'a' / '1' / 'model' / 'best' / 'checkpoints'}"])
    assert [(r.method, r.cval) for r in folds] == [("m", 0), ("m", 1)]  # one method over two folds stays valid


def test_new_best_weights_set_the_old_report_aside(tmp_path):
    import json

    from medseg.training.loop import set_aside_reports

    best = tmp_path / "model" / "best"
    (best / "checkpoints").mkdir(parents=True)
    assert set_aside_reports(best) is None  # nothing to move
    (best / "checkpoints" / "manifest.json").write_text(json.dumps({"format": "medseg-checkpoint-set/1", "epoch": 3}))
    for _ in range(2):
        (best / "report" / "ACDC").mkdir(parents=True)
        (best / "report" / "ACDC" / "iter_2_summary.csv").write_text("old numbers")
        moved = set_aside_reports(best)
        assert not (best / "report").exists() and (moved / "ACDC" / "iter_2_summary.csv").read_text() == "old numbers"
    assert sorted(p.name for p in best.iterdir()) == ["checkpoints", "report.stale-epoch3", "report.stale-epoch3.2"]
