"""One training iteration of cooperative / standard training.

``train_step`` works on the five networks (:class:`~medseg.method.networks.DualNetworks`) and one Adam per network,
calling the cooperative-training functions of :mod:`medseg.method.cooperative`. It performs, in order: train mode +
zero_grad, noisy input ``clamp(x + 0.05 N(0,1), 0, 1)``, the four
standard losses, optionally hard-example generation and the four hard losses, backward, ``after_backward()`` (e.g.
gradient all-reduce), and ``step()`` on all five Adam optimisers.

Gradients are accumulated as soon as each independent part of the loss is known (``backward_now=True``: the
GT->STN graph, then the FTN + prediction->STN graph, then the corrupted-segmentation->STN graph, then the hard FTN
graph) instead of one backward of ``standard + hard`` at the end. The accumulated gradients are the same sum (up to
floating-point summation order): the hard-example pass reads only detached values and never touches ``.grad``, and
no parameter changes before the optimiser steps. Each graph is freed before the next is built, which lowers peak
memory.

Mixed precision (``precision='bf16'|'fp16'``, see :mod:`medseg.nn.precision`): the networks compute in the lower
type and return fp32, so losses, softmax and the masking scores are fp32; parameters, Adam states and BatchNorm
running statistics stay fp32. One autocast region spans the iteration (not the optimiser step), so each weight is
cast once. The hard-example generation (the gradient probes of the targeted masking and the decoding of the masked
codes) runs the two decoders in fp32, so the masks select what they select in fp32: in bf16 the probe gradients
are too coarse (another 5-13 % of the channels/positions would be masked), in fp16 they underflow (~1e-6 per
element). With ``fp16`` a :class:`torch.amp.GradScaler` scales one backward of ``standard + hard`` and steps the
optimisers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from medseg.method.cooperative import hard_example_generation, hard_example_losses, standard_losses
from medseg.method.mask_options import (
    IMAGE_CODE_OPTIONS,
    MASK_SCOPES,
    SHAPE_CODE_OPTIONS,
    MaskOptions,
    mask_scope_flags,
)
from medseg.method.masking import host_to_device
from medseg.method.networks import DualNetworks
from medseg.nn.blocks import AutocastForward, set_compute_precision
from medseg.nn.precision import autocast, precision_dtype

logger = logging.getLogger(__name__)

#: Keys of :attr:`StepOutput.losses`, in logging order (the published TensorBoard scalar names plus
#: the grand total).
LOSS_KEYS = (
    "loss/standard/total",
    "loss/standard/seg",
    "loss/standard/image",
    "loss/standard/shape",
    "loss/standard/gt_shape",
    "loss/hard/total",
    "loss/hard/seg",
    "loss/hard/image",
    "loss/hard/shape",
    "loss/total",
)

NOISE_STD = 0.05
#: Precisions in which the hard-example generation (gradient probes + corrupted decodes) runs the decoders in fp32.
#: bf16 probe gradients change ~5-13 % of the selected channels/positions against fp32 (their scores are means of
#: many small products), fp16 ones underflow; fp32 costs ~7 % of a bf16 cooperative iteration (measured, 8 x 128^2).
PROBE_FP32_PRECISIONS: frozenset[str] = frozenset({"bf16", "fp16"})


@dataclass
class StepOutput:
    """Result of :func:`train_step`.

    Attributes:
        losses: ``{key: float}`` for every key of :data:`LOSS_KEYS`; hard keys are 0.0 without latent DA.
        corrupted_image: hard example image ``(B, 1, H, W)`` (detached) or None.
        corrupted_seg: hard example segmentation logits ``(B, C, H, W)`` (detached) or None.
    """

    losses: dict[str, float] = field(default_factory=dict)
    corrupted_image: Tensor | None = None
    corrupted_seg: Tensor | None = None


class Trainable(Protocol):
    """What :func:`train_step` trains: the five networks and one optimiser per network (e.g. the published model
    class :class:`~medseg.models.advanced_triplet_recon_segmentation_model.AdvancedTripletReconSegmentationModel`)."""

    networks: DualNetworks
    optimizers: Mapping[str, torch.optim.Optimizer]


def _check_batch(images: Tensor, labels: Tensor) -> None:
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    if labels.ndim != 3 or labels.shape[0] != images.shape[0] or labels.shape[1:] != images.shape[2:]:
        raise ValueError(
            f"labels must be (B, H, W) = {(images.shape[0], *images.shape[2:])} to match images, "
            f"got {tuple(labels.shape)}"
        )
    if labels.is_floating_point():
        raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")


def _gaussian_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    if generator is None:
        return torch.randn_like(x)
    return host_to_device(torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype), x.device)


@contextlib.contextmanager
def _decoders_in_fp32(networks: DualNetworks, active: bool) -> Iterator[None]:
    """Run the segmentation and image decoders in fp32 meanwhile (if ``active``), then restore their precision."""
    if not active:
        yield
        return
    decoders = [networks["segmentation_decoder"], networks["image_decoder"]]
    saved = [(sub, sub.compute_precision) for d in decoders for sub in d.modules() if isinstance(sub, AutocastForward)]
    set_compute_precision(decoders, "fp32")
    try:
        yield
    finally:
        for sub, precision in saved:
            sub.compute_precision = precision


def train_step(
    model: Trainable,
    images: Tensor,
    labels: Tensor,
    latent_da: bool,
    mask_scope: Sequence[str] = MASK_SCOPES,
    image_code_spec: MaskOptions | None = None,
    shape_code_spec: MaskOptions | None = None,
    separate_training: bool = False,
    generator: torch.Generator | None = None,
    after_backward: Callable[[], None] | None = None,
    precision: str | None = None,
    scaler: torch.amp.GradScaler | None = None,
    noise_generator: torch.Generator | None = None,
    before_update: Callable[[Tensor], tuple[list[float], bool]] | None = None,
) -> StepOutput:
    """Run one full training iteration and update all five modules.

    Args:
        model: the networks and their optimisers (:class:`Trainable`); the networks are put in train mode with
            ``requires_grad=True``.
        images: ``(B, 1, H, W)`` clean images in [0, 1] (moved to the networks' device).
        labels: ``(B, H, W)`` integer labels.
        latent_da: cooperative training (hard examples from masked latent codes) or standard training.
        mask_scope: codes to mask, subset of ``('image code', 'shape code')``.
        image_code_spec: masking of z_i (default :data:`~medseg.method.mask_options.IMAGE_CODE_OPTIONS`).
        shape_code_spec: masking of z_s (default :data:`~medseg.method.mask_options.SHAPE_CODE_OPTIONS`).
        separate_training: detach FTN predictions before the STN.
        generator: optional RNG for the input noise and every masking draw.
        after_backward: called once after all gradients are computed and before the optimiser steps.
        precision: ``'fp32'``, ``'bf16'`` or ``'fp16'``: sets the networks' compute precision (it stays set, so
            a later ``predict`` uses it too); None leaves the networks as they are.
        scaler: gradient scaler, required with ``'fp16'`` (see :func:`medseg.nn.precision.make_grad_scaler`).
        noise_generator: RNG of the input noise only (e.g. a CUDA generator, so that the image-sized draw is made
            on the device); None: ``generator``. The masking draws always come from ``generator``: a CPU generator
            there means that reading a threshold or a method never waits for the GPU.
        before_update: called once after ``after_backward`` and before the optimiser steps with the vector of the
            loss values (:data:`LOSS_KEYS` without ``loss/total``, on the device); returns the values as floats and
            whether to step (see :meth:`medseg.training.guards.NonFiniteGuard.decide`). Then that call is the
            iteration's only read from the device; without it the losses are read after the steps.

    Returns:
        :class:`StepOutput` with float losses and the (detached) hard examples.

    Raises:
        ValueError: bad batch shapes, unknown ``precision``, or ``'fp16'`` without a ``scaler``.
    """
    _check_batch(images, labels)
    networks, optimizers = model.networks, model.optimizers
    if precision is not None:
        precision_dtype(precision)  # validates the name
        set_compute_precision(networks.values(), precision)
    if precision == "fp16" and scaler is None:
        raise ValueError("precision 'fp16' needs a GradScaler (scaler=...); gradients would underflow without it")
    backward_now = scaler is None  # a scaler needs the whole loss at once
    mask_image, mask_shape = mask_scope_flags(mask_scope) if latent_da else (False, False)
    device = networks.device
    images = networks.as_input(images)
    labels = labels.to(device, non_blocking=True).long()

    networks.train().requires_grad_(True)
    for optimizer in optimizers.values():
        optimizer.zero_grad(set_to_none=True)

    with autocast(precision or "fp32", device):
        noise = _gaussian_like(images, noise_generator if noise_generator is not None else generator)
        noisy = torch.clamp(images + NOISE_STD * noise, 0.0, 1.0)
        standard = standard_losses(networks, images, labels, noisy, separate_training=separate_training,
                                   backward_now=backward_now)
        parts = standard.parts
        values = [standard.total.detach(), parts["seg"], parts["image"], parts["shape"], parts["gt_shape"]]

        corrupted_image = corrupted_seg = None
        total = standard.total
        if latent_da:
            with _decoders_in_fp32(networks, precision in PROBE_FP32_PRECISIONS):
                corrupted_image, corrupted_seg = hard_example_generation(
                    networks, images, labels, standard.codes,
                    (image_code_spec or IMAGE_CODE_OPTIONS) if mask_image else None,
                    (shape_code_spec or SHAPE_CODE_OPTIONS) if mask_shape else None, generator=generator,
                )  # fmt: skip
            hard_total, hard = hard_example_losses(networks, corrupted_image, images, corrupted_seg, labels,
                                                   separate_training=separate_training, backward_now=backward_now)
            values += [hard_total.detach(), hard["seg"], hard["image"], hard["shape"]]
            total = total + hard_total
        else:
            zero = torch.zeros((), device=device)
            values += [zero, zero, zero, zero]
    del standard  # the latent codes (their graph is already freed)
    if scaler is not None:  # backward outside the autocast region (it runs in the forward ops' types anyway)
        scaler.scale(total).backward()

    if after_backward is not None:
        after_backward()
    vector = torch.stack([v.detach().reshape(()).float() for v in values])
    do_step, floats = True, None
    if before_update is not None:
        floats, do_step = before_update(vector)
    if do_step and scaler is None:
        for optimizer in optimizers.values():
            optimizer.step()
    elif do_step:  # the documented multi-optimiser pattern: each step is skipped if its gradients overflowed
        for optimizer in optimizers.values():
            scaler.step(optimizer)
        scaler.update()

    if floats is None:
        floats = vector.tolist()
    losses = dict(zip(LOSS_KEYS[:-1], floats))
    losses["loss/total"] = losses["loss/standard/total"] + losses["loss/hard/total"]
    return StepOutput(losses=losses, corrupted_image=corrupted_image, corrupted_seg=corrupted_seg)
