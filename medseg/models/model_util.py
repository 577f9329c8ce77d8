"""Compatibility path of the published ``model_util`` names: latent masking lives in :mod:`medseg.method.masking`,
its options in :mod:`medseg.method.mask_options`, the losses and one-hot targets in :mod:`medseg.method.losses` and
the BatchNorm switch in :mod:`medseg.method.networks`."""

from medseg.method.losses import cross_entropy_2D, cross_entropy_2d, make_one_hot
from medseg.method.mask_options import MASK_LOSSES, MASK_TYPES, PERTURB_TYPES, MaskOptions
from medseg.method.masking import (
    LatentPerturbation,
    choose_perturb_type,
    host_to_device,
    mask_latent_code_channel_wise,
    mask_latent_code_dropout,
    mask_latent_code_spatial_wise,
    perturb_latent_code,
    sample_threshold,
    targeted_mask_scores,
    top_fraction_mask,
)
from medseg.method.networks import disable_tracking_bn_stats

#: the masking options under their earlier name
MaskSpec = MaskOptions
_disable_tracking_bn_stats = disable_tracking_bn_stats  # the published name

__all__ = [
    "MASK_LOSSES",
    "MASK_TYPES",
    "PERTURB_TYPES",
    "LatentPerturbation",
    "MaskSpec",
    "_disable_tracking_bn_stats",
    "choose_perturb_type",
    "cross_entropy_2D",
    "cross_entropy_2d",
    "disable_tracking_bn_stats",
    "host_to_device",
    "make_one_hot",
    "mask_latent_code_channel_wise",
    "mask_latent_code_dropout",
    "mask_latent_code_spatial_wise",
    "perturb_latent_code",
    "sample_threshold",
    "targeted_mask_scores",
    "top_fraction_mask",
]
