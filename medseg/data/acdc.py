"""ACDC slice dataset over the published splits, with the published constructor."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from medseg.data.splits import get_ACDC_split_policy
from medseg.data.base_dataset import CLASS_NAMES, DEFAULT_SPACING, BaseSegmentationDataset
from medseg.data.transforms import Transform

logger = logging.getLogger(__name__)

SPLITS = ("train", "validate", "test", "unlabelled", "test+unlabelled")
#: Default data folder: the project's layout (``scripts/prepare_synthetic.sh`` writes it; the published default
#: pointed at the authors' machine). Relative to the working directory.
DEFAULT_ACDC_ROOT = "data/synthetic/ACDC"


class CardiacACDCDataset(BaseSegmentationDataset):
    """Preprocessed ACDC volumes of one split, one sample per slice.

    The arguments, their order and defaults are the published ones; ``crop_size`` and ``seed`` are
    medseg's keyword-only additions. See :class:`BaseSegmentationDataset` for the shared ones.

    Args:
        transform: ``T(image, label, rng)`` (see :mod:`medseg.data.transforms`); None = the validate
            transform (pad 224, centre crop ``crop_size``, min–max).
        dataset_name: name used in messages (published default ``'ACDC'``).
        root_dir: folder with ``<pid>/{ED,ES}_{img,seg}.nii.gz``.
        frame: ``'ED'`` or ``'ES'``.
        num_classes: stored only (as published).
        debug: log every loaded slice.
        image_size, label_size: accepted and unused (as published).
        idx2cls_dict: class names of the stored label values.
        use_cache: read all volumes once, in the constructor (shared by DataLoader workers).
        data_setting_name: split identifier of :func:`get_ACDC_split_policy` (``'10'``, ``'standard'``, ...).
        split: ``'train'``, ``'validate'``, ``'test'``, ``'unlabelled'`` or ``'test+unlabelled'``.
        cval: cross-validation fold 0 … 4.
        formalized_label_dict: class names of the training labels (remap by name); None = identity.
        keep_orig_image_label_pair: add ``origin_image`` / ``origin_label``.
        image_format_name, label_format_name: path templates with ``{p_id}`` and ``{frame}``.
        myocardium_seg: relabel to ``{0: BG, 1: MYO}``.
        right_ventricle_seg: relabel to ``{0: BG, 1: RV}``; wins over ``myocardium_seg``.
        new_spacing: in-plane target spacing ``(x, y, -1)`` or None.
        normalize: per-volume 2/98-percentile normalisation of the training/validation samples.
        crop_size: (medseg) ``(h, w)`` of the keep-orig pair.
        seed: (medseg) base seed of the per-sample generators.

    Raises:
        ValueError: unknown split, data setting or cval (or bad arguments, see the base class).
        FileNotFoundError: a subject of the split is missing on disk (no silent skip).
    """

    def __init__(
        self,
        transform: Transform | None = None,
        dataset_name: str = "ACDC",
        root_dir: str | Path = DEFAULT_ACDC_ROOT,
        frame: str = "ES",
        num_classes: int = 4,
        debug: bool = False,
        image_size: Sequence[int] = (224, 224, 1),
        label_size: Sequence[int] = (224, 224),
        idx2cls_dict: Mapping[int, str] = CLASS_NAMES,
        use_cache: bool = True,
        data_setting_name: str = "three_shot",
        split: str = "train",
        cval: int = 0,
        formalized_label_dict: Mapping[int, str] | None = None,
        keep_orig_image_label_pair: bool = True,
        image_format_name: str = "{p_id}/{frame}_img.nii.gz",
        label_format_name: str = "{p_id}/{frame}_seg.nii.gz",
        myocardium_seg: bool = False,
        right_ventricle_seg: bool = False,
        new_spacing: Sequence[float] | None = DEFAULT_SPACING,
        normalize: bool = False,
        *,
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
            dataset_name=f"{dataset_name} {split} {policy['name']}",
            num_classes=num_classes,
            debug=debug,
            image_size=image_size,
            label_size=label_size,
            idx2cls_dict=idx2cls_dict,
            formalized_label_dict=formalized_label_dict,
            normalize=normalize,
        )
