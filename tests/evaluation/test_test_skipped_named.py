"""medseg-test never shrinks a test set quietly: the volumes it skips because their files are broken are named in the
summary note (printed at the end and written to warnings.txt), not only in the log lines above."""

from __future__ import annotations

import shutil
from pathlib import Path

from corrupt_files import truncate
from medseg.phantom.tiny import write_subjects

from medseg.cli.test import main

SHAPE = (3, 40, 48)


def test_broken_volumes_are_named_in_the_summary(tmp_path, fresh_checkpoint, capsys):
    data = tmp_path / "data"
    bias = data / "ACDC-C" / "RandomBias"
    write_subjects(bias, ["a_0", "b_0", "c_0"], shape=SHAPE)
    (bias / "a_0" / "ED_img.nii.gz").write_bytes(b"")  # found from the header
    truncate(bias / "b_0" / "ES_img.nii.gz")  # found at the full read
    checkpoint = tmp_path / "run" / "0" / "model" / "best" / "checkpoints"
    shutil.copytree(fresh_checkpoint, checkpoint)
    code = main(["--methods", f"m={checkpoint}", "--data_root", str(data), "--datasets", "RandomBias", "--n_iter", "1",
                 "--no_progress", "--output_dir", str(tmp_path / "agg")])
    out = capsys.readouterr().out
    assert code == 0 and "4 volumes evaluated, 2 skipped" in out
    summary = [line for line in out.splitlines() if "volume(s) skipped because" in line]
    assert len(summary) == 1
    assert "RandomBias a_0_ED" in summary[0] and "RandomBias b_0/ES_img.nii.gz" in summary[0]
    assert "smaller than the data on disk" in summary[0]
    assert summary[0].strip().lstrip("- ") in (tmp_path / "agg" / "warnings.txt").read_text()
