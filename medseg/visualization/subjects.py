"""One subject for the hard-example figures: read, bring to the test protocol's 192 × 192, pick a slice.

A subject is either a preprocessed subject folder (``<pid>/{ED,ES}_{img,seg}.nii.gz``, already normalised and at
1.36719 mm) or a single image file (any 3D scan: normalised, resampled and cropped as ``medseg-predict`` does;
a label map next to it, ``X_seg.nii.gz`` for ``X.nii.gz`` or ``X_img.nii.gz``, is used when present).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medseg.data.crop import crop_or_pad
from medseg.io.nifti import read_volume
from medseg.io.plausibility import PREPROCESSED, check_image_volume
from medseg.conversion.resample import TARGET_SPACING_XY, resample_to_grid
from medseg.data.intensity import minmax_normalize
from medseg.evaluation.inference import checkpoint_spacing as recorded_spacing
from medseg.evaluation.inference import unknown_grid_note
from medseg.evaluation.scan import CROP_SIZE, field_of_view_crop, prepare_scan

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
FRAMES = ("ED", "ES")
NIFTI_SUFFIXES = (".nii.gz", ".nii")


@dataclass(frozen=True)
class Subject:
    """A short-axis stack at the test protocol's in-plane size.

    Attributes:
        name: subject name (folder name, or file name without suffix).
        image: ``(Z, H, W)`` float32 image: 192 × 192 at the test protocol's 1.36719 mm, fewer pixels on a coarser grid.
        label: ``(Z, H, W)`` int64 label map (0 BG, 1 LV, 2 MYO, 3 RV) or None if the subject has none.
        source: the folder or file it was read from.
    """

    name: str
    image: np.ndarray
    label: np.ndarray | None
    source: Path

    @property
    def n_slices(self) -> int:
        return int(self.image.shape[0])


def checkpoint_spacing(checkpoint_dir: PathLike) -> float | None:
    """In-plane grid (mm) the model of ``checkpoint_dir`` was trained on (its manifest or run config); None, with the
    warning medseg-test and medseg-predict give, when the folder has no record of it (1.36719 mm is then assumed)."""
    spacing = recorded_spacing(checkpoint_dir)
    if spacing is None:
        logger.warning("%s", unknown_grid_note(checkpoint_dir, "a subject folder already resampled to that grid"))
    return spacing


def label_file_for(image_path: Path) -> Path:
    """``X_img.nii.gz`` -> ``X_seg.nii.gz``; ``X.nii.gz`` -> ``X_seg.nii.gz`` (same folder)."""
    name = image_path.name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            stem = stem.removesuffix("_img")
            return image_path.with_name(f"{stem}_seg{suffix}")
    return image_path.with_name(f"{name}_seg.nii.gz")


def _subject_name(path: Path) -> str:
    for suffix in NIFTI_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.name


def _load_folder(folder: Path, frame: str, spacing_mm: float | None) -> Subject:
    image_path, label_path = folder / f"{frame}_img.nii.gz", folder / f"{frame}_seg.nii.gz"
    if not image_path.is_file():
        raise FileNotFoundError(
            f"subject folder {folder} has no {image_path.name}; expected a preprocessed subject "
            f"<pid>/{{ED,ES}}_img.nii.gz (+ _seg.nii.gz), e.g. data/synthetic/ACDC/007"
        )
    image_volume = read_volume(image_path, dtype=np.float32)
    check_image_volume(image_volume, PREPROCESSED)  # the rule training and medseg-test apply to the same files
    crop = _crop_for(spacing_mm)
    if spacing_mm is not None:  # the volume as a training run with data.new_spacing = spacing_mm sees it
        image_volume = resample_to_grid(image_volume, (spacing_mm, spacing_mm))
    image, _ = crop_or_pad(image_volume.array, crop)
    label = None
    if label_path.is_file():
        label_volume = read_volume(label_path)
        if spacing_mm is not None:
            label_volume = resample_to_grid(label_volume, (spacing_mm, spacing_mm), is_label=True)
        label = crop_or_pad(label_volume.array.astype(np.int64), crop)[0]
    else:
        logger.warning("%s not found: the subject has no label map", label_path)
    return Subject(folder.name, image, label, folder)


def _load_file(path: Path, spacing_mm: float | None) -> Subject:
    volume = read_volume(path, ndim=None, dtype=np.float32)
    if volume.ndim != 3:
        raise ValueError(f"{path}: expected a 3D image (Z, H, W), got shape {volume.array.shape}; extract one frame")
    prepared = prepare_scan(volume, spacing_mm)  # as medseg-predict: percentile normalisation, the model's grid, crop
    label = None
    label_path = label_file_for(path)
    if label_path.is_file():
        label_volume = read_volume(label_path)
        if label_volume.array.shape != volume.array.shape:
            raise ValueError(
                f"label {label_path} has shape {label_volume.array.shape}, image {path} has {volume.array.shape}"
            )
        grid = TARGET_SPACING_XY if spacing_mm is None else (spacing_mm, spacing_mm)
        resampled = resample_to_grid(label_volume, grid, is_label=True)
        label = crop_or_pad(resampled.array.astype(np.int64), _crop_for(spacing_mm))[0]
    image = prepared.image[:, 0].numpy()
    return Subject(_subject_name(path), image, label, path)


def _crop_for(spacing_mm: float | None) -> tuple[int, int]:
    """The test protocol's 192 x 192 field of view at ``spacing_mm`` (None: the preprocessing grid)."""
    if spacing_mm is None or abs(spacing_mm - TARGET_SPACING_XY[0]) < 1e-4:
        return CROP_SIZE
    return field_of_view_crop(float(spacing_mm))


def load_subject(path: PathLike, frame: str = "ED", spacing_mm: float | None = None) -> Subject:
    """Read a subject folder (frame ``frame``) or a 3D image file and centre crop / pad it to 192 × 192.

    Args:
        path: preprocessed subject folder or 3D image file.
        frame: ``"ED"`` or ``"ES"`` (folders only).
        spacing_mm: in-plane grid of the model that will see the subject (its training ``data.new_spacing``, see
            :func:`checkpoint_spacing`); the volume is resampled to it by the in-plane resampler
            (:func:`medseg.conversion.resample.resample_to_grid`, as the model's training data was) and cropped to
            the 192 × 192 field of view of 1.36719 mm pixels, e.g. 96 × 96 at 2.73438 mm. None: a folder is taken
            as it is, a file is brought to 1.36719 mm.

    Raises:
        FileNotFoundError: naming the path, if it does not exist or the folder lacks the frame's image.
        ValueError: for an unknown frame, a non-3D image, an image/label shape mismatch or a bad spacing.
    """
    path = Path(path)
    if frame not in FRAMES:
        raise ValueError(f"frame must be one of {FRAMES}, got {frame!r}")
    if spacing_mm is not None and not (isinstance(spacing_mm, (int, float)) and 0.1 <= spacing_mm <= 20.0):
        raise ValueError(f"spacing_mm must be an in-plane spacing in mm (0.1-20), got {spacing_mm!r}")
    spacing_mm = None if spacing_mm is None else float(spacing_mm)
    if path.is_dir():
        subject = _load_folder(path, frame, spacing_mm)
    elif path.is_file():
        subject = _load_file(path, spacing_mm)
    else:
        raise FileNotFoundError(f"subject {path} does not exist; expected a preprocessed subject folder or a 3D image")
    if subject.label is not None:
        values = set(np.unique(subject.label).tolist())
        if not values <= {0, 1, 2, 3}:
            raise ValueError(f"label map of {path} holds values {sorted(values)}; expected 0 BG, 1 LV, 2 MYO, 3 RV")
    if spacing_mm is not None:
        logger.info("%s on the model's %.5g mm grid: %d x %d", subject.name, spacing_mm, *subject.image.shape[1:])
    return subject


def default_slice(subject: Subject) -> int:
    """An informative, mid-ventricular slice.

    Among the slices that show LV, MYO and RV, those within a quarter of the LV's slice extent from its centre are
    candidates, and the one with the most foreground wins. Falls back to the complete slice with the most foreground,
    then to the slice with the most foreground, and to the middle slice without labels.
    """
    if subject.label is None:
        return subject.n_slices // 2
    foreground = (subject.label > 0).sum(axis=(1, 2))  # (Z,)
    complete = np.array([set(np.unique(s).tolist()) >= {1, 2, 3} for s in subject.label])
    with_lv = np.flatnonzero((subject.label == 1).any(axis=(1, 2)))
    if complete.any() and with_lv.size:
        centre, reach = (with_lv[0] + with_lv[-1]) / 2, max(1.0, with_lv.size / 4)
        middle = np.abs(np.arange(subject.n_slices) - centre) <= reach
        if (complete & middle).any():
            return int(np.argmax(np.where(complete & middle, foreground, -1)))
    if complete.any():
        return int(np.argmax(np.where(complete, foreground, -1)))
    if foreground.max() > 0:
        return int(np.argmax(foreground))
    return subject.n_slices // 2


def slice_batch(subject: Subject, indices: list[int] | tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The network input of some slices: per-slice min–max to [0, 1] (as in training and the published notebook).

    Returns:
        ``(image (B, 1, H, W) float32, label (B, H, W) int64 or None)``.

    Raises:
        IndexError: naming the valid range, for a slice index out of range.
    """
    for k in indices:
        if not 0 <= k < subject.n_slices:
            raise IndexError(f"slice {k} out of range: {subject.name} has slices 0..{subject.n_slices - 1}")
    image = np.stack([minmax_normalize(subject.image[k]) for k in indices])[:, None]
    label = None if subject.label is None else torch.from_numpy(subject.label[list(indices)])
    return torch.from_numpy(np.ascontiguousarray(image)), label
