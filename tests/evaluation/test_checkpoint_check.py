"""One checkpoint check for every tool that loads a checkpoint folder (medseg-test, medseg-predict, the figure
script, the notebook): a manifest that lists no file is refused; a folder without a grid record is warned about."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from medseg.io.checkpoint import MANIFEST_NAME, CheckpointIntegrityError


def _with_manifest_files(fresh_checkpoint: Path, tmp_path: Path, files) -> Path:
    folder = tmp_path / "method" / "0" / "model" / "best" / "checkpoints"
    shutil.copytree(fresh_checkpoint, folder)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["files"] = files
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize("files", [{}, None])
def test_a_manifest_listing_no_file_is_refused_by_every_loader(fresh_checkpoint: Path, tmp_path: Path, files) -> None:
    from medseg.evaluation.inference import check_checkpoint, load_model
    from medseg.models.advanced_triplet_recon_segmentation_model import AdvancedTripletReconSegmentationModel

    folder = _with_manifest_files(fresh_checkpoint, tmp_path, files)
    expected = rf"{folder / MANIFEST_NAME}: expected an entry \(SHA-256 and size\) for every module file, got none"
    with pytest.raises(CheckpointIntegrityError, match=expected):
        load_model(folder, torch.device("cpu"))  # medseg-predict, the figure script, the notebook, medseg-test
    with pytest.raises(CheckpointIntegrityError, match=expected):
        check_checkpoint(folder)  # medseg-test's up-front check
    with pytest.raises(CheckpointIntegrityError, match=expected):
        AdvancedTripletReconSegmentationModel(device="cpu", checkpoint_dir=str(folder))


def test_a_file_missing_from_the_manifest_is_refused(fresh_checkpoint: Path, tmp_path: Path) -> None:
    from medseg.evaluation.inference import load_model

    listed = json.loads((fresh_checkpoint / MANIFEST_NAME).read_text())["files"]
    listed.pop("image_decoder.pth")
    folder = _with_manifest_files(fresh_checkpoint, tmp_path, listed)
    with pytest.raises(CheckpointIntegrityError, match="got none for image_decoder.pth"):
        load_model(folder, torch.device("cpu"))


def test_the_figures_warn_about_a_checkpoint_without_a_grid_record(fresh_checkpoint: Path, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from medseg.visualization import checkpoint_spacing

    folder = tmp_path / "copied" / "checkpoints"  # copied out of its run: no config.json three folders up
    shutil.copytree(fresh_checkpoint, folder)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest.pop("spacing_mm", None)
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING):
        assert checkpoint_spacing(folder) is None
    assert any("no record of the grid the model was trained on" in r.getMessage() for r in caplog.records)
