"""medseg-test with inputs that used to crash after all the work: a subject folder whose name is not UTF-8."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from medseg.evaluation.datasets import build_test_set
from medseg.phantom.tiny import write_subjects

SHAPE = (3, 40, 48)
BAD_NAME = b"caf\xe9"  # Latin-1 bytes: not UTF-8


def _mm_with_a_non_utf8_subject(root: Path) -> Path:
    write_subjects(root, ["good"], shape=SHAPE, frames=("ED",))
    bad = os.path.join(os.fsencode(root), BAD_NAME)
    shutil.copytree(os.fsencode(root / "good"), bad)
    return root


def test_a_non_utf8_subject_folder_is_skipped_with_a_line_naming_it(tmp_path: Path) -> None:
    root = _mm_with_a_non_utf8_subject(tmp_path / "MM")
    test_set = build_test_set("MM", tmp_path, frames=("ED",))
    assert test_set.source.patient_number == 1 and test_set.skipped == ["caf\\xe9_ED"]
    assert any(f"subject folder {root}/caf\\xe9 skipped: expected a UTF-8 folder name" in note
               for note in test_set.notes)


@pytest.mark.slow
def test_medseg_test_finishes_with_a_non_utf8_subject_folder(tmp_path: Path, fresh_checkpoint: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    from medseg.cli.test import main

    _mm_with_a_non_utf8_subject(tmp_path / "data" / "MM")
    code = main(["--methods", f"m={fresh_checkpoint}", "--data_root", str(tmp_path / "data"), "--datasets", "MM",
                 "--frames", "ED", "--n_iter", "1", "--no_progress", "--crop_size", "48",
                 "--output_dir", str(tmp_path / "agg")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "1 volumes evaluated, 1 skipped" in captured.out
    assert "caf\\xe9 skipped: expected a UTF-8 folder name" in (tmp_path / "agg" / "warnings.txt").read_text()


@pytest.mark.slow
def test_strict_fails_after_writing_the_reports_when_a_volume_or_a_test_set_is_missing(
        tmp_path: Path, fresh_checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    from medseg.cli.test import main

    _mm_with_a_non_utf8_subject(tmp_path / "data" / "MM")
    common = ["--methods", f"m={fresh_checkpoint}", "--data_root", str(tmp_path / "data"), "--frames", "ED",
              "--n_iter", "1", "--no_progress", "--crop_size", "48", "--strict"]
    code = main([*common, "--datasets", "MM", "--output_dir", str(tmp_path / "skipped")])
    err = capsys.readouterr().err
    assert code == 1
    assert "--strict: 1 volume(s) skipped;" in err and "test sets missing" not in err
    assert (tmp_path / "skipped" / "summary.csv").is_file()  # written before the failure

    shutil.rmtree(os.path.join(os.fsencode(tmp_path / "data" / "MM"), BAD_NAME))
    code = main([*common, "--datasets", "MM", "ACDC", "--output_dir", str(tmp_path / "absent")])
    err = capsys.readouterr().err
    assert code == 1
    assert "--strict: 0 volume(s) skipped; test sets missing from the table: ACDC;" in err

    code = main([*common, "--datasets", "MM", "--output_dir", str(tmp_path / "whole")])
    assert code == 0, capsys.readouterr().err
