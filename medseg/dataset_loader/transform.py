"""Alias of :mod:`medseg.dataset_loader.transforms` under the original module name (``transform.py``)."""

from medseg.dataset_loader.transforms import (  # noqa: F401
    POLICIES,
    AugmentationPolicy,
    TrainTransform,
    Transformations,
    ValidateTransform,
)

__all__ = ["POLICIES", "AugmentationPolicy", "TrainTransform", "Transformations", "ValidateTransform"]
