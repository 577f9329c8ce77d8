"""The quickstart's knobs: the training seed (SEED) and the data seed (DATA_SEED) are separate."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run_quickstart(tmp_path: Path, **env: str) -> list[list[str]]:
    """Run scripts/quickstart.sh with a stand-in interpreter that only records its command lines."""
    log = tmp_path / "calls.txt"
    stub = tmp_path / "python"
    stub.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> "{log}"\n')
    stub.chmod(0o755)
    environment = {k: v for k, v in os.environ.items() if k not in ("SEED", "DATA_SEED", "ACDC_C_COPIES")}
    environment.update(env, PYTHON=str(stub))
    done = subprocess.run(["bash", "scripts/quickstart.sh", str(tmp_path / "data"), str(tmp_path / "saved")],
                          cwd=REPO, env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "mean Dice" in done.stdout and "dice_boxplot.png" in done.stdout  # the output explains itself
    return [line.split() for line in log.read_text().splitlines()]


def _value(call: list[str], flag: str) -> str:
    return call[call.index(flag) + 1]


def test_training_seed_and_data_seed_are_separate(tmp_path):
    calls = _run_quickstart(tmp_path, SEED="41", DATA_SEED="7", ACDC_C_COPIES="2")
    prepare, *trainings, test = calls
    assert prepare[0] == "scripts/prepare_synthetic.py"
    assert _value(prepare, "--data-seed") == "7" and _value(prepare, "--acdc-c-copies") == "2"
    assert [c[0] for c in trainings] == ["medseg/train_adv_supervised_segmentation_triplet.py"] * 2
    assert all(_value(c, "--seed") == "41" for c in trainings)
    assert test[0] == "medseg/test_ACDC_triplet_segmentation.py"
    assert _value(test, "--output_dir") == str(tmp_path / "saved" / "test_reports")

    # another training seed leaves the data alone (same data seed, so the data is reused, not regenerated)
    (tmp_path / "calls.txt").unlink()
    prepare, *trainings, _ = _run_quickstart(tmp_path, SEED="99")
    assert _value(prepare, "--data-seed") == "0" and all(_value(c, "--seed") == "99" for c in trainings)
