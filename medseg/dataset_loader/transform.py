"""Alias of :mod:`medseg.data.transforms` under the original module name (``transform.py``)."""

from medseg.data.transforms import (  # noqa: F401
    POLICIES,
    AugmentationPolicy,
    TrainTransform,
    Transformations,
    ValidateTransform,
)

__all__ = ["POLICIES", "AugmentationPolicy", "TrainTransform", "Transformations", "ValidateTransform"]
