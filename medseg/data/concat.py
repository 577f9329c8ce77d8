"""Concatenation of slice datasets with correct slice and patient indexing (cumulative offsets)."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from medseg.data.base_dataset import BaseSegmentationDataset, PatientVolume


class ConcatDataSet(Dataset):
    """Datasets one after the other, for slices (``dataset[i]``) and for patients (``get_patient_data_for_testing``).

    Both indices are mapped through cumulative offsets, so parts may have different sizes (the original used
    ``pid_index % patient_number``, wrong for unequal parts). ``seed`` and ``set_epoch`` are forwarded to every part;
    a part's sample ``i`` keeps its own local index in the seeded generator.

    Args:
        dataset_list: the parts, in order (e.g. ED then ES).
    """

    def __init__(self, dataset_list: Sequence[BaseSegmentationDataset]) -> None:
        if len(dataset_list) == 0:
            raise ValueError("ConcatDataSet needs at least one dataset")
        self.datasets = list(dataset_list)
        self.cumulative_sizes = np.cumsum([len(d) for d in self.datasets]).tolist()
        self.cumulative_patients = np.cumsum([d.patient_number for d in self.datasets]).tolist()
        self.formalized_label_dict = self.datasets[0].formalized_label_dict
        self._last: BaseSegmentationDataset = self.datasets[0]

    @staticmethod
    def _locate(cumulative: list[int], index: int, what: str) -> tuple[int, int]:
        total = cumulative[-1]
        if not 0 <= index < total:
            raise IndexError(f"ConcatDataSet: {what} index {index} out of range [0, {total})")
        part = bisect.bisect_right(cumulative, index)
        return part, index - (cumulative[part - 1] if part > 0 else 0)

    def __len__(self) -> int:
        return int(self.cumulative_sizes[-1])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if index < 0:
            index += len(self)
        part, local = self._locate(self.cumulative_sizes, int(index), "slice")
        self._last = self.datasets[part]
        return self._last[local]

    @property
    def seed(self) -> int | None:
        return self.datasets[0].seed

    @seed.setter
    def seed(self, value: int | None) -> None:
        for d in self.datasets:
            d.seed = value

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            d.set_epoch(epoch)

    @property
    def patient_number(self) -> int:
        return int(self.cumulative_patients[-1])

    @property
    def patient_id_list(self) -> list[str]:
        return [pid for d in self.datasets for pid in d.patient_id_list]

    def locate_patient(self, pid_index: int) -> tuple[int, int]:
        """``(part, local patient index)`` of global patient ``pid_index``."""
        return self._locate(self.cumulative_patients, int(pid_index), "patient")

    def get_patient_data_for_testing(
        self, pid_index: int, crop_size: int | tuple[int, int] | None = None, normalize_2D: bool = False  # noqa: N803
    ) -> PatientVolume:
        """Forward to the part holding patient ``pid_index``.

        See :meth:`BaseSegmentationDataset.get_patient_data_for_testing`.
        """
        part, local = self.locate_patient(pid_index)
        self._last = self.datasets[part]
        return self._last.get_patient_data_for_testing(local, crop_size=crop_size, normalize_2D=normalize_2D)

    def get_id(self) -> str | None:
        return self._last.get_id()

    def get_voxel_spacing(self) -> tuple[float, float, float]:
        return self._last.get_voxel_spacing()
