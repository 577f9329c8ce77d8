"""The dual-thinking model: FTN (image encoder + segmentation/image decoders) and STN (shape auto-encoder).

``AdvancedTripletReconSegmentationModel`` offers every method of the published class with the published
name, argument order, defaults and return structure, so scripts and notebooks written against the original call it
unchanged; the values follow medseg's fixes of the published bugs (e.g. :meth:`eval` really sets eval mode). The few
places where a published call behaves differently are listed in :data:`PUBLISHED_API_DIFFERENCES`.

medseg's own API sits beside it, under its own names or as keyword-only options: :meth:`standard_losses` and
:meth:`hard_example_losses` (``(total, dict)`` returns), :class:`~medseg.method.mask_options.MaskOptions`,
``generator=`` for reproducible draws, ``backward_now=`` for lower peak memory, :meth:`restore_snapshot` (a dict),
:meth:`load_model`. Each published method is a thin adapter over the same code, so both APIs compute the same numbers.

The class only composes parts: networks (:mod:`medseg.nn.encoder_decoder`), losses (:mod:`medseg.models.losses`),
latent masking (:mod:`medseg.method.masking`), the cooperative-training losses
(:mod:`medseg.models.cooperative`) and checkpoint I/O (:mod:`medseg.models.checkpoint`).

``model.model`` is a plain ``dict[str, nn.Module]`` on ``model.device`` and ``model.optimizers`` a dict of one Adam per
module, so a distributed trainer can all-reduce gradients itself.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import numbers
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from medseg.models import checkpoint as ckpt
from medseg.models.cooperative import (
    IMAGE_CODE_DA_CONFIG,
    MASK_SCOPES,
    SHAPE_CODE_DA_CONFIG,
    CooperativeTrainingMixin,
    mask_scope_flags,
)
from medseg.nn.encoder_decoder import NETWORK_TYPES
from medseg.nn.encoder_decoder import get_network as build_network
from medseg.nn.fusion import FoldedModules
from medseg.nn.init_weight import init_weights
from medseg.method.losses import make_one_hot
from medseg.method.networks import disable_tracking_bn_stats
from medseg.evaluation.running_score import runningScore
from medseg.training import snapshot as snapshots
from medseg.io.atomic import atomic_torch_save

logger = logging.getLogger(__name__)

#: Modules run by :meth:`AdvancedTripletReconSegmentationModel.predict` (the image decoder is not).
PREDICT_MODULES = ("image_encoder", "segmentation_decoder", "shape_encoder", "shape_decoder")
STN_TEMPERATURE = 2.0

#: Where a call written for the published class gets a different result, and why (fixed published bugs, medseg choices).
PUBLISHED_API_DIFFERENCES = {
    "eval()": ("really sets eval mode (published: training stayed True); fast_predict therefore runs under no_grad in "
              "eval mode, as intended"),
    "parameters()/named_parameters()": "yield tensors (published: generators); names are '<module>.<parameter>'",
    "hard_example_training(use_gpu=...)": ("accepted and ignored: the model's device is used "
                                           "(published: .cuda(), crashed on CPU)"),
    "perturb_latent_code('dropout')": ("the returned mask is the true channel keep-mask "
                                       "(published: an equality test on the scaled code)"),
    "perturb_latent_code('random')": "the method is drawn with torch's RNG (or generator=), not Python's random",
    "load_snapshots()": "a bad or mismatched file raises an error naming it instead of restarting at epoch 0",
    "get_network()/init_model()": "a missing or mismatched checkpoint raises, no silent default (PyTorch) init",
    "save_model(model_prefix=...)": ("a prefix names the files '<prefix>_<module>.pth' "
                                     "(the published API names no file scheme)"),
    "slow_refinement()": "computes the STN pass once (every step gives the same output)",
    "save_testing_images_results()": ("columns Input / GT / Predict in the right order "
                                      "(published: Input and GT swapped)"),
    "encode_shape()/recon_shape()": "a (B, H, W) integer label map with is_label_map=False is an error, not garbage",
}


def _maybe_disable(module: nn.Module, disable: bool) -> contextlib.AbstractContextManager[None]:
    return disable_tracking_bn_stats(module) if disable else contextlib.nullcontext()


def _check_int(value: Any, name: str, minimum: int) -> int:
    """``value`` as an int; ``TypeError`` unless it is an integer (not a bool), ``ValueError`` below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_learning_rate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"learning_rate must be a number > 0, got {type(value).__name__} {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"learning_rate must be a finite number > 0, got {value!r}")
    return float(value)


def _resolve_model_device(use_gpu: bool, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if use_gpu and not torch.cuda.is_available():
        warnings.warn("use_gpu=True but CUDA is not available: the model runs on the CPU", RuntimeWarning, stacklevel=3)
        return torch.device("cpu")
    return torch.device("cuda" if use_gpu else "cpu")


class AdvancedTripletReconSegmentationModel(CooperativeTrainingMixin):
    """Cooperative FTN + STN segmentation model with latent-space hard-example generation.

    Args:
        network_type: ``'FCN_16_standard'``, ``'FCN_16_standard_w_o_filter'`` or ``'FCN_16_standard_share_code'``.
        image_ch: image channels.
        learning_rate: Adam learning rate of every module.
        encoder_dropout: optional Dropout2d rate in the encoders (None as published).
        decoder_dropout: optional Dropout2d rate in the decoders (None as published).
        num_classes: segmentation classes including background.
        n_iter: default number of inference passes of :meth:`predict` (1 = FTN, 2 = FTN + STN).
        checkpoint_dir: folder with ``<module>.pth`` files (or its parent) loaded strictly; None = fresh init
            (published initialisation).
        use_gpu: use CUDA if available (falls back to CPU with one warning).
        debug: verbose logging of internal steps.
        device: (medseg, keyword) explicit device; overrides ``use_gpu``.
        channels_last: (medseg, keyword) channels-last activations (faster on CPU); default: True on CPU.

    Raises:
        NotImplementedError: for an unknown ``network_type``.
        TypeError, ValueError: for ``num_classes`` not an int >= 2, ``image_ch`` not an int >= 1, ``learning_rate``
            not a finite number > 0 or ``n_iter`` not an int >= 1 (naming the argument).
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
        *,
        device: torch.device | str | None = None,
        channels_last: bool | None = None,
    ) -> None:
        if network_type not in NETWORK_TYPES:
            raise NotImplementedError(
                f"network_type {network_type!r} is not implemented; expected one of {NETWORK_TYPES}"
            )
        self.network_type = network_type
        self.image_ch = _check_int(image_ch, "image_ch", 1)
        self.learning_rate = _check_learning_rate(learning_rate)
        self.encoder_dropout = encoder_dropout
        self.decoder_dropout = decoder_dropout
        self.num_classes = _check_int(num_classes, "num_classes", 2)
        self.n_iter = _check_int(n_iter, "n_iter", 1)
        self.checkpoint_dir = checkpoint_dir
        self.debug = debug
        self.device = _resolve_model_device(use_gpu, device)
        self.use_gpu = self.device.type == "cuda"
        self.channels_last = (self.device.type == "cpu") if channels_last is None else channels_last
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.training = True
        self.z_i: Tensor | None = None
        self.z_s: Tensor | None = None
        self.model: dict[str, nn.Module] = self.get_network(checkpoint_dir)
        self._folded = FoldedModules(PREDICT_MODULES, self.memory_format)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.set_optimizers()
        self.running_metric = self.set_running_metric()
        self.cur_eval_images: np.ndarray | None = None
        self.cur_eval_predicts: np.ndarray | None = None
        self.cur_eval_gts: np.ndarray | None = None

    # ------------------------------------------------------------------------------------------------------------
    # construction, modes, parameters

    def get_network(self, checkpoint_dir: str | os.PathLike | None = None) -> dict[str, nn.Module]:
        """Build the five modules (published dict order), initialise or load each with :meth:`init_model`.

        Args:
            checkpoint_dir: folder with one ``<module>.pth`` per module (or its parent holding ``checkpoints/``);
                None = fresh initialisation (published scheme).

        Returns:
            ``{module name: module}`` on the model device.
        """
        modules = build_network(
            self.network_type, self.image_ch, self.num_classes, self.encoder_dropout, self.decoder_dropout
        )
        folder = None if checkpoint_dir is None else ckpt.resolve_checkpoint_dir(checkpoint_dir, tuple(modules))
        for name, module in modules.items():
            self.init_model(module, None if folder is None else folder / f"{name}.pth")
        if folder is not None:
            logger.info("loaded %s checkpoints from %s", self.network_type, folder)
        return modules

    def init_model(self, model: nn.Module, resume_path: str | os.PathLike | None = None) -> nn.Module:
        """Kaiming-initialise ``model`` (``resume_path`` None) or load its state strictly from ``resume_path``.

        Returns:
            The same module, moved to the model device.

        Raises:
            FileNotFoundError, ValueError: naming the file, for a missing, unsafe or mismatched checkpoint.
        """
        if resume_path is None:
            init_weights(model, "kaiming")
        else:
            ckpt.load_state_strict(model, ckpt.safe_load(resume_path, "cpu"), f"checkpoint {resume_path}")
        return model.to(self.device, memory_format=self.memory_format)

    def load_model(self, checkpoint_dir: str | os.PathLike) -> None:
        """(medseg) Strictly load ``<module>.pth`` files from ``checkpoint_dir`` (or its ``checkpoints`` subfolder)."""
        folder = ckpt.resolve_checkpoint_dir(checkpoint_dir, tuple(self.model))
        for name, module in self.model.items():
            self.init_model(module, folder / f"{name}.pth")
        self._folded.clear()
        self.checkpoint_dir = checkpoint_dir

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
        """Eval mode for all modules (BatchNorm uses running statistics); ``self.training`` becomes False."""
        self.training = False
        for module in self.model.values():
            module.eval()

    def requires_grad_(self, requires_grad: bool = True) -> None:
        for module in self.model.values():
            module.requires_grad_(requires_grad)

    def get_modules(self) -> list[nn.Module]:
        return list(self.model.values())

    def parameters(self) -> Iterator[nn.Parameter]:
        """All parameters of the five modules, as tensors."""
        return itertools.chain.from_iterable(module.parameters() for module in self.model.values())

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """``('<module>.<param>', tensor)`` for every parameter."""
        for name, module in self.model.items():
            for pname, param in module.named_parameters():
                yield f"{name}.{pname}", param

    def zero_grad(self) -> None:
        """Clear the ``.grad`` of every parameter of the five modules."""
        for module in self.model.values():
            module.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, dict[str, Tensor]]:
        """(medseg) ``{module: plain state_dict}``."""
        return {name: ckpt.plain_state_dict(module) for name, module in self.model.items()}

    # ------------------------------------------------------------------------------------------------------------
    # optimisers and metric

    def set_optimizers(self) -> None:
        """One Adam (lr = ``learning_rate``, default betas/eps, no weight decay) per module."""
        self.optimizers = {
            name: torch.optim.Adam(module.parameters(), lr=self.learning_rate) for name, module in self.model.items()
        }

    def get_optimizer(
        self, model_name: str | None = None
    ) -> torch.optim.Optimizer | dict[str, torch.optim.Optimizer]:
        """The Adam of module ``model_name``, or the dict of all five when None."""
        if model_name is None:
            return self.optimizers
        return self.optimizers[self._module_name(model_name)]

    def _module_name(self, model_name: str) -> str:
        if model_name not in self.model:
            raise KeyError(f"model_name must be one of {list(self.model)}, got {model_name!r}")
        return model_name

    def reset_all_optimizers(self) -> None:
        """zero_grad on all five optimisers."""
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)

    def reset_optimizer(self, model_name: str) -> None:
        """zero_grad on the optimiser of one module."""
        self.optimizers[self._module_name(model_name)].zero_grad(set_to_none=True)

    def optimize_all_params(self) -> None:
        """step() on all five optimisers."""
        for optimizer in self.optimizers.values():
            optimizer.step()

    def optimize_params(self, model_name: str) -> None:
        """step() on the optimiser of one module."""
        self.optimizers[self._module_name(model_name)].step()

    def set_running_metric(self) -> runningScore:
        """A fresh pooled confusion-matrix score over ``num_classes`` classes (also stored as ``running_metric``)."""
        self.running_metric = runningScore(n_classes=self.num_classes)
        return self.running_metric

    def reset_metric(self) -> None:
        """(medseg) Clear the running confusion matrix."""
        self.running_metric.reset()

    # ------------------------------------------------------------------------------------------------------------
    # forward building blocks

    def encode_image(self, input: Tensor, disable_track_bn_stats: bool = False) -> tuple[Tensor, Tensor]:
        """``(B, 1, H, W) -> (z_i, z_s)``, each ``(B, 128, H/16, W/16)``, wired as the ``network_type`` variant says."""
        encoder = self.model["image_encoder"]
        with _maybe_disable(encoder, disable_track_bn_stats):
            z_i, z_s = encoder(self._input(input))
        if self.network_type == "FCN_16_standard_share_code":
            z_i = z_s
        elif self.network_type == "FCN_16_standard_w_o_filter":
            z_s = z_i
        return z_i, z_s

    def decode_image(self, latent_code: Tensor, disable_track_bn_stats: bool = False) -> Tensor:
        """Image code ``(B, 128, h, w)`` -> reconstruction ``(B, image_ch, 16h, 16w)`` in (0, 1)."""
        decoder = self.model["image_decoder"]
        with _maybe_disable(decoder, disable_track_bn_stats):
            return decoder(latent_code)

    def decode_segmentation(self, latent_code: Tensor, disable_track_bn_stats: bool = False) -> Tensor:
        """(medseg) Shape code ``(B, 128, h, w)`` -> segmentation logits ``(B, num_classes, 16h, 16w)``."""
        decoder = self.model["segmentation_decoder"]
        with _maybe_disable(decoder, disable_track_bn_stats):
            return decoder(latent_code)

    def decode_segmentation_from_image_code(
        self, latent_code_i: Tensor, disable_track_bn_stats: bool = False
    ) -> Tensor:
        """``segmentation_decoder(filter_code(z_i))``: image code -> logits ``(B, num_classes, 16h, 16w)``."""
        encoder = self.model["image_encoder"]
        with _maybe_disable(encoder, disable_track_bn_stats):
            z_s = encoder.filter_code(latent_code_i)
        return self.decode_segmentation(z_s, disable_track_bn_stats)

    def fast_predict(self, input: Tensor, disable_track_bn_stats: bool = False) -> tuple[tuple[Tensor, Tensor], Tensor]:
        """FTN: ``(B, 1, H, W) -> ((z_i, z_s), logits (B, num_classes, H, W))``.

        In eval mode (after :meth:`eval`) it runs under ``torch.no_grad()``, a branch the published ``eval()`` never
        reached.
        """
        grad_mode = contextlib.nullcontext() if self.training else torch.no_grad()
        with grad_mode:
            z_i, z_s = self.encode_image(input, disable_track_bn_stats)
            return (z_i, z_s), self.decode_segmentation(z_s, disable_track_bn_stats)

    def construct_input(
        self, segmentation: Tensor, is_label_map: bool = False, temperature: float = STN_TEMPERATURE
    ) -> Tensor:
        """STN input: one-hot of a label map ``(B, H, W)``, else ``softmax(logits / temperature)``.

        Raises:
            ValueError: for a ``(B, H, W)`` integer map passed with ``is_label_map=False``.
        """
        segmentation = segmentation.to(self.device, non_blocking=True)
        if is_label_map:
            return make_one_hot(segmentation, self.num_classes).contiguous(memory_format=self.memory_format)
        if segmentation.ndim != 4:
            raise ValueError(
                f"segmentation logits must be (B, C, H, W), got shape {tuple(segmentation.shape)}"
                + ("; pass is_label_map=True for a (B, H, W) label map" if segmentation.ndim == 3 else "")
            )
        return F.softmax(segmentation / temperature, dim=1).contiguous(memory_format=self.memory_format)

    def encode_shape(
        self,
        segmentation: Tensor,
        is_label_map: bool = False,
        disable_track_bn_stats: bool = False,
        temperature: float = STN_TEMPERATURE,
    ) -> Tensor:
        """Logits ``(B, C, H, W)`` or label map ``(B, H, W)`` (``is_label_map``) -> code ``(B, 128, H/16, W/16)``."""
        encoder = self.model["shape_encoder"]
        with _maybe_disable(encoder, disable_track_bn_stats):
            return encoder(self.construct_input(segmentation, is_label_map, temperature))

    def decode_shape(self, latent_code: Tensor, disable_track_bn_stats: bool = False) -> Tensor:
        """Shape code -> refined logits ``(B, num_classes, H, W)``."""
        decoder = self.model["shape_decoder"]
        with _maybe_disable(decoder, disable_track_bn_stats):
            return decoder(latent_code)

    def recon_shape(
        self, segmentation_logit: Tensor, is_label_map: bool = False, disable_track_bn_stats: bool = False
    ) -> Tensor:
        """One STN pass: ``shape_decoder(shape_encoder(construct_input(segmentation_logit)))`` -> logits."""
        code = self.encode_shape(segmentation_logit, is_label_map, disable_track_bn_stats)
        return self.decode_shape(code, disable_track_bn_stats)

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
            decoder = self.model[self._module_name(decoder)]
        was_training = decoder.training
        if eval:
            decoder.eval()
        try:
            with torch.no_grad() if eval else contextlib.nullcontext(), _maybe_disable(decoder, disable_track_bn_stats):
                return decoder(latent_code.to(self.device, non_blocking=True))
        finally:
            decoder.train(was_training)

    def forward(self, input: Tensor) -> Tensor:
        """Logits of :meth:`predict` with the default ``n_iter``."""
        return self.predict(input)

    # ------------------------------------------------------------------------------------------------------------
    # inference

    def predict(self, input: Tensor, softmax: bool = False, n_iter: int | None = None) -> Tensor:
        """Eval-mode prediction: FTN logits followed by ``n_iter - 1`` sequential STN passes (the published code
        recomputed the same pass ``n_iter`` times per step).

        Switches the model to eval mode (and leaves it there, as published) and runs under inference mode on cached
        copies of the networks with BatchNorm folded into the preceding convolutions (rebuilt whenever a weight or
        running statistic changes; equal to the plain eval forward up to floating-point rounding).

        Args:
            input: floating-point images ``(B, image_ch, H, W)``, H and W divisible by 16.
            softmax: return probabilities instead of logits.
            n_iter: passes (``<= 1``: FTN only, as published); default ``self.n_iter``.

        Returns:
            ``(B, num_classes, H, W)`` logits (or probabilities), contiguous, on ``self.device``.

        Raises:
            TypeError: if ``input`` is not a floating-point tensor of the model's dtype (half precision is accepted:
                the networks may compute in it), or ``n_iter`` is not an int or None.
            ValueError: if ``input`` is not ``(B, image_ch, H, W)`` with H and W divisible by 16.
        """
        self._check_image_batch(input, "input")
        if n_iter is not None and (isinstance(n_iter, bool) or not isinstance(n_iter, numbers.Integral)):
            raise TypeError(f"n_iter must be an int or None, got {type(n_iter).__name__} {n_iter!r}")
        n_iter = self.n_iter if n_iter is None else int(n_iter)
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

    def _check_image_batch(self, images: Any, name: str) -> None:
        """``TypeError``/``ValueError`` unless ``images`` is a floating-point ``(B, image_ch, H, W)`` tensor."""
        expected = f"(N, {self.image_ch}, H, W)"
        if not isinstance(images, Tensor):
            hint = "; convert it with torch.from_numpy(x).float()" if isinstance(images, np.ndarray) else ""
            raise TypeError(f"{name} must be a float torch.Tensor of shape {expected}, got {type(images).__name__}"
                            + hint)
        if not images.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {images.dtype}; convert it with "
                            ".float()")
        dtype = next(itertools.chain.from_iterable(m.parameters() for m in self.model.values())).dtype
        if images.dtype != dtype and images.dtype not in (torch.float16, torch.bfloat16):
            raise TypeError(f"{name} must have the model's dtype {dtype}, got {images.dtype}; convert it with "
                            f".to({dtype})")
        if images.ndim != 4 or images.shape[1] != self.image_ch:
            raise ValueError(f"{name} must be {expected} (image_ch={self.image_ch}), got shape "
                             f"{tuple(images.shape)}")

    def slow_refinement(
        self, pred_logit: Tensor, n_steps: int = 1, auto_stop: bool = False, save_internal_predicts: bool = False
    ) -> tuple[Tensor, list[Tensor]]:
        """Published semantics: ``n_steps`` times STN(pred_logit) on the *same* input; returns the last one.

        All steps give the same output in a given mode, so one pass is computed. ``auto_stop`` is accepted and
        unused (as published).

        Returns:
            ``(refined logits (B, C, H, W), internal predicts)``: a list of the ``n_steps`` step outputs, filled only
            with ``save_internal_predicts`` (else empty).
        """
        del auto_stop
        if n_steps < 1:
            return pred_logit, []
        refined = self.recon_shape(pred_logit, is_label_map=False)
        return refined, [refined] * n_steps if save_internal_predicts else []

    def evaluate(self, input: Tensor, targets_npy: np.ndarray, n_iter: int | None = None) -> Tensor:
        """Predict, update the running confusion matrix with the argmax and keep images/preds/GTs for plotting.

        Args:
            input: ``(B, 1, H, W)`` images.
            targets_npy: ``(B, H, W)`` integer ground truth.
            n_iter: passes of :meth:`predict`.

        Returns:
            ``(B, num_classes, H, W)`` logits; the label map is ``cur_eval_predicts`` (``(B, H, W)`` int64).
        """
        logits = self.predict(input, softmax=False, n_iter=n_iter)
        pred = logits.argmax(dim=1).cpu().numpy()
        targets_npy = np.asarray(targets_npy)
        self.running_metric.update(targets_npy, pred)
        self.cur_eval_images = input.detach().cpu().numpy()[:, 0]
        self.cur_eval_predicts = pred
        self.cur_eval_gts = targets_npy
        return logits

    def get_recon_diff(self, input: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Analysis helper (eval mode, no grad).

        Returns:
            ``(|x - recon| (B, 1, H, W), |refined - initial| (B, C, H, W), initial logits, refined logits,
            recon (B, 1, H, W))``.
        """
        self.eval()
        with torch.no_grad():
            x = self._input(input)
            recon, initial, refined = self.run(x)
        return (x - recon).abs(), (refined - initial).abs(), initial, refined, recon

    def save_testing_images_results(
        self, save_dir: str | os.PathLike, epoch_iter: int | str, max_slices: int = 10, file_name: str = "Seg_plots.png"
    ) -> Path:
        """Plot the last :meth:`evaluate` batch: columns Input | GT | Predict (the published plot swapped Input and GT).

        Writes ``save_dir/<epoch_iter>/testing_segmentation_results/<file_name>`` (atomic) and returns its path.

        Raises:
            ValueError: if :meth:`evaluate` has not been called yet.
        """
        if self.cur_eval_images is None or self.cur_eval_gts is None or self.cur_eval_predicts is None:
            raise ValueError("save_testing_images_results needs a batch from evaluate(); none was evaluated yet")
        from medseg.training.plots import save_segmentation_plot  # plotting is optional for the model itself

        path = Path(save_dir) / str(epoch_iter) / "testing_segmentation_results" / file_name
        return save_segmentation_plot(
            path,
            images=torch.from_numpy(np.asarray(self.cur_eval_images, dtype=np.float32)),
            ground_truths=torch.from_numpy(np.asarray(self.cur_eval_gts).astype(np.int64)),
            predictions=torch.from_numpy(np.asarray(self.cur_eval_predicts).astype(np.int64)),
            num_classes=self.num_classes,
            max_rows=max_slices,
        )

    # ------------------------------------------------------------------------------------------------------------
    # checkpoints

    def save_model(
        self,
        save_dir: str | os.PathLike,
        epoch_iter: int | str,
        model_prefix: str | None = None,
        save_optimizers: bool = False,
    ) -> Path:
        """Write ``save_dir/<epoch_iter>/checkpoints/<module>.pth`` (plain state_dicts, atomic); returns the folder.

        Args:
            save_dir: model folder of the run.
            epoch_iter: subfolder name (an epoch or ``'best'``).
            model_prefix: None (published default): ``<module>.pth``, the names :meth:`get_network` loads; a string
                names the files ``<model_prefix>_<module>.pth`` (medseg's choice: the published API names no file
                scheme).
            save_optimizers: also write each module's Adam state as ``[<model_prefix>_]<module>_optimizer.pth``.
        """
        directory = Path(save_dir) / str(epoch_iter) / "checkpoints"
        prefix = "" if model_prefix is None else f"{model_prefix}_"
        if not prefix:
            ckpt.save_modules(self.model, directory)
        else:
            ckpt.save_modules({f"{prefix}{name}": module for name, module in self.model.items()}, directory)
        if save_optimizers:
            for name, optimizer in self.optimizers.items():
                atomic_torch_save(optimizer.state_dict(), directory / f"{prefix}{name}_optimizer.pth")
        return directory

    def save_snapshots(
        self,
        save_dir: str | os.PathLike,
        epoch: int,
        model_prefix: str = "interrupted",
        *,
        extra: dict[str, Any] | None = None,
        path: str | os.PathLike | None = None,
    ) -> Path:
        """Write a resumable snapshot (atomic) and return its path.

        Default location ``save_dir/<model_prefix>/checkpoints/<network_type>.pkl``; ``path`` (medseg) overrides it.
        The file is medseg's one snapshot format (:mod:`medseg.training.snapshot`) with the epoch as its only
        counter: the published keys ``{'network_type', 'epoch', 'model_state': {module: state_dict},
        'optimizer_state': {module: optimizer.state_dict()}}`` plus ``format`` and ``extra``, so the published code,
        ``load_snapshots`` and ``medseg-train --resume_pkl_path`` all read it.

        ``extra`` (medseg) must hold only weights-only-loadable values (tensors, numbers, strings, containers).
        """
        default = Path(save_dir) / model_prefix / "checkpoints" / f"{self.network_type}.pkl"
        target = Path(path) if path is not None else default
        return snapshots.save_snapshot(target, network_type=self.network_type, modules=self.model,
                                       optimizers=self.optimizers, state=int(epoch), extra=extra)

    def restore_snapshot(self, file_path: str | os.PathLike) -> dict[str, Any]:
        """(medseg) Strictly restore module and optimiser states from a snapshot: one of :meth:`save_snapshots`, of
        ``medseg-train`` or of the published code.

        Returns:
            ``{'epoch': int, 'extra': dict, 'network_type': str}``.

        Raises:
            FileNotFoundError, ValueError: naming the file, for a missing, unsafe or mismatched snapshot.
        """
        snapshot = snapshots.load_snapshot(file_path)  # to the CPU; load_state_dict moves each state to its module
        if snapshot["network_type"] != self.network_type:
            raise ValueError(f"snapshot {file_path} was saved for network_type {snapshot['network_type']!r}, the "
                             f"model is {self.network_type!r}")
        state = snapshots.restore_training_state(snapshot, self.model, self.optimizers, file_path)
        self._folded.clear()
        return {"epoch": state.epoch, "extra": dict(snapshot.get("extra") or {}), "network_type": self.network_type}

    def load_snapshots(self, file_path: str | os.PathLike) -> int:
        """Restore a snapshot of :meth:`save_snapshots`; returns the epoch to start from (the saved epoch).

        Raises:
            FileNotFoundError, ValueError: naming the file (no silent restart at epoch 0).
        """
        return int(self.restore_snapshot(file_path)["epoch"])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(network_type={self.network_type!r}, num_classes={self.num_classes}, "
            f"image_ch={self.image_ch}, device={self.device}, n_iter={self.n_iter})"
        )


__all__ = [
    "IMAGE_CODE_DA_CONFIG",
    "MASK_SCOPES",
    "PUBLISHED_API_DIFFERENCES",
    "SHAPE_CODE_DA_CONFIG",
    "AdvancedTripletReconSegmentationModel",
    "mask_scope_flags",
]
