"""Training/validation datasets read through the one NIfTI reader: damaged files and bad labels name the file."""

from __future__ import annotations

import numpy as np
import pytest

from corrupt_files import DAMAGE
from medseg.data.base_dataset import BaseSegmentationDataset
from medseg.io.nifti import read_volume, write_volume
from medseg.phantom.tiny import write_subjects


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("kind", ["img", "seg"])
def test_damaged_volume_is_an_error_naming_it(tmp_path, damage, use_cache, kind):
    root = write_subjects(tmp_path / "ACDC", ["001", "002"], shape=(3, 40, 48))
    DAMAGE[damage](root / "002" / f"ED_{kind}.nii.gz")
    with pytest.raises(ValueError, match=f"002/ED_{kind}.nii.gz: (truncated|corrupt)"):
        dataset = BaseSegmentationDataset(root, ["001", "002"], frame="ED", use_cache=use_cache)
        for i in range(len(dataset)):
            dataset[i]


def test_label_values_outside_the_classes_name_the_file(tmp_path):
    root = write_subjects(tmp_path / "ACDC", ["001"], shape=(3, 40, 48))
    label = read_volume(root / "001" / "ES_seg.nii.gz")
    array = label.array.copy()
    array[0, 0, 0] = 5  # used to fail inside the loss as "Class values must be smaller than num_classes"
    write_volume(root / "001" / "ES_seg.nii.gz", array, label)
    with pytest.raises(ValueError, match=r"001/ES_seg.nii.gz: expected label values \[0, 1, 2, 3\] .*got \[5\]"):
        BaseSegmentationDataset(root, ["001"], frame="ES", use_cache=True)
    dataset = BaseSegmentationDataset(root, ["001"], frame="ES", use_cache=False)
    with pytest.raises(ValueError, match="001/ES_seg.nii.gz: expected label values"):
        dataset[0]
    assert dataset.get_patient_data_for_testing(0).label.max() == 5  # testing reports them instead (documented)
    assert np.isfinite(dataset.get_patient_data_for_testing(0).image.numpy()).all()
