"""Compatibility: the published module path ``medseg.dataset_loader.concat``.

The code lives in :mod:`medseg.data.concat`.
"""

from medseg.data.concat import ConcatDataSet  # noqa: F401

__all__ = ["ConcatDataSet"]
