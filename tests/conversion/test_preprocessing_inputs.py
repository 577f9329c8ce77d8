"""Raw-input checks of the ACDC / M&Ms converters: every odd input is one clear error or a warning, never silent."""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from medseg.conversion import acdc as acdc_preprocess, mnms as mnms_preprocess, preprocessing
from medseg.conversion.acdc import preprocess_acdc, read_info
from medseg.conversion.mnms import preprocess_mnms
from medseg.io.nifti import Volume, read_volume
from test_preprocessing import CSV_NAME, raw_pair, write_acdc_patient, write_mnms

REPO = Path(__file__).resolve().parents[2]


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# ---------------------------------------------------------------------------------------------- labels (A7)
def test_acdc_all_background_label_is_refused(tmp_path):
    write_acdc_patient(tmp_path / "raw", 1, label9=np.zeros((3, 10, 20), np.uint8))
    report = preprocess_acdc(tmp_path / "raw", tmp_path / "out")
    message = report.failed["001"]
    assert "patient001_frame09_gt.nii.gz (ES frame 9): expected a labelled frame" in message
    assert "only background" in message
    assert not list((tmp_path / "out").rglob("*.nii.gz"))


def test_frame_without_one_structure_is_written_with_a_warning(tmp_path, caplog):
    _, label = raw_pair(1)
    label[label == 1] = 0  # raw 1 = RV: gone
    write_acdc_patient(tmp_path / "raw", 1, label1=label)
    with caplog.at_level(logging.WARNING):
        report = preprocess_acdc(tmp_path / "raw", tmp_path / "out")
    assert report.ok
    assert set(np.unique(read_volume(tmp_path / "out/001/ED_seg.nii.gz").array)) == {0, 1, 2}
    warned = [m for m in _warnings(caplog) if "no RV voxel" in m]
    assert len(warned) == 1 and "patient001_frame01_gt.nii.gz (ED frame 1)" in warned[0]


def test_label_structure_check_is_shared_by_both_converters(caplog):
    label = Volume(np.zeros((2, 4, 4), np.uint8), (1.5, 1.5, 8.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    with pytest.raises(ValueError, match=r"\(ES frame 3\): expected a labelled frame"):
        preprocessing.check_label_structures(label, "ES frame 3")
    array = label.array.copy()
    array[0, 1, 1] = 2
    with caplog.at_level(logging.WARNING):
        preprocessing.check_label_structures(label.with_array(array))
    assert any("no LV or RV voxel" in m for m in _warnings(caplog))


# ---------------------------------------------------------------------------------------------- Info.cfg (C3)
def test_info_cfg_with_byte_order_mark_is_read(tmp_path):
    write_acdc_patient(tmp_path / "raw", 1, info="\ufeffED: 1\r\nES: 9\r\n")
    assert read_info(tmp_path / "raw/patient001/Info.cfg")["ED"] == "1"
    assert preprocess_acdc(tmp_path / "raw", tmp_path / "out").done == ["001"]


def test_info_cfg_key_given_twice_is_refused(tmp_path):
    write_acdc_patient(tmp_path / "raw", 1, info="ED: 1\nES: 9\nED: 9\n")
    report = preprocess_acdc(tmp_path / "raw", tmp_path / "out")
    assert "Info.cfg: key 'ED' is given twice (lines 1 and 3)" in report.failed["001"]


# ---------------------------------------------------------------------------------------------- folder names (C8)
def test_acdc_folders_not_named_patientnnn_are_listed_in_a_warning(tmp_path, caplog):
    write_acdc_patient(tmp_path / "raw", 1)
    for name in ("patient26", "Patient027", ".cache"):
        (tmp_path / "raw" / name).mkdir()
    (tmp_path / "raw" / "README.txt").write_text("a file, not a folder")
    with caplog.at_level(logging.WARNING):
        assert preprocess_acdc(tmp_path / "raw", tmp_path / "out").done == ["001"]
    warned = [m for m in _warnings(caplog) if "not named patientNNN" in m]
    assert len(warned) == 1 and "ignored 2 folder(s)" in warned[0]
    assert "Patient027" in warned[0] and "patient26" in warned[0] and ".cache" not in warned[0]
    patients, ignored = acdc_preprocess.scan_patients(tmp_path / "raw")
    assert list(patients) == ["001"] and sorted(p.name for p in ignored) == ["Patient027", "patient26"]


def test_mnms_csv_rows_without_a_folder_are_listed_in_a_warning(tmp_path, caplog):
    write_mnms(tmp_path / "raw", codes=("A1B2C3",), csv_rows=["A1B2C3,Siemens,A,1,0,3", "GHOST1,Siemens,A,1,0,3",
                                                              "UNLAB1,GE,C,4,0,3"])
    (tmp_path / "raw/Training/Unlabeled/UNLAB1").mkdir(parents=True)  # unlabelled on purpose: not warned about
    with caplog.at_level(logging.WARNING):
        assert preprocess_mnms(tmp_path / "raw", tmp_path / "MM").ok
    warned = [m for m in _warnings(caplog) if "have no folder" in m]
    assert len(warned) == 1 and warned[0].endswith("are ignored: GHOST1") and CSV_NAME in warned[0]


# ---------------------------------------------------------------------------------------------- M&Ms subjects
def test_mnms_subject_found_twice_names_both_folders(tmp_path):
    raw = write_mnms(tmp_path / "raw")
    shutil.copytree(raw / "Training/Labeled/A1B2C3", raw / "Testing/A1B2C3")
    with pytest.raises(ValueError, match=r"subject A1B2C3 found twice: .*Training/Labeled/A1B2C3 and "
                                         r".*Testing/A1B2C3"):
        preprocess_mnms(raw, tmp_path / "MM")
    assert not (tmp_path / "MM").exists()  # refused before anything is written


@pytest.mark.parametrize("vendor, got", [("E", "'E'"), ("", "an empty cell"), ("  ", "an empty cell"), ("AB", "'AB'")])
def test_mnms_unknown_or_empty_vendor_is_one_error(tmp_path, capsys, vendor, got):
    raw = write_mnms(tmp_path / "raw", csv_rows=["A1B2C3,Siemens,A,1,0,3", f"D4E5F6,Siemens,{vendor},1,0,3"])
    rc = mnms_preprocess.main(["--input", str(raw), "--output", str(tmp_path / "MM"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert CSV_NAME in err[0] and "subject D4E5F6: Vendor must be one of A, B, C, D (any case)" in err[0]
    assert err[0].endswith(f"got {got}")


def test_mnms_vendor_case_is_normalised(tmp_path):
    raw = write_mnms(tmp_path / "raw", csv_rows=["A1B2C3,Siemens,a,1,0,3", "D4E5F6,Philips, b ,2,0,3"])
    assert preprocess_mnms(raw, tmp_path / "MM").ok
    assert (tmp_path / "MM/vendors.csv").read_text().splitlines()[1:] == ["A1B2C3,A,Siemens,1", "D4E5F6,B,Philips,2"]


def test_subject_missing_from_csv_message_has_no_quotes(tmp_path):
    raw = write_mnms(tmp_path / "raw", csv_rows=["A1B2C3,Siemens,A,1,0,3"])
    report = preprocess_mnms(raw, tmp_path / "MM")
    assert report.failed["D4E5F6"].startswith("KeyError: subject D4E5F6 (")
    assert report.failed["D4E5F6"].endswith("expected a row with its ED/ES")


def test_run_subjects_reports_every_error_as_one_unquoted_line():
    def process(subject: str) -> bool:
        raise {"k": KeyError("no row for k"), "v": ValueError("bad\nvalue"), "e": KeyError()}[subject]

    report = preprocessing.run_subjects(["k", "v", "e"], process)
    assert report.failed == {"k": "KeyError: no row for k", "v": "ValueError: bad value", "e": "KeyError: KeyError"}


# ---------------------------------------------------------------------------------------------- M&Ms CSV
def test_mnms_csv_with_header_but_no_rows_is_one_error_up_front(tmp_path):
    raw = write_mnms(tmp_path / "raw", csv_rows=[])
    with pytest.raises(ValueError, match=r"has a header but no subject rows; expected one row per subject"):
        preprocess_mnms(raw, tmp_path / "MM")
    assert not (tmp_path / "MM").exists()


@pytest.mark.parametrize("separator, named", [(";", "';'"), ("\t", "a tab")])
def test_mnms_csv_with_another_separator_gets_a_hint(tmp_path, separator, named):
    raw = write_mnms(tmp_path / "raw")
    rows = [",External code,VendorName,Vendor,Centre,ED,ES", "0,A1B2C3,Siemens,A,1,0,3", "1,D4E5F6,Siemens,A,1,0,3"]
    (raw / CSV_NAME).write_text("\n".join(r.replace(",", separator) for r in rows) + "\n")
    with pytest.raises(ValueError, match="missing columns") as info:
        preprocess_mnms(raw, tmp_path / "MM")
    assert f"the header line contains {named}: the file seems to use {named} as separator; expected ','" in str(
        info.value)


def test_missing_columns_of_a_comma_csv_get_no_separator_hint(tmp_path):
    raw = write_mnms(tmp_path / "raw")
    (raw / CSV_NAME).write_text(",External code,Vendor\n0,A1B2C3,A\n")
    with pytest.raises(ValueError, match=r"missing columns \['ED', 'ES'\]") as info:
        preprocess_mnms(raw, tmp_path / "MM")
    assert "separator" not in str(info.value)


# ---------------------------------------------------------------------------------------------- generator (C11)
def _generator():
    spec = importlib.util.spec_from_file_location("_make_synthetic_data", REPO / "scripts" / "make_synthetic_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_spacing_scale_bound_keeps_every_site_inside_the_preprocessing_range():
    from medseg.phantom.appearance import SITES

    low, high = _generator().spacing_scale_range()
    pixel_low, pixel_high = preprocessing.IN_PLANE_SPACING_RANGE
    for style in SITES.values():
        assert pixel_low <= style.spacing[0] * low and style.spacing[1] * high <= pixel_high, style.name
    assert 0.2 < low < 0.3 and 4.0 < high < 4.3  # the current sites: 1.1..1.9 mm pixels


@pytest.mark.parametrize("scale", ["50", "0.1"])
def test_spacing_scale_outside_the_bound_is_one_argparse_error(tmp_path, capsys, scale):
    with pytest.raises(SystemExit) as exit_info:
        _generator().parse_args(["--out", str(tmp_path / "o"), "--spacing-scale", scale])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1
    assert "--spacing-scale: expected 0.23 to 4.21 (pixels of 0.25..8 mm, the range the preprocessing accepts)" in err[0]
    assert not (tmp_path / "o").exists()


def test_spacing_scale_at_the_bound_is_accepted(tmp_path):
    args = _generator().parse_args(["--out", str(tmp_path / "o"), "--spacing-scale", "4.21"])
    assert args.spacing_scale == 4.21
