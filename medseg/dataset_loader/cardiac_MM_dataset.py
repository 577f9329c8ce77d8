"""M&Ms (and ACDC-C) slice dataset over every subject folder of a root (spec e.1, g.2)."""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path

from medseg.dataset_loader.base_segmentation_dataset import DEFAULT_SPACING, BaseSegmentationDataset
from medseg.dataset_loader.transforms import Transform

logger = logging.getLogger(__name__)

VENDOR_COLUMNS = ("subject", "vendor", "vendor_name", "centre")


def read_vendor_table(path: Path) -> list[dict[str, str]]:
    """Rows of ``vendors.csv`` (columns ``subject, vendor, vendor_name, centre``)."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in VENDOR_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}; expected {list(VENDOR_COLUMNS)}")
        return [{k: (v or "").strip() for k, v in row.items()} for row in reader]


class Cardiac_MM_Dataset(BaseSegmentationDataset):  # noqa: N801 (published name)
    """Every subject folder under ``root_dir`` (sorted), one sample per slice.

    Serves the preprocessed M&Ms folder and the ACDC-C artefact folders (``ACDC-C/<artefact>``, which have no
    ``vendors.csv``). Labels are used as stored (M&Ms already follows BG/LV/MYO/RV).

    Args:
        root_dir: folder with ``<subject>/{ED,ES}_{img,seg}.nii.gz``.
        frame: ``'ED'`` or ``'ES'``.
        transform: see :class:`BaseSegmentationDataset`.
        vendors: keep only subjects whose ``vendor`` (e.g. ``'A'``) or ``vendor_name`` is listed, read from
            ``root_dir/vendors.csv``; None keeps every subject.
        keep_orig_image_label_pair, use_cache, myocardium_seg, right_ventricle_seg, image_format_name,
        label_format_name, new_spacing, crop_size, seed: see :class:`BaseSegmentationDataset`.

    Raises:
        FileNotFoundError: missing root, missing ``vendors.csv`` when filtering, or a subject folder without the
            frame's files.
        ValueError: a vendor filter that matches no subject.
    """

    def __init__(
        self,
        root_dir: str | Path,
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
        vendors: Sequence[str] | None = None,
    ) -> None:
        root = Path(root_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"M&Ms/ACDC-C root folder not found: {root}")
        subjects = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if vendors is not None:
            table_path = root / "vendors.csv"
            if not table_path.is_file():
                raise FileNotFoundError(f"vendor filter {list(vendors)} needs {table_path}, which does not exist")
            wanted = set(vendors)
            keep = {r["subject"] for r in read_vendor_table(table_path) if {r["vendor"], r["vendor_name"]} & wanted}
            subjects = [s for s in subjects if s in keep]
            if not subjects:
                raise ValueError(f"vendor filter {sorted(wanted)} matches no subject folder listed in {table_path}")
        self.vendors = None if vendors is None else list(vendors)
        super().__init__(
            root,
            subjects,
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
            dataset_name=f"M&Ms-layout {root.name}",
        )
