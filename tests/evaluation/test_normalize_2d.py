"""``--normalize_2D``: per-slice min–max of the test images, off by default as published."""

from __future__ import annotations

import json
import shutil

import torch
from conftest import EchoModel

from medseg.data.base_dataset import BaseSegmentationDataset
from medseg.evaluation.reports import evaluate_dataset
from medseg.cli.test import build_parser, main
from medseg.phantom.tiny import write_subjects, write_tiny_acdc


class InputSpy(EchoModel):
    """Records the per-slice minimum and maximum of every input it predicts."""

    def __init__(self) -> None:
        super().__init__()
        self.ranges: list[tuple[float, float]] = []

    def predict(self, x: torch.Tensor, softmax: bool = False, n_iter: int | None = None) -> torch.Tensor:
        self.ranges += list(zip(x.amin(dim=(1, 2, 3)).tolist(), x.amax(dim=(1, 2, 3)).tolist()))
        return super().predict(x, softmax, n_iter)


def test_flag_is_off_by_default():
    base = ["--methods", "m=x", "--data_root", "."]
    assert build_parser().parse_args(base).normalize_2D is False
    assert build_parser().parse_args([*base, "--normalize_2D"]).normalize_2D is True


def test_evaluate_dataset_normalises_each_slice_only_when_asked(tmp_path):
    root = write_subjects(tmp_path / "MM", ["A00X"], shape=(3, 40, 48), frames=("ED",))
    source = BaseSegmentationDataset(root, ["A00X"], frame="ED", new_spacing=None)
    stored, scaled = InputSpy(), InputSpy()
    evaluate_dataset(stored, source, "MM")
    evaluate_dataset(scaled, source, "MM", normalize_2D=True)
    assert len(stored.ranges) == len(scaled.ranges) == 3
    assert all(hi < 0.999 for _, hi in stored.ranges)  # stored intensities (the phantom never reaches 1)
    assert all(lo == 0.0 and abs(hi - 1.0) < 1e-6 for lo, hi in scaled.ranges)


def test_cli_passes_the_flag_and_records_it(tmp_path, fresh_checkpoint):
    data = tmp_path / "data"
    write_tiny_acdc(data / "ACDC", pids=["007"], shape=(2, 40, 48))
    checkpoint = tmp_path / "runs" / "m" / "0" / "model" / "best" / "checkpoints"
    shutil.copytree(fresh_checkpoint, checkpoint)
    for flag in ([], ["--normalize_2D"]):
        out = tmp_path / f"out{len(flag)}"
        code = main(["--methods", f"m={checkpoint}", "--data_root", str(data), "--datasets", "ACDC",
                     "--no_progress", "--output_dir", str(out), *flag])
        assert code == 0
        (info_path,) = out.rglob("iter_2_info.json")
        assert json.loads(info_path.read_text())["normalize_2D"] is bool(flag)
