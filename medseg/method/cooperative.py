"""Cooperative training as functions of the networks and one batch: the standard losses, the hard-example generation
from masked latent codes and the losses on the hard examples.

Nothing is kept between calls: :func:`standard_losses` returns the latent codes of its input, and
:func:`hard_example_generation` takes them. One training iteration (see :func:`medseg.training.step.train_step`)::

    standard = standard_losses(networks, images, labels, noisy_images)
    corrupted_image, corrupted_seg = hard_example_generation(networks, images, labels, standard.codes,
                                                             IMAGE_CODE_OPTIONS, SHAPE_CODE_OPTIONS)
    hard_total, hard = hard_example_losses(networks, corrupted_image, images, corrupted_seg, labels)

With ``backward_now=True`` the loss functions accumulate the gradients into ``.grad`` themselves, each independent
graph as soon as its loss is known, and return detached losses: the sum of the gradients is that of one backward of
the total (up to floating-point summation order), and each graph is freed before the next one is built.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch
from torch import Tensor

from medseg.method.losses import basic_loss_fn
from medseg.method.mask_options import MaskOptions
from medseg.method.masking import perturb_latent_code
from medseg.method.networks import DualNetworks, disable_tracking_bn_stats
from medseg.nn.precision import backward_outside_autocast

logger = logging.getLogger(__name__)


class StandardLosses(NamedTuple):
    """Result of :func:`standard_losses`.

    Attributes:
        total: the sum of the four parts.
        parts: ``{'seg', 'image', 'shape', 'gt_shape'}`` scalar tensors: the FTN cross entropy, the 0.5-scaled image
            MSE, CE(STN(softmax(prediction / 2))) and CE(STN(one-hot(label))) (0 without ``compute_gt_recon``).
        codes: ``(z_i, z_s)`` of the network input (with their graph unless it was already backpropagated), the codes
            that :func:`hard_example_generation` masks.
    """

    total: Tensor
    parts: dict[str, Tensor]
    codes: tuple[Tensor, Tensor]


def _backward_if(loss: Tensor, backward: bool) -> Tensor:
    """Backpropagate ``loss`` now (if it has a graph) and return it detached; else return it unchanged."""
    if not backward:
        return loss
    if loss.requires_grad:
        backward_outside_autocast(loss)
    return loss.detach()


def standard_losses(
    networks: DualNetworks,
    clean_image: Tensor,
    labels: Tensor,
    perturbed_image: Tensor,
    *,
    separate_training: bool = False,
    compute_gt_recon: bool = True,
    freeze_bn: bool = False,
    backward_now: bool = False,
) -> StandardLosses:
    """The FTN + STN losses on one input (also the losses on a corrupted image, see :func:`hard_example_losses`).

    Args:
        clean_image: ``(B, 1, H, W)`` target of the image reconstruction.
        labels: ``(B, H, W)`` integer labels.
        perturbed_image: ``(B, 1, H, W)`` network input (the noisy image, or a hard example).
        separate_training: detach the FTN prediction before the STN (no STN->FTN gradient).
        compute_gt_recon: add ``CE(STN(one-hot(label)), label)``.
        freeze_bn: run the encoder, segmentation decoder and STN without BN tracking and with frozen BN affine
            params; the image decoder call is deliberately not wrapped (as published).
        backward_now: accumulate the gradients here (the GT->STN graph is freed before the FTN graph is built) and
            return detached losses.
    """
    labels = labels.to(networks.device, non_blocking=True).long()
    clean_image = networks.as_input(clean_image)
    if compute_gt_recon:  # GT first, then prediction: the order of the STN running-stat updates
        gt_shape_loss = basic_loss_fn(networks.refine(labels, True, freeze_bn), labels)
        gt_shape_loss = _backward_if(gt_shape_loss, backward_now)
    else:
        gt_shape_loss = torch.zeros((), device=networks.device)
    (z_i, z_s), init_predict = networks.segment(perturbed_image, freeze_bn)
    seg_loss = basic_loss_fn(init_predict, labels, "cross entropy")
    image_loss = 0.5 * basic_loss_fn(networks.decode_image(z_i), clean_image, "mse")
    stn_input = init_predict.detach() if separate_training else init_predict
    shape_loss = basic_loss_fn(networks.refine(stn_input, False, freeze_bn), labels)
    if backward_now:
        _backward_if(seg_loss + image_loss + shape_loss, True)
        seg_loss, image_loss, shape_loss = seg_loss.detach(), image_loss.detach(), shape_loss.detach()
    total = seg_loss + image_loss + shape_loss + gt_shape_loss
    parts = {"seg": seg_loss, "image": image_loss, "shape": shape_loss, "gt_shape": gt_shape_loss}
    return StandardLosses(total, parts, (z_i, z_s))


def hard_example_generation(
    networks: DualNetworks,
    clean_image: Tensor,
    labels: Tensor,
    codes: tuple[Tensor | None, Tensor | None],
    image_options: MaskOptions | None,
    shape_options: MaskOptions | None,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor | None, Tensor | None]:
    """Corrupted image and segmentation decoded from masked latent codes.

    The segmentation and image decoders are frozen meanwhile; the gradient probes of targeted masking run them in
    their current mode with BN tracking on, the corrupted outputs in the current mode with BN tracking off and
    without a graph. The outputs are constants.

    Args:
        clean_image: ``(B, 1, H, W)`` probe target of the image code.
        labels: ``(B, H, W)`` probe target of the shape code.
        codes: ``(z_i, z_s)``, e.g. :attr:`StandardLosses.codes`.
        image_options: how z_i is masked; None: no corrupted image.
        shape_options: how z_s is masked; None: no corrupted segmentation.
        generator: optional RNG of every masking draw.

    Returns:
        ``(corrupted image (B, 1, H, W) in (0, 1) or None, corrupted segmentation logits (B, C, H, W) or None)``.

    Raises:
        ValueError: when a code to mask is None.
    """
    z_i, z_s = codes
    jobs = []
    if image_options is not None:
        jobs.append(("image_decoder", z_i, networks.as_input(clean_image), image_options))
    if shape_options is not None:
        jobs.append(("segmentation_decoder", z_s, labels.to(networks.device, non_blocking=True).long(), shape_options))
    frozen = [networks["segmentation_decoder"], networks["image_decoder"]]
    saved = [[p.requires_grad for p in m.parameters()] for m in frozen]
    for module in frozen:
        module.requires_grad_(False)
    outputs: dict[str, Tensor] = {}
    try:
        for name, code, target, options in jobs:
            if code is None:
                raise ValueError(f"no latent code for {name}: compute the standard losses first or pass the codes")
            decoder = networks[name]
            masked = perturb_latent_code(
                code, decoder, target, perturb_type=options.mask_type, threshold=options.max_threshold,
                if_soft=options.if_soft, random_threshold=options.random_threshold, loss_type=options.loss_name,
                if_detach=True, num_classes=networks.num_classes, generator=generator,
            )  # fmt: skip
            logger.debug("%s code masked with %s", name, masked.method)
            with torch.no_grad(), disable_tracking_bn_stats(decoder):
                outputs[name] = decoder(masked.code.to(networks.device, non_blocking=True))
    finally:
        for module, flags in zip(frozen, saved):
            for param, flag in zip(module.parameters(), flags):
                param.requires_grad_(flag)
    return outputs.get("image_decoder"), outputs.get("segmentation_decoder")


def hard_example_losses(
    networks: DualNetworks,
    corrupted_image: Tensor | None,
    clean_image: Tensor,
    corrupted_seg: Tensor | None,
    labels: Tensor,
    *,
    separate_training: bool = False,
    backward_now: bool = False,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Losses on the hard examples.

    Args:
        corrupted_image: ``(B, 1, H, W)`` or None.
        clean_image: ``(B, 1, H, W)`` clean image.
        corrupted_seg: corrupted segmentation logits ``(B, C, H, W)`` or None.
        labels: ``(B, H, W)`` labels.
        separate_training: detach FTN predictions before the STN.
        backward_now: accumulate gradients here, one independent graph at a time (see :func:`standard_losses`);
            the returned losses are then detached.

    Returns:
        ``(total, {'seg', 'image', 'shape', 'pred_shape', 'corrupt_shape'})``: on the corrupted image the FTN CE,
        the 0.5-scaled MSE to the clean image and ``pred_shape`` = CE(STN(prediction)); ``corrupt_shape`` =
        CE(STN(corrupted segmentation)); ``shape`` is their sum. A part whose hard example is None is 0.
    """
    labels = labels.to(networks.device, non_blocking=True).long()
    zero = torch.zeros((), device=networks.device)
    seg_loss, image_loss, pred_shape_loss, corrupt_shape_loss = zero, zero, zero, zero
    if corrupted_seg is not None:  # no running stats are tracked in these calls, so the order is free
        refined = networks.refine(corrupted_seg.detach(), is_label_map=False, freeze_bn=True)
        corrupt_shape_loss = _backward_if(basic_loss_fn(refined, labels, "cross entropy"), backward_now)
    if corrupted_image is not None:
        parts = standard_losses(
            networks, clean_image, labels, corrupted_image.detach(), separate_training=separate_training,
            compute_gt_recon=False, freeze_bn=True, backward_now=backward_now,
        ).parts  # fmt: skip
        seg_loss, image_loss, pred_shape_loss = parts["seg"], parts["image"], parts["shape"]
    shape_loss = pred_shape_loss + corrupt_shape_loss
    total = seg_loss + image_loss + shape_loss
    return total, {
        "seg": seg_loss, "image": image_loss, "shape": shape_loss,
        "pred_shape": pred_shape_loss, "corrupt_shape": corrupt_shape_loss,
    }  # fmt: skip


__all__ = ["StandardLosses", "hard_example_generation", "hard_example_losses", "standard_losses"]
