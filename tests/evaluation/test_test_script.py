"""medseg-test end to end: a briefly trained model tested on tiny ACDC / ACDC-C / M&Ms folders."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medseg.data.crop import crop_or_pad
from medseg.io.nifti import read_volume
from medseg.cli.test import main
from medseg.nn.precision import cpu_supports_bf16
from medseg.phantom.tiny import write_subjects, write_tiny_acdc, write_tiny_mm

REPO = Path(__file__).resolve().parents[2]
SHAPE = (3, 40, 48)
DICE = ["LV_Dice", "MYO_Dice", "RV_Dice"]


def write_data(root: Path) -> Path:
    write_tiny_acdc(root / "ACDC", pids=["007", "001"], shape=SHAPE)  # 001 is a training subject: not tested
    write_subjects(root / "ACDC-C" / "RandomBias", ["007_0"], shape=SHAPE, seed=3)
    write_subjects(root / "ACDC-C" / "RandomMotion", ["007_0"], shape=SHAPE, seed=4)
    write_tiny_mm(root / "MM", n_per_vendor=1, vendors="AB", shape=SHAPE)
    (root / "ACDC-C" / "RandomSpike").mkdir()  # empty artefact folder
    return root


def train_tiny_model(run_root: Path, data_root: Path, iterations: int = 2) -> Path:
    """A few cooperative-training steps on 64×64 crops of the tiny ACDC volume, saved in the run layout."""
    from medseg.models.advanced_triplet_recon_segmentation_model import AdvancedTripletReconSegmentationModel
    from medseg.training.step import train_step

    torch.manual_seed(0)
    image = read_volume(data_root / "ACDC" / "001" / "ED_img.nii.gz").array
    label = read_volume(data_root / "ACDC" / "001" / "ED_seg.nii.gz").array
    x = torch.from_numpy(crop_or_pad(image, (64, 64))[0][:2, None].astype(np.float32))  # (2, 1, 64, 64)
    y = torch.from_numpy(crop_or_pad(label, (64, 64))[0][:2].astype(np.int64))  # (2, 64, 64)
    model = AdvancedTripletReconSegmentationModel(device="cpu", n_iter=2)
    for step in range(iterations):
        out = train_step(model, x, y, latent_da=True, generator=torch.Generator().manual_seed(step))
        assert np.isfinite(out.losses["loss/total"])
    return model.save_model(run_root / "train_ACDC_10_n_cls_4" / "cooperative_training" / "0" / "model", "best")


@pytest.mark.slow
def test_end_to_end_reports(tmp_path, capsys):
    data = write_data(tmp_path / "data")
    runs = tmp_path / "saved"
    checkpoint = train_tiny_model(runs, data)
    code = main(
        [
            "--runs_dir", str(runs), "--data_root", str(data), "--metrics", "Dice", "HD95",
            "--save_predictions", "--no_progress", "--batch_slices", "2",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| method | ACDC | RandomBias | RandomMotion | MM | avg_all | avg_ood |" in printed
    assert "| cooperative_training |" in printed

    report = checkpoint.parent / "report"
    assert sorted(p.name for p in report.iterdir()) == ["ACDC", "MM", "RandomBias", "RandomMotion"]
    for name, n_volumes in (("ACDC", 2), ("RandomBias", 2), ("RandomMotion", 2), ("MM", 4)):
        folder = report / name
        expected = {"iter_2_summary.csv", "iter_2_detailed.csv", "iter_2_describe.csv", "iter_2_info.json"}
        expected.add("predictions")
        if name == "MM":
            expected |= {"iter_2_vendor_summary.csv", "iter_2_vendor_detailed.csv"}
        assert {p.name for p in folder.iterdir()} == expected
        detailed = pd.read_csv(folder / "iter_2_detailed.csv")
        assert list(detailed.columns) == ["patient_id", *DICE, "LV_HD95", "MYO_HD95", "RV_HD95"]
        assert len(detailed) == n_volumes
        assert detailed[DICE].notna().all().all()
        summary_lines = (folder / "iter_2_summary.csv").read_text().splitlines()
        assert summary_lines[0].startswith("statistic,LV_Dice,MYO_Dice,RV_Dice")
        assert [line.split(",")[0] for line in summary_lines[1:]] == ["mean", "std"]  # every row labelled
        assert len(list((folder / "predictions").glob("*_pred.nii.gz"))) == n_volumes
    assert list(pd.read_csv(report / "ACDC" / "iter_2_detailed.csv")["patient_id"]) == ["007_ED", "007_ES"]

    # predictions overlay the original images
    pred = read_volume(report / "ACDC" / "predictions" / "007_ES_pred.nii.gz")
    image = read_volume(data / "ACDC" / "007" / "ES_img.nii.gz")
    assert pred.array.shape == image.array.shape and pred.spacing == image.spacing and pred.origin == image.origin

    summary = pd.read_csv(runs / "summary.csv")
    assert list(summary["method"]) == ["cooperative_training"]
    assert not [c for c in summary.columns if c.endswith("_std")]  # one fold: no (empty) std columns
    for column in ("ACDC", "ACDC_LV_Dice", "RandomBias", "MM", "MM_RV_Dice", "avg_all", "avg_ood", "MM_HD95"):
        assert column in summary.columns
    ds = ["ACDC", "RandomBias", "RandomMotion", "MM"]
    assert summary.loc[0, "avg_all"] == pytest.approx(summary.loc[0, ds].mean(), abs=1e-3)
    assert summary.loc[0, "avg_ood"] == pytest.approx(summary.loc[0, ds[1:]].mean(), abs=1e-3)
    md = (runs / "summary.md").read_text()
    assert "RandomSpike" in md and "RandomGhosting" in md  # skipped sets are reported
    warnings = (runs / "warnings.txt").read_text()
    assert "RandomGhosting: test set folder" in warnings and "does not exist" in warnings
    assert "RandomSpike: no subject" in warnings
    assert (runs / "dice_boxplot.png").stat().st_size > 1000


def test_checkpoint_missing_a_module_file_names_it(tmp_path, fresh_checkpoint, capsys):
    broken = tmp_path / "m" / "0" / "model" / "best" / "checkpoints"
    shutil.copytree(fresh_checkpoint, broken)
    (broken / "shape_decoder.pth").unlink()
    code = main(["--methods", f"m={broken}", "--data_root", str(tmp_path), "--no_progress"])
    assert code == 2
    assert "shape_decoder.pth" in capsys.readouterr().err


def test_checkpoint_of_another_architecture_names_the_file(tmp_path, fresh_checkpoint, capsys):
    other = tmp_path / "other" / "checkpoints"
    shutil.copytree(fresh_checkpoint, other)
    state = torch.load(other / "segmentation_decoder.pth", weights_only=True)
    last = sorted(k for k in state if k.endswith("weight"))[-1]
    state[last] = torch.zeros((7,) + tuple(state[last].shape[1:]))  # e.g. a 7-class decoder
    torch.save(state, other / "segmentation_decoder.pth")
    code = main(["--methods", f"x={other}", "--data_root", str(tmp_path), "--no_progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "segmentation_decoder.pth" in err


def test_script_runs_as_a_file_and_as_a_module():
    for command in (
        [sys.executable, "medseg/test_ACDC_triplet_segmentation.py", "--help"],
        [sys.executable, "-m", "medseg.cli.test", "--help"],
    ):
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "--runs_dir" in done.stdout and "--batch_slices" in done.stdout


def _acdc_only(root: Path, seed: int) -> Path:
    write_tiny_acdc(root / "ACDC", pids=["007"], shape=SHAPE, seed=seed)
    return root


def test_output_dir_holds_every_report_and_data_roots_never_overwrite_each_other(tmp_path, fresh_checkpoint):
    checkpoint = tmp_path / "saved" / "coop" / "0" / "model" / "best" / "checkpoints"
    shutil.copytree(fresh_checkpoint, checkpoint)
    first, second = _acdc_only(tmp_path / "first", seed=1), _acdc_only(tmp_path / "second", seed=2)
    common = ["--methods", f"coop={checkpoint}", "--datasets", "ACDC", "--no_progress", "--batch_slices", "4"]

    out = tmp_path / "reports"
    assert main([*common, "--data_root", str(first), "--output_dir", str(out)]) == 0
    assert not (checkpoint.parent / "report").exists()  # nothing beside the checkpoint
    folder = out / "coop" / "0" / "ACDC"
    assert {"iter_2_summary.csv", "iter_2_detailed.csv", "iter_2_info.json"} <= {p.name for p in folder.iterdir()}
    assert {p.name for p in out.iterdir()} >= {"summary.csv", "summary.md", "warnings.txt", "coop"}
    assert f"Test data: `{first.resolve()}`" in (out / "summary.md").read_text()

    # without --output_dir: beside the checkpoint, recording the data root; another data root gets its own folder
    assert main([*common, "--data_root", str(first)]) == 0
    assert main([*common, "--data_root", str(second)]) == 0
    reports = sorted((checkpoint.parent / "report").iterdir())
    assert [p.name for p in reports][0] == "ACDC" and reports[1].name.startswith("ACDC@second-") and len(reports) == 2
    for report, root in zip(reports, (first, second)):
        info = json.loads((report / "iter_2_info.json").read_text())
        assert info["data_root"] == str(root.resolve()) and info["data_folder"] == str((root / "ACDC").resolve())
    before = (reports[0] / "iter_2_detailed.csv").read_text()
    assert main([*common, "--data_root", str(first)]) == 0  # the same data root rewrites its own reports only
    assert sorted((checkpoint.parent / "report").iterdir()) == reports
    assert (reports[0] / "iter_2_detailed.csv").read_text() == before


def test_precision_is_validated_for_the_device(tmp_path, fresh_checkpoint, capsys):
    with pytest.raises(SystemExit):
        main(["--methods", f"m={fresh_checkpoint}", "--data_root", str(tmp_path), "--precision", "fp16",
              "--device", "cpu", "--no_progress"])
    err = capsys.readouterr().err
    assert "error: --precision: 'fp16' cannot run on cpu: fp16 needs a CUDA device" in err and "Traceback" not in err


@pytest.mark.skipif(not cpu_supports_bf16(), reason="CPU without native bf16")
def test_bf16_test_run_reports_dice_close_to_fp32(tmp_path, fresh_checkpoint):
    data = _acdc_only(tmp_path / "data", seed=1)
    dice = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        assert main(["--methods", f"m={fresh_checkpoint}", "--data_root", str(data), "--datasets", "ACDC",
                     "--precision", precision, "--no_progress", "--output_dir", str(out)]) == 0
        dice[precision] = pd.read_csv(out / "m" / "0" / "ACDC" / "iter_2_detailed.csv")[DICE].to_numpy()
    assert dice["bf16"].shape == dice["fp32"].shape == (2, 3) and np.isfinite(dice["bf16"]).all()
    # tolerance: a few class flips near decision boundaries (see test_predict) move a Dice by a few points at most
    assert np.allclose(dice["bf16"], dice["fp32"], atol=0.05)


def test_interrupted_retest_leaves_no_previous_tables_and_reports_name_their_weights(tmp_path, fresh_checkpoint,
                                                                                    monkeypatch):
    """Tables of a previous run do not survive the start of a new one into the same folder (an interrupted re-test
    cannot look complete), and each report records which weights it measured (epoch, SHA-256 of the modules)."""
    import medseg.evaluation.runner as runner
    from medseg.experiments.state import hash_files

    data = _acdc_only(tmp_path / "data", seed=1)
    out = tmp_path / "reports"
    args = ["--methods", f"coop={fresh_checkpoint}", "--datasets", "ACDC", "--no_progress", "--batch_slices", "4",
            "--data_root", str(data), "--output_dir", str(out)]
    assert main(args) == 0
    info = json.loads(next(out.rglob("iter_2_info.json")).read_text())
    assert info["checkpoint_sha256"] == hash_files(sorted(fresh_checkpoint.glob("*.pth")))
    assert info["checkpoint_epoch"] is None or isinstance(info["checkpoint_epoch"], int)
    assert info["tested"]
    assert (out / "summary.csv").is_file()

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "evaluate_dataset", interrupted)
    assert main(args) == 130
    assert not any((out / name).exists() for name in ("summary.csv", "summary.md", "dice_boxplot.png", "warnings.txt"))
