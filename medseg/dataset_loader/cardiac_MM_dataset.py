"""Compatibility: the published module path ``medseg.dataset_loader.cardiac_MM_dataset``.

The code lives in :mod:`medseg.data.mnms`.
"""

from medseg.data.mnms import (  # noqa: F401
    VENDOR_COLUMNS,
    DEFAULT_MM_ROOT,
    template_frame,
    read_vendor_table,
    Cardiac_MM_Dataset,
)

__all__ = ["VENDOR_COLUMNS", "DEFAULT_MM_ROOT", "template_frame", "read_vendor_table", "Cardiac_MM_Dataset"]
