"""Compatibility path of the method's losses: they live in :mod:`medseg.method.losses`."""

from medseg.method.losses import basic_loss_fn, cross_entropy_2d, masking_cross_entropy_2d

__all__ = ["basic_loss_fn", "cross_entropy_2d", "masking_cross_entropy_2d"]
