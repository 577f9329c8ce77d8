"""The five networks of the dual-thinking model and :func:`get_network`.

Class names follow the published code (``MyEncoder``, ``MyDecoder``, ``Dual_Branch_Encoder``) so that checkpoints,
scripts and notebooks written against it keep working; the ``state_dict`` keys equal ``fcn16_state_dict.json``.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from medseg.nn.blocks import (
    LEAKY_SLOPE,
    AutocastForward,
    ResidualDownBlock,
    ResidualUpBlock,
    check_spatial_size,
    conv_bn_block,
    grad_in_forward_format,
)
from medseg.nn.init_weight import normal_init_direct_children

NETWORK_TYPES = ("FCN_16_standard", "FCN_16_standard_w_o_filter", "FCN_16_standard_share_code")
#: Module keys, in the insertion order of the published model dict (also the optimiser and save order).
MODULE_NAMES = ("image_encoder", "segmentation_decoder", "shape_encoder", "shape_decoder", "image_decoder")


class MyEncoder(AutocastForward, nn.Module):
    """Residual encoder: ``(B, in_channels, H, W) -> (B, 512 // feature_reduce, H/16, W/16)``, non-negative (ReLU).

    Args:
        input_channel: input channels (1 for the image, ``num_classes`` for the shape encoder).
        feature_reduce: width divisor of the base widths 64/128/256/512 (4 for FCN_16 -> 16/32/64/128).
        norm: normalisation layer class.
        dropout: optional Dropout2d rate after each down block (None in the published configs).

    Raises:
        ValueError: in ``forward``, if the input is not 4-D or H/W are not divisible by 16.
    """

    def __init__(
        self,
        input_channel: int = 1,
        feature_reduce: int = 4,
        norm: type[nn.Module] = nn.BatchNorm2d,
        dropout: float | None = None,
    ) -> None:
        super().__init__()
        widths = [64 // feature_reduce, 128 // feature_reduce, 256 // feature_reduce, 512 // feature_reduce]
        self.inc = conv_bn_block(input_channel, widths[0], norm)
        self.down1 = ResidualDownBlock(widths[0], widths[1], norm, dropout)
        self.down2 = ResidualDownBlock(widths[1], widths[2], norm, dropout)
        self.down3 = ResidualDownBlock(widths[2], widths[3], norm, dropout)
        self.down4 = ResidualDownBlock(widths[3], widths[3], norm, dropout)
        self.final_conv = nn.Sequential(
            nn.Conv2d(widths[3], widths[3], kernel_size=1, stride=1, padding=0), norm(widths[3])
        )
        self.act = nn.ReLU(inplace=True)
        self.out_channels = widths[3]
        normal_init_direct_children(self)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W) -> (B, 128, H/16, W/16)`` for FCN_16."""
        check_spatial_size(x, 16, "encoder input")
        with self._compute_region(x):
            x = F.leaky_relu(self.inc(x), LEAKY_SLOPE, inplace=True)
            x = self.down4(self.down3(self.down2(self.down1(x))))
            return self._output(self.act(self.final_conv(x)))


class MyDecoder(AutocastForward, nn.Module):
    """Residual decoder: ``(B, input_channel, h, w) -> (B, output_channel, 16h, 16w)``.

    Args:
        input_channel: latent channels (128 for FCN_16).
        output_channel: output channels (classes for logits, image channels for the reconstruction).
        up_type: upsampling of every up block (``'NN'`` for segmentation/shape, ``'Conv2'`` for the image decoder).
        feature_reduce: width divisor (4 for FCN_16 -> 64/32/16/16 after the up blocks).
        norm: normalisation layer class.
        last_act: optional final activation module (``nn.Sigmoid()`` for the image decoder).
        dropout: optional Dropout2d rate after each up block.
    """

    def __init__(
        self,
        input_channel: int = 128,
        output_channel: int = 4,
        up_type: str = "NN",
        feature_reduce: int = 4,
        norm: type[nn.Module] = nn.BatchNorm2d,
        last_act: nn.Module | None = None,
        dropout: float | None = None,
    ) -> None:
        super().__init__()
        widths = [256 // feature_reduce, 128 // feature_reduce, 64 // feature_reduce, 64 // feature_reduce]
        self.up1 = ResidualUpBlock(input_channel, widths[0], up_type, norm, dropout)
        self.up2 = ResidualUpBlock(widths[0], widths[1], up_type, norm, dropout)
        self.up3 = ResidualUpBlock(widths[1], widths[2], up_type, norm, dropout)
        self.up4 = ResidualUpBlock(widths[2], widths[3], up_type, norm, dropout)
        self.final_conv = nn.Conv2d(widths[3], output_channel, kernel_size=1, stride=1, padding=0)
        self.last_act = last_act
        normal_init_direct_children(self)

    def forward(self, z: Tensor) -> Tensor:
        """``(B, 128, h, w) -> (B, output_channel, 16h, 16w)``."""
        if z.ndim != 4:
            raise ValueError(f"decoder input must be (B, C, h, w), got shape {tuple(z.shape)}")
        with self._compute_region(z):
            x = self.final_conv(self.up4(self.up3(self.up2(self.up1(z)))))
        x = grad_in_forward_format(self._output(x))
        return x if self.last_act is None else self.last_act(x)


class Dual_Branch_Encoder(AutocastForward, nn.Module):  # noqa: N801 - published class name
    """Image encoder of the FTN: ``x -> (z_i, z_s)`` with ``z_s = code_decoupler(z_i)``.

    Args:
        input_channel: image channels.
        z_level_1_channel: channels of z_i (512 // feature_reduce; kept for signature compatibility).
        z_level_2_channel: channels of z_s.
        feature_reduce: width divisor.
        norm: normalisation layer class.
        dropout: optional Dropout2d rate in the general encoder.

    Shapes:
        ``(B, 1, H, W) -> ((B, 128, H/16, W/16), (B, 128, H/16, W/16))``.
    """

    def __init__(
        self,
        input_channel: int = 1,
        z_level_1_channel: int = 128,
        z_level_2_channel: int = 128,
        feature_reduce: int = 4,
        norm: type[nn.Module] = nn.BatchNorm2d,
        dropout: float | None = None,
    ) -> None:
        super().__init__()
        self.general_encoder = MyEncoder(input_channel, feature_reduce, norm, dropout)
        z_channels = self.general_encoder.out_channels
        if z_level_1_channel != z_channels:
            raise ValueError(
                f"z_level_1_channel must equal 512 // feature_reduce = {z_channels}, got {z_level_1_channel}"
            )
        self.code_decoupler = nn.Sequential(
            *conv_bn_block(z_channels, z_level_2_channel, norm),
            nn.ReLU(inplace=True),
        )
        normal_init_direct_children(self)

    def filter_code(self, z: Tensor) -> Tensor:
        """Apply the decoupler only: ``z_i (B, 128, h, w) -> z_s (B, 128, h, w)``."""
        with self._compute_region(z):
            return self._output(self.code_decoupler(z))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z_i = self.general_encoder(x)
        return z_i, self.filter_code(z_i)


def get_network(
    network_type: str = "FCN_16_standard",
    image_ch: int = 1,
    num_classes: int = 4,
    encoder_dropout: float | None = None,
    decoder_dropout: float | None = None,
) -> dict[str, nn.Module]:
    """Build the five modules of a network type, in the published dict order (:data:`MODULE_NAMES`).

    All three supported types share the same modules; they differ only in how the codes are wired.

    Raises:
        NotImplementedError: for an unknown ``network_type``.
    """
    if network_type not in NETWORK_TYPES:
        raise NotImplementedError(f"network_type {network_type!r} is not implemented; expected one of {NETWORK_TYPES}")
    reduce = 4  # every type whose name contains "16"
    latent = 512 // reduce
    return {
        "image_encoder": Dual_Branch_Encoder(image_ch, latent, latent, reduce, nn.BatchNorm2d, encoder_dropout),
        "segmentation_decoder": MyDecoder(latent, num_classes, "NN", reduce, nn.BatchNorm2d, None, decoder_dropout),
        "shape_encoder": MyEncoder(num_classes, reduce, nn.BatchNorm2d, encoder_dropout),
        "shape_decoder": MyDecoder(latent, num_classes, "NN", reduce, nn.BatchNorm2d, None, decoder_dropout),
        "image_decoder": MyDecoder(latent, image_ch, "Conv2", reduce, nn.BatchNorm2d, nn.Sigmoid(), decoder_dropout),
    }
