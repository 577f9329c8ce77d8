"""Derived data records what it was made from; regenerating with another seed never leaves it out of step."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from medseg.conversion import acdc as acdc_preprocess
from medseg.io import provenance
from medseg.io.nifti import read_volume

REPO = Path(__file__).resolve().parents[2]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _prepare(out: Path, *extra: str, n_acdc: int = 3) -> int:
    return _script("prepare_synthetic").main(["--out", str(out), "--n-acdc", str(n_acdc), "--n-mnms-per-vendor", "1",
                                              "--spacing-scale", "2", "--workers", "1", "--no-progress", *extra])


def test_digest_covers_paths_and_contents(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("one")
    first = provenance.digest_files(tmp_path)
    assert first["files"] == 1 and first["bytes"] == 3
    (tmp_path / provenance.PROVENANCE_FILE).write_text("{}")  # records are not data
    assert provenance.digest_files(tmp_path) == first
    (tmp_path / "a" / "x.txt").write_text("two")
    changed = provenance.digest_files(tmp_path)
    assert changed["sha256"] != first["sha256"]
    (tmp_path / "a" / "x.txt").rename(tmp_path / "a" / "y.txt")  # same bytes under another name
    assert provenance.digest_files(tmp_path)["sha256"] != changed["sha256"]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        provenance.digest_files(tmp_path / "nowhere")


def test_guard_refuses_other_or_unrecorded_data(tmp_path):
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    (source / "f").write_text("v1")
    first = provenance.made_from("step", source, {"k": 1})
    assert provenance.guard(out, first, source) == "empty"
    (out / "001").mkdir()
    provenance.finish(out, first, source)
    assert provenance.guard(out, first, source) == "match"
    (source / "f").write_text("v2")
    second = provenance.made_from("step", source, {"k": 1})
    with pytest.raises(provenance.ProvenanceMismatch, match=r"out was made from other data.*--overwrite"):
        provenance.guard(out, second, source)
    with pytest.raises(provenance.ProvenanceMismatch, match="settings"):
        provenance.guard(out, provenance.made_from("step", source, {"k": 2}), source)
    assert provenance.guard(out, second, source, overwrite=True) == "mismatch"
    assert provenance.read_record(out)["made_from"] == second and not provenance.read_record(out)["complete"]
    (out / provenance.PROVENANCE_FILE).unlink()
    with pytest.raises(provenance.ProvenanceMismatch, match="no provenance.json"):
        provenance.guard(out, second, source)
    (out / provenance.PROVENANCE_FILE).write_text("[1, 2]")
    with pytest.raises(ValueError, match="provenance.json: expected a JSON object"):
        provenance.read_record(out)


@pytest.mark.slow
def test_another_data_seed_rebuilds_everything_derived(tmp_path):
    out = tmp_path / "synthetic"
    assert _prepare(out, "--data-seed", "0") == 0
    record = json.loads((out / "raw" / "provenance.json").read_text())
    assert record["made_from"]["settings"]["seed"] == 0 and record["complete"]
    acdc_record = provenance.read_record(out / "ACDC")
    assert acdc_record["made_from"]["input"] == provenance.digest_files(out / "raw" / "ACDC")
    before = read_volume(out / "ACDC" / "001" / "ED_img.nii.gz").array

    preview = tmp_path / "preview.png"
    assert _prepare(out, "--data-seed", "0", "--preview", str(preview)) == 0  # same knobs: reused ...
    assert provenance.read_record(out / "raw")["written"] == record["written"]
    assert preview.stat().st_size > 0  # ... and the preview asked for is drawn from the data that is there

    assert _prepare(out, "--data-seed", "1") == 2  # another seed into a made folder: refused without --overwrite
    assert provenance.read_record(out / "raw")["made_from"]["settings"]["seed"] == 0
    assert read_volume(out / "ACDC" / "001" / "ED_img.nii.gz").array.tobytes() == before.tobytes()
    assert _prepare(out, "--data-seed", "1", "--overwrite") == 0  # raw regenerated, preprocessed data rebuilt
    assert provenance.read_record(out / "raw")["made_from"]["settings"]["seed"] == 1
    for derived, raw in (("ACDC", "ACDC"), ("MM", "MnMs")):
        assert provenance.read_record(out / derived)["made_from"]["input"] == provenance.digest_files(out / "raw" / raw)
    after = read_volume(out / "ACDC" / "001" / "ED_img.nii.gz").array
    assert before.shape != after.shape or (before != after).any()

    # regenerating the raw data by hand with another seed: refused without --overwrite ...
    by_hand = ["--out", str(out), "--n-acdc", "3", "--n-mnms-per-vendor", "1", "--spacing-scale", "2", "--workers",
               "1", "--seed", "5", "--no-progress"]
    assert _script("make_synthetic_data").main(by_hand) == 2
    assert _script("make_synthetic_data").main([*by_hand, "--overwrite"]) == 0
    # ... and preprocessing into the old folder is refused ...
    with pytest.raises(provenance.ProvenanceMismatch, match="ACDC was made from other data"):
        acdc_preprocess.preprocess_acdc(out / "raw" / "ACDC", out / "ACDC")
    assert acdc_preprocess.main(["--input", str(out / "raw" / "ACDC"), "--output", str(out / "ACDC"),
                                 "--no-progress"]) == 2
    # ... and the orchestrator notices that the raw data now has other settings, and rebuilds from its own on request
    assert _prepare(out, "--data-seed", "1") == 2
    assert _prepare(out, "--data-seed", "1", "--overwrite") == 0
    assert provenance.read_record(out / "raw")["output"] == provenance.digest_files(out / "raw")
    assert provenance.read_record(out / "ACDC")["made_from"]["input"] == provenance.digest_files(out / "raw" / "ACDC")


@pytest.mark.slow
def test_unrecorded_data_is_refused_not_deleted(tmp_path, capsys):
    out = tmp_path / "old"
    (out / "ACDC" / "001").mkdir(parents=True)
    (out / "ACDC" / "001" / "ED_img.nii.gz").write_bytes(b"made by an older version")
    assert _prepare(out) == 2
    err = capsys.readouterr().err
    assert "without a provenance.json" in err and f"rm -rf {out / 'ACDC'}" in err
    assert (out / "ACDC" / "001" / "ED_img.nii.gz").read_bytes() == b"made by an older version"


@pytest.mark.slow
def test_acdc_c_is_rebuilt_when_its_copies_change(tmp_path):
    out = tmp_path / "synthetic"
    assert _prepare(out, "--acdc-c-copies", "2", n_acdc=7) == 0  # subject 007 is an ACDC test subject
    assert sorted(p.name for p in (out / "ACDC-C" / "RandomBias").iterdir()) == ["007_0", "007_1"]
    assert _prepare(out, "--acdc-c-copies", "1", n_acdc=7) == 0
    assert sorted(p.name for p in (out / "ACDC-C" / "RandomBias").iterdir()) == ["007_0"]
    assert provenance.read_record(out / "ACDC-C")["made_from"]["settings"]["copies"] == 1


def test_finish_records_failures_and_a_rerun_still_matches(tmp_path):
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    (source / "f").write_text("v1")
    description = provenance.made_from("step", source)
    provenance.guard(out, description, source)
    provenance.finish(out, description, source, failed={"002": "ValueError: bad label"}, stale={"009": "kept"})
    record = provenance.read_record(out)
    assert record["complete"] is False
    assert record["failed"] == {"002": "ValueError: bad label"} and record["stale"] == {"009": "kept"}
    assert provenance.guard(out, description, source) == "match"  # an incomplete run resumes, it is not refused
    provenance.finish(out, description, source, failed={}, stale={})
    record = provenance.read_record(out)
    assert record["complete"] is True and "failed" not in record and "stale" not in record
