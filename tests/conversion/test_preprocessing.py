"""Preprocessing of raw ACDC / M&Ms data: correctness on hand-made volumes and every bad-input case."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from medseg.conversion import acdc as acdc_preprocess, mnms as mnms_preprocess, preprocessing
from medseg.conversion.acdc import preprocess_acdc
from medseg.conversion.mnms import preprocess_mnms
from medseg.io.nifti import Volume, read_volume, write_volume
from medseg.conversion.preprocessing import normalize_percentile, resample_in_plane

ROTATION = (0.0, -1.0, 0.0, 0.6, 0.0, -0.8, 0.8, 0.0, 0.6)  # a proper rotation, as in scanner qforms
ORIGIN = (-120.5, 88.25, 14.0)
SPACING = (2.0, 1.5, 7.0)  # x, y, z
SHAPE = (3, 10, 20)  # z, h, w
CSV_NAME = "201014_M&Ms_Dataset_Information_-_opendataset.csv"


def raw_pair(value_shift: int = 0, shape=SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """An int16 image and a raw ACDC label map (1 RV left, 2 MYO ring, 3 LV centre)."""
    z, h, w = shape
    yy, xx = np.mgrid[:h, :w]
    label = np.zeros(shape, dtype=np.uint8)
    label[:, (yy - h // 2) ** 2 + (xx - 13) ** 2 <= 9] = 2
    label[:, (yy - h // 2) ** 2 + (xx - 13) ** 2 <= 2] = 3
    label[:, 2:8, 2:6] = 1
    image = (np.arange(np.prod(shape)).reshape(shape) % 97 + value_shift).astype(np.int16)
    return image, label


def write_acdc_patient(root: Path, number: int, frames=(1, 9), info: str | None = None, **arrays) -> Path:
    folder = root / f"patient{number:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    text = info if info is not None else f"ED: {frames[0]}\nES: {frames[1]}\nGroup: NOR\nHeight: 170.0\nNbFrame: 20\n"
    if text:
        (folder / "Info.cfg").write_text(text)
    geometry = {"spacing": SPACING, "origin": ORIGIN, "direction": ROTATION}
    for frame in frames:
        image, label = raw_pair(frame)
        image = arrays.get(f"image{frame}", image)
        label = arrays.get(f"label{frame}", label)
        for suffix, array in (("", image), ("_gt", label)):
            kwargs = geometry if array.ndim == 3 else {}
            write_volume(folder / f"patient{number:03d}_frame{frame:02d}{suffix}.nii.gz", array, **kwargs)
    return folder


# ---------------------------------------------------------------------------------------------- shared steps
def test_percentile_normalisation():
    array = np.arange(101, dtype=np.float32).reshape(1, 1, 101)  # p2 = 2, p98 = 98
    out = normalize_percentile(array)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    assert out[0, 0, 50] == pytest.approx(48 / 96)
    assert np.all(out[0, 0, :3] == 0.0) and np.all(out[0, 0, 98:] == 1.0)


def test_resample_size_spacing_and_geometry():
    image, label = raw_pair()
    volume = Volume(image.astype(np.float32), SPACING, ORIGIN, ROTATION)
    out = resample_in_plane(volume)
    # x: round(20 * 2.0 / 1.36719) = 29, y: round(10 * 1.5 / 1.36719) = 11, z unchanged
    assert out.array.shape == (3, 11, 29) and out.array.dtype == np.float32
    assert out.spacing == pytest.approx((1.36719, 1.36719, 7.0))
    assert out.origin == pytest.approx(ORIGIN) and out.direction == pytest.approx(ROTATION)
    seg = resample_in_plane(Volume(label, SPACING, ORIGIN, ROTATION), is_label=True)
    assert seg.array.shape == (3, 11, 29) and seg.array.dtype == np.uint8
    assert set(np.unique(seg.array)) == {0, 1, 2, 3}  # nearest neighbour: no new values
    assert out.array.min() >= image.min() and out.array.max() <= image.max()  # linear: no overshoot


def test_resample_keeps_matching_spacing_unchanged():
    array = np.random.default_rng(0).random((2, 5, 6)).astype(np.float32)
    volume = Volume(array, (1.36719, 1.36719, 5.0), ORIGIN, ROTATION)
    assert np.array_equal(resample_in_plane(volume).array, array)


def test_anti_aliased_downsampling_blurs_stripes_instead_of_aliasing_them():
    """Stripes of period 2.4 px at 1.36719 mm, downsampled 2x: plain linear interpolation turns them into a coarse
    high-contrast moire; with the anti-aliasing filter they fade to a near-flat grey, and smooth content is kept."""
    x = np.arange(128, dtype=np.float32)
    stripes = 0.5 + 0.5 * np.cos(2 * np.pi * x / 2.4)
    ramp = x / 127.0
    array = np.broadcast_to(np.stack([stripes, ramp])[:, None, :], (2, 16, 128)).astype(np.float32).copy()
    volume = Volume(array, (1.36719, 1.36719, 8.0), ORIGIN, ROTATION)
    plain = resample_in_plane(volume, (2.73438, 2.73438))
    filtered = resample_in_plane(volume, (2.73438, 2.73438), anti_alias=True)
    assert plain.array.shape == filtered.array.shape == (2, 8, 64)
    interior = slice(4, -4)
    assert np.ptp(plain.array[0, 4, interior]) > 0.5  # aliased into bands
    assert np.ptp(filtered.array[0, 4, interior]) < 0.25 * np.ptp(plain.array[0, 4, interior])
    np.testing.assert_allclose(filtered.array[1, 4, interior], plain.array[1, 4, interior], atol=0.01)  # ramp kept
    labels = Volume((array > 0.5).astype(np.uint8), (1.36719, 1.36719, 8.0), ORIGIN, ROTATION)
    assert np.array_equal(resample_in_plane(labels, (2.73438, 2.73438), is_label=True, anti_alias=True).array,
                          resample_in_plane(labels, (2.73438, 2.73438), is_label=True).array)  # labels: nearest only
    assert np.array_equal(resample_in_plane(volume, anti_alias=True).array, array)  # same grid: untouched


# ---------------------------------------------------------------------------------------------- ACDC
def test_acdc_end_to_end_label_swap_and_geometry(tmp_path):
    write_acdc_patient(tmp_path / "raw" / "training", 7)
    report = preprocess_acdc(tmp_path / "raw", tmp_path / "out")
    assert report.ok and report.done == ["007"]
    for frame, raw_frame in (("ED", 1), ("ES", 9)):
        img = read_volume(tmp_path / f"out/007/{frame}_img.nii.gz")
        seg = read_volume(tmp_path / f"out/007/{frame}_seg.nii.gz")
        assert img.array.dtype == np.float32 and seg.array.dtype == np.uint8
        assert img.array.min() >= 0.0 and img.array.max() <= 1.0
        assert img.array.shape == seg.array.shape == (3, 11, 29)
        assert img.spacing == pytest.approx((1.36719, 1.36719, 7.0))
        assert img.origin == pytest.approx(ORIGIN) and img.direction == pytest.approx(ROTATION, abs=1e-6)
        _, raw_label = raw_pair(raw_frame)
        expected = resample_in_plane(Volume(raw_label, SPACING, ORIGIN, ROTATION), is_label=True).array
        swapped = np.choose(expected, [0, 3, 2, 1])  # raw 1 RV, 3 LV -> medseg 1 LV, 3 RV
        assert np.array_equal(seg.array, swapped)


def test_acdc_skips_done_subjects_unless_overwrite(tmp_path):
    write_acdc_patient(tmp_path / "raw", 1)
    assert preprocess_acdc(tmp_path / "raw", tmp_path / "out").done == ["001"]
    marker = tmp_path / "out/001/ED_img.nii.gz"
    before = marker.stat().st_mtime_ns
    report = preprocess_acdc(tmp_path / "raw", tmp_path / "out")
    assert report.skipped == ["001"] and marker.stat().st_mtime_ns == before
    assert preprocess_acdc(tmp_path / "raw", tmp_path / "out", overwrite=True).done == ["001"]


def _single_failure(tmp_path: Path) -> str:
    report = preprocess_acdc(tmp_path / "raw", tmp_path / "out")
    assert list(report.failed) == ["001"], report.summary()
    assert not list((tmp_path / "out").rglob("*.nii.gz")), "a failed subject must leave no output file"
    return report.failed["001"]


def test_missing_info_cfg(tmp_path):
    write_acdc_patient(tmp_path / "raw", 1, info="")
    message = _single_failure(tmp_path)
    assert "Info.cfg" in message and "patient001" in message


def test_info_cfg_without_es(tmp_path):
    write_acdc_patient(tmp_path / "raw", 1, info="ED: 1\nGroup: NOR\n")
    assert "'ES: <1-based frame number>'" in _single_failure(tmp_path)


def test_missing_frame_named_by_info_cfg(tmp_path):
    write_acdc_patient(tmp_path / "raw", 1, frames=(1, 9), info="ED: 1\nES: 12\n")
    message = _single_failure(tmp_path)
    assert "patient001_frame12.nii.gz" in message and "frame 12" in message


def test_gt_shape_differs_from_image(tmp_path):
    write_acdc_patient(tmp_path / "raw", 1, label9=np.zeros((3, 10, 19), np.uint8))
    message = _single_failure(tmp_path)
    assert "patient001_frame09_gt.nii.gz" in message and "shape" in message


def test_label_values_outside_expected_set(tmp_path):
    _, label = raw_pair()
    label[0, 0, 0] = 5
    write_acdc_patient(tmp_path / "raw", 1, label9=label)
    message = _single_failure(tmp_path)
    assert "patient001_frame09_gt.nii.gz" in message and "[5]" in message


def test_4d_file_where_3d_expected(tmp_path):
    image, _ = raw_pair()
    write_acdc_patient(tmp_path / "raw", 1, image1=np.stack([image, image]))
    message = _single_failure(tmp_path)
    assert "patient001_frame01.nii.gz" in message and "3D" in message


def test_nan_voxels(tmp_path):
    image, _ = raw_pair()
    image = image.astype(np.float32)
    image[1, 2, 3] = np.nan
    write_acdc_patient(tmp_path / "raw", 1, image9=image)
    message = _single_failure(tmp_path)
    assert "patient001_frame09.nii.gz" in message and "NaN or Inf" in message


@pytest.mark.parametrize("content, expected", [(b"", "empty"), (b"this is not a NIfTI file", "not a NIfTI file")])
def test_empty_or_unreadable_nifti(tmp_path, content, expected):
    folder = write_acdc_patient(tmp_path / "raw", 1)
    (folder / "patient001_frame09.nii.gz").write_bytes(content)
    message = _single_failure(tmp_path)
    assert "patient001_frame09.nii.gz" in message and expected in message


def test_output_folder_is_a_file(tmp_path, capsys):
    write_acdc_patient(tmp_path / "raw", 1)
    blocker = tmp_path / "out"
    blocker.write_text("not a folder")
    with pytest.raises(PermissionError, match="out"):
        preprocess_acdc(tmp_path / "raw", blocker)
    rc = acdc_preprocess.main(["--input", str(tmp_path / "raw"), "--output", str(blocker), "--no-progress"])
    assert rc != 0 and str(blocker) in capsys.readouterr().err


def test_output_folder_not_writable(tmp_path, monkeypatch):
    write_acdc_patient(tmp_path / "raw", 1)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(PermissionError, match="not writable"):
        preprocess_acdc(tmp_path / "raw", tmp_path / "out")


def test_failed_write_removes_files_of_the_subject(tmp_path, monkeypatch):
    write_acdc_patient(tmp_path / "raw", 1)
    real_write = preprocessing.write_volume
    calls = []

    def flaky_write(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(f"disk full while writing {path}")
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(preprocessing, "write_volume", flaky_write)
    assert "disk full" in _single_failure(tmp_path)
    assert not list((tmp_path / "out").rglob("*")) or not list((tmp_path / "out").rglob("*.nii.gz"))


def test_all_failures_reported_at_the_end(tmp_path, capsys):
    raw = tmp_path / "raw"
    write_acdc_patient(raw, 1, info="")
    write_acdc_patient(raw, 2)
    _, bad = raw_pair()
    bad[0, 0, 0] = 9
    write_acdc_patient(raw, 3, label1=bad)
    rc = acdc_preprocess.main(["--input", str(raw), "--output", str(tmp_path / "out"), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "FAILED 001" in out and "FAILED 003" in out and "1 subjects written" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["002", "provenance.json"]


# ---------------------------------------------------------------------------------------------- M&Ms
def write_mnms(root: Path, codes=("A1B2C3", "D4E5F6"), ed=0, es=3, n_frames=5, csv_name=CSV_NAME,
               image=None, label=None, csv_rows=None) -> Path:
    direction = np.eye(4)
    direction[:3, :3] = np.asarray(ROTATION).reshape(3, 3)
    geometry = {"spacing": (*SPACING, 1.0), "origin": (*ORIGIN, 0.0), "direction": direction.ravel()}
    for i, code in enumerate(codes):
        folder = root / ("Training/Labeled" if i == 0 else "Testing") / code
        base, lab = raw_pair()
        img4 = np.stack([base + 1000 * t for t in range(n_frames)]).astype(np.int16)  # frame t is recognisable
        gt4 = np.zeros_like(img4, dtype=np.uint8)
        gt4[ed] = np.choose(lab, [0, 3, 2, 1])
        gt4[es] = np.choose(lab, [0, 3, 2, 1])
        for name, array in ((f"{code}_sa.nii.gz", image if image is not None else img4),
                            (f"{code}_sa_gt.nii.gz", label if label is not None else gt4)):
            write_volume(folder / name, array, **(geometry if array.ndim == 4 else {}))
    lines = [",External code,VendorName,Vendor,Centre,ED,ES"]
    rows = csv_rows if csv_rows is not None else [f"{code},Siemens,A,1,{ed},{es}" for code in codes]
    lines += [f"{i},{row}" for i, row in enumerate(rows)]
    (root / csv_name).write_text("\n".join(lines) + "\n")
    return root


def test_mnms_end_to_end(tmp_path):
    write_mnms(tmp_path / "raw", ed=1, es=3)
    report = preprocess_mnms(tmp_path / "raw", tmp_path / "MM")
    assert report.ok and sorted(report.done) == ["A1B2C3", "D4E5F6"]
    for frame, t in (("ED", 1), ("ES", 3)):
        img = read_volume(tmp_path / f"MM/A1B2C3/{frame}_img.nii.gz")
        seg = read_volume(tmp_path / f"MM/A1B2C3/{frame}_seg.nii.gz")
        assert img.array.shape == (3, 11, 29) and img.spacing == pytest.approx((1.36719, 1.36719, 7.0))
        assert img.origin == pytest.approx(ORIGIN) and img.direction == pytest.approx(ROTATION, abs=1e-6)
        assert set(np.unique(seg.array)) == {0, 1, 2, 3}
        _, lab = raw_pair()
        expected = resample_in_plane(Volume(np.choose(lab, [0, 3, 2, 1]).astype(np.uint8), SPACING, ORIGIN,
                                            ROTATION), is_label=True).array
        assert np.array_equal(seg.array, expected)  # M&Ms labels are kept as they are
    table = (tmp_path / "MM/vendors.csv").read_text().splitlines()
    assert table == ["subject,vendor,vendor_name,centre", "A1B2C3,A,Siemens,1", "D4E5F6,A,Siemens,1"]
    # a rerun that changes nothing leaves the table untouched (experiments fingerprint it by size and mtime)
    before = (tmp_path / "MM/vendors.csv").stat().st_mtime_ns
    time.sleep(0.02)
    assert preprocess_mnms(tmp_path / "raw", tmp_path / "MM").ok
    assert (tmp_path / "MM/vendors.csv").stat().st_mtime_ns == before


def test_mnms_picks_the_zero_based_frames(tmp_path):
    write_mnms(tmp_path / "raw", codes=("A1B2C3",), ed=0, es=4)
    preprocess_mnms(tmp_path / "raw", tmp_path / "MM")
    # frames differ by +1000 per index: after percentile scaling they look alike, so compare raw frame picks
    sub = mnms_preprocess.find_subjects(tmp_path / "raw")["A1B2C3"]
    raw = read_volume(sub / "A1B2C3_sa.nii.gz", ndim=4)
    assert raw.array[4].min() >= 4000
    seg_es = read_volume(tmp_path / "MM/A1B2C3/ES_seg.nii.gz").array
    assert seg_es.any()


def test_mnms_csv_option_and_pattern(tmp_path):
    write_mnms(tmp_path / "raw", csv_name="211230_M&Ms_Dataset_information_diagnosis_opendataset.csv")
    assert mnms_preprocess.find_metadata_csv(tmp_path / "raw").name.startswith("211230")
    moved = tmp_path / "meta.csv"
    (tmp_path / "raw/211230_M&Ms_Dataset_information_diagnosis_opendataset.csv").rename(moved)
    with pytest.raises(FileNotFoundError, match="metadata CSV"):
        preprocess_mnms(tmp_path / "raw", tmp_path / "MM")
    assert preprocess_mnms(tmp_path / "raw", tmp_path / "MM", csv_path=moved).ok


def test_mnms_3d_file_where_4d_expected(tmp_path):
    image, _ = raw_pair()
    write_mnms(tmp_path / "raw", codes=("A1B2C3",), image=image)
    report = preprocess_mnms(tmp_path / "raw", tmp_path / "MM")
    assert "A1B2C3_sa.nii.gz" in report.failed["A1B2C3"] and "4D" in report.failed["A1B2C3"]


def test_mnms_bad_labels_frames_and_metadata(tmp_path):
    _, lab = raw_pair()
    bad = np.stack([lab] * 5)
    bad[0, 0, 0, 0] = 4
    write_mnms(tmp_path / "raw", codes=("A1B2C3", "D4E5F6", "G7H8I9"), label=None,
               csv_rows=["A1B2C3,Siemens,A,1,0,3", "D4E5F6,Siemens,A,1,0,7"])
    write_mnms(tmp_path / "raw2", codes=("A1B2C3",), label=bad)
    report = preprocess_mnms(tmp_path / "raw", tmp_path / "MM")
    assert report.done == ["A1B2C3"]
    assert "ES frame index 7" in report.failed["D4E5F6"] and "D4E5F6_sa.nii.gz" in report.failed["D4E5F6"]
    assert "not listed in the metadata CSV" in report.failed["G7H8I9"]
    assert (tmp_path / "MM/vendors.csv").read_text().splitlines()[1:] == ["A1B2C3,A,Siemens,1"]
    report2 = preprocess_mnms(tmp_path / "raw2", tmp_path / "MM2")
    assert "A1B2C3_sa_gt.nii.gz" in report2.failed["A1B2C3"] and "[4]" in report2.failed["A1B2C3"]


def test_mnms_csv_missing_columns(tmp_path):
    write_mnms(tmp_path / "raw")
    (tmp_path / "raw" / CSV_NAME).write_text(",External code,Vendor\n0,A1B2C3,A\n")
    with pytest.raises(ValueError, match=r"missing columns \['ED', 'ES'\]"):
        preprocess_mnms(tmp_path / "raw", tmp_path / "MM")


def test_cli_runs_as_file_and_as_module(tmp_path):
    import subprocess
    import sys

    write_acdc_patient(tmp_path / "raw", 1)
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": ""}
    as_file = subprocess.run([sys.executable, "medseg/conversion/acdc.py", "--input",
                              str(tmp_path / "raw"), "--output", str(tmp_path / "a"), "--no-progress"],
                             cwd=repo, env=env, capture_output=True, text=True)
    assert as_file.returncode == 0, as_file.stderr
    as_module = subprocess.run([sys.executable, "-m", "medseg.conversion.acdc", "--input",
                                str(tmp_path / "raw"), "--output", str(tmp_path / "b"), "--no-progress"],
                               cwd=repo, env=env, capture_output=True, text=True)
    assert as_module.returncode == 0, as_module.stderr
    assert (tmp_path / "a/001/ES_seg.nii.gz").is_file() and (tmp_path / "b/001/ES_seg.nii.gz").is_file()


# ------------------------------------------------------------------------------ reliability
from corrupt_files import DAMAGE  # noqa: E402


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_acdc_damaged_raw_frame_fails_the_subject(tmp_path, damage, capsys):
    folder = write_acdc_patient(tmp_path / "raw", 1, image9=np.random.default_rng(0).integers(0, 900, (3, 40, 60))
                                .astype(np.int16))
    write_acdc_patient(tmp_path / "raw", 2)
    DAMAGE[damage](folder / "patient001_frame09.nii.gz")
    rc = acdc_preprocess.main(["--input", str(tmp_path / "raw"), "--output", str(tmp_path / "out"), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 1 and "FAILED 001" in out and "patient001_frame09.nii.gz" in out
    assert "truncated" in out or "corrupt" in out
    assert not (tmp_path / "out/001").exists() and (tmp_path / "out/002/ES_img.nii.gz").is_file()


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("which", ["image", "label"])
def test_mnms_damaged_cine_fails_the_subject(tmp_path, damage, which):
    write_mnms(tmp_path / "raw", codes=("A1B2C3",))
    name = "A1B2C3_sa.nii.gz" if which == "image" else "A1B2C3_sa_gt.nii.gz"
    DAMAGE[damage](tmp_path / "raw/Training/Labeled/A1B2C3" / name)
    report = preprocess_mnms(tmp_path / "raw", tmp_path / "MM")
    assert name in report.failed["A1B2C3"]
    assert not list((tmp_path / "MM").rglob("*.nii.gz")), "no all-zero image may be written beside a label"


def test_label_header_with_its_own_spacing_is_refused(tmp_path):
    folder = write_acdc_patient(tmp_path / "raw", 1)
    _, label = raw_pair(9)
    write_volume(folder / "patient001_frame09_gt.nii.gz", label, spacing=(1.0, 1.0, 7.0), origin=ORIGIN,
                 direction=ROTATION)
    message = _single_failure(tmp_path)
    assert "patient001_frame09_gt.nii.gz has spacing (1.0, 1.0, 7.0)" in message
    assert "expected identical voxel grids" in message


def test_ed_equal_es_is_refused(tmp_path):
    write_acdc_patient(tmp_path / "raw", 1, frames=(1, 9), info="ED: 9\nES: 9\n")
    assert "expected different ED and ES frames, got ED: 9 and ES: 9" in _single_failure(tmp_path)
    write_mnms(tmp_path / "mm", codes=("A1B2C3",), ed=2, es=2)
    with pytest.raises(ValueError, match="subject A1B2C3: expected different ED and ES frames, got ED = ES = 2"):
        preprocess_mnms(tmp_path / "mm", tmp_path / "MM")


def test_duplicate_csv_rows_are_refused(tmp_path):
    write_mnms(tmp_path / "raw", codes=("A1B2C3",), csv_rows=["A1B2C3,Siemens,A,1,0,3", "A1B2C3,Siemens,A,1,0,3"])
    with pytest.raises(ValueError, match=r"subject A1B2C3 is listed twice \(lines 2 and 3\)"):
        preprocess_mnms(tmp_path / "raw", tmp_path / "MM")


def test_mnms_unlabelled_frame_is_refused(tmp_path):
    """An in-range ED/ES index that points at an unlabelled frame must not become an all-background label map."""
    write_mnms(tmp_path / "raw", codes=("A1B2C3",), csv_rows=["A1B2C3,Siemens,A,1,0,2"], ed=0, es=3)
    report = preprocess_mnms(tmp_path / "raw", tmp_path / "MM")
    message = report.failed["A1B2C3"]
    assert "A1B2C3_sa_gt.nii.gz: subject A1B2C3: the ES frame 2 from the metadata CSV has no labels" in message
    assert "labelled frames: [0, 3]" in message
    assert not list((tmp_path / "MM").rglob("*.nii.gz"))


@pytest.mark.parametrize("spacing, axis", [((20.0, 15.0, 7.0), "x"), ((0.2, 0.15, 7.0), "x"), ((2.0, 1.5, 70.0), "z")])
def test_spacing_unit_errors_are_refused(tmp_path, spacing, axis):
    folder = write_acdc_patient(tmp_path / "raw", 1)
    image, label = raw_pair(9)
    for suffix, array in (("", image), ("_gt", label)):
        write_volume(folder / f"patient001_frame09{suffix}.nii.gz", array, spacing=spacing)
    message = _single_failure(tmp_path)
    assert f"voxel size along {axis} is" in message and "cm instead of mm" in message


@pytest.mark.parametrize("kind", ["all_zero", "complex", "rgb", "zero_pixdim"])
def test_unusable_images_are_refused(tmp_path, kind):
    import gzip
    import struct

    import nibabel as nib
    import SimpleITK as sitk

    folder = write_acdc_patient(tmp_path / "raw", 1)
    path = folder / "patient001_frame09.nii.gz"
    image, _ = raw_pair(9)
    if kind == "all_zero":
        write_volume(path, np.zeros_like(image), spacing=SPACING, origin=ORIGIN, direction=ROTATION)
        expected = "expected an image with contrast, got a constant volume (every voxel is 0)"
    elif kind == "complex":
        nib.save(nib.Nifti1Image(image.T.astype(np.complex64), np.diag([*SPACING, 1.0])), str(path))
        expected = "complex-valued voxels"
    elif kind == "rgb":
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((*image.shape, 3), np.uint8), isVector=True), str(path))
        expected = "an RGB colour image"
    else:
        data = bytearray(gzip.decompress(path.read_bytes()))
        data[80:84] = struct.pack("<f", 0.0)
        path.write_bytes(gzip.compress(bytes(data)))
        expected = "voxel size along x (pixdim) is 0.0"
    message = _single_failure(tmp_path)
    assert "patient001_frame09.nii.gz" in message and expected in message


def test_stale_temp_files_of_a_killed_run_are_removed(tmp_path):
    write_acdc_patient(tmp_path / "raw", 1)
    assert preprocess_acdc(tmp_path / "raw", tmp_path / "out").done == ["001"]
    out = tmp_path / "out/001"
    stale, fresh, foreign = out / ".ED_img.abcd1234.tmp.nii.gz", out / ".ES_img.wxyz9876.tmp.nii.gz", out / ".notes"
    for path in (stale, fresh, foreign):
        path.write_bytes(b"partial")
    os.utime(stale, (1, 1))  # left by a kill -9 long ago
    assert preprocess_acdc(tmp_path / "raw", tmp_path / "out").skipped == ["001"]  # the next run of the tool
    assert not stale.exists() and fresh.exists() and foreign.exists()  # only old files of our own pattern


# ------------------------------------------------------------------ rebuilds leave nothing stale (audit A4)
def _record(folder: Path) -> dict:
    import json

    return json.loads((folder / "provenance.json").read_text())


def _break_label(folder: Path, frame: int = 1) -> None:
    _, label = raw_pair(frame)
    label[0, 0, 0] = 5
    write_volume(folder / f"{folder.name}_frame{frame:02d}_gt.nii.gz", label, spacing=SPACING, origin=ORIGIN,
                 direction=ROTATION)


def test_rebuild_of_a_now_failing_subject_removes_its_earlier_outputs(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_acdc_patient(raw, 1)
    write_acdc_patient(raw, 2)
    assert preprocess_acdc(raw, out).done == ["001", "002"] and _record(out)["complete"] is True
    _break_label(raw / "patient002")
    report = preprocess_acdc(raw, out, overwrite=True)
    assert report.done == ["001"] and list(report.failed) == ["002"] and not report.ok
    assert not (out / "002").exists(), "outputs made from the earlier input must not survive a failed rebuild"
    record = _record(out)
    assert record["complete"] is False and list(record["failed"]) == ["002"] and "[5]" in record["failed"]["002"]
    # same input again: the record still matches, done subjects are skipped, the failure is retried and recorded
    again = preprocess_acdc(raw, out)
    assert again.skipped == ["001"] and list(again.failed) == ["002"] and _record(out)["complete"] is False
    write_acdc_patient(raw, 2)  # fixed
    fixed = preprocess_acdc(raw, out, overwrite=True)
    assert fixed.ok and _record(out)["complete"] is True and "failed" not in _record(out)


def test_redoing_an_incomplete_subject_drops_its_partial_outputs_first(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_acdc_patient(raw, 1)
    write_acdc_patient(raw, 2)
    preprocess_acdc(raw, out)
    (out / "002" / "ES_img.nii.gz").unlink()  # e.g. a run killed between two files
    assert preprocessing.start_subject(out / "001", overwrite=False) is False
    assert preprocessing.start_subject(out / "002", overwrite=False) is True
    assert not (out / "002").exists()  # nothing of the subject is left until it is written again
    (out / "003").mkdir()
    (out / "003" / "ED_img.nii.gz").write_bytes(b"x")
    (out / "003" / "notes.txt").write_text("mine")
    assert [p.name for p in preprocessing.remove_outputs(out / "003")] == ["ED_img.nii.gz"]
    assert sorted(p.name for p in (out / "003").iterdir()) == ["notes.txt"]  # other files (and the folder) kept


def test_rebuild_removes_output_folders_of_subjects_no_longer_in_the_input(tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "out"
    for number in (1, 2, 3):
        write_acdc_patient(raw, number)
    preprocess_acdc(raw, out)
    (out / "003" / ".ED_img.abcd1234.tmp.nii.gz").write_bytes(b"left by a killed run")  # still only our files
    for folder in ("patient002", "patient003"):
        for path in (raw / folder).iterdir():
            path.unlink()
        (raw / folder).rmdir()
    (out / "notes").mkdir()
    (out / "notes" / "todo.txt").write_text("not a subject")
    rc = acdc_preprocess.main(["--input", str(raw), "--output", str(out), "--overwrite", "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 0 and "removed 2 output folder(s) with no subject in the input: 002, 003" in printed
    assert sorted(p.name for p in out.iterdir()) == ["001", "notes", "provenance.json"]
    assert (out / "notes" / "todo.txt").read_text() == "not a subject"  # not ours: never deleted
    assert _record(out)["complete"] is True


def test_output_folder_without_input_subject_is_reported_not_deleted(tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_acdc_patient(raw, 1)
    preprocess_acdc(raw, out)
    for name in ("005", "006"):  # outputs of a subject the input does not have (e.g. copied in by hand)
        (out / name).mkdir()
        for path in (out / "001").iterdir():
            (out / name / path.name).write_bytes(path.read_bytes())
    (out / "006" / "README").write_text("someone's notes")
    rc = acdc_preprocess.main(["--input", str(raw), "--output", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 1 and "0 failed, 2 stale output folder(s)" in printed
    assert "STALE 005" in printed and "--overwrite" in printed
    assert "STALE 006" in printed and "'README'" in printed and "remove it by hand" in printed
    assert (out / "005" / "ED_img.nii.gz").is_file() and (out / "006" / "README").is_file()
    record = _record(out)
    assert record["complete"] is False and sorted(record["stale"]) == ["005", "006"] and "failed" not in record
    report = preprocess_acdc(raw, out, overwrite=True)  # the rebuild removes only the folder that holds just ours
    assert report.removed == ["005"] and list(report.stale) == ["006"] and not report.ok
    assert not (out / "005").exists() and (out / "006" / "README").is_file()


def test_mnms_rebuild_drops_subjects_no_longer_in_the_input(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "MM"
    write_mnms(raw)
    assert preprocess_mnms(raw, out).ok
    write_mnms(tmp_path / "raw2", codes=("A1B2C3",))
    report = preprocess_mnms(tmp_path / "raw2", out, overwrite=True)
    assert report.ok and report.removed == ["D4E5F6"] and not (out / "D4E5F6").exists()
    assert (out / "vendors.csv").read_text().splitlines() == ["subject,vendor,vendor_name,centre",
                                                              "A1B2C3,A,Siemens,1"]
    assert _record(out)["complete"] is True
