"""Compatibility: the published module path ``medseg.dataset_loader.base_segmentation_dataset``.

The code lives in :mod:`medseg.data.base_dataset`.
"""

from medseg.data.base_dataset import (  # noqa: F401
    DEFAULT_SPACING,
    SPACING_TOLERANCE,
    FRAMES,
    CLASS_NAMES,
    PatientVolume,
    resample_in_plane,
    target_label_dict,
    label_lookup,
    BaseSegmentationDataset,
)

__all__ = [
    "DEFAULT_SPACING",
    "SPACING_TOLERANCE",
    "FRAMES",
    "CLASS_NAMES",
    "PatientVolume",
    "resample_in_plane",
    "target_label_dict",
    "label_lookup",
    "BaseSegmentationDataset",
]
