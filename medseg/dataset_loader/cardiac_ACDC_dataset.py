"""Compatibility: the published module path ``medseg.dataset_loader.cardiac_ACDC_dataset``.

The code lives in :mod:`medseg.data.acdc`.
"""

from medseg.data.acdc import SPLITS, DEFAULT_ACDC_ROOT, CardiacACDCDataset  # noqa: F401

__all__ = ["SPLITS", "DEFAULT_ACDC_ROOT", "CardiacACDCDataset"]
