"""The published cooperative-training methods of the model class, as a mixin: adapters over the functions of
:mod:`medseg.method.cooperative`.

medseg's forms (:meth:`CooperativeTrainingMixin.standard_losses`,
:meth:`~CooperativeTrainingMixin.hard_example_losses`: ``(total, dict)`` returns, keyword-only options) call the
functions on ``self.networks``; the published methods (:meth:`~CooperativeTrainingMixin.standard_training`,
:meth:`~CooperativeTrainingMixin.hard_example_training`, :meth:`~CooperativeTrainingMixin.hard_example_generation`,
:meth:`~CooperativeTrainingMixin.perturb_latent_code`) keep the published argument order, defaults and tuple returns
and adapt onto those. The published class keeps the latent codes of ``standard_training`` (``z_i``, ``z_s``) for a
later ``hard_example_generation``; the functions keep nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from medseg.method import cooperative
from medseg.method.mask_options import (
    IMAGE_CODE_OPTIONS,
    MASK_SCOPES,
    SHAPE_CODE_OPTIONS,
    MaskOptions,
    mask_scope_flags,
)
from medseg.method.masking import perturb_latent_code as perturb_code

if TYPE_CHECKING:
    from medseg.models.advanced_triplet_recon_segmentation_model import AdvancedTripletReconSegmentationModel

logger = logging.getLogger(__name__)

#: Published defaults of ``hard_example_generation(corrupted_image_DA_config=..., corrupted_seg_DA_config=...)``: the
#: default masking options as read-only dicts.
IMAGE_CODE_DA_CONFIG: Mapping[str, Any] = MappingProxyType(IMAGE_CODE_OPTIONS.as_dict())
SHAPE_CODE_DA_CONFIG: Mapping[str, Any] = MappingProxyType(SHAPE_CODE_OPTIONS.as_dict())


class CooperativeTrainingMixin:
    """Training-loss methods of :class:`AdvancedTripletReconSegmentationModel` (see the module docstring)."""

    # ------------------------------------------------------------------------------------------------ standard pass
    def standard_losses(
        self: AdvancedTripletReconSegmentationModel,
        clean_image_l: Tensor,
        label_l: Tensor,
        perturbed_image: Tensor,
        *,
        separate_training: bool = False,
        compute_gt_recon: bool = True,
        update_latent: bool = True,
        disable_track_bn_stats: bool = False,
        backward_now: bool = False,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """(medseg) The FTN + STN losses on one input (the standard training step; reused by hard-example training).

        Args:
            clean_image_l: ``(B, 1, H, W)`` target of the image reconstruction.
            label_l: ``(B, H, W)`` int64 labels.
            perturbed_image: ``(B, 1, H, W)`` network input (noisy image, or a hard example).
            separate_training: detach the FTN prediction before the STN (no STN->FTN gradient).
            compute_gt_recon: add ``CE(STN(one-hot(label)), label)``.
            update_latent: store ``z_i``/``z_s`` (with their graph) on the model for hard-example generation.
            disable_track_bn_stats: run the encoder, segmentation decoder and STN without BN tracking and with frozen
                BN affine params; the image decoder call is deliberately not wrapped (as published).
            backward_now: accumulate the gradients into ``.grad`` here, each independent graph as soon as its loss
                is known (the GT->STN graph is freed before the FTN graph is built); the sum of the gradients is that
                of ``total.backward()``, peak memory is lower, and the returned losses are detached.

        Returns:
            ``(total, {'seg', 'image', 'shape', 'gt_shape'})`` scalar tensors; ``image`` includes the 0.5 factor;
            ``shape`` is prediction->STN; ``gt_shape`` is 0 without ``compute_gt_recon``.
        """
        result = cooperative.standard_losses(
            self.networks, clean_image_l, label_l, perturbed_image, separate_training=separate_training,
            compute_gt_recon=compute_gt_recon, freeze_bn=disable_track_bn_stats, backward_now=backward_now,
        )  # fmt: skip
        if update_latent:
            self.z_i, self.z_s = result.codes
        return result.total, result.parts

    def standard_training(
        self: AdvancedTripletReconSegmentationModel,
        clean_image_l: Tensor,
        label_l: Tensor,
        perturbed_image: Tensor,
        separate_training: bool = False,
        compute_gt_recon: bool = True,
        update_latent: bool = True,
        disable_track_bn_stats: bool = False,
        *,
        backward_now: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Published form of :meth:`standard_losses` (same arguments, published order).

        Returns:
            ``(standard_supervised_loss, image_recon_loss, gt_shape_recon_loss, pred_shape_recon_loss)``: the FTN
            segmentation CE, the 0.5-scaled image MSE, CE(STN(one-hot(label))) (0 without ``compute_gt_recon``) and
            CE(STN(softmax(prediction / 2))). Their sum is the standard loss.
        """
        _, parts = self.standard_losses(
            clean_image_l, label_l, perturbed_image, separate_training=separate_training,
            compute_gt_recon=compute_gt_recon, update_latent=update_latent,
            disable_track_bn_stats=disable_track_bn_stats, backward_now=backward_now,
        )  # fmt: skip
        return parts["seg"], parts["image"], parts["gt_shape"], parts["shape"]

    # ------------------------------------------------------------------------------------------------ hard examples
    def perturb_latent_code(
        self: AdvancedTripletReconSegmentationModel,
        latent_code: Tensor,
        decoder_function: nn.Module,
        label_y: Tensor | None = None,
        perturb_type: str = "random",
        threshold: float = 0.5,
        if_soft: bool = False,
        random_threshold: bool = False,
        loss_type: str = "mse",
        if_detach: bool = False,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Mask a latent code; see :func:`medseg.method.masking.perturb_latent_code`.

        Args:
            latent_code: ``(B, C, h, w)``.
            decoder_function: decoder paired with the code (image decoder for z_i, segmentation decoder for z_s).
            label_y: target of the gradient probe (clean image for z_i, label map for z_s); unused by dropout.
            perturb_type: ``'random'``, ``'dropout'``, ``'spatial'`` or ``'channel'``.
            threshold: dropout rate / maximum masked fraction.
            if_soft: soft targeted masks 0.5 * U(0, 1) (ignored by dropout).
            random_threshold: fraction U(0, 1) * threshold for targeted masking (ignored by dropout).
            loss_type: probe loss ``'mse'``, ``'ce'`` or ``'corr'``.
            if_detach: return a detached copy (training uses True); False keeps the graph to ``latent_code``.
            generator: (medseg) optional RNG for every draw.

        Returns:
            ``(masked_code (B, C, h, w), mask)``: mask ``(B, C, 1, 1)`` for channel masking and dropout (the true
            keep-mask), ``(B, 1, h, w)`` for spatial masking.
        """
        result = perturb_code(
            latent_code, decoder_function, label_y, perturb_type=perturb_type, threshold=threshold, if_soft=if_soft,
            random_threshold=random_threshold, loss_type=loss_type, if_detach=if_detach,
            num_classes=self.num_classes, generator=generator,
        )  # fmt: skip
        if self.debug:
            logger.debug("latent code perturbed with %s", result.method)
        return result.code, result.mask

    def hard_example_generation(
        self: AdvancedTripletReconSegmentationModel,
        clean_image_l: Tensor,
        label_l: Tensor,
        gen_corrupted_seg: bool = True,
        gen_corrupted_image: bool = True,
        corrupted_image_DA_config: MaskOptions | Mapping[str, Any] = IMAGE_CODE_DA_CONFIG,  # noqa: N803 (published)
        corrupted_seg_DA_config: MaskOptions | Mapping[str, Any] = SHAPE_CODE_DA_CONFIG,  # noqa: N803 (published)
        *,
        generator: torch.Generator | None = None,
        z_i: Tensor | None = None,
        z_s: Tensor | None = None,
    ) -> tuple[Tensor | None, Tensor | None]:
        """Corrupted image and segmentation decoded from masked latent codes (hard-example generation).

        The segmentation and image decoders are frozen meanwhile; the gradient probes run them in their current mode
        with BN tracking on, the corrupted outputs in the current mode with tracking off
        and without a graph. Outputs are constants.

        Args:
            clean_image_l: ``(B, 1, H, W)`` probe target of the image code.
            label_l: ``(B, H, W)`` probe target of the shape code.
            gen_corrupted_seg: mask z_s and decode a corrupted segmentation.
            gen_corrupted_image: mask z_i and decode a corrupted image.
            corrupted_image_DA_config: masking of z_i: a dict with (a subset of) the keys ``loss_name, mask_type,
                max_threshold, random_threshold, if_soft`` (the config's ``latent_DA["image code"]``) or a MaskOptions.
            corrupted_seg_DA_config: the same for z_s (``latent_DA["shape code"]``).
            generator: (medseg) optional RNG for every draw.
            z_i, z_s: (medseg) codes to perturb; default the ones stored by :meth:`standard_training`.

        Returns:
            ``(perturbed_image (B, 1, H, W) in (0, 1) or None, perturbed_seg_logits (B, C, H, W) or None)``.

        Raises:
            ValueError: for an unknown DA-config key, or when no code is stored or given.
        """
        image_options = None if not gen_corrupted_image else MaskOptions.from_mapping(
            corrupted_image_DA_config, IMAGE_CODE_OPTIONS, "corrupted_image_DA_config")
        shape_options = None if not gen_corrupted_seg else MaskOptions.from_mapping(
            corrupted_seg_DA_config, SHAPE_CODE_OPTIONS, "corrupted_seg_DA_config")
        codes = (self.z_i if z_i is None else z_i, self.z_s if z_s is None else z_s)
        return cooperative.hard_example_generation(self.networks, clean_image_l, label_l, codes, image_options,
                                                   shape_options, generator=generator)

    def hard_example_losses(
        self: AdvancedTripletReconSegmentationModel,
        perturbed_image: Tensor | None,
        clean_image_l: Tensor,
        perturbed_seg: Tensor | None,
        label_l: Tensor,
        *,
        separate_training: bool = False,
        backward_now: bool = False,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """(medseg) Losses on the hard examples.

        Args:
            perturbed_image: corrupted image ``(B, 1, H, W)`` or None.
            clean_image_l: ``(B, 1, H, W)`` clean image.
            perturbed_seg: corrupted segmentation logits ``(B, C, H, W)`` or None.
            label_l: ``(B, H, W)`` labels.
            separate_training: detach FTN predictions before the STN.
            backward_now: accumulate gradients here, one independent graph at a time (see :meth:`standard_losses`);
                the returned losses are then detached.

        Returns:
            ``(total, {'seg', 'image', 'shape', 'pred_shape', 'corrupt_shape'})``: ``shape`` = ``pred_shape``
            (prediction on the corrupted image -> STN) + ``corrupt_shape`` (corrupted segmentation -> STN).
        """
        return cooperative.hard_example_losses(
            self.networks, perturbed_image, clean_image_l, perturbed_seg, label_l,
            separate_training=separate_training, backward_now=backward_now,
        )  # fmt: skip

    def hard_example_training(
        self: AdvancedTripletReconSegmentationModel,
        perturbed_image: Tensor | None,
        clean_image_l: Tensor,
        perturbed_seg: Tensor | None,
        label_l: Tensor,
        separate_training: bool = False,
        use_gpu: bool = True,
        *,
        backward_now: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Published form of :meth:`hard_example_losses` (published argument order).

        ``use_gpu`` is accepted and ignored: the model's device is used (the published default crashed on
        CPU).

        Returns:
            ``(seg_loss, recon_loss, shape_loss, perturbed_p_recon_loss)``: on the corrupted image the FTN CE, the
            0.5-scaled MSE to the clean image and CE(STN(prediction)); then CE(STN(corrupted segmentation)). A part
            whose hard example is None is 0. Their sum is the hard loss.
        """
        del use_gpu
        _, parts = self.hard_example_losses(
            perturbed_image, clean_image_l, perturbed_seg, label_l, separate_training=separate_training,
            backward_now=backward_now,
        )  # fmt: skip
        return parts["seg"], parts["image"], parts["pred_shape"], parts["corrupt_shape"]


__all__ = [
    "IMAGE_CODE_DA_CONFIG",
    "MASK_SCOPES",
    "SHAPE_CODE_DA_CONFIG",
    "CooperativeTrainingMixin",
    "mask_scope_flags",
]
