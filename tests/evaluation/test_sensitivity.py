"""Graded corruption sweep (medseg.robustness.sensitivity and scripts/corruption_sensitivity.py)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchio as tio
from medseg.phantom.tiny import write_tiny_acdc

from medseg.data.base_dataset import PatientVolume
from medseg.robustness.corruptions import corrupt_slice_stack, rescale_slices
from medseg.robustness.sensitivity import FAMILIES, CorruptedSource, PatientSubset, sweep, sweep_markdown, volume_seed

ROOT = Path(__file__).resolve().parents[2]


def _stack(seed: int = 0, shape=(3, 32, 32)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.0, 1.0, shape) * 7.0 + 2.0).astype(np.float32)  # not normalised on purpose


@pytest.mark.parametrize("name", list(FAMILIES))
def test_level_zero_is_the_clean_normalised_stack(name):
    stack = _stack()
    np.testing.assert_array_equal(FAMILIES[name].apply(stack, 0.0, 5), rescale_slices(stack))


def test_spike_is_the_published_pipeline_at_a_fixed_intensity_with_a_fixed_position():
    stack = _stack()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        expected = corrupt_slice_stack(rescale_slices(stack), tio.RandomSpike(num_spikes=(1, 1), intensity=(2.0, 2.0)))
    state = torch.random.get_rng_state()
    out = FAMILIES["spike"].apply(stack, 2.0, 11)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # Same seed, other intensity: the same stripe pattern, stronger (the position does not move along the sweep).
    clean = rescale_slices(stack)
    weak, strong = FAMILIES["spike"].apply(stack, 0.5, 11), FAMILIES["spike"].apply(stack, 2.0, 11)
    d_weak, d_strong = weak - clean, strong - clean
    corr = np.corrcoef(d_weak.ravel(), d_strong.ravel())[0, 1]
    assert corr > 0.8
    assert np.abs(d_strong).mean() > np.abs(d_weak).mean()
    assert not np.allclose(FAMILIES["spike"].apply(stack, 2.0, 12), strong)


def test_compression_scales_contrast_toward_mid_grey():
    stack = _stack()
    clean = rescale_slices(stack)
    out = FAMILIES["compression"].apply(stack, 0.4, 0)
    np.testing.assert_allclose(out, 0.6 * clean + 0.2, atol=1e-6)
    assert out.min() == pytest.approx(0.2, abs=1e-6) and out.max() == pytest.approx(0.8, abs=1e-6)


def test_noise_has_the_requested_sigma_and_is_seeded():
    flat = np.full((2, 64, 64), 0.5, dtype=np.float32)
    flat[:, 0, 0], flat[:, -1, -1] = 0.0, 1.0  # min–max keeps the interior at 0.5
    out = FAMILIES["noise"].apply(flat, 0.1, 3)
    interior = out[:, 1:-1, 1:-1] - 0.5
    assert interior.std() == pytest.approx(0.1, rel=0.05)
    np.testing.assert_array_equal(out, FAMILIES["noise"].apply(flat, 0.1, 3))
    assert not np.array_equal(out, FAMILIES["noise"].apply(flat, 0.1, 4))
    assert out.min() >= 0.0 and out.max() <= 1.0


class _Source:
    """In-memory frame-concatenated source: ED volumes then ES volumes, labels = (image > 0.5) as LV."""

    def __init__(self, n_subjects: int = 3, shape=(2, 24, 24)) -> None:
        rng = np.random.default_rng(0)
        self.volumes = []
        for frame in ("ED", "ES"):
            for k in range(n_subjects):
                image = np.full(shape, 0.4, np.float32)
                image[:, 6:18, 6:18] = rng.uniform(0.6, 0.65)
                image[:, 0, 0], image[:, -1, -1] = 0.0, 1.0  # the min–max keeps the levels
                label = (image > 0.5).astype(np.int64)
                self.volumes.append((f"{k:03d}", frame, image, label))
        self.parts = [type("Part", (), {"patient_number": n_subjects})() for _ in range(2)]
        self.offsets = np.array([0, n_subjects, 2 * n_subjects])

    @property
    def patient_number(self) -> int:
        return len(self.volumes)

    def get_patient_data_for_testing(self, pid_index, crop_size=192, normalize_2D=False):
        pid, frame, image, label = self.volumes[pid_index]
        return PatientVolume(image=torch.from_numpy(image)[:, None].clone(), label=torch.from_numpy(label),
                             patient_id=f"{pid}_{frame}", pid=pid, frame=frame, crop_info=None,
                             spacing=(1.0, 1.0, 1.0), image_path=Path(f"{pid}_{frame}_img.nii.gz"),
                             label_path=Path(f"{pid}_{frame}_seg.nii.gz"), reference=None)


class _ThresholdModel:
    """LV where the image is brighter than mid-grey: exact on the clean source and invariant to compression."""

    device = torch.device("cpu")

    def predict(self, x, softmax=False, n_iter=None):
        lv = (x[:, 0] > 0.5).long()
        return torch.nn.functional.one_hot(lv, 4).permute(0, 3, 1, 2).float()


def test_corrupted_source_changes_the_image_only():
    source = _Source()
    corrupted = CorruptedSource(source, FAMILIES["noise"], 0.2, seed=1)
    clean, noisy = source.get_patient_data_for_testing(2), corrupted.get_patient_data_for_testing(2)
    assert corrupted.patient_number == source.patient_number
    assert noisy.image.shape == clean.image.shape and noisy.image.dtype == torch.float32
    assert torch.equal(noisy.label, clean.label) and noisy.patient_id == clean.patient_id
    assert not torch.equal(noisy.image, clean.image)
    assert volume_seed(1, "002_ED") == volume_seed(1, "002_ED") != volume_seed(1, "002_ES")


def test_patient_subset_keeps_both_frames_of_the_first_subjects():
    subset = PatientSubset(_Source(n_subjects=3), 2)
    ids = [subset.get_patient_data_for_testing(i).patient_id for i in range(subset.patient_number)]
    assert ids == ["000_ED", "001_ED", "000_ES", "001_ES"]
    with pytest.raises(ValueError, match="max_subjects"):
        PatientSubset(_Source(), 0)


def test_sweep_measures_each_level():
    table = sweep({"thr": _ThresholdModel()}, _Source(), ("compression", "noise"), n_iters=(1,), crop_size=24)
    assert len(table) == len(FAMILIES["compression"].levels) + len(FAMILIES["noise"].levels)
    compression = table[table["family"] == "compression"]
    # The threshold sits at the compression's fixed point, so the prediction is exact at every level.
    assert compression["LV_Dice"].tolist() == pytest.approx([1.0] * len(compression))
    assert compression["mean_dice"].tolist() == pytest.approx([1.0 / 3] * len(compression))  # MYO, RV absent: 0
    noise = table[table["family"] == "noise"].set_index("level")["LV_Dice"]
    assert noise[0.0] == pytest.approx(1.0)
    assert noise[0.2] < noise[0.05] < 1.0
    assert (table["volumes"] == 6).all() and (table["zero_share"] == 0).all()
    text = sweep_markdown(table)
    assert "**compression**" in text and "**noise**" in text and "| 0.2 | " in text
    with pytest.raises(ValueError, match="unknown corruption families"):
        sweep({"thr": _ThresholdModel()}, _Source(), ("blur",))


def _load_script():
    spec = importlib.util.spec_from_file_location("corruption_sensitivity", ROOT / "scripts" / "corruption_sensitivity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_writes_csv_markdown_and_plot(tmp_path, fresh_checkpoint, single_thread):
    data = tmp_path / "data"
    write_tiny_acdc(data / "ACDC", pids=["007", "008"], shape=(2, 40, 48))
    checkpoint = tmp_path / "runs" / "m" / "0" / "model" / "best" / "checkpoints"
    shutil.copytree(fresh_checkpoint, checkpoint)
    out = tmp_path / "out"
    code = _load_script().main(["--checkpoint", f"fresh={checkpoint}", "--data_root", str(data), "--crop_size", "48",
                                "--families", "spike", "--n_iter", "1", "--subjects", "1", "--no-progress",
                                "--out", str(out)])
    assert code == 0
    table = pd.read_csv(out / "sensitivity.csv")
    assert table["level"].tolist() == list(FAMILIES["spike"].levels)
    assert (table["volumes"] == 2).all() and set(table["model"]) == {"fresh"}
    assert table["mean_dice"].between(0, 1).all()
    assert "**spike**" in (out / "sensitivity.md").read_text()
    assert (out / "sensitivity.png").stat().st_size > 1000


def test_script_refuses_a_malformed_checkpoint_argument(capsys):
    with pytest.raises(SystemExit):
        _load_script().main(["--checkpoint", "no-equals-sign", "--out", "x"])
    assert "NAME=CHECKPOINT_DIR" in capsys.readouterr().err


def test_script_names_a_data_root_without_acdc_test_subjects(tmp_path, fresh_checkpoint, capsys):
    code = _load_script().main(["--checkpoint", f"fresh={fresh_checkpoint}", "--data_root", str(tmp_path),
                                "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1
    assert str(tmp_path / "ACDC") in err[0] and "expected the ACDC test subjects" in err[0]
    assert not (tmp_path / "out" / "sensitivity.csv").exists()
