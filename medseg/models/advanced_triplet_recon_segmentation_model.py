"""The dual-thinking model: FTN (image encoder + segmentation/image decoders) and STN (shape auto-encoder).

``AdvancedTripletReconSegmentationModel`` keeps the published constructor keywords, attribute names and method
semantics (spec c, d) so that scripts and notebooks written against the original run unchanged, while fixing its
bugs (spec j). It only composes parts: networks (:mod:`medseg.models.encoder_decoder`), losses
(:mod:`medseg.models.losses`), latent masking (:mod:`medseg.models.model_util`) and checkpoint I/O
(:mod:`medseg.models.checkpoint`).

``model.model`` is a plain ``dict[str, nn.Module]`` on ``model.device`` and ``model.optimizers`` a dict of one Adam per
module, so a distributed trainer can all-reduce gradients itself.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from medseg.models import checkpoint as ckpt
from medseg.models.encoder_decoder import NETWORK_TYPES, get_network
from medseg.models.fusion import FoldedModules
from medseg.models.init_weight import init_weights
from medseg.models.losses import basic_loss_fn
from medseg.models.model_util import MaskSpec, _disable_tracking_bn_stats, make_one_hot, perturb_latent_code
from medseg.models.running_score import runningScore

logger = logging.getLogger(__name__)

MASK_SCOPES = ("image code", "shape code")
#: Modules run by :meth:`AdvancedTripletReconSegmentationModel.predict` (the image decoder is not).
PREDICT_MODULES = ("image_encoder", "segmentation_decoder", "shape_encoder", "shape_decoder")
STN_TEMPERATURE = 2.0


def _maybe_disable(module: nn.Module, disable: bool) -> contextlib.AbstractContextManager[None]:
    return _disable_tracking_bn_stats(module) if disable else contextlib.nullcontext()


def _backward_if(loss: Tensor, backward: bool) -> Tensor:
    """Backpropagate ``loss`` now (if it has a graph) and return it detached; else return it unchanged."""
    if not backward:
        return loss
    if loss.requires_grad:
        loss.backward()
    return loss.detach()


def _resolve_model_device(use_gpu: bool, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if use_gpu and not torch.cuda.is_available():
        warnings.warn("use_gpu=True but CUDA is not available: the model runs on the CPU", RuntimeWarning, stacklevel=3)
        return torch.device("cpu")
    return torch.device("cuda" if use_gpu else "cpu")


class AdvancedTripletReconSegmentationModel:
    """Cooperative FTN + STN segmentation model with latent-space hard-example generation.

    Args:
        network_type: ``'FCN_16_standard'``, ``'FCN_16_standard_w_o_filter'`` or ``'FCN_16_standard_share_code'``.
        image_ch: image channels.
        learning_rate: Adam learning rate of every module.
        encoder_dropout: optional Dropout2d rate in the encoders (None as published).
        decoder_dropout: optional Dropout2d rate in the decoders (None as published).
        num_classes: segmentation classes including background.
        n_iter: default number of inference passes of :meth:`predict` (1 = FTN, 2 = FTN + STN).
        checkpoint_dir: folder with ``<module>.pth`` files (or its parent) loaded strictly; None = fresh init (a.3).
        use_gpu: use CUDA if available (falls back to CPU with one warning).
        debug: verbose logging of internal steps.
        device: explicit device; overrides ``use_gpu``.
        channels_last: keep activations in channels-last memory format (faster on CPU); default: True on CPU.

    Raises:
        NotImplementedError: for an unknown ``network_type``.
        FileNotFoundError, ValueError: for a missing or mismatched checkpoint (naming the file).
    """

    def __init__(
        self,
        network_type: str = "FCN_16_standard",
        image_ch: int = 1,
        learning_rate: float = 1e-4,
        encoder_dropout: float | None = None,
        decoder_dropout: float | None = None,
        num_classes: int = 4,
        n_iter: int = 1,
        checkpoint_dir: str | os.PathLike | None = None,
        use_gpu: bool = True,
        debug: bool = False,
        device: torch.device | str | None = None,
        channels_last: bool | None = None,
    ) -> None:
        if network_type not in NETWORK_TYPES:
            raise NotImplementedError(
                f"network_type {network_type!r} is not implemented; expected one of {NETWORK_TYPES}"
            )
        self.network_type = network_type
        self.image_ch = image_ch
        self.learning_rate = learning_rate
        self.encoder_dropout = encoder_dropout
        self.decoder_dropout = decoder_dropout
        self.num_classes = num_classes
        self.n_iter = n_iter
        self.checkpoint_dir = checkpoint_dir
        self.debug = debug
        self.device = _resolve_model_device(use_gpu, device)
        self.use_gpu = self.device.type == "cuda"
        self.channels_last = (self.device.type == "cpu") if channels_last is None else channels_last
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.training = True
        self.z_i: Tensor | None = None
        self.z_s: Tensor | None = None
        self.model: dict[str, nn.Module] = self.init_model(checkpoint_dir)
        self._folded = FoldedModules(PREDICT_MODULES, self.memory_format)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.set_optimizers()
        self.running_metric = runningScore(n_classes=num_classes)
        self.cur_eval_images: np.ndarray | None = None
        self.cur_eval_predicts: np.ndarray | None = None
        self.cur_eval_gts: np.ndarray | None = None

    # ------------------------------------------------------------------------------------------------------------
    # construction, modes, parameters

    def get_network(self) -> dict[str, nn.Module]:
        """Build the five modules (published dict order) without moving or initialising them."""
        return get_network(
            self.network_type, self.image_ch, self.num_classes, self.encoder_dropout, self.decoder_dropout
        )

    def init_model(self, checkpoint_dir: str | os.PathLike | None = None) -> dict[str, nn.Module]:
        """Build the modules, then load ``checkpoint_dir`` strictly or apply the Kaiming init of spec a.3."""
        modules = self.get_network()
        if checkpoint_dir is None:
            for module in modules.values():
                init_weights(module, "kaiming")
        else:
            used = ckpt.load_modules(modules, checkpoint_dir, torch.device("cpu"))
            logger.info("loaded %s checkpoints from %s", self.network_type, used)
        for module in modules.values():
            module.to(self.device, memory_format=self.memory_format)
        return modules

    def _input(self, x: Tensor) -> Tensor:
        """Move an NCHW input to the model device and memory format."""
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=self.memory_format) if x.ndim == 4 else x

    def train(self, if_testing: bool = False) -> None:
        """Train mode for all modules and ``requires_grad=True`` on all parameters (``if_testing`` -> :meth:`eval`)."""
        if if_testing:
            self.eval()
            return
        self.training = True
        self._folded.clear()
        for module in self.model.values():
            module.train()
        self.requires_grad_(True)

    def eval(self) -> None:
        """Eval mode for all modules (BatchNorm uses running statistics); ``self.training`` becomes False (fix j.3)."""
        self.training = False
        for module in self.model.values():
            module.eval()

    def requires_grad_(self, requires_grad: bool = True) -> None:
        for module in self.model.values():
            module.requires_grad_(requires_grad)

    def get_modules(self) -> list[nn.Module]:
        return list(self.model.values())

    def parameters(self) -> Iterator[nn.Parameter]:
        """All parameters of the five modules, as tensors (fix j.1)."""
        return itertools.chain.from_iterable(module.parameters() for module in self.model.values())

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """``('<module>.<param>', tensor)`` for every parameter."""
        for name, module in self.model.items():
            for pname, param in module.named_parameters():
                yield f"{name}.{pname}", param

    def zero_grad(self) -> None:
        for module in self.model.values():
            module.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, dict[str, Tensor]]:
        """``{module: plain state_dict}``."""
        return {name: ckpt.plain_state_dict(module) for name, module in self.model.items()}

    # ------------------------------------------------------------------------------------------------------------
    # optimisers

    def set_optimizers(self) -> None:
        """One Adam (lr = ``learning_rate``, default betas/eps, no weight decay) per module."""
        self.optimizers = {
            name: torch.optim.Adam(module.parameters(), lr=self.learning_rate) for name, module in self.model.items()
        }

    def reset_all_optimizers(self) -> None:
        """zero_grad on all five optimisers."""
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)

    def optimize_all_params(self) -> None:
        """step() on all five optimisers."""
        for optimizer in self.optimizers.values():
            optimizer.step()

    # ------------------------------------------------------------------------------------------------------------
    # forward building blocks

    def encode_image(self, input: Tensor, disable_track_bn_stats: bool = False) -> tuple[Tensor, Tensor]:
        """``(B, 1, H, W) -> (z_i, z_s)``, each ``(B, 128, H/16, W/16)``, with the variant wiring of spec a.4."""
        encoder = self.model["image_encoder"]
        with _maybe_disable(encoder, disable_track_bn_stats):
            z_i, z_s = encoder(self._input(input))
        if self.network_type == "FCN_16_standard_share_code":
            z_i = z_s
        elif self.network_type == "FCN_16_standard_w_o_filter":
            z_s = z_i
        return z_i, z_s

    def decode_image(self, z_i: Tensor, disable_track_bn_stats: bool = False) -> Tensor:
        """Image code ``(B, 128, h, w)`` -> reconstruction ``(B, image_ch, 16h, 16w)`` in (0, 1)."""
        decoder = self.model["image_decoder"]
        with _maybe_disable(decoder, disable_track_bn_stats):
            return decoder(z_i)

    def decode_segmentation(self, z_s: Tensor, disable_track_bn_stats: bool = False) -> Tensor:
        """Shape code ``(B, 128, h, w)`` -> segmentation logits ``(B, num_classes, 16h, 16w)``."""
        decoder = self.model["segmentation_decoder"]
        with _maybe_disable(decoder, disable_track_bn_stats):
            return decoder(z_s)

    def decode_segmentation_from_image_code(self, z_i: Tensor) -> Tensor:
        """``segmentation_decoder(filter_code(z_i))``."""
        return self.decode_segmentation(self.model["image_encoder"].filter_code(z_i))

    def fast_predict(self, input: Tensor, disable_track_bn_stats: bool = False) -> tuple[tuple[Tensor, Tensor], Tensor]:
        """FTN: ``(B, 1, H, W) -> ((z_i, z_s), logits (B, num_classes, H, W))``."""
        z_i, z_s = self.encode_image(input, disable_track_bn_stats)
        return (z_i, z_s), self.decode_segmentation(z_s, disable_track_bn_stats)

    def construct_input(self, segmentation: Tensor, is_label_map: bool | None = None) -> Tensor:
        """STN input (spec a.5): one-hot of a label map ``(B, H, W)``, else ``softmax(logits / 2)``."""
        if is_label_map is None:
            is_label_map = segmentation.ndim == 3
        segmentation = segmentation.to(self.device, non_blocking=True)
        if is_label_map:
            return make_one_hot(segmentation, self.num_classes).contiguous(memory_format=self.memory_format)
        return F.softmax(segmentation / STN_TEMPERATURE, dim=1).contiguous(memory_format=self.memory_format)

    def encode_shape(
        self, segmentation: Tensor, is_label_map: bool | None = None, disable_track_bn_stats: bool = False
    ) -> Tensor:
        """Logits ``(B, C, H, W)`` or label map ``(B, H, W)`` -> shape code ``(B, 128, H/16, W/16)``."""
        encoder = self.model["shape_encoder"]
        with _maybe_disable(encoder, disable_track_bn_stats):
            return encoder(self.construct_input(segmentation, is_label_map))

    def decode_shape(self, z_shape: Tensor, disable_track_bn_stats: bool = False) -> Tensor:
        """Shape code -> refined logits ``(B, num_classes, H, W)``."""
        decoder = self.model["shape_decoder"]
        with _maybe_disable(decoder, disable_track_bn_stats):
            return decoder(z_shape)

    def recon_shape(
        self, segmentation: Tensor, is_label_map: bool | None = None, disable_track_bn_stats: bool = False
    ) -> Tensor:
        """One STN pass: ``shape_decoder(shape_encoder(construct_input(segmentation)))`` -> logits."""
        code = self.encode_shape(segmentation, is_label_map, disable_track_bn_stats)
        return self.decode_shape(code, disable_track_bn_stats)

    def recon_image(self, input: Tensor) -> Tensor:
        """``image_decoder(z_i(input))``: ``(B, 1, H, W) -> (B, 1, H, W)``."""
        z_i, _ = self.encode_image(input)
        return self.decode_image(z_i)

    def run(self, input: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(recon image, FTN logits, STN(FTN) logits)`` in the current mode."""
        (z_i, _), init_predict = self.fast_predict(input)
        return self.decode_image(z_i), init_predict, self.recon_shape(init_predict)

    def predict_w_reconstructed_image(self, input: Tensor) -> Tensor:
        """FTN logits computed on ``recon_image(input)``."""
        return self.fast_predict(self.recon_image(input))[1]

    # ------------------------------------------------------------------------------------------------------------
    # inference

    def predict(self, input: Tensor, softmax: bool = False, n_iter: int | None = None) -> Tensor:
        """Eval-mode prediction: FTN logits followed by ``n_iter - 1`` sequential STN passes (spec d, fix j.4).

        Switches the model to eval mode (and leaves it there, as published) and runs under inference mode on cached
        copies of the networks with BatchNorm folded into the preceding convolutions (rebuilt whenever a weight or
        running statistic changes; equal to the plain eval forward up to floating-point rounding).

        Args:
            input: images ``(B, 1, H, W)``, H and W divisible by 16.
            softmax: return probabilities instead of logits.
            n_iter: passes (``<= 1``: FTN only); default ``self.n_iter``.

        Returns:
            ``(B, num_classes, H, W)`` logits (or probabilities), contiguous, on ``self.device``.
        """
        n_iter = self.n_iter if n_iter is None else n_iter
        self.eval()
        modules = self.model
        # BN folded into the convolutions (eval-mode BN is affine): same function, up to rounding, and faster
        self.model = {**modules, **self._folded.get(modules)}
        try:
            with torch.inference_mode():
                _, pred = self.fast_predict(input)
                for _ in range(max(n_iter - 1, 0)):
                    pred = self.recon_shape(pred, is_label_map=False)
                if softmax:
                    pred = F.softmax(pred, dim=1)
        finally:
            self.model = modules
        return pred.clone(memory_format=torch.contiguous_format)

    def slow_refinement(
        self, pred_logit: Tensor, n_steps: int = 1, auto_stop: bool = False, save_internal_predicts: bool = False
    ) -> tuple[Tensor, dict[int, Tensor]]:
        """Published semantics: ``n_steps`` times STN(pred_logit) on the *same* input; returns the last one.

        All steps give the same output in a given mode, so one pass is computed. ``auto_stop`` is accepted and unused
        (as published).

        Returns:
            ``(refined logits (B, C, H, W), {step: logits})``, the dict filled only with ``save_internal_predicts``.
        """
        del auto_stop
        if n_steps < 1:
            return pred_logit, {}
        refined = self.recon_shape(pred_logit, is_label_map=False)
        internal = {step: refined for step in range(n_steps)} if save_internal_predicts else {}
        return refined, internal

    def evaluate(self, input: Tensor, targets_npy: np.ndarray, n_iter: int | None = None) -> np.ndarray:
        """Predict, argmax, update the running confusion matrix and keep images/preds/GTs for plotting.

        Args:
            input: ``(B, 1, H, W)`` images.
            targets_npy: ``(B, H, W)`` integer ground truth.
            n_iter: passes of :meth:`predict`.

        Returns:
            ``(B, H, W)`` int64 predicted label map.
        """
        pred = self.predict(input, softmax=False, n_iter=n_iter).argmax(dim=1).cpu().numpy()
        targets_npy = np.asarray(targets_npy)
        self.running_metric.update(targets_npy, pred)
        self.cur_eval_images = input.detach().cpu().numpy()[:, 0]
        self.cur_eval_predicts = pred
        self.cur_eval_gts = targets_npy
        return pred

    def reset_metric(self) -> None:
        self.running_metric.reset()

    def get_recon_diff(self, input: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Analysis helper (eval mode).

        Returns:
            ``(|x - recon|, |refined - initial|, initial logits, refined logits, recon)``.
        """
        self.eval()
        with torch.no_grad():
            x = self._input(input)
            recon, initial, refined = self.run(x)
        return (x - recon).abs(), (refined - initial).abs(), initial, refined, recon

    # ------------------------------------------------------------------------------------------------------------
    # training (spec c.2)

    def standard_training(
        self,
        clean_image_l: Tensor,
        label_l: Tensor,
        perturbed_image: Tensor,
        compute_gt_recon: bool = True,
        update_latent: bool = True,
        disable_track_bn_stats: bool = False,
        separate_training: bool = False,
        backward_now: bool = False,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The FTN + STN losses on one input (spec c.2 step 4; reused by hard-example training).

        Args:
            clean_image_l: ``(B, 1, H, W)`` target of the image reconstruction.
            label_l: ``(B, H, W)`` int64 labels.
            perturbed_image: ``(B, 1, H, W)`` network input (noisy image, or a hard example).
            compute_gt_recon: add ``CE(STN(one-hot(label)), label)``.
            update_latent: store ``z_i``/``z_s`` (with their graph) on the model for hard-example generation.
            disable_track_bn_stats: run the encoder, segmentation decoder and STN without BN tracking and with frozen
                BN affine params; the image decoder call is deliberately not wrapped (as published).
            separate_training: detach the FTN prediction before the STN (no STN->FTN gradient).
            backward_now: accumulate the gradients into ``.grad`` here, each independent graph as soon as its loss
                is known (the GT->STN graph is freed before the FTN graph is built); the sum of the gradients is that
                of ``total.backward()``, peak memory is lower, and the returned losses are detached.

        Returns:
            ``(total, {'seg', 'image', 'shape', 'gt_shape'})`` scalar tensors; ``image`` includes the 0.5 factor;
            ``gt_shape`` is 0 without ``compute_gt_recon``.
        """
        label_l = label_l.to(self.device, non_blocking=True).long()
        clean_image_l = self._input(clean_image_l)
        if compute_gt_recon:  # GT first, then prediction: the order of the STN running-stat updates
            gt_shape_loss = basic_loss_fn(self.recon_shape(label_l, True, disable_track_bn_stats), label_l)
            gt_shape_loss = _backward_if(gt_shape_loss, backward_now)
        else:
            gt_shape_loss = torch.zeros((), device=self.device)
        (z_i, z_s), init_predict = self.fast_predict(perturbed_image, disable_track_bn_stats)
        if update_latent:
            self.z_i, self.z_s = z_i, z_s
        seg_loss = basic_loss_fn(init_predict, label_l, "cross entropy")
        image_loss = 0.5 * basic_loss_fn(self.decode_image(z_i), clean_image_l, "mse")
        stn_input = init_predict.detach() if separate_training else init_predict
        shape_loss = basic_loss_fn(self.recon_shape(stn_input, False, disable_track_bn_stats), label_l)
        if backward_now:
            _backward_if(seg_loss + image_loss + shape_loss, True)
            seg_loss, image_loss, shape_loss = seg_loss.detach(), image_loss.detach(), shape_loss.detach()
        total = seg_loss + image_loss + shape_loss + gt_shape_loss
        return total, {"seg": seg_loss, "image": image_loss, "shape": shape_loss, "gt_shape": gt_shape_loss}

    def perturb_latent_code(
        self,
        latent_code: Tensor,
        decoder_function: nn.Module,
        label_y: Tensor | None = None,
        perturb_type: str = "random",
        threshold: float = 0.5,
        if_soft: bool = False,
        random_threshold: bool = False,
        loss_type: str = "corr",
        if_detach: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Masked copy of ``latent_code`` (spec b); see :func:`medseg.models.model_util.perturb_latent_code`."""
        result = perturb_latent_code(
            latent_code,
            decoder_function,
            label_y,
            perturb_type=perturb_type,
            threshold=threshold,
            if_soft=if_soft,
            random_threshold=random_threshold,
            loss_type=loss_type,
            if_detach=if_detach,
            num_classes=self.num_classes,
            generator=generator,
        )
        if self.debug:
            logger.debug("latent code perturbed with %s", result.method)
        return result.code

    def hard_example_generation(
        self,
        clean_image_l: Tensor,
        label_l: Tensor,
        mask_scope: Sequence[str] = MASK_SCOPES,
        image_code_spec: MaskSpec | None = None,
        shape_code_spec: MaskSpec | None = None,
        generator: torch.Generator | None = None,
        z_i: Tensor | None = None,
        z_s: Tensor | None = None,
    ) -> tuple[Tensor | None, Tensor | None]:
        """Corrupted image and segmentation decoded from masked latent codes (spec c.2 step 5a).

        The segmentation and image decoders are frozen meanwhile; the gradient probes run them in their current mode
        with BN tracking on, the corrupted outputs in the current mode with tracking off. Outputs are constants.

        Args:
            clean_image_l: ``(B, 1, H, W)`` probe target of the image code.
            label_l: ``(B, H, W)`` probe target of the shape code.
            mask_scope: subset of ``('image code', 'shape code')``.
            image_code_spec: masking of z_i (default ``MaskSpec('mse')``).
            shape_code_spec: masking of z_s (default ``MaskSpec('ce')``).
            generator: optional RNG for every draw.
            z_i, z_s: codes to perturb; default the ones stored by :meth:`standard_training`.

        Returns:
            ``(corrupted image (B, 1, H, W) in (0, 1) or None, corrupted segmentation logits (B, C, H, W) or None)``.
        """
        unknown = set(mask_scope) - set(MASK_SCOPES)
        if unknown:
            raise ValueError(f"mask_scope entries must be in {MASK_SCOPES}, got {sorted(unknown)}")
        image_code_spec = image_code_spec or MaskSpec(loss_name="mse")
        shape_code_spec = shape_code_spec or MaskSpec(loss_name="ce")
        z_i = self.z_i if z_i is None else z_i
        z_s = self.z_s if z_s is None else z_s
        jobs = []
        if "image code" in mask_scope:
            jobs.append(("image_decoder", z_i, self._input(clean_image_l), image_code_spec))
        if "shape code" in mask_scope:
            jobs.append(("segmentation_decoder", z_s, label_l.to(self.device).long(), shape_code_spec))
        frozen = [self.model["segmentation_decoder"], self.model["image_decoder"]]
        saved = [[p.requires_grad for p in m.parameters()] for m in frozen]
        for module in frozen:
            module.requires_grad_(False)
        outputs: dict[str, Tensor] = {}
        try:
            for name, code, target, spec in jobs:
                if code is None:
                    raise ValueError(f"no latent code for {name}: run standard_training first or pass z_i/z_s")
                decoder = self.model[name]
                masked = self.perturb_latent_code(
                    code, decoder, target, spec.mask_type, spec.max_threshold, spec.if_soft,
                    spec.random_threshold, spec.loss_name, if_detach=True, generator=generator,
                )  # fmt: skip
                with torch.no_grad(), _disable_tracking_bn_stats(decoder):
                    outputs[name] = decoder(masked)
        finally:
            for module, flags in zip(frozen, saved):
                for param, flag in zip(module.parameters(), flags):
                    param.requires_grad_(flag)
        return outputs.get("image_decoder"), outputs.get("segmentation_decoder")

    def hard_example_training(
        self,
        perturbed_image: Tensor | None,
        perturbed_seg: Tensor | None,
        clean_image_l: Tensor,
        label_l: Tensor,
        use_gpu: bool | None = None,
        separate_training: bool = False,
        backward_now: bool = False,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Losses on the hard examples (spec c.2 step 5b).

        Args:
            perturbed_image: corrupted image ``(B, 1, H, W)`` or None.
            perturbed_seg: corrupted segmentation logits ``(B, C, H, W)`` or None.
            clean_image_l: ``(B, 1, H, W)`` clean image.
            label_l: ``(B, H, W)`` labels.
            use_gpu: accepted for compatibility and ignored (the model device is used, fix j.6).
            separate_training: detach FTN predictions before the STN.
            backward_now: accumulate gradients here, one independent graph at a time (see :meth:`standard_training`);
                the returned losses are then detached.

        Returns:
            ``(total, {'seg', 'image', 'shape'})`` where ``shape`` = prediction->STN + corrupted-seg->STN.
        """
        del use_gpu
        label_l = label_l.to(self.device, non_blocking=True).long()
        zero = torch.zeros((), device=self.device)
        seg_loss, image_loss, shape_loss = zero, zero, zero
        corrupt_shape_loss = zero
        if perturbed_seg is not None:  # no running stats are tracked in these calls, so the order is free
            refined = self.recon_shape(perturbed_seg.detach(), is_label_map=False, disable_track_bn_stats=True)
            corrupt_shape_loss = _backward_if(basic_loss_fn(refined, label_l, "cross entropy"), backward_now)
        if perturbed_image is not None:
            _, parts = self.standard_training(
                clean_image_l, label_l, perturbed_image.detach(), compute_gt_recon=False, update_latent=False,
                disable_track_bn_stats=True, separate_training=separate_training, backward_now=backward_now,
            )  # fmt: skip
            seg_loss, image_loss, shape_loss = parts["seg"], parts["image"], parts["shape"]
        shape_loss = shape_loss + corrupt_shape_loss
        total = seg_loss + image_loss + shape_loss
        return total, {"seg": seg_loss, "image": image_loss, "shape": shape_loss}

    # ------------------------------------------------------------------------------------------------------------
    # checkpoints

    def save_model(self, save_dir: str | os.PathLike, epoch_iter: int | str) -> Path:
        """Write ``save_dir/<epoch_iter>/checkpoints/<module>.pth`` (plain state_dicts, atomic); returns the folder."""
        directory = Path(save_dir) / str(epoch_iter) / "checkpoints"
        return ckpt.save_modules(self.model, directory)

    def load_model(self, checkpoint_dir: str | os.PathLike) -> None:
        """Strictly load ``<module>.pth`` files from ``checkpoint_dir`` (or its ``checkpoints`` subfolder)."""
        ckpt.load_modules(self.model, checkpoint_dir, self.device)
        self.checkpoint_dir = checkpoint_dir

    def save_snapshots(
        self,
        save_dir: str | os.PathLike,
        epoch: int,
        extra: dict[str, Any] | None = None,
        path: str | os.PathLike | None = None,
    ) -> Path:
        """Write a resumable snapshot (atomic).

        Default location ``save_dir/interrupted/checkpoints/<network_type>.pkl``; ``path`` overrides it. Layout::

            {'network_type': str, 'epoch': int,
             'model_state': {module: state_dict}, 'optimizer_state': {module: optimizer.state_dict()},
             'extra': extra or {}}

        ``extra`` must hold only weights-only-loadable values (tensors, numbers, strings, lists/dicts/tuples of them).
        """
        default = Path(save_dir) / "interrupted" / "checkpoints" / f"{self.network_type}.pkl"
        target = Path(path) if path is not None else default
        return ckpt.save_snapshot(target, self.network_type, epoch, self.model, self.optimizers, extra)

    def load_snapshots(self, path: str | os.PathLike) -> dict[str, Any]:
        """Strictly restore module and optimiser states from a snapshot.

        Returns:
            ``{'epoch': int, 'extra': dict, 'network_type': str}``.

        Raises:
            FileNotFoundError, ValueError: naming the file, for a missing, unsafe or mismatched snapshot.
        """
        return ckpt.load_snapshot(path, self.network_type, self.model, self.optimizers, self.device)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(network_type={self.network_type!r}, num_classes={self.num_classes}, "
            f"image_ch={self.image_ch}, device={self.device}, n_iter={self.n_iter})"
        )

