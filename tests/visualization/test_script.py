"""scripts/visualize_hard_examples.py: PNG figures from a checkpoint and a subject; clear errors for bad inputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from medseg.phantom.tiny import write_subjects

from medseg.models.advanced_triplet_recon_segmentation_model import AdvancedTripletReconSegmentationModel as Model

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "visualize_hard_examples.py"


def load_script():
    spec = importlib.util.spec_from_file_location("visualize_hard_examples", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return Model(use_gpu=False, device="cpu").save_model(tmp_path_factory.mktemp("model"), "best")


@pytest.fixture(scope="module")
def subject(tmp_path_factory) -> Path:
    return write_subjects(tmp_path_factory.mktemp("acdc"), ["007"], shape=(4, 72, 80)) / "007"


@pytest.mark.slow
def test_script_writes_the_figures(tmp_path, checkpoint, subject, single_thread):
    out = tmp_path / "figs"
    args = ["--checkpoint", str(checkpoint), "--subject", str(subject), "--out", str(out), "--device", "cpu"]
    assert load_script().main(args) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["hard_examples_fig1.png", "hard_examples_fig2.png", "hard_examples_fig3.png"]
    assert all((out / n).read_bytes()[:4] == b"\x89PNG" for n in names)


def test_script_writes_chosen_figures_of_a_chosen_slice(tmp_path, checkpoint, subject, single_thread):
    out = tmp_path / "figs"
    args = ["--checkpoint", str(checkpoint), "--subject", str(subject), "--out", str(out), "--slice", "3",
            "--figures", "3", "--prefix", "s3_", "--device", "cpu"]  # fmt: skip
    assert load_script().main(args) == 0
    assert [p.name for p in out.iterdir()] == ["s3_fig3.png"]


def test_script_refuses_a_checkpoint_that_does_not_match(tmp_path, subject, capsys):
    other = Model(use_gpu=False, device="cpu", num_classes=2).save_model(tmp_path / "two_classes", "best")
    code = load_script().main(["--checkpoint", str(other), "--subject", str(subject), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "segmentation_decoder.pth" in err and "does not match" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "change, message",
    [({"--subject": "missing"}, "does not exist"), ({"--checkpoint": "missing"}, "does not exist"),
     ({"--slice": "9"}, "--slice 9 out of range")],
)  # fmt: skip
def test_script_reports_bad_inputs(tmp_path, checkpoint, subject, capsys, change, message):
    options = {"--checkpoint": str(checkpoint), "--subject": str(subject), "--out": str(tmp_path / "o")}
    options.update({k: str(tmp_path / v) if v == "missing" else v for k, v in change.items()})
    code = load_script().main([item for pair in options.items() for item in pair])
    assert code == 2 and message in capsys.readouterr().err
