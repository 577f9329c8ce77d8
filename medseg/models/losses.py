"""Loss functions of the method.

Two cross-entropy variants exist in the published code and they differ on soft (4-D) targets:

* :func:`masking_cross_entropy_2d` (``model_util.cross_entropy_2D``): used only inside targeted latent masking.
* :func:`cross_entropy_2d` (``custom_loss.cross_entropy_2D``): used by :func:`basic_loss_fn` for every training loss.
"""

from __future__ import annotations

from torch import Tensor
from torch.nn import functional as F


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


__all__ = ["basic_loss_fn", "cross_entropy_2d", "masking_cross_entropy_2d"]
