"""Loading a trained model for testing and predicting whole slice stacks in chunks."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from medseg.models.advanced_triplet_recon_segmentation_model import AdvancedTripletReconSegmentationModel
from medseg.nn.blocks import set_compute_precision
from medseg.io.checkpoint import MANIFEST_NAME, load_modules, read_manifest
from medseg.nn.encoder_decoder import get_network

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

NETWORK_TYPE = "FCN_16_standard"
NUM_CLASSES = 4
CLASS_NAMES: dict[int, str] = {1: "LV", 2: "MYO", 3: "RV"}


def load_model(
    checkpoint_dir: PathLike,
    device: torch.device,
    n_iter: int = 2,
    num_classes: int = NUM_CLASSES,
    network_type: str = NETWORK_TYPE,
    precision: str = "fp32",
):
    """Build the cooperative model and load every module strictly from ``checkpoint_dir/<module>.pth``.

    Args:
        checkpoint_dir: e.g. ``.../model/best/checkpoints``.
        device: where the model runs.
        n_iter: 1 = FTN only, 2 = FTN + STN (the test protocol).
        num_classes: output classes including background.
        network_type: architecture name.
        precision: ``'fp32'``, ``'bf16'`` or ``'fp16'`` compute precision of the networks (see
            :mod:`medseg.nn.precision`; validate it for the device with ``check_precision`` first).

    Returns:
        An ``AdvancedTripletReconSegmentationModel`` in eval mode.

    Raises:
        FileNotFoundError: if the folder does not exist or lacks a module file (named by the model).
        RuntimeError / ValueError: from the strict load when a file belongs to another architecture (naming it).
    """
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        raise FileNotFoundError(f"checkpoint folder {checkpoint_dir} does not exist; expected a folder of <module>.pth")
    model = AdvancedTripletReconSegmentationModel(
        network_type=network_type,
        image_ch=1,
        num_classes=num_classes,
        n_iter=n_iter,
        checkpoint_dir=str(checkpoint_dir),
        device=device,
    )
    set_compute_precision(model.model.values(), precision)
    model.eval()
    return model


def check_checkpoint(
    checkpoint_dir: PathLike, num_classes: int = NUM_CLASSES, network_type: str = NETWORK_TYPE
) -> Path:
    """Strictly load every module file of ``checkpoint_dir`` into a fresh CPU network, without building the model.

    Cheaper than :func:`load_model` (no initialisation, no optimisers); used to validate all runs up front.

    Returns:
        The folder holding the ``<module>.pth`` files.

    Raises:
        FileNotFoundError: the folder or a module file is missing (naming it).
        ValueError: a file is not a weights-only checkpoint or belongs to another architecture (naming it).
    """
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        raise FileNotFoundError(f"checkpoint folder {checkpoint_dir} does not exist; expected a folder of <module>.pth")
    modules = get_network(network_type, 1, num_classes)
    return load_modules(modules, checkpoint_dir, torch.device("cpu"))


def predict_stack(
    model, image: torch.Tensor | np.ndarray, n_iter: int = 2, batch_slices: int = 10, device: torch.device | None = None
) -> np.ndarray:
    """Predict a slice stack in chunks of ``batch_slices`` and take the argmax.

    Args:
        model: object with ``predict(x, softmax=False, n_iter=...) -> (B, K, H, W)`` logits.
        image: ``(N, 1, H, W)`` float stack (H, W usually 192).
        n_iter: number of network passes (1 = FTN, 2 = FTN + STN).
        batch_slices: slices per forward pass (≥ 1).
        device: device of the model; defaults to ``model.device`` or CPU.

    Returns:
        ``labels (N, H, W) uint8``.
    """
    if batch_slices < 1:
        raise ValueError(f"batch_slices must be >= 1, got {batch_slices}")
    x = torch.as_tensor(image, dtype=torch.float32)
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"image stack must be (N, 1, H, W), got shape {tuple(x.shape)}")
    if device is None:
        device = getattr(model, "device", torch.device("cpu"))
    labels = np.empty((x.shape[0],) + tuple(x.shape[2:]), dtype=np.uint8)
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_slices):
            chunk = x[start : start + batch_slices].to(device)
            logits = model.predict(chunk, softmax=False, n_iter=n_iter)  # (b, K, H, W)
            labels[start : start + chunk.shape[0]] = logits.argmax(dim=1).to("cpu", torch.uint8).numpy()
    return labels


PUBLISHED_SPACING_MM = 1.36719  # the preprocessing grid, which the published test protocol assumes


def training_grid(checkpoint_dir: PathLike) -> tuple[float | None, Path | None]:
    """In-plane spacing (mm) a model was trained at, and the file that says so.

    Looked up first in the checkpoint folder's ``manifest.json`` (``spacing_mm``, written with the weights since
    medseg records it, so a copied folder keeps it), then in ``data.new_spacing`` of the run's ``config.json`` three
    folders up (``<run>/model/<tag>/checkpoints``). ``(None, None)`` when neither exists (a published checkpoint
    folder, or a medseg folder of an older version copied out of its run): callers then assume
    :data:`PUBLISHED_SPACING_MM` and should say so.

    Raises:
        ValueError: a record exists but does not hold a positive finite spacing (naming the file).
    """
    directory = Path(checkpoint_dir)
    manifest = read_manifest(directory) if (directory / MANIFEST_NAME).is_file() else None
    if manifest is not None and "spacing_mm" in manifest:
        return _positive_spacing(manifest["spacing_mm"], directory / MANIFEST_NAME, "spacing_mm"), \
            directory / MANIFEST_NAME
    parents = directory.resolve().parents
    config = parents[2] / "config.json" if len(parents) > 2 else None
    if config is None or not config.is_file():
        return None, None
    try:
        spacing = json.loads(config.read_text())["data"].get("new_spacing")
    except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as err:
        raise ValueError(f"{config}: cannot read data.new_spacing ({err})") from None
    if spacing is None:
        return PUBLISHED_SPACING_MM, config
    if not isinstance(spacing, list) or not spacing:
        raise ValueError(f"{config}: data.new_spacing: expected [x, y(, z)] in mm, got {spacing!r}")
    return _positive_spacing(spacing[0], config, "data.new_spacing"), config


def _positive_spacing(value: object, path: Path, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ValueError(f"{path}: {key}: expected a positive spacing in mm, got {value!r}")
    return float(value)


def checkpoint_spacing(checkpoint_dir: PathLike) -> float | None:
    """In-plane spacing (mm) a model was trained at (:func:`training_grid`); None when no record of it exists, in
    which case the preprocessing's 1.36719 mm is assumed."""
    return training_grid(checkpoint_dir)[0]


def unknown_grid_note(checkpoint_dir: PathLike, override: str) -> str:
    """The warning for a checkpoint folder without a record of its training grid."""
    return (f"{checkpoint_dir}: no record of the grid the model was trained on (no spacing_mm in its manifest.json, "
            f"no run config.json three folders up): assuming the published {PUBLISHED_SPACING_MM} mm; if it was "
            f"trained on another grid, pass {override}")
