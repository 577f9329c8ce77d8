"""One plausibility rule of an image volume, the same in every tool: training, validation, medseg-test (every volume),
medseg-predict, the preprocessors, ACDC-C and the figure script."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from medseg.data.base_dataset import BaseSegmentationDataset
from medseg.io.nifti import Volume, read_volume, write_volume
from medseg.io.plausibility import (
    PREPROCESSED,
    RAW_SCAN,
    ImplausibleVolume,
    check_image_volume,
    plausibility_problem,
)
from medseg.phantom.tiny import SPACING, write_subjects

SHAPE = (3, 40, 48)


def volume(array, spacing=SPACING) -> Volume:
    return Volume(np.asarray(array), tuple(spacing), (0.0, 0.0, 0.0), (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))


def ramp(scale=1.0, offset=0.0, dtype=np.float32):
    return (np.linspace(0, 1, int(np.prod(SHAPE))).reshape(SHAPE) * scale + offset).astype(dtype)


def test_the_rule_per_stage() -> None:
    good = ramp()
    raw = ramp(4000, dtype=np.int16)
    assert plausibility_problem(volume(good), PREPROCESSED) is None
    assert plausibility_problem(volume(good), RAW_SCAN) is None
    assert plausibility_problem(volume(raw), RAW_SCAN) is None
    assert "expected a preprocessed image with intensities in [0, 1], got [0, 4000]" in \
        plausibility_problem(volume(raw), PREPROCESSED)
    assert "got [-0.5, 0.5]" in plausibility_problem(volume(ramp(offset=-0.5)), PREPROCESSED)
    assert "intensities >= 0), got intensities down to -0.5" in plausibility_problem(volume(ramp(offset=-0.5)),
                                                                                       RAW_SCAN)
    assert "up to 1e+06, got 1e+30" in plausibility_problem(volume(ramp(1e30)), RAW_SCAN)  # scl_slope 1e30
    for stage in (RAW_SCAN, PREPROCESSED):
        assert "constant volume (every voxel is 0)" in plausibility_problem(volume(np.zeros(SHAPE)), stage)
        assert "NaN or Inf" in plausibility_problem(volume(np.full(SHAPE, np.nan, np.float32)), stage)
        for spacing in ((13.6719, 13.6719, 8.0), (1000.0, 1000.0, 8.0), (1.37, 1.37, 400.0)):
            assert "voxel size along" in plausibility_problem(volume(good, spacing), stage), spacing
    # int16 bytes read as float32 (a header whose data type reinterprets the bytes): subnormal "intensities"
    reinterpreted = ramp(300, 1, dtype=np.int16).view(np.float32)
    assert "header's data type does not match" in plausibility_problem(volume(reinterpreted), RAW_SCAN)
    # a real image with one value rounded to near zero by arithmetic (seen after an FFT-based ghosting and
    # resampling) is an image, not reinterpreted bytes
    rounded = good.astype(np.float32).copy()
    rounded.flat[7] = 1e-38
    for stage in (RAW_SCAN, PREPROCESSED):
        assert plausibility_problem(volume(rounded), stage) is None
    with pytest.raises(ImplausibleVolume, match=r"^<in-memory volume>: expected an image with contrast"):
        check_image_volume(volume(np.ones(SHAPE)), RAW_SCAN)
    assert issubclass(ImplausibleVolume, ValueError)  # a user error of every tool (one line, exit code 2)


def _raw_intensities(root):
    """A preprocessed folder whose subject 'raw' holds raw int16-range intensities (0-4000) instead of [0, 1]."""
    write_subjects(root, ["good", "raw"], shape=SHAPE, frames=("ED",))
    image = read_volume(root / "raw" / "ED_img.nii.gz")
    write_volume(root / "raw" / "ED_img.nii.gz", image.array * 4000, image)
    return root / "raw" / "ED_img.nii.gz"


def test_training_and_validation_refuse_raw_intensities(tmp_path) -> None:
    bad = _raw_intensities(tmp_path / "ACDC")
    for cache in (True, False):  # read when the dataset is built, or when a sample is drawn
        with pytest.raises(ValueError, match=rf"{bad}: expected a preprocessed image with intensities in \[0, 1\]"):
            source = BaseSegmentationDataset(tmp_path / "ACDC", ["good", "raw"], frame="ED", use_cache=cache,
                                             new_spacing=None)
            for index in range(len(source)):
                source[index]


def test_medseg_test_skips_every_implausible_volume(tmp_path, echo_model) -> None:
    from medseg.evaluation.reports import evaluate_dataset

    _raw_intensities(tmp_path / "MM")
    negative = read_volume(tmp_path / "MM" / "good" / "ED_img.nii.gz")
    write_subjects(tmp_path / "MM", ["negative"], shape=SHAPE, frames=("ED",))
    write_volume(tmp_path / "MM" / "negative" / "ED_img.nii.gz", negative.array - 0.5, negative)
    source = BaseSegmentationDataset(tmp_path / "MM", ["good", "raw", "negative"], frame="ED", use_cache=False,
                                     new_spacing=None, dataset_name="MM")
    result = evaluate_dataset(echo_model, source, "MM", n_iter=1, crop_size=48)
    assert result.detailed["patient_id"].tolist() == ["good_ED"]  # not "3 volumes evaluated, 0 skipped"
    notes = "\n".join(result.warnings)
    assert "raw/ED_img.nii.gz: expected a preprocessed image with intensities in [0, 1], got [" in notes
    assert "negative/ED_img.nii.gz: expected a preprocessed image" in notes


def _with_scl_slope(path, slope: float):
    """Rewrite the scl_slope of a gzipped NIfTI-1 file (bytes 112-115)."""
    data = bytearray(gzip.decompress(path.read_bytes()))
    struct.pack_into("<f", data, 112, slope)
    path.write_bytes(gzip.compress(bytes(data)))


def test_predict_and_preprocessing_refuse_an_absurd_scl_slope(tmp_path) -> None:
    from medseg.conversion.preprocessing import preprocess_pair
    from medseg.evaluation.scan import prepare_scan

    path = tmp_path / "scan.nii.gz"
    write_volume(path, ramp(4000, dtype=np.int16), spacing=SPACING)
    _with_scl_slope(path, 1e30)
    scan = read_volume(path, dtype=np.float32)
    with pytest.raises(ValueError, match=rf"{path}: expected raw scanner intensities up to 1e\+06"):
        prepare_scan(scan)
    label = volume(np.zeros(SHAPE, np.uint8))
    with pytest.raises(ValueError, match=rf"{path}: expected raw scanner intensities"):
        preprocess_pair(scan, Volume(label.array, scan.spacing, scan.origin, scan.direction))


def test_figure_script_and_acdc_c_refuse_raw_intensities_in_a_preprocessed_folder(tmp_path) -> None:
    from medseg.conversion.acdc_c import generate_acdc_c
    from medseg.visualization.subjects import load_subject

    bad = _raw_intensities(tmp_path / "ACDC")
    with pytest.raises(ValueError, match=rf"{bad}: expected a preprocessed image"):
        load_subject(tmp_path / "ACDC" / "raw", "ED")
    with pytest.raises(ValueError, match=rf"{bad}: expected a preprocessed image"):
        generate_acdc_c(tmp_path / "ACDC", tmp_path / "ACDC-C", subjects=["raw"], copies=1, frames=("ED",),
                        artefacts=["RandomBias"])
