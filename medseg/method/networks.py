"""The five networks of the method as one module, and the BatchNorm switch of the cooperative passes.

:class:`DualNetworks` holds the image encoder and the segmentation and image decoders (the FTN), and the shape encoder
and decoder (the STN), under the published module names, so that each module's ``state_dict`` and checkpoint file
are those of the published model. It is a :class:`torch.nn.ModuleDict`: ``networks["shape_decoder"]``, ``.items()``
and ``.values()`` give the modules in the published order. Its methods are the method's building blocks: encode,
decode the image or the segmentation, refine a segmentation with the STN, and predict.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from medseg.method.losses import make_one_hot
from medseg.nn.encoder_decoder import MODULE_NAMES, NETWORK_TYPES
from medseg.nn.encoder_decoder import get_network as build_modules
from medseg.nn.fusion import FoldedModules
from medseg.nn.init_weight import init_weights

#: modules that inference runs (the image decoder is not)
PREDICT_MODULES = ("image_encoder", "segmentation_decoder", "shape_encoder", "shape_decoder")
#: temperature of the softmax that turns segmentation logits into the STN input
STN_TEMPERATURE = 2.0


@contextlib.contextmanager
def disable_tracking_bn_stats(model: nn.Module) -> Iterator[None]:
    """Run the BatchNorm layers of module ``model`` without running-stat tracking, with frozen affine params.

    On entry every BatchNorm gets ``track_running_stats=False`` and ``weight/bias.requires_grad=False``; on exit both
    flags are restored **separately** to their own previous values (the published code restored gamma/beta from the
    tracking flag, unfreezing parameters frozen beforehand). In train mode the layers then use batch statistics,
    do not update ``running_mean/var``/``num_batches_tracked`` and their gamma/beta are constants.
    """
    saved: list[tuple[_BatchNorm, bool, bool | None, bool | None]] = []
    for sub in model.modules():
        if isinstance(sub, _BatchNorm):
            w_flag = sub.weight.requires_grad if sub.weight is not None else None
            b_flag = sub.bias.requires_grad if sub.bias is not None else None
            saved.append((sub, sub.track_running_stats, w_flag, b_flag))
            sub.track_running_stats = False
            if sub.weight is not None:
                sub.weight.requires_grad_(False)
            if sub.bias is not None:
                sub.bias.requires_grad_(False)
    try:
        yield
    finally:
        for sub, tracking, w_flag, b_flag in saved:
            sub.track_running_stats = tracking
            if w_flag is not None:
                sub.weight.requires_grad_(w_flag)
            if b_flag is not None:
                sub.bias.requires_grad_(b_flag)






def _frozen_bn(module: nn.Module, freeze: bool) -> contextlib.AbstractContextManager[None]:
    return disable_tracking_bn_stats(module) if freeze else contextlib.nullcontext()


class DualNetworks(nn.ModuleDict):
    """The five networks of one model, in the published order (:data:`MODULE_NAMES`).

    Args:
        modules: ``{name: module}`` with exactly the five published names (e.g. from
            :func:`medseg.nn.encoder_decoder.get_network`).
        network_type: ``'FCN_16_standard'``, ``'FCN_16_standard_w_o_filter'`` (z_s = z_i) or
            ``'FCN_16_standard_share_code'`` (z_i = z_s).
        num_classes: segmentation classes including background.
        memory_format: memory format of the network inputs (channels-last is faster on the CPU).

    Every method taking ``freeze_bn`` runs the networks it calls without BatchNorm running-statistics updates and
    with frozen BatchNorm affine parameters when it is True (:func:`disable_tracking_bn_stats`).
    """

    def __init__(self, modules: Mapping[str, nn.Module], network_type: str = "FCN_16_standard", num_classes: int = 4,
                 memory_format: torch.memory_format = torch.contiguous_format) -> None:
        if network_type not in NETWORK_TYPES:
            raise NotImplementedError(f"network_type {network_type!r} is not implemented; expected one of "
                                      f"{NETWORK_TYPES}")
        if set(modules) != set(MODULE_NAMES):
            raise ValueError(f"DualNetworks needs the modules {list(MODULE_NAMES)}, got {list(modules)}")
        super().__init__({name: modules[name] for name in MODULE_NAMES})
        self.network_type = network_type
        self.num_classes = num_classes
        self.memory_format = memory_format
        self._folded = FoldedModules(PREDICT_MODULES, memory_format)  # BN-folded inference copies, rebuilt on change

    @classmethod
    def build(cls, network_type: str = "FCN_16_standard", image_ch: int = 1, num_classes: int = 4,
              encoder_dropout: float | None = None, decoder_dropout: float | None = None,
              device: torch.device | str = "cpu",
              memory_format: torch.memory_format = torch.contiguous_format) -> DualNetworks:
        """Freshly initialised networks (Kaiming, module by module in the published order) on ``device``."""
        modules = build_modules(network_type, image_ch, num_classes, encoder_dropout, decoder_dropout)
        for module in modules.values():
            init_weights(module, "kaiming")
            module.to(device, memory_format=memory_format)
        return cls(modules, network_type, num_classes, memory_format)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def train(self, mode: bool = True) -> DualNetworks:
        """Train (or eval) mode for all five networks; train mode also drops the inference copies."""
        if mode:
            self._folded.clear()
        return super().train(mode)

    def drop_inference_copies(self) -> None:
        """Free the BN-folded copies that :meth:`predict` keeps (rebuilt when next needed)."""
        self._folded.clear()

    def as_input(self, x: Tensor) -> Tensor:
        """An NCHW input on the networks' device, in their memory format."""
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=self.memory_format) if x.ndim == 4 else x

    # ------------------------------------------------------------------------------------------------ the FTN
    def encode(self, image: Tensor, freeze_bn: bool = False) -> tuple[Tensor, Tensor]:
        """``(B, 1, H, W) -> (z_i, z_s)``, each ``(B, 128, H/16, W/16)``, wired as the network type says."""
        encoder = self["image_encoder"]
        with _frozen_bn(encoder, freeze_bn):
            z_i, z_s = encoder(self.as_input(image))
        if self.network_type == "FCN_16_standard_share_code":
            z_i = z_s
        elif self.network_type == "FCN_16_standard_w_o_filter":
            z_s = z_i
        return z_i, z_s

    def decode_image(self, z_i: Tensor, freeze_bn: bool = False) -> Tensor:
        """Image code ``(B, 128, h, w)`` -> reconstruction ``(B, image_ch, 16h, 16w)`` in (0, 1)."""
        decoder = self["image_decoder"]
        with _frozen_bn(decoder, freeze_bn):
            return decoder(z_i)

    def decode_segmentation(self, z_s: Tensor, freeze_bn: bool = False) -> Tensor:
        """Shape code ``(B, 128, h, w)`` -> segmentation logits ``(B, num_classes, 16h, 16w)``."""
        decoder = self["segmentation_decoder"]
        with _frozen_bn(decoder, freeze_bn):
            return decoder(z_s)

    def segment(self, image: Tensor, freeze_bn: bool = False) -> tuple[tuple[Tensor, Tensor], Tensor]:
        """The FTN: ``(B, 1, H, W) -> ((z_i, z_s), logits (B, num_classes, H, W))``; in eval mode without a graph."""
        with contextlib.nullcontext() if self.training else torch.no_grad():
            z_i, z_s = self.encode(image, freeze_bn)
            return (z_i, z_s), self.decode_segmentation(z_s, freeze_bn)

    # ------------------------------------------------------------------------------------------------ the STN
    def shape_input(self, segmentation: Tensor, is_label_map: bool = False,
                    temperature: float = STN_TEMPERATURE) -> Tensor:
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

    def encode_shape(self, segmentation: Tensor, is_label_map: bool = False, freeze_bn: bool = False,
                     temperature: float = STN_TEMPERATURE) -> Tensor:
        """Logits ``(B, C, H, W)`` or label map ``(B, H, W)`` (``is_label_map``) -> code ``(B, 128, H/16, W/16)``."""
        encoder = self["shape_encoder"]
        with _frozen_bn(encoder, freeze_bn):
            return encoder(self.shape_input(segmentation, is_label_map, temperature))

    def decode_shape(self, code: Tensor, freeze_bn: bool = False) -> Tensor:
        """Shape code -> refined logits ``(B, num_classes, H, W)``."""
        decoder = self["shape_decoder"]
        with _frozen_bn(decoder, freeze_bn):
            return decoder(code)

    def refine(self, segmentation: Tensor, is_label_map: bool = False, freeze_bn: bool = False) -> Tensor:
        """One STN pass (shape correction): segmentation logits or a label map -> refined logits."""
        return self.decode_shape(self.encode_shape(segmentation, is_label_map, freeze_bn), freeze_bn)

    # ------------------------------------------------------------------------------------------------ inference
    def predict(self, image: Tensor, n_iter: int = 1, softmax: bool = False) -> Tensor:
        """Eval-mode prediction: FTN logits followed by ``n_iter - 1`` sequential STN passes.

        Switches the networks to eval mode (and leaves them there) and runs under inference mode on cached copies
        with BatchNorm folded into the preceding convolutions (rebuilt whenever a weight or running statistic
        changes; equal to the plain eval forward up to floating-point rounding).

        Returns:
            ``(B, num_classes, H, W)`` logits (or probabilities), contiguous, on the networks' device.
        """
        self.eval()
        folded = DualNetworks({**self, **self._folded.get(self)}, self.network_type, self.num_classes,
                              self.memory_format)
        with torch.inference_mode():
            _, pred = folded.eval().segment(image)
            for _ in range(max(n_iter - 1, 0)):
                pred = folded.refine(pred)
            if softmax:
                pred = F.softmax(pred, dim=1)
        return pred.clone(memory_format=torch.contiguous_format)


__all__ = ["PREDICT_MODULES", "STN_TEMPERATURE", "DualNetworks", "disable_tracking_bn_stats"]
