"""Loss functions of the method and one-hot targets.

Two cross-entropy variants exist in the published code and they differ on soft (4-D) targets:

* :func:`masking_cross_entropy_2d` (``model_util.cross_entropy_2D``): used only inside targeted latent masking;
  :func:`cross_entropy_2D` is it with the published signature (class weights, sum instead of mean).
* :func:`cross_entropy_2d` (``custom_loss.cross_entropy_2D``): used by :func:`basic_loss_fn` for every training loss.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def make_one_hot(y: Tensor, num_classes: int = 4) -> Tensor:
    """Integer label map ``(N, H, W)`` -> one-hot ``(N, num_classes, H, W)`` of the default float dtype (float32)."""
    if y.ndim != 3:
        raise ValueError(f"y must be an (N, H, W) label map, got shape {tuple(y.shape)}")
    if y.is_floating_point():
        raise TypeError(f"y must be an integer tensor, got dtype {y.dtype}")
    return F.one_hot(y.long(), num_classes).permute(0, 3, 1, 2).to(torch.get_default_dtype())


def _check_pair(input: Tensor, target: Tensor) -> None:
    if input.ndim != 4:
        raise ValueError(f"input must be (N, C, H, W) logits, got shape {tuple(input.shape)}")
    if target.ndim == 3:
        if target.shape != (input.shape[0], *input.shape[2:]):
            expected = (input.shape[0], *input.shape[2:])
            raise ValueError(f"label map must be (N, H, W) = {expected}, got {tuple(target.shape)}")
    elif target.ndim == 4:
        if target.shape != input.shape:
            raise ValueError(f"soft target must have the input shape {tuple(input.shape)}, got {tuple(target.shape)}")
    else:
        raise ValueError(f"target must be (N, H, W) or (N, C, H, W), got shape {tuple(target.shape)}")


def masking_cross_entropy_2d(input: Tensor, target: Tensor) -> Tensor:
    """Cross entropy used inside targeted masking (the published ``model_util`` version).

    Args:
        input: logits ``(N, C, H, W)``.
        target: integer label map ``(N, H, W)``: standard mean CE over the M = N*H*W pixels; or a 4-D tensor
            ``(N, C, H, W)`` treated as **logits**: ``q = softmax(target)``, ``L = -(1/(M*C)) sum q log p`` (note 1/C).

    Returns:
        Scalar loss.
    """
    _check_pair(input, target)
    log_p = F.log_softmax(input, dim=1)
    if target.ndim == 3:
        picked = log_p.gather(1, target.long().unsqueeze(1))  # (N, 1, H, W)
        return -picked.sum() / (picked.numel() + 1e-10)
    q = F.softmax(target, dim=1)
    return -(q * log_p).mean()


def cross_entropy_2D(  # noqa: N802 (published name)
    input: Tensor, target: Tensor, weight: Tensor | None = None, size_average: bool = True
) -> Tensor:
    """The masking cross entropy (the published ``model_util`` version) with the published signature.

    Args:
        input: logits ``(N, C, H, W)``.
        target: integer label map ``(N, H, W)`` or a 4-D tensor treated as logits (see
            :func:`masking_cross_entropy_2d`).
        weight: optional class weights ``(C,)`` for a label-map target, used as ``softmax(weight) * C`` (as
            published; training never passes weights).
        size_average: mean over the pixels (True) or their sum.

    Returns:
        Scalar loss.

    Raises:
        ValueError: for ``weight`` with a 4-D target (the published function defines weights for label maps only).
    """
    if weight is None and size_average:
        return masking_cross_entropy_2d(input, target)
    if target.ndim == 4:
        if weight is not None:
            raise ValueError("cross_entropy_2D: weight is defined for (N, H, W) label-map targets only")
        n_pixels = input.shape[0] * input.shape[2] * input.shape[3]
        return masking_cross_entropy_2d(input, target) * n_pixels
    log_p = F.log_softmax(input, dim=1)
    picked = log_p.gather(1, target.long().unsqueeze(1))[:, 0]  # (N, H, W)
    if weight is not None:
        if weight.shape != (input.shape[1],):
            raise ValueError(f"weight must have shape ({input.shape[1]},), got {tuple(weight.shape)}")
        class_weight = F.softmax(weight.to(log_p), dim=0) * input.shape[1]
        picked = picked * class_weight[target.long()]
    total = -picked.sum()
    return total / (picked.numel() + 1e-10) if size_average else total


def cross_entropy_2d(input: Tensor, target: Tensor, is_gt: bool = False) -> Tensor:
    """Cross entropy used by every training loss (the published ``custom_loss`` version).

    Args:
        input: logits ``(N, C, H, W)``.
        target: integer label map ``(N, H, W)`` (mean NLL over all pixels), or ``(N, C, H, W)`` soft target:
            ``q = softmax(target)`` (or ``target`` itself when ``is_gt``),
            ``L = -(1/M) sum_pixels sum_classes q log p``.
        is_gt: treat a 4-D target as probabilities rather than logits.

    Returns:
        Scalar loss.
    """
    _check_pair(input, target)
    if target.ndim == 3:
        return F.cross_entropy(input, target.long())
    q = target if is_gt else F.softmax(target, dim=1)
    log_p = F.log_softmax(input, dim=1)
    return -(q * log_p).sum(dim=1).mean()


def basic_loss_fn(pred: Tensor, target: Tensor, loss_type: str = "cross entropy") -> Tensor:
    """Training loss between a prediction and a target.

    Args:
        pred: logits ``(N, C, H, W)`` for ``'cross entropy'``; any tensor for ``'mse'``/``'l1'``.
        target: label map ``(N, H, W)`` or soft target for cross entropy; same shape as ``pred`` for mse/l1.
        loss_type: ``'cross entropy'``, ``'mse'`` (mean squared error) or ``'l1'``.

    Raises:
        NotImplementedError: for another ``loss_type``.
    """
    if loss_type == "cross entropy":
        return cross_entropy_2d(pred, target)
    if loss_type in ("mse", "l1"):
        if pred.shape != target.shape:
            raise ValueError(f"{loss_type}: pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        return F.mse_loss(pred, target) if loss_type == "mse" else F.l1_loss(pred, target)
    raise NotImplementedError(f"loss_type {loss_type!r} is not implemented; expected 'cross entropy', 'mse' or 'l1'")


__all__ = ["basic_loss_fn", "cross_entropy_2D", "cross_entropy_2d", "make_one_hot", "masking_cross_entropy_2d"]
