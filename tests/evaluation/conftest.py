"""Shared fixtures: a saved (freshly initialised) model checkpoint and a fast stand-in model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


class EchoModel:
    """Stand-in for the segmentation model: the 'logits' are a one-hot of ``round(image)`` (fast, exact)."""

    device = torch.device("cpu")

    def __init__(self, num_classes: int = 4) -> None:
        self.num_classes = num_classes
        self.calls: list[int] = []

    def predict(self, x: torch.Tensor, softmax: bool = False, n_iter: int | None = None) -> torch.Tensor:
        self.calls.append(x.shape[0])
        labels = x[:, 0].round().long().clamp(0, self.num_classes - 1)
        return torch.nn.functional.one_hot(labels, self.num_classes).permute(0, 3, 1, 2).float()


@pytest.fixture
def echo_model() -> EchoModel:
    return EchoModel()


@pytest.fixture(scope="session")
def fresh_checkpoint(tmp_path_factory) -> Path:
    """``.../model/best/checkpoints`` of a freshly initialised FCN_16_standard model (seeded)."""
    from medseg.models.advanced_triplet_recon_segmentation_model import AdvancedTripletReconSegmentationModel

    torch.manual_seed(0)
    model = AdvancedTripletReconSegmentationModel(device="cpu")
    root = tmp_path_factory.mktemp("ckpt")
    return model.save_model(root / "method" / "0" / "model", "best")
