"""Validation after every epoch (the published protocol): ``predict(n_iter=2)`` (FTN + one STN refinement), argmax,
one confusion matrix pooled over all pixels of all validation slices, Mean IoU over all classes including background.
Also reported (not used for model selection): the mean over the foreground classes of the pooled Dice,
``Dice_c = 2 IoU_c / (1 + IoU_c)`` from the same confusion matrix, and the image decoder's reconstruction quality
(:data:`RECON_NAMES`, when the model has an image decoder):

* ``recon/val_mse``: mean squared error of the clean reconstruction ``recon_image(x)`` over every pixel of the
  validation slices (eval mode);
* ``recon/val_psnr``: ``10 log10(range^2 / mse)`` with ``range`` = max − min of the validation images (dB);
* ``recon/hard_change``: how far masking the image code moves the decoded image, mean ``|masked − clean|`` of the
  hard-example grid (:func:`medseg.method.hard_examples.corruption_grid`, the figures' computation) on the
  first :data:`HARD_SLICES` validation slices at masked fraction :data:`HARD_THRESHOLD`, averaged over the dropout,
  channel and spatial masks (fixed seed, the caller's RNG untouched).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from medseg.evaluation.running_score import runningScore
from medseg.training.plots import MostForeground
from medseg.training.run_files import RECON_NAMES  # noqa: F401 (the names of ValidationResult.reconstruction)
from medseg.method.hard_examples import METHODS, corruption_grid, mean_abs_change

logger = logging.getLogger(__name__)

VALIDATION_N_ITER = 2
HARD_SLICES = 4
HARD_THRESHOLD = 0.5  # the largest masked fraction of the published training's random threshold


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
    reconstruction: dict[str, float] = field(default_factory=dict)  # RECON_NAMES -> value (empty without decoder)


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
    recon = _ReconStats() if hasattr(model, "recon_image") else None
    with torch.no_grad():
        for batch in loader:
            images = batch["image"].to(device, non_blocking=device.type == "cuda")
            gts = batch["label"]
            logits = model.predict(images, softmax=False, n_iter=VALIDATION_N_ITER)  # type: ignore[attr-defined]
            preds = logits.argmax(dim=1).cpu()
            score.update(gts.numpy(), preds.numpy())
            shown.add(images, gts, preds)
            if recon is not None:
                recon.add(images, model.recon_image(images))  # type: ignore[attr-defined]
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
        reconstruction=recon.values(model) if recon is not None else {},
    )


class _ReconStats:
    """Running sums of the clean reconstruction error, and the first slices for the hard-example change."""

    def __init__(self) -> None:
        self.sq, self.n, self.low, self.high = 0.0, 0, math.inf, -math.inf
        self.first: torch.Tensor | None = None

    def add(self, images: torch.Tensor, recon: torch.Tensor) -> None:
        diff = recon.float() - images.float()
        self.sq += float((diff * diff).sum())
        self.n += diff.numel()
        self.low, self.high = min(self.low, float(images.min())), max(self.high, float(images.max()))
        if self.first is None:
            self.first = images[:HARD_SLICES].detach().clone()
        elif self.first.shape[0] < HARD_SLICES:
            self.first = torch.cat([self.first, images[:HARD_SLICES - self.first.shape[0]]])

    def values(self, model: object) -> dict[str, float]:
        if not self.n:
            return {}
        mse = self.sq / self.n
        span = self.high - self.low
        psnr = 10.0 * math.log10(span * span / mse) if mse > 0 and span > 0 else math.nan
        return {"recon/val_mse": mse, "recon/val_psnr": psnr, "recon/hard_change": self._hard_change(model)}

    def _hard_change(self, model: object) -> float:
        if self.first is None or not hasattr(model, "perturb_latent_code"):
            return math.nan
        grid = corruption_grid(model, self.first, "image", methods=METHODS, thresholds=(HARD_THRESHOLD,), seed=0)
        return float(mean_abs_change(grid).mean())
