"""Validation after every epoch (spec c.5, protocol kept): ``predict(n_iter=2)`` (FTN + one STN refinement), argmax,
one confusion matrix pooled over all pixels of all validation slices, Mean IoU over all classes including background.
Also reported (not used for model selection): the mean over the foreground classes of the pooled Dice,
``Dice_c = 2 IoU_c / (1 + IoU_c)`` from the same confusion matrix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from medseg.models.running_score import runningScore
from medseg.training.plots import MostForeground

logger = logging.getLogger(__name__)

VALIDATION_N_ITER = 2


@dataclass
class ValidationResult:
    """Scores and the validation slices with the most foreground, resized for the Input/GT/Predict figure."""

    mean_iou: float
    mean_acc: float
    class_iou: dict[int, float]
    images: torch.Tensor | None = None
    ground_truths: torch.Tensor | None = None
    predictions: torch.Tensor | None = None
    mean_dice: float = float("nan")


def foreground_dice(class_iou: dict[int, float]) -> float:
    """Mean over classes >= 1 of the pooled Dice ``2 IoU / (1 + IoU)`` (NaN classes skipped; NaN if none)."""
    values = [2.0 * v / (1.0 + v) for c, v in class_iou.items() if c >= 1 and v == v]
    return float(sum(values) / len(values)) if values else float("nan")


def validate(model: object, loader: DataLoader, num_classes: int, device: torch.device) -> ValidationResult:
    """Run the whole validation set once through ``model.predict(x, n_iter=2)``.

    Args:
        model: object with ``predict(x (N, 1, H, W), softmax=False, n_iter=2) -> logits (N, C, H, W)``.
        loader: validation batches ``{'image': (N, 1, H, W), 'label': (N, H, W)}``.
        num_classes: classes of the confusion matrix (background included).
        device: where the model lives.
    """
    score = runningScore(num_classes)
    images = gts = preds = None
    shown = MostForeground()
    with torch.no_grad():
        for batch in loader:
            images = batch["image"].to(device, non_blocking=device.type == "cuda")
            gts = batch["label"]
            logits = model.predict(images, softmax=False, n_iter=VALIDATION_N_ITER)  # type: ignore[attr-defined]
            preds = logits.argmax(dim=1).cpu()
            score.update(gts.numpy(), preds.numpy())
            shown.add(images, gts, preds)
    if images is None:
        logger.warning("validation set is empty: scores are NaN")
        return ValidationResult(float("nan"), float("nan"), {})
    scores = score.get_scores()
    images, gts, preds = shown.tensors()  # type: ignore[misc]
    class_iou = dict(scores["Class IoU"])  # type: ignore[arg-type]
    return ValidationResult(
        mean_iou=float(scores["Mean IoU"]),  # type: ignore[arg-type]
        mean_acc=float(scores["Mean Acc"]),  # type: ignore[arg-type]
        class_iou=class_iou,
        mean_dice=foreground_dice(class_iou),
        images=images,
        ground_truths=gts,
        predictions=preds,
    )
