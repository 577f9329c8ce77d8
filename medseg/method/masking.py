"""Latent-code masking: the hard-example generator of cooperative training.

A latent code is masked either by channel dropout or by targeted masking, which drops the channels or positions whose
signed mean gradient of a task loss is largest. Sampling is split from applying: :func:`targeted_mask_scores`
computes the signed mean gradients, :func:`sample_threshold` and :func:`top_fraction_mask` draw and build the mask,
and the public functions with the published signatures (:func:`mask_latent_code_channel_wise`,
:func:`mask_latent_code_spatial_wise`, :func:`mask_latent_code_dropout`, :func:`perturb_latent_code`) compose them.
Every random draw accepts an optional ``torch.Generator`` (``None`` uses torch's global RNG).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from medseg.method.losses import make_one_hot, masking_cross_entropy_2d
from medseg.method.mask_options import MASK_LOSSES, MASK_TYPES, PERTURB_TYPES

Decoder = Callable[[Tensor], Tensor]


class LatentPerturbation(NamedTuple):
    """Result of :func:`perturb_latent_code`: the masked code, the mask that produced it and the method used."""

    code: Tensor
    mask: Tensor
    method: str


# ----------------------------------------------------------------------------------------------------------------------
# helpers


def host_to_device(values: Tensor, device: torch.device | str) -> Tensor:
    """``values`` (drawn on the CPU) on ``device`` without making the host wait: a copy to a GPU goes through pinned
    memory with ``non_blocking=True`` (a plain copy from pageable memory synchronises with the GPU)."""
    device = torch.device(device)
    if values.device == device or device.type != "cuda" or values.device.type != "cpu":
        return values.to(device)
    return values.pin_memory().to(device, non_blocking=True)


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """U(0, 1) samples on ``device``, drawn from ``generator`` (on the generator's device) when given."""
    if generator is None:
        return torch.rand(shape, device=device)
    return host_to_device(torch.rand(shape, generator=generator, device=generator.device), device)


def sample_threshold(max_threshold: float, random_threshold: bool, generator: torch.Generator | None = None) -> float:
    """Masked fraction p: ``U(0, 1) * max_threshold`` (one draw) if ``random_threshold``, else ``max_threshold``."""
    if not random_threshold:
        return float(max_threshold)
    device = torch.device("cpu") if generator is None else generator.device
    return float(_uniform((1,), generator, device)) * max_threshold


# ----------------------------------------------------------------------------------------------------------------------
# targeted masking


def _probe_loss(output: Tensor, label: Tensor, loss_type: str, num_classes: int) -> Tensor:
    if loss_type == "ce":
        return masking_cross_entropy_2d(output, label)
    if label.ndim < output.ndim:
        if num_classes != output.shape[1]:
            raise ValueError(
                f"num_classes={num_classes} does not match the decoder output channels {output.shape[1]} "
                f"needed to one-hot encode the label map for loss {loss_type!r}"
            )
        target = make_one_hot(label, num_classes)
    else:
        target = label.to(output.dtype)
    if target.shape != output.shape:
        raise ValueError(f"masking target shape {tuple(target.shape)} != decoder output shape {tuple(output.shape)}")
    if loss_type == "mse":
        return ((output - target) ** 2).mean()
    if loss_type == "corr":
        return (output * target).mean()
    raise ValueError(f"loss_type must be one of {MASK_LOSSES}, got {loss_type!r}")


def targeted_mask_scores(
    latent_code: Tensor, decoder_function: Decoder, label: Tensor, loss_type: str, num_classes: int
) -> tuple[Tensor, Tensor]:
    """Gradient of the task loss w.r.t. a detached alias of the code.

    The decoder runs in its current train/eval mode with BN tracking as it is (ON in training: the probe updates its
    running statistics). ``torch.autograd.grad`` is used, so no parameter ``.grad`` is written.

    Returns:
        ``(code, grad)``: the detached leaf alias ``(N, C, h, w)`` and ``d loss / d code`` of the same shape.
    """
    code = latent_code.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = _probe_loss(decoder_function(code), label, loss_type, num_classes)
        (grad,) = torch.autograd.grad(loss, code)
    return code.detach(), grad


def top_fraction_mask(scores: Tensor, fraction: float) -> Tensor:
    """Boolean mask of the entries to drop, per row of ``scores`` ``(N, K)``.

    Sort each row in descending order, take the value at index ``k = int(K * fraction)`` as the threshold and
    select the entries strictly greater than it. Without ties this is exactly the top-k; ``k = 0`` selects nothing;
    ``k >= K`` (fraction 1) selects everything.
    """
    n, size = scores.shape
    k = int(size * fraction)
    if k >= size:
        return torch.ones_like(scores, dtype=torch.bool)
    threshold = scores.sort(dim=1, descending=True).values[:, k : k + 1]  # (N, 1)
    return scores > threshold


def _mask_values(drop: Tensor, if_soft: bool, generator: torch.Generator | None) -> Tensor:
    """Float mask: dropped entries 0 (hard) or 0.5 * U(0, 1) (soft), kept entries 1."""
    ones = torch.ones(drop.shape, device=drop.device)
    if not if_soft:
        return ones.masked_fill(drop, 0.0)
    soft = 0.5 * _uniform(tuple(drop.shape), generator, drop.device)
    return torch.where(drop, soft, ones)


def _apply_mask(latent_code: Tensor, detached: Tensor, mask: Tensor, if_detach: bool) -> Tensor:
    return (detached if if_detach else latent_code) * mask.to(latent_code.dtype)


def mask_latent_code_channel_wise(
    latent_code: Tensor,
    decoder_function: Decoder,
    label: Tensor,
    num_classes: int = 2,
    percentile: float = 1 / 3,
    random: bool = False,
    loss_type: str = "corr",
    if_detach: bool = True,
    if_soft: bool = False,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Mask the channels whose signed mean gradient is largest (channel-wise).

    Args:
        latent_code: ``(N, C, h, w)``.
        decoder_function: callable mapping the code to the decoder output (e.g. a decoder module).
        label: target: label map ``(N, H, W)`` or tensor shaped like the decoder output (e.g. the clean image).
        num_classes: classes for one-hot encoding a label map (``'mse'``/``'corr'``).
        percentile: (maximum) fraction p of channels to mask.
        random: draw p = U(0, 1) * percentile (one draw per call, shared by the batch).
        loss_type: ``'mse'``, ``'ce'`` or ``'corr'``.
        if_detach: multiply the detached code (True) or the graph-attached ``latent_code`` (False) by the mask.
        if_soft: soft mask values 0.5 * U(0, 1) instead of 0.
        generator: optional RNG for p and the soft values.

    Returns:
        ``(masked_code (N, C, h, w), mask (N, C, 1, 1))``.
    """
    code, grad = targeted_mask_scores(latent_code, decoder_function, label, loss_type, num_classes)
    scores = grad.mean(dim=(2, 3))  # (N, C), signed mean (no abs, as published)
    p = sample_threshold(percentile, random, generator)
    drop = top_fraction_mask(scores, p)[:, :, None, None]  # (N, C, 1, 1)
    mask = _mask_values(drop, if_soft, generator)
    return _apply_mask(latent_code, code, mask, if_detach), mask


def mask_latent_code_spatial_wise(
    latent_code: Tensor,
    decoder_function: Decoder,
    label: Tensor,
    num_classes: int = 2,
    percentile: float = 1 / 3,
    random: bool = False,
    loss_type: str = "corr",
    if_detach: bool = True,
    if_soft: bool = False,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Mask the positions whose channel-mean signed gradient is largest (spatial-wise).

    Arguments as :func:`mask_latent_code_channel_wise`; the fraction applies to the h*w positions.

    Returns:
        ``(masked_code (N, C, h, w), mask (N, 1, h, w))``.
    """
    code, grad = targeted_mask_scores(latent_code, decoder_function, label, loss_type, num_classes)
    n, _, h, w = grad.shape
    scores = grad.mean(dim=1).reshape(n, h * w)  # (N, h*w)
    p = sample_threshold(percentile, random, generator)
    drop = top_fraction_mask(scores, p).reshape(n, 1, h, w)
    mask = _mask_values(drop, if_soft, generator)
    return _apply_mask(latent_code, code, mask, if_detach), mask


def mask_latent_code_dropout(
    latent_code: Tensor, p: float = 0.5, if_detach: bool = True, *, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Channel dropout in training mode: zero each (sample, channel) map with probability p, scale the rest
    by 1/(1-p) (as published).

    Returns:
        ``(masked_code (N, C, h, w), keep_mask (N, C, 1, 1))``: the true keep-mask (1 kept, 0 dropped).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout rate must be in [0, 1], got {p}")
    n, c = latent_code.shape[:2]
    keep = (_uniform((n, c, 1, 1), generator, latent_code.device) < 1.0 - p).to(latent_code.dtype)
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    source = latent_code.detach() if if_detach else latent_code
    return source * (keep * scale), keep


def choose_perturb_type(perturb_type: str, generator: torch.Generator | None = None) -> str:
    """Resolve ``'random'`` to one of dropout/spatial/channel uniformly (one draw per call)."""
    if perturb_type not in MASK_TYPES:
        raise ValueError(f"perturb_type must be one of {MASK_TYPES}, got {perturb_type!r}")
    if perturb_type != "random":
        return perturb_type
    device = torch.device("cpu") if generator is None else generator.device
    index = int(torch.randint(len(PERTURB_TYPES), (1,), generator=generator, device=device))
    return PERTURB_TYPES[index]


def perturb_latent_code(
    latent_code: Tensor,
    decoder_function: Decoder,
    label_y: Tensor | None = None,
    perturb_type: str = "random",
    threshold: float = 0.5,
    if_soft: bool = False,
    random_threshold: bool = False,
    loss_type: str = "corr",
    if_detach: bool = True,
    num_classes: int = 2,
    *,
    generator: torch.Generator | None = None,
) -> LatentPerturbation:
    """Perturb a latent code with one masking method.

    Args:
        latent_code: ``(N, C, h, w)``.
        decoder_function: decoder paired with the code (image decoder for z_i, segmentation decoder for z_s).
        label_y: target of the gradient probe (clean image for z_i, label map for z_s); unused by dropout.
        perturb_type: ``'random'``, ``'dropout'``, ``'spatial'`` or ``'channel'``.
        threshold: dropout rate / maximum masked fraction.
        if_soft: soft targeted masks (ignored by dropout).
        random_threshold: random fraction for targeted masking (ignored by dropout).
        loss_type: probe loss ``'mse'``, ``'ce'`` or ``'corr'``.
        if_detach: return ``masked.detach().clone()`` (no gradient path to the encoder), as in training.
        num_classes: classes for one-hot targets.
        generator: optional RNG for every draw.

    Returns:
        :class:`LatentPerturbation` ``(code, mask, method)``.
    """
    method = choose_perturb_type(perturb_type, generator)
    if method == "dropout":
        masked, mask = mask_latent_code_dropout(latent_code, threshold, if_detach, generator=generator)
    else:
        if label_y is None:
            raise ValueError(f"perturb_type {method!r} needs label_y (the target of the gradient probe)")
        fn = mask_latent_code_channel_wise if method == "channel" else mask_latent_code_spatial_wise
        masked, mask = fn(
            latent_code,
            decoder_function,
            label_y,
            num_classes=num_classes,
            percentile=threshold,
            random=random_threshold,
            loss_type=loss_type,
            if_detach=if_detach,
            if_soft=if_soft,
            generator=generator,
        )
    if if_detach:
        masked = masked.detach().clone()
    return LatentPerturbation(masked, mask, method)


__all__ = [
    "LatentPerturbation",
    "choose_perturb_type",
    "host_to_device",
    "mask_latent_code_channel_wise",
    "mask_latent_code_dropout",
    "mask_latent_code_spatial_wise",
    "perturb_latent_code",
    "sample_threshold",
    "targeted_mask_scores",
    "top_fraction_mask",
]
