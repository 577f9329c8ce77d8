"""End-to-end training runs on tiny data: run layout, checkpoints, TensorBoard scalars, metrics.csv, the README
command line, and errors for bad resume targets."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from training_helpers import (  # noqa: F401
    COOPERATIVE,
    REPO_ROOT,
    STANDARD,
    cli_args,
    in_repo_root,
    run_dir,
    tiny_acdc,
    train_error,
)

from medseg.models.advanced_triplet_recon_segmentation_model import AdvancedTripletReconSegmentationModel
from medseg.cli.train import main
from medseg.training.run_files import LOSS_NAMES, RECON_NAMES, SCALAR_NAMES
from medseg.nn.precision import cpu_supports_bf16

pytestmark = pytest.mark.slow
MODULES = ("image_encoder", "image_decoder", "segmentation_decoder", "shape_encoder", "shape_decoder")


def read_metrics(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(("config", "name", "frames"), [
    (COOPERATIVE, "ACDC/cooperative_training", '["ES","ED"]'),
    (STANDARD, "ACDC/standard_training", '"ES"'),
])
def test_two_epoch_run_layout_checkpoints_and_logs(tiny_acdc: Path, tmp_path: Path, in_repo_root: Path, config: str,
                                                   name: str, frames: str) -> None:
    save_dir = tmp_path / "saved"
    code = main(cli_args(config, tiny_acdc, save_dir, "--log", "--set", "output.save_epoch_every_num_epochs=2",
                         frames=frames))
    assert code == 0
    run = run_dir(save_dir, name)
    assert (run / "config.json").is_file() and (run / "log" / "train.log").is_file()
    model_dir = run / "model"
    for folder in ("best", "0", "1"):  # best, epoch 0, and (1 + 1) % 2 == 0
        for module in MODULES:
            assert (model_dir / folder / "checkpoints" / f"{module}.pth").is_file()
        assert (model_dir / folder / "testing_segmentation_results" / "Seg_plots.png").is_file()
    model = AdvancedTripletReconSegmentationModel(checkpoint_dir=model_dir / "best" / "checkpoints", device="cpu")
    assert model.predict(torch.rand(1, 1, 32, 32), n_iter=2).shape == (1, 4, 32, 32)
    snapshot = torch.load(model_dir / "last" / "checkpoints" / "FCN_16_standard.pkl", weights_only=True)
    assert snapshot["epoch"] == 2 and snapshot["batches_done"] == 0 and set(snapshot["model_state"]) == set(MODULES)

    rows = read_metrics(run / "log" / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert all(r[k] != "" for r in rows for k in SCALAR_NAMES)
    hard = [float(r["loss/hard/total"]) for r in rows]
    assert all(h > 0 for h in hard) if "cooperative" in name else all(h == 0 for h in hard)
    # the image decoder's reconstruction quality, every epoch (both methods have the decoder)
    for r in rows:
        mse, psnr, change = (float(r[k]) for k in RECON_NAMES)
        assert mse > 0 and math.isfinite(psnr) and change > 0

    events = EventAccumulator(str(run / "log"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    # the hard-example losses are curves of cooperative training only (standard training has none: no zero curves)
    logged = [t for t in SCALAR_NAMES if "cooperative" in name or not t.startswith("loss/hard/")] + list(RECON_NAMES)
    assert set(events.Tags()["scalars"]) == set(logged)
    for tag in logged:
        assert [e.step for e in events.Scalars(tag)] == [0, 1]
    first = {tag: events.Scalars(tag)[0].value for tag in LOSS_NAMES if tag in logged}
    assert first["loss/standard/total"] == pytest.approx(float(rows[0]["loss/standard/total"]), rel=1e-5)
    if "cooperative" in name:
        assert "hard_examples/corrupted_image" in events.Tags()["images"]

    # resuming the finished run trains nothing and writes no new event file
    event_files = sorted((run / "log").glob("events.out.tfevents*"))
    assert len(event_files) == 1
    assert main(cli_args(config, tiny_acdc, save_dir, "--log", "--resume", "auto", "--set",
                         "output.save_epoch_every_num_epochs=2", frames=frames)) == 0
    assert sorted((run / "log").glob("events.out.tfevents*")) == event_files


def test_published_readme_command_starts(tiny_acdc: Path, tmp_path: Path, in_repo_root: Path) -> None:
    """The README line (data setting 10, batch 20, both frames), pointed at tiny data, stopped by max_iteration."""
    save_dir = tmp_path / "saved"
    argv = ["--json_config_path", "./config/ACDC/cooperative_training.json", "--cval", "0", "--data_setting", "10",
            "--log", "--seed", "40",
            "--set", f"data.root_dir={tiny_acdc}", "--set", "data.pad_size=[48,48,1]",
            "--set", "data.crop_size=[32,32,1]", "--set", "learning.n_epochs=1", "--set", "learning.max_iteration=2",
            "--save_dir", str(save_dir), "--n_workers", "0", "--no_progress"]
    assert main(argv) == 0
    run = run_dir(save_dir, "ACDC/cooperative_training", setting="10")
    rows = read_metrics(run / "log" / "metrics.csv")
    assert len(rows) == 1 and rows[0]["global_iteration"] == "2" and rows[0]["n_iterations"] == "2"
    assert (run / "model" / "best" / "checkpoints" / "image_encoder.pth").is_file()
    snapshot = torch.load(run / "model" / "last" / "checkpoints" / "FCN_16_standard.pkl", weights_only=True)
    assert (snapshot["epoch"], snapshot["batches_done"], snapshot["global_iteration"]) == (0, 2, 2)


def test_bad_resume_path_is_an_error(tiny_acdc: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = str(REPO_ROOT / "config" / "ACDC" / "standard_training.json")
    assert "missing.pkl" in train_error(capsys, cli_args(config, tiny_acdc, tmp_path, "--resume_pkl_path",
                                                         str(tmp_path / "missing.pkl")))
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"not a checkpoint")
    assert "garbage.pkl" in train_error(capsys, cli_args(config, tiny_acdc, tmp_path, "--resume_pkl_path",
                                                         str(garbage)))


def test_resume_auto_without_snapshot_starts_fresh(tiny_acdc: Path, tmp_path: Path) -> None:
    config = str(REPO_ROOT / "config" / "ACDC" / "standard_training.json")
    assert main(cli_args(config, tiny_acdc, tmp_path, "--resume", "auto", epochs=1)) == 0
    assert (run_dir(tmp_path, "ACDC/standard_training") / "model" / "best" / "checkpoints").is_dir()


def test_fp16_on_the_cpu_is_refused_before_anything_is_written(tiny_acdc: Path, tmp_path: Path, capsys) -> None:
    assert main(cli_args(COOPERATIVE, tiny_acdc, tmp_path, "--precision", "fp16", epochs=1)) == 2
    assert "config key 'learning.precision' (--precision): 'fp16' cannot run on cpu: fp16 needs a CUDA device" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    with pytest.raises(SystemExit):
        main(cli_args(COOPERATIVE, tiny_acdc, tmp_path, "--precision", "half"))


def test_bf16_where_native_records_the_precision_it_resolved_to(tiny_acdc: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``--precision bf16_where_native`` trains in fp32 on a CPU without native bf16 and in bf16 where it is native;
    config.json records the resolved precision, not the rule."""
    from medseg.config import load_config
    from medseg.nn import precision
    from medseg.training.entry import _resolved_precision

    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)
    assert main(cli_args(COOPERATIVE, tiny_acdc, tmp_path, "--precision", "bf16_where_native", epochs=1)) == 0
    run = run_dir(tmp_path)
    assert '"precision": "fp32"' in (run / "config.json").read_text()
    log = (run / "log" / "train.log").read_text()
    assert "learning.precision bf16_where_native: fp32 (cpu has no native bf16)" in log
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: True)
    config = load_config(COOPERATIVE, ["learning.precision=bf16_where_native"])
    resolved, line = _resolved_precision(config, torch.device("cpu"))
    assert resolved.to_dict()["learning"]["precision"] == "bf16"
    assert line == "learning.precision bf16_where_native: bf16 (cpu computes bf16 natively)"
    assert _resolved_precision(resolved, torch.device("cpu")) == (resolved, None)


def test_bf16_emulated_run_records_itself_and_emulates_every_convolution(tiny_acdc: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """``--precision bf16_emulated`` trains on any CPU: its config says so, its convolutions (forward and backward)
    run through the emulation with bf16 operands, and the checkpoints stay fp32."""
    from medseg.nn import precision

    seen: list[str] = []
    dispatch = precision._Bf16ProductsInFp32.__torch_dispatch__

    def spy(self, func, types, args=(), kwargs=None):
        if func in self._PRODUCTS:
            seen.append(f"{func.__name__}:{args[0].dtype}")
        return dispatch(self, func, types, args, kwargs)

    monkeypatch.setattr(precision._Bf16ProductsInFp32, "__torch_dispatch__", spy)
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)
    assert main(cli_args(COOPERATIVE, tiny_acdc, tmp_path, "--precision", "bf16_emulated", epochs=1)) == 0
    run = run_dir(tmp_path)
    assert '"precision": "bf16_emulated"' in (run / "config.json").read_text()
    assert {"convolution.default:torch.bfloat16", "convolution_backward.default:torch.bfloat16"} <= set(seen)
    rows = read_metrics(run / "log" / "metrics.csv")
    assert all(math.isfinite(float(rows[0][k])) for k in SCALAR_NAMES)
    state = torch.load(run / "model" / "best" / "checkpoints" / "image_encoder.pth", weights_only=True)
    assert all(t.dtype in (torch.float32, torch.int64) for t in state.values())


@pytest.mark.skipif(not cpu_supports_bf16(), reason="CPU without native bf16")
def test_bf16_run_trains_validates_and_saves_fp32_checkpoints(tiny_acdc: Path, tmp_path: Path) -> None:
    assert main(cli_args(COOPERATIVE, tiny_acdc, tmp_path, "--precision", "bf16", epochs=1)) == 0
    run = run_dir(tmp_path)
    assert '"precision": "bf16"' in (run / "config.json").read_text()
    rows = read_metrics(run / "log" / "metrics.csv")
    assert all(math.isfinite(float(rows[0][k])) for k in SCALAR_NAMES)
    state = torch.load(run / "model" / "best" / "checkpoints" / "image_encoder.pth", weights_only=True)
    assert all(t.dtype in (torch.float32, torch.int64) for t in state.values())
