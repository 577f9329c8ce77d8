"""M&Ms (and ACDC-C) slice dataset over every subject folder of a root."""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from medseg.data.base_dataset import CLASS_NAMES, FRAMES, BaseSegmentationDataset
from medseg.data.transforms import Transform

logger = logging.getLogger(__name__)

VENDOR_COLUMNS = ("subject", "vendor", "vendor_name", "centre")
#: Default data folder: the project's layout (the published default pointed at the authors' machine).
DEFAULT_MM_ROOT = "data/synthetic/MM"


def template_frame(image_format_name: str, label_format_name: str, frame: str | None) -> str:
    """The cardiac frame of an M&Ms dataset: ``frame`` if given, else the ED/ES named in the image template.

    Raises:
        ValueError: if ``frame`` contradicts a template that names the other frame literally.
    """
    named = {m for t in (image_format_name, label_format_name) for m in re.findall(r"(?<![A-Za-z])(ED|ES)(?=_)", t)}
    if frame is None:
        if len(named) > 1:
            raise ValueError(f"image/label templates name different frames {sorted(named)}: "
                             f"{image_format_name!r}, {label_format_name!r}")
        return named.pop() if named else "ES"
    if frame not in FRAMES:
        raise ValueError(f"frame must be one of {FRAMES}, got {frame!r}")
    if named and named != {frame}:
        raise ValueError(f"frame={frame!r} contradicts the file templates {image_format_name!r} / "
                         f"{label_format_name!r}; use '{{frame}}' in the templates")
    return frame


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
    ``vendors.csv``). Labels are used as stored (M&Ms already follows BG/LV/MYO/RV). The arguments, their order and
    defaults are the published ones; ``frame``, ``right_ventricle_seg``, ``crop_size``, ``seed`` and
    ``vendors`` are medseg's keyword-only additions.

    Args:
        transform: see :class:`~medseg.data.acdc.CardiacACDCDataset`.
        dataset_name: name used in messages.
        root_dir: folder with ``<subject>/{ED,ES}_{img,seg}.nii.gz``.
        num_classes, debug, image_size, label_size, idx2cls_dict, use_cache, formalized_label_dict,
        keep_orig_image_label_pair, new_spacing, myocardium_seg: see :class:`BaseSegmentationDataset`.
        image_format_name, label_format_name: path templates; the published defaults name the ES files
            (``'{p_id}/ES_img.nii.gz'``); ``{frame}`` is filled with ``frame``.
        normalize3D: per-volume 2/98-percentile normalisation of the training/validation samples.
        frame: (medseg) ``'ED'`` or ``'ES'``, used in ``get_id()`` and ``{frame}``; default: the frame named in
            ``image_format_name`` (``ES`` for the published default), else ``'ES'``.
        right_ventricle_seg, crop_size, seed: (medseg) see :class:`BaseSegmentationDataset`.
        vendors: (medseg) keep only subjects whose ``vendor`` (e.g. ``'A'``) or ``vendor_name`` is listed, read from
            ``root_dir/vendors.csv``; None keeps every subject.

    Raises:
        FileNotFoundError: missing root, missing ``vendors.csv`` when filtering, or a subject folder without the
            frame's files.
        ValueError: a vendor filter that matches no subject, or a ``frame`` that contradicts the file templates.
    """

    def __init__(
        self,
        transform: Transform | None = None,
        dataset_name: str = "CardiacMMDataset",
        root_dir: str | Path = DEFAULT_MM_ROOT,
        num_classes: int = 4,
        debug: bool = False,
        image_size: Sequence[int] = (224, 224, 1),
        label_size: Sequence[int] = (224, 224),
        idx2cls_dict: Mapping[int, str] = CLASS_NAMES,
        use_cache: bool = True,
        formalized_label_dict: Mapping[int, str] | None = None,
        keep_orig_image_label_pair: bool = True,
        image_format_name: str = "{p_id}/ES_img.nii.gz",
        label_format_name: str = "{p_id}/ES_seg.nii.gz",
        new_spacing: Sequence[float] | None = None,
        myocardium_seg: bool = False,
        normalize3D: bool = False,  # noqa: N803 (published name)
        *,
        frame: str | None = None,
        right_ventricle_seg: bool = False,
        crop_size: tuple[int, int] = (192, 192),
        seed: int | None = None,
        vendors: Sequence[str] | None = None,
    ) -> None:
        root = Path(root_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"M&Ms/ACDC-C root folder not found: {root}")
        frame = template_frame(image_format_name, label_format_name, frame)
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
            dataset_name=f"{dataset_name} {root.name}",
            num_classes=num_classes,
            debug=debug,
            image_size=image_size,
            label_size=label_size,
            idx2cls_dict=idx2cls_dict,
            formalized_label_dict=formalized_label_dict,
            normalize=normalize3D,
        )
