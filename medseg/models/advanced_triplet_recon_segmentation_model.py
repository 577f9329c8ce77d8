"""The published model class, as an adapter over the method's networks and one optimiser per network.

``AdvancedTripletReconSegmentationModel`` offers every method of the published class with the published
name, argument order, defaults and return structure, so scripts and notebooks written against the original call it
unchanged; the values follow medseg's fixes of the published bugs (e.g. :meth:`eval` really sets eval mode). The few
places where a published call behaves differently are listed in :data:`PUBLISHED_API_DIFFERENCES`.

The computation lives in :mod:`medseg.method`: the five networks are one
:class:`~medseg.method.networks.DualNetworks` (``model.networks``; ``model.model`` is the same object, a mapping of
the five modules on ``model.device``), the cooperative-training losses and the hard-example generation are functions
of :mod:`medseg.method.cooperative` (adapted by :class:`~medseg.models.cooperative.CooperativeTrainingMixin`), and
checkpoint I/O is :class:`~medseg.models.model_io.ModelIOMixin`; the published building blocks (``encode_image``,
``recon_shape``...) are :class:`~medseg.models.network_blocks.NetworkBlocksMixin`. What the class adds is the published state: one Adam
per module (``model.optimizers``), the running score, the last evaluated batch and the latent codes kept between
``standard_training`` and ``hard_example_generation`` (``z_i``, ``z_s``).

medseg's own API sits beside the published one, under its own names or as keyword-only options:
:meth:`standard_losses` and :meth:`hard_example_losses` (``(total, dict)`` returns),
:class:`~medseg.method.mask_options.MaskOptions`, ``generator=`` for reproducible draws, ``backward_now=`` for lower
peak memory, :meth:`restore_snapshot` (a dict), :meth:`load_model`.
"""

from __future__ import annotations

import itertools
import logging
import math
import numbers
import os
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from medseg.evaluation.running_score import runningScore
from medseg.method.networks import PREDICT_MODULES, STN_TEMPERATURE, DualNetworks
from medseg.io import checkpoint as ckpt
from medseg.models.cooperative import (
    IMAGE_CODE_DA_CONFIG,
    MASK_SCOPES,
    SHAPE_CODE_DA_CONFIG,
    CooperativeTrainingMixin,
    mask_scope_flags,
)
from medseg.models.model_io import ModelIOMixin
from medseg.models.network_blocks import NetworkBlocksMixin
from medseg.nn.encoder_decoder import NETWORK_TYPES
from medseg.nn.encoder_decoder import get_network as build_network
from medseg.nn.init_weight import init_weights

logger = logging.getLogger(__name__)

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


class AdvancedTripletReconSegmentationModel(NetworkBlocksMixin, CooperativeTrainingMixin, ModelIOMixin):
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
        self.z_i = self.z_s = None  # latent codes of the last standard_training, for hard_example_generation
        self.networks: DualNetworks = self.get_network(checkpoint_dir)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.set_optimizers()
        self.running_metric = self.set_running_metric()
        self.cur_eval_images = self.cur_eval_predicts = self.cur_eval_gts = None  # the last evaluate() batch

    @property
    def model(self) -> DualNetworks:
        """The five modules by name (the published ``model`` dict): the :class:`DualNetworks` itself."""
        return self.networks

    @model.setter
    def model(self, modules: Mapping[str, nn.Module]) -> None:
        self.networks = modules if isinstance(modules, DualNetworks) else DualNetworks(
            modules, self.network_type, self.num_classes, self.memory_format)

    @property
    def training(self) -> bool:
        """True in train mode (after :meth:`train`), False after :meth:`eval` or :meth:`predict`."""
        return self.networks.training

    # ------------------------------------------------------------------------------------------------------------
    # construction, modes, parameters

    def get_network(self, checkpoint_dir: str | os.PathLike | None = None) -> DualNetworks:
        """Build the five modules (published dict order), initialise or load each with :meth:`init_model`.

        Args:
            checkpoint_dir: folder with one ``<module>.pth`` per module (or its parent holding ``checkpoints/``);
                None = fresh initialisation (published scheme).

        Returns:
            The five modules as :class:`DualNetworks` (a mapping ``{module name: module}``) on the model device.
        """
        modules = build_network(
            self.network_type, self.image_ch, self.num_classes, self.encoder_dropout, self.decoder_dropout
        )
        folder = None if checkpoint_dir is None else ckpt.resolve_checkpoint_dir(checkpoint_dir, tuple(modules))
        for name, module in modules.items():
            self.init_model(module, None if folder is None else folder / f"{name}.pth")
        if folder is not None:
            logger.info("loaded %s checkpoints from %s", self.network_type, folder)
        return DualNetworks(modules, self.network_type, self.num_classes, self.memory_format)

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

    def train(self, if_testing: bool = False) -> None:
        """Train mode for all modules and ``requires_grad=True`` on all parameters (``if_testing`` -> :meth:`eval`)."""
        if if_testing:
            self.eval()
            return
        self.networks.train()
        self.requires_grad_(True)

    def eval(self) -> None:
        """Eval mode for all modules (BatchNorm uses running statistics); ``self.training`` becomes False."""
        self.networks.eval()

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
    # inference

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
        return self.networks.predict(input, n_iter, softmax)

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
        dtype = next(self.networks.parameters()).dtype
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

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(network_type={self.network_type!r}, num_classes={self.num_classes}, "
            f"image_ch={self.image_ch}, device={self.device}, n_iter={self.n_iter})"
        )



__all__ = [
    "IMAGE_CODE_DA_CONFIG",
    "MASK_SCOPES",
    "PREDICT_MODULES",
    "PUBLISHED_API_DIFFERENCES",
    "SHAPE_CODE_DA_CONFIG",
    "STN_TEMPERATURE",
    "AdvancedTripletReconSegmentationModel",
    "mask_scope_flags",
]
