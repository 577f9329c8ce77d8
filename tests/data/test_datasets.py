"""ACDC / M&Ms / ConcatDataSet: samples, keep_orig pairs, reproducibility, cache with workers, test path, bad input."""

import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from medseg.data.splits import get_ACDC_split_policy
from medseg.data.base_dataset import PatientVolume
from medseg.data.acdc import CardiacACDCDataset
from medseg.data.mnms import Cardiac_MM_Dataset
from medseg.data.concat import ConcatDataSet
from medseg.data.crop import crop_or_pad, recover_image
from medseg.io.nifti import read_volume, write_volume
from medseg.data.transforms import Transformations
from medseg.phantom.tiny import SPACING, write_subjects, write_tiny_acdc, write_tiny_mm

TRAIN_10_CV0 = get_ACDC_split_policy("10", 0)["train"]
TRANSFORMS = Transformations("ACDC_affine_elastic_intensity", (224, 224, 1), (192, 192, 1)).get_transformation()


@pytest.fixture(scope="module")
def acdc_root(tmp_path_factory):
    ids = sorted(set(TRAIN_10_CV0) | set(get_ACDC_split_policy("10", 0)["validate"]))
    return write_tiny_acdc(tmp_path_factory.mktemp("data") / "ACDC", ids)  # (4, 72, 80), last slice unlabelled


@pytest.fixture(scope="module")
def mm_root(tmp_path_factory):
    return write_tiny_mm(tmp_path_factory.mktemp("data") / "MM", n_per_vendor=1, shape=(3, 60, 70))


def _acdc(root, **kwargs):
    kwargs.setdefault("transform", TRANSFORMS["train"])
    kwargs.setdefault("frame", "ED")
    kwargs.setdefault("keep_orig_image_label_pair", False)
    return CardiacACDCDataset(root_dir=root, split="train", data_setting_name="10", cval=0, **kwargs)


def _mm(root, **kwargs):
    """The M&Ms-layout dataset with both frames reachable ({frame} templates) and no keep-orig pairs."""
    kwargs.setdefault("frame", "ED")
    kwargs.setdefault("keep_orig_image_label_pair", False)
    return Cardiac_MM_Dataset(root_dir=root, image_format_name="{p_id}/{frame}_img.nii.gz",
                              label_format_name="{p_id}/{frame}_seg.nii.gz", **kwargs)


def test_sample_shapes_dtypes_ranges(acdc_root):
    ds = _acdc(acdc_root, keep_orig_image_label_pair=True, seed=0)
    assert len(ds) == 10 * 4 and ds.patient_number == 10 and ds.patient_id_list == TRAIN_10_CV0
    for i in (0, 5, 39):
        s = ds[i]
        assert s["image"].shape == (1, 192, 192) and s["image"].dtype == torch.float32
        assert s["label"].shape == (192, 192) and s["label"].dtype == torch.int64
        assert s["origin_image"].shape == (1, 192, 192) and s["origin_image"].dtype == torch.float32
        assert s["origin_label"].shape == (192, 192) and s["origin_label"].dtype == torch.int64
        assert 0 <= float(s["image"].min()) and float(s["image"].max()) <= 1 + 1e-6
        assert set(s["label"].unique().tolist()) <= {0, 1, 2, 3}
    assert set(ds[1].keys()) == {"image", "label", "origin_image", "origin_label"}
    assert set(_acdc(acdc_root)[1].keys()) == {"image", "label"}


def test_keep_orig_pair_is_same_slice_unaugmented(acdc_root):
    plain = _acdc(acdc_root, transform=TRANSFORMS["validate"], keep_orig_image_label_pair=True, seed=1)
    augmented = _acdc(acdc_root, keep_orig_image_label_pair=True, seed=1)
    pid = TRAIN_10_CV0[0]
    volume = read_volume(acdc_root / pid / "ED_img.nii.gz").array
    for z in range(3):  # labelled slices: no substitution
        expected, _ = crop_or_pad(volume[z], (192, 192))
        for ds in (plain, augmented):
            s = ds[z]
            np.testing.assert_array_equal(s["origin_image"][0].numpy(), expected)  # zero pad, not normalised
        s = plain[z]
        # validate transform places the 72×80 slice at the same offsets as crop_or_pad: labels coincide
        assert torch.equal(s["label"], s["origin_label"])


def test_empty_slice_substitution_uses_labelled_slice(acdc_root):
    ds = _acdc(acdc_root, transform=TRANSFORMS["validate"], keep_orig_image_label_pair=True, seed=3)
    volume = read_volume(acdc_root / TRAIN_10_CV0[0] / "ED_img.nii.gz").array
    candidates = [crop_or_pad(volume[z], (192, 192))[0] for z in range(3)]
    seen = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        s = ds[3]  # slice 3 has no label
        assert s["label"].sum() > 0 and torch.equal(s["label"], s["origin_label"])
        matches = [k for k, c in enumerate(candidates) if np.array_equal(c, s["origin_image"][0].numpy())]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) > 1  # re-drawn per epoch


def test_seed_epoch_reproducibility(acdc_root):
    ds = _acdc(acdc_root, seed=11)
    a, b = ds[7], ds[7]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    ds.set_epoch(1)
    assert not torch.equal(ds[7]["image"], a["image"])
    ds.set_epoch(0)
    assert torch.equal(ds[7]["image"], a["image"])
    ds.seed = None
    draws = [ds[7]["image"] for _ in range(4)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])


def test_workers_do_not_change_results_and_cache_serves_workers(acdc_root, tmp_path):
    root = tmp_path / "ACDC"
    shutil.copytree(acdc_root, root)
    ds = _acdc(root, seed=5, use_cache=True)
    ds.set_epoch(2)
    serial = [b["image"] for b in DataLoader(ds, batch_size=8, num_workers=0)]
    shutil.rmtree(root)  # the workers must read from the parent's cache, not from disk
    parallel = [b["image"] for b in DataLoader(ds, batch_size=8, num_workers=2)]
    assert len(serial) == len(parallel) == 5
    assert all(torch.equal(x, y) for x, y in zip(serial, parallel))
    assert ds.cache_nbytes() == 10 * 4 * 72 * 80 * 5


def test_uncached_equals_cached(acdc_root):
    cached, uncached = _acdc(acdc_root, seed=2, use_cache=True), _acdc(acdc_root, seed=2, use_cache=False)
    assert len(cached) == len(uncached) and uncached.cache_nbytes() == 0
    for i in (0, 3, 13):
        assert torch.equal(cached[i]["image"], uncached[i]["image"])
        assert torch.equal(cached[i]["label"], uncached[i]["label"])


@pytest.mark.parametrize("myo,rv,kept", [(True, False, 2), (False, True, 3), (True, True, 3)])
def test_binary_relabelling(acdc_root, myo, rv, kept):
    ds = _acdc(acdc_root, transform=TRANSFORMS["validate"], keep_orig_image_label_pair=True, seed=0,
               myocardium_seg=myo, right_ventricle_seg=rv)
    full = _acdc(acdc_root, transform=TRANSFORMS["validate"], seed=0)
    s, ref = ds[0], full[0]
    assert set(s["label"].unique().tolist()) == {0, 1}
    assert torch.equal(s["label"], (ref["label"] == kept).long())
    assert torch.equal(s["origin_label"], s["label"])
    assert ds.formalized_label_dict == {0: "BG", 1: "RV" if rv else "MYO"}


def test_patient_data_for_testing(acdc_root):
    ds = CardiacACDCDataset(root_dir=acdc_root, split="train", data_setting_name="10", cval=0, frame="ES",
                            new_spacing=None)
    pv = ds.get_patient_data_for_testing(2, crop_size=192)
    assert isinstance(pv, PatientVolume)
    assert pv.image.shape == (4, 1, 192, 192) and pv.image.dtype == torch.float32
    assert pv.label.shape == (4, 192, 192) and pv.label.dtype == torch.int64
    assert pv.patient_id == f"{TRAIN_10_CV0[2]}_ES" and pv.pid == TRAIN_10_CV0[2] and pv.frame == "ES"
    assert pv.spacing == pytest.approx(SPACING) and pv.image_path.name == "ES_img.nii.gz"
    assert pv.crop_info.original_hw == (72, 80) and pv.reference.array.shape == (4, 72, 80)
    # stored intensities kept (no per-slice normalisation by default) and the inverse mapping restores the input grid
    np.testing.assert_array_equal(recover_image(pv.image[:, 0].numpy(), pv.crop_info), pv.reference.array)
    label = read_volume(pv.label_path).array
    np.testing.assert_array_equal(recover_image(pv.label.numpy(), pv.crop_info), label)
    normalised = ds.get_patient_data_for_testing(2, crop_size=(64, 96), normalize_2D=True)
    assert normalised.image.shape == (4, 1, 64, 96)
    assert torch.allclose(normalised.image.amax(dim=(1, 2, 3)), torch.ones(4))
    assert ds.get_id() == f"{TRAIN_10_CV0[2]}_ES"
    with pytest.raises(IndexError):
        ds.get_patient_data_for_testing(10)


def test_in_plane_resampling_keeps_z(tmp_path):
    root = tmp_path / "ACDC"
    image = np.random.default_rng(0).random((3, 41, 55)).astype(np.float32)
    label = np.zeros((3, 41, 55), np.uint8)
    label[:, 10:30, 10:40] = 2
    for pid in TRAIN_10_CV0:
        write_volume(root / pid / "ED_img.nii.gz", image, spacing=(1.0, 1.0, 9.0))
        write_volume(root / pid / "ED_seg.nii.gz", label, spacing=(1.0, 1.0, 9.0))
    ds = _acdc(root, transform=TRANSFORMS["validate"])
    pv = ds.get_patient_data_for_testing(0, 192)
    assert pv.crop_info.original_hw == (round(41 / 1.36719), round(55 / 1.36719))
    assert pv.spacing == pytest.approx((1.36719, 1.36719, 9.0))
    assert set(pv.label.unique().tolist()) == {0, 2}
    assert len(ds) == 30


def test_mm_dataset_and_vendor_filter(mm_root, tmp_path):
    all_subjects = _mm(mm_root, frame="ES")
    assert all_subjects.patient_id_list == ["A00X", "B00X", "C00X", "D00X"] and len(all_subjects) == 12
    ab = _mm(mm_root, vendors=["A", "VendorB"], transform=TRANSFORMS["train"], seed=0)
    assert ab.patient_id_list == ["A00X", "B00X"] and ab[0]["image"].shape == (1, 192, 192)
    with pytest.raises(ValueError, match="matches no subject"):
        _mm(mm_root, vendors=["Z"])
    acdc_c = tmp_path / "ACDC-C" / "RandomSpike"
    write_subjects(acdc_c, ["007_0", "008_0"], shape=(3, 60, 70))
    ds = _mm(acdc_c)
    assert ds.patient_id_list == ["007_0", "008_0"]
    with pytest.raises(FileNotFoundError, match="vendors.csv"):
        _mm(acdc_c, vendors=["A"])


def test_concat_unequal_sizes(acdc_root, mm_root):
    ed = _acdc(acdc_root, seed=4)  # 10 patients, 40 slices
    mm = _mm(mm_root, frame="ES", vendors=["A", "B", "C"], transform=TRANSFORMS["train"])  # 3, 9
    concat = ConcatDataSet([ed, mm])
    assert len(concat) == 49 and concat.patient_number == 13
    assert concat.patient_id_list == TRAIN_10_CV0 + ["A00X", "B00X", "C00X"]
    assert [concat.locate_patient(i) for i in (9, 10, 12)] == [(0, 9), (1, 0), (1, 2)]
    pv = concat.get_patient_data_for_testing(11)
    assert pv.patient_id == "B00X_ES" and concat.get_id() == "B00X_ES"
    assert concat.get_patient_data_for_testing(3).patient_id == f"{TRAIN_10_CV0[3]}_ED"
    concat.seed = 9
    concat.set_epoch(3)
    assert mm.seed == 9 and ed.epoch == 3 and mm.epoch == 3
    assert torch.equal(concat[40]["image"], mm[0]["image"]) and torch.equal(concat[-1]["label"], mm[8]["label"])
    with pytest.raises(IndexError):
        concat.get_patient_data_for_testing(13)
    with pytest.raises(IndexError):
        concat[49]


# ----------------------------------------------------------------------------------------------------- bad input
def test_missing_subject_names_subject_and_path(acdc_root, tmp_path):
    root = tmp_path / "ACDC"
    shutil.copytree(acdc_root, root)
    victim = TRAIN_10_CV0[4]
    (root / victim / "ED_seg.nii.gz").unlink()
    for use_cache in (True, False):
        with pytest.raises(FileNotFoundError, match=rf"{victim}.*{victim}/ED_seg\.nii\.gz"):
            _acdc(root, use_cache=use_cache)


def _corrupt_subject(root, pid, image=None, label=None):
    if image is not None:
        write_volume(root / pid / "ED_img.nii.gz", image, spacing=SPACING)
    if label is not None:
        write_volume(root / pid / "ED_seg.nii.gz", label, spacing=SPACING)


def test_shape_mismatch(acdc_root, tmp_path):
    root = tmp_path / "ACDC"
    shutil.copytree(acdc_root, root)
    _corrupt_subject(root, TRAIN_10_CV0[1], label=np.zeros((4, 72, 81), np.uint8))
    for use_cache in (True, False):
        with pytest.raises(ValueError, match="ED_seg.nii.gz"):
            _acdc(root, use_cache=use_cache)


def test_non_finite_voxels(tmp_path):
    # SimpleITK's NIfTI reader turns NaN/Inf into 0, so non-finite voxels can only arrive via other formats (NRRD)
    root = tmp_path / "ACDC"
    label = np.zeros((2, 20, 20), np.uint8)
    label[:, 5:10, 5:10] = 1
    for k, pid in enumerate(TRAIN_10_CV0):
        image = np.linspace(0, 1, 800, dtype=np.float32).reshape(2, 20, 20)  # plausible: contrast, in [0, 1]
        if k == 3:
            image[1, 3, 3] = np.inf
        write_volume(root / pid / "ED_img.nrrd", image, spacing=SPACING)
        write_volume(root / pid / "ED_seg.nrrd", label, spacing=SPACING)
    formats = {"image_format_name": "{p_id}/{frame}_img.nrrd", "label_format_name": "{p_id}/{frame}_seg.nrrd"}
    with pytest.raises(ValueError, match=rf"{TRAIN_10_CV0[3]}/ED_img.nrrd.*NaN or Inf"):
        _acdc(root, **formats)
    uncached = _acdc(root, use_cache=False, **formats)
    with pytest.raises(ValueError, match="NaN or Inf"):
        uncached[6]


def test_volume_without_labels(acdc_root, tmp_path):
    root = tmp_path / "ACDC"
    shutil.copytree(acdc_root, root)
    _corrupt_subject(root, TRAIN_10_CV0[2], label=np.zeros((4, 72, 80), np.uint8))
    with pytest.raises(ValueError, match=rf"{TRAIN_10_CV0[2]}/ED_seg.nii.gz.*no slice"):
        _acdc(root)
    uncached = _acdc(root, use_cache=False)
    with pytest.raises(ValueError, match="no slice"):
        uncached[8]


def test_bad_arguments(acdc_root, tmp_path):
    with pytest.raises(ValueError, match="split"):
        CardiacACDCDataset(root_dir=acdc_root, split="training")
    with pytest.raises(ValueError, match="frame"):
        _acdc(acdc_root, frame="EDES")
    with pytest.raises(ValueError, match="cval"):
        CardiacACDCDataset(root_dir=acdc_root, data_setting_name="10", cval=7)
    with pytest.raises(ValueError, match="data_setting"):
        CardiacACDCDataset(root_dir=acdc_root, data_setting_name="lots")
    with pytest.raises(FileNotFoundError, match="root folder"):
        _acdc(tmp_path / "nowhere")
