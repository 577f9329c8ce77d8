"""Slice-wise cardiac segmentation dataset shared by the ACDC, M&Ms and ACDC-C loaders.

Every subject folder holds ``{frame}_img.nii.gz`` / ``{frame}_seg.nii.gz`` (templates configurable). The dataset has
one sample per slice; ``dataset[i]`` is ``{'image': 1×H×W float32, 'label': H×W int64}`` plus, with
``keep_orig_image_label_pair``, ``'origin_image'`` (1×h×w, zero-padded/centre-cropped, not normalised) and
``'origin_label'`` (h×w) of the same slice before augmentation.

Randomness (empty-slice substitution and augmentation): with ``dataset.seed`` set, sample ``i`` in epoch ``e``
(``dataset.set_epoch(e)``) draws everything from ``np.random.default_rng([seed, e, i])``, so a run does not depend on
the number of DataLoader workers. ``set_epoch`` must be called in the parent before the epoch's iterator is created
(the default ``persistent_workers=False`` re-forks the workers with the new epoch). Without a seed each sample uses a
fresh entropy-seeded generator.

Slice cache: with ``use_cache=True`` all volumes are read once, in the constructor, into one
contiguous array per volume. Fork-based DataLoader workers then share these buffers copy-on-write, so the cache is
valid in every worker and every epoch. Because volumes rather than augmented samples are cached, the empty-slice
substitution is re-drawn at every access (seeded as above) instead of being frozen at first access. (The published
cache lived in each worker, was rebuilt every epoch and so was in effect no cache.)

Published API: the dataset classes take the published arguments, order and defaults. Where a published call
gets a different result:

* a subject of the split without its files is an error naming the file (published: skipped, but kept in the
  patient list, so the test path failed on it later); a volume without any labelled slice is an error
  (published: the substitution looped forever);
* the empty-slice substitution draws from the sample's numpy generator, not Python's ``random`` (same distribution);
* ``get_patient_data_for_testing`` returns a :class:`PatientVolume` (fields also readable by key,
  ``volume['image']``); ``crop_size=None`` keeps the volume's in-plane size (medseg's reading of the undefined case);
* ``normalize`` / ``normalize3D`` use the preprocessing's volume normalisation (2nd/98th percentiles), the only
  one the published code defines; ``new_spacing`` with a positive z spacing (through-plane resampling) is an error;
* ``Cardiac_MM_Dataset`` takes its frame from the file templates (``ES`` for the published defaults) or ``frame=``;
* :class:`~medseg.data.concat.ConcatDataSet` maps patient indices with cumulative offsets
  (published: ``index % patient_number``, wrong for datasets of different sizes).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from medseg.conversion.resample import SPACING_TOLERANCE_MM as SPACING_TOLERANCE  # noqa: F401 (re-exported)
from medseg.conversion.resample import resample_in_plane, resample_to_grid, same_grid  # noqa: F401 (re-exported)
from medseg.data.crop import CropInfo, crop_or_pad
from medseg.data.intensity import rescale_slices
from medseg.io.nifti import Volume, read_image_label_pair, read_volume_info
from medseg.io.plausibility import PREPROCESSED, RAW_SCAN, check_image_volume
from medseg.conversion.preprocessing import normalize_percentile
from medseg.data.transforms import Transform, ValidateTransform

logger = logging.getLogger(__name__)

DEFAULT_SPACING: tuple[float, float, float] = (1.36719, 1.36719, -1.0)
FRAMES = ("ED", "ES")
CLASS_NAMES: Mapping[int, str] = MappingProxyType({0: "BG", 1: "LV", 2: "MYO", 3: "RV"})


@dataclass
class PatientVolume:
    """A whole test volume, cropped/padded for the network.

    Attributes:
        image: ``(N, 1, crop, crop)`` float32 tensor.
        label: ``(N, crop, crop)`` int64 tensor (labels as stored, not remapped).
        patient_id: ``"{pid}_{frame}"``.
        pid: subject id.
        frame: ``'ED'`` or ``'ES'``.
        crop_info: offsets of :func:`crop_or_pad`; ``recover_image(pred, crop_info)`` maps back to the input H×W.
        spacing: ``(x, y, z)`` mm of the grid the network sees.
        image_path: image file.
        label_path: label file.
        reference: the image :class:`Volume` read from disk (geometry for writing predictions).
    """

    image: torch.Tensor
    label: torch.Tensor
    patient_id: str
    pid: str
    frame: str
    crop_info: CropInfo
    spacing: tuple[float, float, float]
    image_path: Path
    label_path: Path
    reference: Volume

    def __getitem__(self, key: str) -> Any:
        """Fields by key as well (``volume['image']``, ``volume['label']``), for dict-style callers."""
        if key not in {f.name for f in fields(self)}:
            raise KeyError(f"PatientVolume has no field {key!r}; fields: {[f.name for f in fields(self)]}")
        return getattr(self, key)

    def keys(self) -> list[str]:
        return [f.name for f in fields(self)]


def target_label_dict(
    myocardium_seg: bool, right_ventricle_seg: bool, formalized_label_dict: Mapping[int, str] | None
) -> dict[int, str] | None:
    """Class names after relabelling: RV-only (wins), MYO-only, ``formalized_label_dict``, or None (identity)."""
    if right_ventricle_seg:
        return {0: "BG", 1: "RV"}
    if myocardium_seg:
        return {0: "BG", 1: "MYO"}
    return None if formalized_label_dict is None else {int(k): str(v) for k, v in formalized_label_dict.items()}


def label_lookup(idx2cls_dict: Mapping[int, str], formalized_label_dict: Mapping[int, str] | None) -> np.ndarray:
    """256-entry remap table from stored label values to training labels, by class name.

    ``idx2cls_dict`` names the stored values, ``formalized_label_dict`` the new ones; a stored class whose name has no
    new index becomes 0. ``formalized_label_dict=None`` is the identity for every value.

    Raises:
        ValueError: for label indices outside [0, 255] or a class name used twice in ``formalized_label_dict``.
    """
    for name, mapping in (("idx2cls_dict", idx2cls_dict), ("formalized_label_dict", formalized_label_dict or {})):
        bad = [k for k in mapping if not 0 <= int(k) <= 255]
        if bad:
            raise ValueError(f"{name} keys must be label values in [0, 255], got {bad}")
    if formalized_label_dict is None:
        return np.arange(256, dtype=np.uint8)
    new_index = {name: int(idx) for idx, name in formalized_label_dict.items()}
    if len(new_index) != len(formalized_label_dict):
        raise ValueError(f"formalized_label_dict names a class twice: {dict(formalized_label_dict)}")
    table = np.zeros(256, dtype=np.uint8)
    for old, name in idx2cls_dict.items():
        table[int(old)] = new_index.get(name, 0)
    return table


class BaseSegmentationDataset(Dataset):
    """One sample per slice of ``<root>/<pid>/{frame}_{img,seg}.nii.gz`` for the given subjects.

    Args:
        root_dir: dataset folder.
        subject_ids: subjects, in order (their files must exist).
        frame: ``'ED'`` or ``'ES'``.
        transform: ``T(image (H, W, 1), label (H, W, 1), rng) -> (1×h×w, 1×h×w)``; the validate transform if None.
        keep_orig_image_label_pair: add ``origin_image`` / ``origin_label``.
        use_cache: read all volumes in the constructor (shared by DataLoader workers).
        myocardium_seg: relabel to ``{0: BG, 1: MYO}`` (training/validation samples only).
        right_ventricle_seg: relabel to ``{0: BG, 1: RV}``; wins over ``myocardium_seg``.
        image_format_name: path template relative to ``root_dir`` with ``{p_id}`` and ``{frame}``.
        label_format_name: same for the label.
        new_spacing: ``(x, y[, z])`` in-plane target spacing or None for no resampling; volumes are resampled
            only if their spacing differs by more than 1e-4 mm, by :func:`medseg.conversion.resample.resample_to_grid`
            (images anti-aliased where downsampled onto any grid but the preprocessing grid, exactly as
            ``medseg-predict`` prepares a scan for the model). z must be -1 (or absent): the slice spacing is kept.
        crop_size: ``(h, w)`` of ``origin_image`` / ``origin_label``.
        seed: base seed of the per-sample generators (None = fresh entropy).
        dataset_name: name used in messages and :meth:`get_info`.
        num_classes: (published) number of classes; stored only, as published.
        debug: (published) log every loaded slice (subject, slice, empty-slice substitution) at INFO level.
        image_size, label_size: (published) accepted and unused, as in the published code (the transform sizes
            come from ``Transformations``).
        idx2cls_dict: (published) class names of the stored label values; default ``{0: BG, 1: LV, 2: MYO, 3: RV}``.
        formalized_label_dict: (published) class names of the training labels: stored values are remapped by
            name (:meth:`formulate_labels`); None = identity. ``myocardium_seg``/``right_ventricle_seg`` override it.
        normalize: (published) per-volume intensity normalisation of training/validation samples: clip to the
            2nd/98th percentiles and scale to [0, 1] (the same as the preprocessing, so a no-op up to
            rounding on preprocessed data). The test path (:meth:`get_patient_data_for_testing`) is not affected.

    Raises:
        FileNotFoundError: a subject's image or label file is missing (names subject and expected path).
        ValueError: bad frame, image/label shape mismatch, non-finite voxels, (cached) a volume without labels, a
            ``new_spacing`` with a z spacing, or bad label dicts.
    """

    def __init__(
        self,
        root_dir: str | Path,
        subject_ids: Sequence[str],
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
        dataset_name: str = "dataset",
        *,
        num_classes: int = 4,
        debug: bool = False,
        image_size: Sequence[int] | None = None,
        label_size: Sequence[int] | None = None,
        idx2cls_dict: Mapping[int, str] | None = None,
        formalized_label_dict: Mapping[int, str] | None = None,
        normalize: bool = False,
    ) -> None:
        if frame not in FRAMES:
            raise ValueError(f"frame must be one of {FRAMES}, got {frame!r}")
        through_plane = new_spacing is not None and len(new_spacing) == 3 and new_spacing[2] > 0
        if new_spacing is not None and (len(new_spacing) not in (2, 3) or through_plane):
            raise ValueError(
                f"new_spacing must be (x, y) or (x, y, -1) mm (the slice spacing is kept), got {list(new_spacing)}; "
                "through-plane resampling is not supported"
            )
        self.root_dir = Path(root_dir)
        if not self.root_dir.is_dir():
            raise FileNotFoundError(f"{dataset_name} root folder not found: {self.root_dir}")
        self.dataset_name = dataset_name
        self.frame = frame
        self.transform = transform if transform is not None else ValidateTransform((224, 224), tuple(crop_size))
        self.keep_orig_image_label_pair = keep_orig_image_label_pair
        self.use_cache = use_cache
        self.image_format_name, self.label_format_name = image_format_name, label_format_name
        self.new_spacing = None if new_spacing is None else tuple(float(s) for s in new_spacing)
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.seed = seed
        self.epoch = 0
        self.num_classes, self.debug, self.normalize = num_classes, debug, normalize
        self.image_size, self.label_size = image_size, label_size
        self.idx2cls_dict = dict(CLASS_NAMES if idx2cls_dict is None else idx2cls_dict)
        target = target_label_dict(myocardium_seg, right_ventricle_seg, formalized_label_dict)
        self._lookup = label_lookup(self.idx2cls_dict, target)
        self.formalized_label_dict = dict(self.idx2cls_dict) if target is None else target
        self.patient_id_list: list[str] = list(subject_ids)
        self._last_id: str | None = None

        self._images: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._labelled_slices: list[np.ndarray] = []
        n_slices = []
        for pid in self.patient_id_list:
            image_path, label_path = self.paths(pid)
            for kind, path in (("image", image_path), ("label", label_path)):
                if not path.is_file():
                    raise FileNotFoundError(
                        f"{dataset_name}: subject {pid!r} ({frame}) has no {kind} file; expected {path}"
                    )
            if use_cache:
                image, label = self._load_arrays(pid)
                self._images.append(image)
                self._labels.append(label)
                self._labelled_slices.append(self._find_labelled(label, label_path))
                n_slices.append(image.shape[0])
            else:
                n_slices.append(self._header_depth(image_path, label_path))
        counts = np.asarray(n_slices, dtype=np.int64)
        self._slice_volume = np.repeat(np.arange(len(counts)), counts)  # global index -> volume
        self._slice_index = np.concatenate([np.arange(n) for n in counts]) if len(counts) else np.zeros(0, np.int64)
        if len(self.patient_id_list) == 0:
            logger.warning("%s: no subjects under %s", dataset_name, self.root_dir)
        logger.info(
            "%s (%s): %d subjects, %d slices, cache %s",
            dataset_name, frame, len(self.patient_id_list), len(self), "on" if use_cache else "off",
        )

    # ------------------------------------------------------------------------------------------------ file access
    def paths(self, pid: str) -> tuple[Path, Path]:
        """Image and label file of subject ``pid`` for this dataset's frame."""
        return (
            self.root_dir / self.image_format_name.format(p_id=pid, frame=self.frame),
            self.root_dir / self.label_format_name.format(p_id=pid, frame=self.frame),
        )

    @staticmethod
    def _header_depth(image_path: Path, label_path: Path) -> int:
        sizes = [tuple(reversed(read_volume_info(path, ndim=None).shape)) for path in (image_path, label_path)]
        if sizes[0] != sizes[1]:
            raise ValueError(
                f"label {label_path} has size {sizes[1]} but its image {image_path} has size {sizes[0]} (x, y, z); "
                "expected identical voxel grids"
            )
        if len(sizes[0]) != 3:
            raise ValueError(f"{image_path}: expected a 3D volume, got size {sizes[0]}")
        return int(sizes[0][2])

    def _read(self, pid: str, new_spacing: tuple[float, ...] | None) -> tuple[Volume, Volume]:
        """Read (and resample, if needed) the image/label volumes of ``pid``."""
        image, label = read_image_label_pair(*self.paths(pid))
        # the one plausibility rule (medseg.io.plausibility); volumes normalised here may be raw scans
        check_image_volume(image, RAW_SCAN if self.normalize else PREPROCESSED)
        return self._prepare(image, label, new_spacing)

    @staticmethod
    def _prepare(image: Volume, label: Volume, new_spacing: tuple[float, ...] | None) -> tuple[Volume, Volume]:
        """Check label values, cast them to uint8 and resample in-plane if the spacing differs."""
        label_path = label.name
        values = label.array
        if np.issubdtype(values.dtype, np.floating) and not np.all(np.mod(values, 1) == 0):
            raise ValueError(f"{label_path}: label map holds non-integer values")
        if values.min() < 0 or values.max() > 255:
            raise ValueError(f"{label_path}: label values must lie in [0, 255], got [{values.min()}, {values.max()}]")
        label = label.with_array(values.astype(np.uint8))
        if new_spacing is not None and not same_grid(image.spacing, new_spacing):
            # the resampler's rule: anti-aliased when downsampled onto any grid but the preprocessing grid, as for
            # medseg-predict and the robustness experiment's copy
            image = resample_to_grid(image, new_spacing[:2], is_label=False)
            label = resample_to_grid(label, new_spacing[:2], is_label=True)
        return image, label

    def _load_arrays(self, pid: str) -> tuple[np.ndarray, np.ndarray]:
        image, label = self._read(pid, self.new_spacing)
        if label.array.max() > max(CLASS_NAMES):  # training/validation: the loss needs labels < num_classes
            unexpected = sorted(set(np.unique(label.array).tolist()) - set(CLASS_NAMES))
            raise ValueError(f"{label.name}: expected label values {sorted(CLASS_NAMES)} ({dict(CLASS_NAMES)}), got "
                             f"{unexpected} as well")
        image_array = normalize_percentile(image.array) if self.normalize else image.array
        return (
            np.ascontiguousarray(image_array, dtype=np.float32),
            np.ascontiguousarray(label.array, dtype=np.uint8),
        )

    @staticmethod
    def _find_labelled(label: np.ndarray, label_path: Path) -> np.ndarray:
        labelled = np.flatnonzero(label.reshape(label.shape[0], -1).any(axis=1))
        if labelled.size == 0:
            raise ValueError(f"{label_path}: no slice of this label volume has any labelled voxel")
        return labelled

    # ---------------------------------------------------------------------------------------------- reproducibility
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose per-sample generators are used (see the module docstring)."""
        self.epoch = int(epoch)

    def sample_rng(self, index: int) -> np.random.Generator:
        """Generator of sample ``index`` in the current epoch."""
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng([int(self.seed), self.epoch, int(index)])

    # ------------------------------------------------------------------------------------------------ samples
    def __len__(self) -> int:
        return int(self._slice_volume.shape[0])

    @property
    def patient_number(self) -> int:
        return len(self.patient_id_list)

    def get_id(self) -> str | None:
        """``"{pid}_{frame}"`` of the subject accessed last (None before any access)."""
        return self._last_id

    def set_id(self, index: int) -> str:
        """Make the subject of slice ``index`` the current one (what :meth:`get_id` reports); returns its id."""
        vol, _ = self._locate_slice(index)
        self._last_id = f"{self.patient_id_list[vol]}_{self.frame}"
        return self._last_id

    def get_voxel_spacing(self) -> tuple[float, float, float]:
        return self.new_spacing if self.new_spacing is not None else DEFAULT_SPACING

    def get_info(self) -> dict[str, Any]:
        """Summary of the dataset (also logged at INFO level)."""
        info = {
            "dataset_name": self.dataset_name, "root_dir": str(self.root_dir), "frame": self.frame,
            "patient_number": self.patient_number, "slices": len(self), "num_classes": self.num_classes,
            "idx2cls_dict": dict(self.idx2cls_dict), "formalized_label_dict": dict(self.formalized_label_dict),
            "new_spacing": self.new_spacing, "use_cache": self.use_cache,
            "keep_orig_image_label_pair": self.keep_orig_image_label_pair,
        }  # fmt: skip
        logger.info("%s", info)
        return info

    def _locate_slice(self, index: int) -> tuple[int, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.dataset_name}: index {index} out of range for {len(self)} slices")
        index = int(index) % len(self)
        return int(self._slice_volume[index]), int(self._slice_index[index])

    def load_data(self, index: int, *, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Raw slice ``index`` before any transform: ``(image (H, W, 1) float32, label (H, W, 1) uint8)``.

        Resampled (``new_spacing``) and normalised (``normalize``) as configured; labels as stored (not remapped).
        An empty-label slice is replaced by a uniformly chosen labelled slice of the same volume (published), drawn
        from ``rng`` (default: the sample's generator, see the module docstring).
        """
        vol, z = self._locate_slice(index)
        rng = self.sample_rng(int(index) % len(self)) if rng is None else rng
        pid = self.patient_id_list[vol]
        if self.use_cache:
            image, label, labelled = self._images[vol], self._labels[vol], self._labelled_slices[vol]
        else:
            image, label = self._load_arrays(pid)
            labelled = self._find_labelled(label, self.paths(pid)[1])
        stored_z = z
        if not label[z].any():  # empty-label slice: a uniformly chosen labelled slice of the same volume
            z = int(labelled[rng.integers(labelled.size)])
        self._last_id = f"{pid}_{self.frame}"
        if self.debug:
            logger.info("%s: slice %d of %s%s", self.dataset_name, z, self._last_id,
                        "" if z == stored_z else f" (substitutes empty slice {stored_z})")
        return image[z][:, :, None], label[z][:, :, None]

    def formulate_labels(self, label: np.ndarray, foreground_only: bool = False) -> np.ndarray:
        """Stored label values -> training labels by class name (``idx2cls_dict`` -> ``formalized_label_dict``).

        Args:
            label: integer array of any shape with values in [0, 255].
            foreground_only: additionally merge every class > 0 into 1.

        Returns:
            uint8 array of the same shape.
        """
        out = self._lookup[np.asarray(label, dtype=np.uint8)]
        return (out > 0).astype(np.uint8) if foreground_only else out

    def preprocess_data_to_tensors(
        self, image: np.ndarray, label: np.ndarray, *, rng: np.random.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Remap labels, apply the transform and add the un-augmented pair.

        Args:
            image: ``(H, W, 1)`` or ``(H, W)`` float slice.
            label: ``(H, W, 1)`` or ``(H, W)`` stored label slice.
            rng: generator of the augmentation (None: fresh entropy).

        Returns:
            ``{'image': (1, h, w) float32, 'label': (h, w) int64}`` plus, with keep-orig pairs,
            ``'origin_image'`` (1, h, w) and ``'origin_label'`` (h, w).
        """
        image_slice = np.asarray(image, dtype=np.float32).reshape(image.shape[:2])  # (H, W)
        label_slice = self.formulate_labels(np.asarray(label).reshape(label.shape[:2]))  # (H, W) uint8, remapped
        rng = np.random.default_rng() if rng is None else rng
        image_t, label_t = self.transform(image_slice[:, :, None], label_slice[:, :, None], rng)
        sample = {"image": image_t.float(), "label": label_t[0].long()}
        if self.keep_orig_image_label_pair:
            orig_image, _ = crop_or_pad(image_slice, self.crop_size)
            orig_label, _ = crop_or_pad(label_slice, self.crop_size)
            sample["origin_image"] = torch.from_numpy(orig_image.astype(np.float32))[None]  # (1, h, w)
            sample["origin_label"] = torch.from_numpy(orig_label.astype(np.int64))  # (h, w)
        return sample

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """``preprocess_data_to_tensors(*load_data(index))`` with the sample's generator."""
        self._locate_slice(index)
        rng = self.sample_rng(int(index) % len(self))
        image, label = self.load_data(index, rng=rng)
        return self.preprocess_data_to_tensors(image, label, rng=rng)

    # ------------------------------------------------------------------------------------------------ test path
    def get_patient_data_for_testing(
        self,
        pid_index: int,
        crop_size: int | tuple[int, int] | None = None,
        normalize_2D: bool = False,  # noqa: N803 (published name)
    ) -> PatientVolume:
        """Whole volume of subject ``pid_index``, centre-cropped / zero-padded in-plane to ``crop_size``.

        Args:
            pid_index: index into ``patient_id_list``.
            crop_size: output in-plane size (int or ``(h, w)``); None keeps the volume's own size (the published
                test protocol passes 192).
            normalize_2D: per-slice min–max to [0, 1] (eps 1e-20). The published ED+ES test protocol uses False:
                stored intensities are kept.

        Returns:
            A :class:`PatientVolume` (labels as stored, not remapped); its fields can also be read by key.

        Raises:
            ValueError: naming the file, if the label's voxel grid (shape, spacing, origin, direction) differs from
                the image's, the image is constant (e.g. all zero) or not finite, or the labels are not integers.
        """
        if not 0 <= pid_index < self.patient_number:
            raise IndexError(f"{self.dataset_name}: patient index {pid_index} out of range [0, {self.patient_number})")
        pid = self.patient_id_list[pid_index]
        image_path, label_path = self.paths(pid)
        reference, label_ref = read_image_label_pair(image_path, label_path)  # same voxel grid, or an error
        check_image_volume(reference, PREPROCESSED)  # every volume: a blank or raw image would be scored as failed
        image_vol, label_vol = self._prepare(reference, label_ref, self.new_spacing)
        if crop_size is None:
            target = (int(image_vol.array.shape[1]), int(image_vol.array.shape[2]))
        elif isinstance(crop_size, int):
            target = (crop_size, crop_size)
        else:
            target = (int(crop_size[0]), int(crop_size[1]))
        image, info = crop_or_pad(image_vol.array.astype(np.float32), target)  # (N, h, w)
        label, _ = crop_or_pad(label_vol.array, target)
        if normalize_2D:
            image = rescale_slices(image)
        self._last_id = f"{pid}_{self.frame}"
        return PatientVolume(
            image=torch.from_numpy(np.ascontiguousarray(image))[:, None],  # (N, 1, h, w)
            label=torch.from_numpy(label.astype(np.int64)),  # (N, h, w)
            patient_id=self._last_id,
            pid=pid,
            frame=self.frame,
            crop_info=info,
            spacing=tuple(float(s) for s in image_vol.spacing[:3]),
            image_path=image_path,
            label_path=label_path,
            reference=reference,
        )

    def cache_nbytes(self) -> int:
        """Bytes held by the volume cache (0 without cache)."""
        return int(sum(a.nbytes for a in self._images) + sum(a.nbytes for a in self._labels))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={self.root_dir}, frame={self.frame}, subjects={self.patient_number}, "
            f"slices={len(self)}, cache={self.use_cache})"
        )
