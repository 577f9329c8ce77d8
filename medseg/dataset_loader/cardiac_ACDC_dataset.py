"""ACDC slice dataset over the published splits (spec e.2, f)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from medseg.dataset_loader.ACDC_few_shot_cv_settings import get_ACDC_split_policy
from medseg.dataset_loader.base_segmentation_dataset import DEFAULT_SPACING, BaseSegmentationDataset
from medseg.dataset_loader.transforms import Transform

logger = logging.getLogger(__name__)

SPLITS = ("train", "validate", "test", "unlabelled", "test+unlabelled")


class CardiacACDCDataset(BaseSegmentationDataset):
    """Preprocessed ACDC volumes of one split, one sample per slice.

    Args:
        root_dir: folder with ``<pid>/{ED,ES}_{img,seg}.nii.gz``.
        split: ``'train'``, ``'validate'``, ``'test'``, ``'unlabelled'`` or ``'test+unlabelled'``.
        data_setting_name: split identifier of :func:`get_ACDC_split_policy` (``'10'``, ``'standard'``, ...).
        cval: cross-validation fold 0 … 4.
        frame: ``'ED'`` or ``'ES'``.
        transform: see :class:`BaseSegmentationDataset`.
        keep_orig_image_label_pair, use_cache, myocardium_seg, right_ventricle_seg, image_format_name,
        label_format_name, new_spacing, crop_size, seed: see :class:`BaseSegmentationDataset`.

    Raises:
        ValueError: unknown split, data setting or cval.
        FileNotFoundError: a subject of the split is missing on disk (no silent skip).
    """

    def __init__(
        self,
        root_dir: str | Path,
        split: str = "train",
        data_setting_name: str = "10",
        cval: int = 0,
        frame: str = "ED",
        transform: Transform | None = None,
        keep_orig_image_label_pair: bool = False,
        use_cache: bool = True,
        myocardium_seg: bool = False,
        right_ventricle_seg: bool = False,
        image_format_name: str = "{p_id}/{frame}_img.nii.gz",
        label_format_name: str = "{p_id}/{frame}_seg.nii.gz",
        new_spacing: Sequence[float] | None = DEFAULT_SPACING,
        crop_size: tuple[int, int] = (192, 192),
        seed: int | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        policy = get_ACDC_split_policy(data_setting_name, cval)
        self.split, self.data_setting_name, self.cval = split, data_setting_name, cval
        self.split_name = policy["name"]
        super().__init__(
            root_dir,
            policy[split],
            frame=frame,
            transform=transform,
            keep_orig_image_label_pair=keep_orig_image_label_pair,
            use_cache=use_cache,
            myocardium_seg=myocardium_seg,
            right_ventricle_seg=right_ventricle_seg,
            image_format_name=image_format_name,
            label_format_name=label_format_name,
            new_spacing=new_spacing,
            crop_size=crop_size,
            seed=seed,
            dataset_name=f"ACDC {split} {policy['name']}",
        )
