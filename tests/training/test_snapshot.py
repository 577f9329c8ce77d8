"""The one run-snapshot format: every writer writes it, and every reader (medseg-train's resume, the published
model API) reads it as well as the published snapshot format."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from training_helpers import REPO_ROOT, cli_args, run_dir, tiny_acdc, train_single_threaded  # noqa: F401

from medseg.models.advanced_triplet_recon_segmentation_model import AdvancedTripletReconSegmentationModel
from medseg.training import snapshot as snapshots

STD = str(REPO_ROOT / "config" / "ACDC" / "standard_training.json")
SNAPSHOT = Path("model") / "last" / "checkpoints" / "FCN_16_standard.pkl"
PUBLISHED_KEYS = ("network_type", "epoch", "model_state", "optimizer_state")
STD_RUN = "ACDC/standard_training"


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def one_epoch_snapshot(tiny_acdc: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """The snapshot of a finished one-epoch standard run."""
    save_dir = tmp_path_factory.mktemp("one_epoch")
    assert train_single_threaded(cli_args(STD, tiny_acdc, save_dir, epochs=1)) == 0
    return run_dir(save_dir, STD_RUN) / SNAPSHOT


def _published_model(path: Path) -> AdvancedTripletReconSegmentationModel:
    model = AdvancedTripletReconSegmentationModel(use_gpu=False)
    model.load_snapshots(path)
    return model


def test_every_writer_writes_the_one_format(one_epoch_snapshot: Path, tmp_path: Path) -> None:
    run = _load(one_epoch_snapshot)  # medseg-train's
    model = _published_model(one_epoch_snapshot)
    api = _load(model.save_snapshots(tmp_path, epoch=1))  # the published API's
    for snapshot in (run, api):
        assert snapshot["format"] == snapshots.SNAPSHOT_FORMAT and set(PUBLISHED_KEYS) <= set(snapshot)
        assert set(snapshot["model_state"]) == set(snapshot["optimizer_state"]) == set(model.model)
    assert run["global_iteration"] > 0 and "rng" in run and "fingerprint" in run
    assert not {"global_iteration", "rng", "fingerprint"} & set(api)  # the API knows only the epoch
    for name, state in run["model_state"].items():
        assert all(torch.equal(state[key], api["model_state"][name][key]) for key in state)


def test_medseg_train_resumes_a_published_snapshot_and_one_of_the_published_api(  # noqa: F811 (tiny_acdc)
        one_epoch_snapshot: Path, tiny_acdc: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = _load(one_epoch_snapshot)
    published = tmp_path / "published" / "FCN_16_standard.pkl"  # as the published code wrote it: four keys
    published.parent.mkdir()
    torch.save({key: run[key] for key in PUBLISHED_KEYS}, published)
    api = _published_model(published).save_snapshots(tmp_path / "api", epoch=1)
    for name, source in (("from_published", published), ("from_api", api)):
        save_dir = tmp_path / name
        caplog.clear()
        assert train_single_threaded(cli_args(STD, tiny_acdc, save_dir, "--resume_pkl_path", str(source),
                                              epochs=2)) == 0
        assert "has no config fingerprint" in caplog.text
        resumed = _load(run_dir(save_dir, STD_RUN) / SNAPSHOT)
        assert resumed["format"] == snapshots.SNAPSHOT_FORMAT and resumed["epoch"] == 2
        assert resumed["global_iteration"] > 0  # counted from 0: the published file has no counters


def test_the_published_api_reads_every_snapshot(one_epoch_snapshot: Path, tmp_path: Path) -> None:
    run = _load(one_epoch_snapshot)
    published = tmp_path / "published.pkl"
    torch.save({key: run[key] for key in PUBLISHED_KEYS}, published)
    for path in (one_epoch_snapshot, published):
        model = AdvancedTripletReconSegmentationModel(use_gpu=False)
        assert model.load_snapshots(path) == run["epoch"]
        for name, module in model.model.items():
            state = module.state_dict()
            assert all(torch.equal(state[key], run["model_state"][name][key]) for key in state)
    other = AdvancedTripletReconSegmentationModel(network_type="FCN_16_standard_share_code", use_gpu=False)
    with pytest.raises(ValueError, match="network_type"):
        other.load_snapshots(published)


def test_one_function_per_snapshot_name() -> None:
    """No two functions of the package share a snapshot function's name; the former paths are re-exports."""
    from medseg.io import checkpoint as module_checkpoints
    from medseg.training import checkpoint as former

    defined: dict[str, list[str]] = {}
    for path in sorted((REPO_ROOT / "medseg").rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and "snapshot" in node.name:
                defined.setdefault(node.name, []).append(str(path.relative_to(REPO_ROOT)))
    assert defined["save_snapshot"] == defined["load_snapshot"] == ["medseg/training/snapshot.py"]
    assert all(len(paths) == 1 for paths in defined.values()), defined
    assert former.save_snapshot is snapshots.save_snapshot and former.load_snapshot is snapshots.load_snapshot
    assert not hasattr(module_checkpoints, "save_snapshot") and not hasattr(module_checkpoints, "load_snapshot")
