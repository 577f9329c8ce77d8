"""ACDC-C generation: layout, reproducibility, every corruption changes the image, labels copied, bad input."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.data.mnms import Cardiac_MM_Dataset
from medseg.data.crop import crop_or_pad
from medseg.conversion.acdc_c import case_seed, generate_acdc_c
from medseg.io.nifti import read_volume, write_volume
from medseg.robustness.corruptions import ARTEFACTS, build_corruption, corrupt_slice_stack, rescale_slices
from medseg.phantom.tiny import acdc_ids, write_tiny_acdc

REPO = Path(__file__).resolve().parents[2]
SUBJECTS = acdc_ids(7, 8)


@pytest.fixture(scope="module")
def acdc_c(tmp_path_factory):
    base = tmp_path_factory.mktemp("acdc_c")
    source = write_tiny_acdc(base / "ACDC", SUBJECTS, shape=(3, 64, 200))  # wider than 192: cropped and restored
    out = base / "ACDC-C"
    generate_acdc_c(source, out, subjects=SUBJECTS, copies=1, seed=0)
    return source, out


def test_layout_and_labels_copied(acdc_c):
    source, out = acdc_c
    assert sorted(p.name for p in out.iterdir()) == sorted([*ARTEFACTS, "provenance.json"])  # + what it was made from
    for artefact in ARTEFACTS:
        for pid in SUBJECTS:
            case = out / artefact / f"{pid}_0"
            assert sorted(p.name for p in case.iterdir()) == [
                "ED_img.nii.gz", "ED_seg.nii.gz", "ES_img.nii.gz", "ES_seg.nii.gz"
            ]
            for frame in ("ED", "ES"):
                seg = case / f"{frame}_seg.nii.gz"
                assert not seg.is_symlink()
                assert seg.read_bytes() == (source / pid / f"{frame}_seg.nii.gz").read_bytes()
                original = read_volume(source / pid / f"{frame}_img.nii.gz")
                corrupted = read_volume(case / f"{frame}_img.nii.gz")
                assert corrupted.array.shape == original.array.shape
                assert corrupted.spacing == original.spacing and corrupted.origin == original.origin
                assert np.isfinite(corrupted.array).all()
                assert corrupted.array.min() >= 0 and corrupted.array.max() <= 1 + 1e-6
    assert not list(out.rglob(".*tmp*"))  # no leftovers of atomic writes


def test_every_corruption_changes_the_image(acdc_c):
    source, out = acdc_c
    original = read_volume(source / "007" / "ES_img.nii.gz").array
    cropped, _ = crop_or_pad(original, (192, 192))
    reference = rescale_slices(cropped)  # what the corruption started from
    for artefact in ARTEFACTS:
        corrupted, _ = crop_or_pad(read_volume(out / artefact / "007_0" / "ES_img.nii.gz").array, (192, 192))
        assert np.abs(corrupted - reference).mean() > 1e-3, artefact


def test_same_seed_identical_files_other_seed_differs(acdc_c, tmp_path):
    source, out = acdc_c
    again = tmp_path / "again"
    generate_acdc_c(source, again, subjects=["007"], copies=1, seed=0, artefacts=["RandomSpike", "RandomGhosting"])
    for artefact in ("RandomSpike", "RandomGhosting"):
        for name in ("ED_img.nii.gz", "ES_img.nii.gz", "ED_seg.nii.gz"):
            assert (again / artefact / "007_0" / name).read_bytes() == (out / artefact / "007_0" / name).read_bytes()
    other = tmp_path / "other"
    generate_acdc_c(source, other, subjects=["007"], copies=1, seed=1, artefacts=["RandomSpike"])
    a = read_volume(other / "RandomSpike" / "007_0" / "ES_img.nii.gz").array
    b = read_volume(out / "RandomSpike" / "007_0" / "ES_img.nii.gz").array
    assert not np.array_equal(a, b)
    assert case_seed(0, "RandomSpike", "007", 0) != case_seed(0, "RandomSpike", "007", 1)


def test_seeding_leaves_global_rng_alone(acdc_c, tmp_path):
    source, _ = acdc_c
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    generate_acdc_c(source, tmp_path / "x", subjects=["008"], copies=1, artefacts=["RandomBias"], frames=("ES",))
    assert torch.equal(torch.rand(3), expected)


def test_existing_outputs_kept_unless_overwrite(acdc_c, tmp_path):
    source, _ = acdc_c
    out = tmp_path / "C"
    kwargs = dict(subjects=["007"], copies=1, artefacts=["RandomBias"], frames=("ED",))
    generate_acdc_c(source, out, **kwargs)
    target = out / "RandomBias" / "007_0" / "ED_img.nii.gz"
    write_volume(target, np.zeros((3, 64, 200), dtype=np.float32))  # whole, but not what the generator wrote
    stale = target.read_bytes()
    generate_acdc_c(source, out, **kwargs)
    assert target.read_bytes() == stale
    generate_acdc_c(source, out, overwrite=True, **kwargs)
    assert read_volume(target).array.shape == (3, 64, 200) and read_volume(target).array.any()
    target.write_bytes(b"broken")  # not whole (e.g. written on a full disk): rewritten without --overwrite
    generate_acdc_c(source, out, **kwargs)
    assert read_volume(target).array.shape == (3, 64, 200)


def test_output_readable_as_test_dataset(acdc_c):
    _, out = acdc_c
    ds = Cardiac_MM_Dataset(root_dir=out / "RandomMotion", frame="ES", new_spacing=None)
    assert ds.patient_id_list == ["007_0", "008_0"]
    assert ds.get_patient_data_for_testing(1).patient_id == "008_0_ES"


def test_pinned_parameters():
    spike = build_corruption("RandomSpike")
    assert tuple(spike.num_spikes_range) == (1, 1) and tuple(spike.intensity_range) == (1, 3)
    ghost = build_corruption("RandomGhosting")
    assert tuple(ghost.restore) == (0.02, 0.02) and tuple(ghost.num_ghosts_range) == (4, 10)
    assert tuple(ghost.axes) == (0, 1, 2)
    motion = build_corruption("RandomMotion")
    assert tuple(motion.degrees_range) == (-30, 30) and tuple(motion.translation_range) == (-10, 10)
    assert motion.num_transforms == 2
    bias = build_corruption("RandomBias")
    assert tuple(bias.coefficients_range) == (-0.5, 0.5) and bias.order == 3
    stack = np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)
    with pytest.raises(ValueError, match="Z, H, W"):
        corrupt_slice_stack(stack[0], spike)


def test_bad_input(acdc_c, tmp_path):
    source, _ = acdc_c
    with pytest.raises(FileNotFoundError, match=r"'009'.*009/ED_img.nii.gz"):
        generate_acdc_c(source, tmp_path / "o", subjects=["007", "009"], copies=1)
    with pytest.raises(ValueError, match="RandomBias"):
        generate_acdc_c(source, tmp_path / "o", subjects=["007"], artefacts=["RandomBlur"])
    with pytest.raises(ValueError, match="copies"):
        generate_acdc_c(source, tmp_path / "o", subjects=["007"], copies=0)
    with pytest.raises(ValueError, match="unknown artefact"):
        build_corruption("RandomNoise")


def test_cli_runs_as_file(acdc_c, tmp_path):
    """The script runs from the repo root without installation (existing cases are kept, so this only starts up)."""
    source, _ = acdc_c
    out = tmp_path / "cli"
    generate_acdc_c(source, out, subjects=["008"], copies=1, seed=0)  # recorded in provenance.json: kept below
    cmd = [sys.executable, "medseg/conversion/acdc_c.py", "--input", str(source),
           "--output", str(out), "--copies", "1", "--subjects", "008"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "4 case folders" in result.stderr


# ------------------------------------------------------------------------------ reliability
from corrupt_files import DAMAGE  # noqa: E402


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_input_is_an_error_naming_the_file(tmp_path, damage, capsys):
    from medseg.conversion.acdc_c import main

    source = write_tiny_acdc(tmp_path / "ACDC", ["007"], shape=(3, 64, 80))
    DAMAGE[damage](source / "007" / "ES_img.nii.gz")
    code = main(["--input", str(source), "--output", str(tmp_path / "out"), "--subjects", "007", "--copies", "1"])
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert code == 2 and len(err) == 1 and "007/ES_img.nii.gz" in err[0]
    assert err[0].startswith("generate_artefacted_data.py: error: ")


def test_labels_outside_the_class_set_are_refused(tmp_path):
    from medseg.io.nifti import write_volume

    source = write_tiny_acdc(tmp_path / "ACDC", ["007"], shape=(3, 64, 80))
    label = read_volume(source / "007" / "ED_seg.nii.gz")
    array = label.array.copy()
    array[0, 0, 0] = 7
    write_volume(source / "007" / "ED_seg.nii.gz", array, label)
    with pytest.raises(ValueError, match=r"007/ED_seg.nii.gz: unexpected label values \[7\]"):
        generate_acdc_c(source, tmp_path / "out", subjects=["007"], copies=1, artefacts=["RandomBias"])


@pytest.mark.parametrize("subject", ["/".join(["..", "x"]), "..", "a/b"])  # path escapes
def test_subject_ids_cannot_escape_the_folders(tmp_path, subject):
    with pytest.raises(ValueError, match="--subjects: expected a single file or folder name"):
        generate_acdc_c(tmp_path, tmp_path / "out", subjects=[subject], copies=1)


def test_stale_temp_files_are_removed(tmp_path):
    import os

    source = write_tiny_acdc(tmp_path / "ACDC", ["007"], shape=(3, 64, 80))
    generate_acdc_c(source, tmp_path / "out", subjects=["007"], copies=1, artefacts=["RandomBias"])
    case = tmp_path / "out" / "RandomBias" / "007_0"
    stale = case / ".ED_img.k2j8ab1x.tmp.nii.gz"
    stale.write_bytes(b"partial write of a killed run")
    os.utime(stale, (1, 1))
    generate_acdc_c(source, tmp_path / "out", subjects=["007"], copies=1, artefacts=["RandomBias"])
    assert not stale.exists() and (case / "ED_img.nii.gz").is_file()
