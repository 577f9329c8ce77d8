"""Building blocks of the FCN_16 networks.

Submodule names and registration order reproduce the published implementation, so ``state_dict`` keys match
``fcn16_state_dict.json`` and released checkpoints load unchanged:

* :func:`conv_bn_block`: ``Conv3x3 -> BN -> LeakyReLU(0.2) -> Conv3x3 -> BN`` (Sequential indices 0, 1, 3, 4).
* :class:`ResidualDownBlock` (``res_convdown``): strided 3x3 conv, then a residual unit.
* :class:`ResidualUpBlock` (``res_up_family``): x2 upsampling (nearest or transposed conv), then a residual unit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import torch
from torch import Tensor, nn

LEAKY_SLOPE = 0.2
COMPUTE_PRECISIONS = ("fp32", "bf16", "fp16")
_LOW_PRECISION = {"bf16": torch.bfloat16, "fp16": torch.float16}


def conv_bn_block(in_channels: int, out_channels: int, norm: type[nn.Module] = nn.BatchNorm2d) -> nn.Sequential:
    """``Conv3x3(in->out) -> norm -> LeakyReLU(0.2) -> Conv3x3(out->out) -> norm`` (no final activation)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=True),
        norm(out_channels),
        nn.LeakyReLU(LEAKY_SLOPE, inplace=True),  # in place is safe: BN backward does not read its output
        nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=True),
        norm(out_channels),
    )


class _ResidualUnit(nn.Module):
    """Shared forward of the residual blocks: ``LeakyReLU(conv_input(x) + conv(x))`` after ``up``/``down``.

    Activations run in place wherever autograd does not need their input (after BatchNorm or an addition): this
    changes no value and saves one full-size activation per layer.
    """

    def _residual(self, x: Tensor) -> Tensor:
        # conv(x) + conv_input(x), summed in place into the fresh conv(x) output (BN backward does not read it):
        # the same values as ``conv_input(x) + conv(x)`` (fp addition commutes) without one full-size allocation
        out = self.conv(x)
        out += self.conv_input(x)
        out = self.last_act(out)
        return out if self.dropout is None else self.dropout(out)


class ResidualDownBlock(_ResidualUnit):
    """Residual down-sampling block (``res_convdown``): halves H and W.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        norm: normalisation layer class.
        dropout: optional ``Dropout2d`` rate applied to the output (unused by the published configs).

    Shapes:
        ``(B, in, H, W) -> (B, out, ceil(H/2), ceil(W/2))``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        norm: type[nn.Module] = nn.BatchNorm2d,
        dropout: float | None = None,
    ) -> None:
        super().__init__()
        self.down = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=2, padding=1, bias=True)
        self.conv = conv_bn_block(in_channels, out_channels, norm)
        self.conv_input = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0, bias=True)
        self.last_act = nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
        self.dropout = nn.Dropout2d(dropout) if dropout else None

    def forward(self, x: Tensor) -> Tensor:
        return self._residual(self.down(x))


class ResidualUpBlock(_ResidualUnit):
    """Residual up-sampling block (``res_up_family``): doubles H and W.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        up_type: ``'NN'`` (nearest neighbour, no parameters, no ``up.*`` keys), ``'Conv2'`` (ConvTranspose k2 s2),
            ``'Conv4'`` (ConvTranspose k4 s2 p1) or ``'bilinear'``.
        norm: normalisation layer class.
        dropout: optional ``Dropout2d`` rate applied to the output.

    Shapes:
        ``(B, in, H, W) -> (B, out, 2H, 2W)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        up_type: str = "NN",
        norm: type[nn.Module] = nn.BatchNorm2d,
        dropout: float | None = None,
    ) -> None:
        super().__init__()
        if up_type == "NN":
            self.up: nn.Module = nn.Sequential(nn.UpsamplingNearest2d(scale_factor=2))
        elif up_type == "bilinear":
            self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True))
        elif up_type == "Conv2":
            self.up = nn.ConvTranspose2d(in_channels, in_channels, kernel_size=2, stride=2, padding=0, bias=True)
        elif up_type == "Conv4":
            self.up = nn.ConvTranspose2d(in_channels, in_channels, kernel_size=4, stride=2, padding=1, bias=True)
        else:
            raise ValueError(f"up_type must be one of 'NN', 'bilinear', 'Conv2', 'Conv4', got {up_type!r}")
        self.conv = conv_bn_block(in_channels, out_channels, norm)
        self.conv_input = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0, bias=True)
        self.last_act = nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
        self.dropout = nn.Dropout2d(dropout) if dropout else None

    def forward(self, x: Tensor) -> Tensor:
        return self._residual(self.up(x))


class AutocastForward:
    """Mixin of the networks that choose their own compute precision (mixed precision, see
    :mod:`medseg.nn.precision`).

    ``compute_precision`` is ``None`` (default: the forward follows the caller's autocast state, outputs in the
    computed dtype), ``'fp32'`` (autocast off inside the network) or ``'bf16'``/``'fp16'`` (the forward runs under
    :func:`torch.autocast` with that dtype and returns fp32). Set it with :func:`set_compute_precision`; it is a plain
    attribute, so it is not part of the ``state_dict`` and is kept by ``copy.deepcopy`` (e.g. BN-folded copies).
    """

    compute_precision: str | None = None

    def _compute_region(self, x: Tensor) -> contextlib.AbstractContextManager:
        precision = self.compute_precision
        if precision is None:
            return contextlib.nullcontext()
        if precision == "fp32":
            return torch.autocast(device_type=x.device.type, enabled=False)
        return torch.autocast(device_type=x.device.type, dtype=_LOW_PRECISION[precision])

    def _output(self, y: Tensor) -> Tensor:
        """``y`` in fp32 when this network computes in a lower precision (losses and softmax need fp32)."""
        return y.float() if self.compute_precision in _LOW_PRECISION else y


def set_compute_precision(modules: Iterable[nn.Module], precision: str | None) -> None:
    """Set ``compute_precision`` on every :class:`AutocastForward` network inside ``modules``.

    Args:
        modules: networks (searched recursively).
        precision: ``None``, ``'fp32'``, ``'bf16'`` or ``'fp16'``.

    Raises:
        ValueError: for another precision.
    """
    if precision is not None and precision not in COMPUTE_PRECISIONS:
        raise ValueError(f"precision must be None or one of {COMPUTE_PRECISIONS}, got {precision!r}")
    for module in modules:
        for sub in module.modules():
            if isinstance(sub, AutocastForward):
                sub.compute_precision = precision


class _GradInForwardFormat(torch.autograd.Function):
    """Identity whose backward returns the incoming gradient in the memory format of the forward tensor."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        channels_last = x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        ctx.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        return grad.contiguous(memory_format=ctx.memory_format)


def grad_in_forward_format(x: Tensor) -> Tensor:
    """``x`` unchanged; its gradient is converted to ``x``'s memory format before it flows further back.

    Losses built on ``log_softmax``/``softmax`` over channels return NCHW gradients even for channels-last logits;
    converting once here keeps the backward of the layer that produced ``x`` in one memory format (a plain copy, so
    gradients are unchanged). A no-op when ``x`` needs no gradient.
    """
    return _GradInForwardFormat.apply(x) if x.requires_grad and torch.is_grad_enabled() else x


def check_spatial_size(x: Tensor, factor: int = 16, name: str = "input") -> None:
    """Raise a ``ValueError`` unless ``x`` is ``(B, C, H, W)`` with H and W divisible by ``factor``."""
    if x.ndim != 4:
        raise ValueError(f"{name} must be (B, C, H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(
            f"{name} height and width must be divisible by {factor} (four stride-2 stages), got H={h}, W={w}; "
            f"crop or pad the image, e.g. to 192x192"
        )


__all__ = [
    "COMPUTE_PRECISIONS",
    "LEAKY_SLOPE",
    "AutocastForward",
    "ResidualDownBlock",
    "ResidualUpBlock",
    "check_spatial_size",
    "conv_bn_block",
    "grad_in_forward_format",
    "set_compute_precision",
]
