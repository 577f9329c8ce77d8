"""The published building-block methods of the model class (encode, decode, STN passes, analysis helpers), as a mixin
of :class:`~medseg.models.advanced_triplet_recon_segmentation_model.AdvancedTripletReconSegmentationModel`: each one
calls the method of :class:`~medseg.method.networks.DualNetworks` under its published name and arguments."""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from medseg.method.networks import STN_TEMPERATURE, disable_tracking_bn_stats


class NetworkBlocksMixin:
    """Encoding, decoding and STN passes with the published names (``disable_track_bn_stats``: BN frozen meanwhile)."""

    def encode_image(self, input: Tensor, disable_track_bn_stats: bool = False) -> tuple[Tensor, Tensor]:
        """``(B, 1, H, W) -> (z_i, z_s)``, each ``(B, 128, H/16, W/16)``, wired as the network type says."""
        return self.networks.encode(input, disable_track_bn_stats)

    def decode_image(self, latent_code: Tensor, disable_track_bn_stats: bool = False) -> Tensor:
        """Image code ``(B, 128, h, w)`` -> reconstruction ``(B, image_ch, 16h, 16w)`` in (0, 1)."""
        return self.networks.decode_image(latent_code, disable_track_bn_stats)

    def decode_segmentation(self, latent_code: Tensor, disable_track_bn_stats: bool = False) -> Tensor:
        """(medseg) Shape code ``(B, 128, h, w)`` -> segmentation logits ``(B, num_classes, 16h, 16w)``."""
        return self.networks.decode_segmentation(latent_code, disable_track_bn_stats)

    def decode_segmentation_from_image_code(
        self, latent_code_i: Tensor, disable_track_bn_stats: bool = False
    ) -> Tensor:
        """``segmentation_decoder(filter_code(z_i))``: image code -> logits ``(B, num_classes, 16h, 16w)``."""
        encoder = self.networks["image_encoder"]
        with disable_tracking_bn_stats(encoder) if disable_track_bn_stats else contextlib.nullcontext():
            z_s = encoder.filter_code(latent_code_i)
        return self.decode_segmentation(z_s, disable_track_bn_stats)

    def fast_predict(self, input: Tensor, disable_track_bn_stats: bool = False) -> tuple[tuple[Tensor, Tensor], Tensor]:
        """FTN: ``(B, 1, H, W) -> ((z_i, z_s), logits (B, num_classes, H, W))``; in eval mode under no_grad."""
        return self.networks.segment(input, disable_track_bn_stats)

    def construct_input(
        self, segmentation: Tensor, is_label_map: bool = False, temperature: float = STN_TEMPERATURE
    ) -> Tensor:
        """STN input: one-hot of a label map ``(B, H, W)``, else ``softmax(logits / temperature)``.

        Raises:
            ValueError: for a ``(B, H, W)`` integer map passed with ``is_label_map=False``.
        """
        return self.networks.shape_input(segmentation, is_label_map, temperature)

    def encode_shape(
        self,
        segmentation: Tensor,
        is_label_map: bool = False,
        disable_track_bn_stats: bool = False,
        temperature: float = STN_TEMPERATURE,
    ) -> Tensor:
        """Logits ``(B, C, H, W)`` or label map ``(B, H, W)`` (``is_label_map``) -> code ``(B, 128, H/16, W/16)``."""
        return self.networks.encode_shape(segmentation, is_label_map, disable_track_bn_stats, temperature)

    def decode_shape(self, latent_code: Tensor, disable_track_bn_stats: bool = False) -> Tensor:
        """Shape code -> refined logits ``(B, num_classes, H, W)``."""
        return self.networks.decode_shape(latent_code, disable_track_bn_stats)

    def recon_shape(
        self, segmentation_logit: Tensor, is_label_map: bool = False, disable_track_bn_stats: bool = False
    ) -> Tensor:
        """One STN pass: ``shape_decoder(shape_encoder(construct_input(segmentation_logit)))`` -> logits."""
        return self.networks.refine(segmentation_logit, is_label_map, disable_track_bn_stats)

    def recon_image(self, image: Tensor, disable_track_bn_stats: bool = False) -> Tensor:
        """``image_decoder(z_i(image))``: ``(B, 1, H, W) -> (B, 1, H, W)``."""
        z_i, _ = self.encode_image(image, disable_track_bn_stats)
        return self.decode_image(z_i, disable_track_bn_stats)

    def run(self, input: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(recon image, FTN logits, STN(FTN) logits)`` in the current mode."""
        (z_i, _), init_predict = self.fast_predict(input)
        return self.decode_image(z_i), init_predict, self.recon_shape(init_predict)

    def predict_w_reconstructed_image(self, image: Tensor) -> Tensor:
        """FTN logits computed on ``recon_image(image)``."""
        return self.fast_predict(self.recon_image(image))[1]

    def decoder_inference(
        self,
        decoder: nn.Module | str,
        latent_code: Tensor,
        eval: bool = False,  # noqa: A002 (published keyword)
        disable_track_bn_stats: bool = False,
    ) -> Tensor:
        """Run one decoder on a latent code and restore its train/eval flag afterwards.

        Args:
            decoder: the decoder module (or its name in ``model.model``).
            latent_code: ``(B, 128, h, w)``.
            eval: run it in eval mode under ``torch.no_grad()``; otherwise in its current mode and grad setting.
            disable_track_bn_stats: no BN running-stat update and frozen BN affine params during the call.

        Returns:
            The decoder output, e.g. logits ``(B, num_classes, 16h, 16w)`` or an image ``(B, 1, 16h, 16w)``.
        """
        if isinstance(decoder, str):
            decoder = self.networks[self._module_name(decoder)]
        was_training = decoder.training
        if eval:
            decoder.eval()
        try:
            no_bn_tracking = disable_tracking_bn_stats(decoder) if disable_track_bn_stats else contextlib.nullcontext()
            with torch.no_grad() if eval else contextlib.nullcontext(), no_bn_tracking:
                return decoder(latent_code.to(self.device, non_blocking=True))
        finally:
            decoder.train(was_training)

    def get_recon_diff(self, input: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Analysis helper (eval mode, no grad).

        Returns:
            ``(|x - recon| (B, 1, H, W), |refined - initial| (B, C, H, W), initial logits, refined logits,
            recon (B, 1, H, W))``.
        """
        self.eval()
        with torch.no_grad():
            x = self.networks.as_input(input)
            recon, initial, refined = self.run(x)
        return (x - recon).abs(), (refined - initial).abs(), initial, refined, recon


__all__ = ["NetworkBlocksMixin"]
