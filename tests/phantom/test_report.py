"""Phantom report: the threshold baseline and image statistics on known images, and the CLI on a tiny set."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from medseg.conversion.acdc import preprocess_acdc
from medseg.conversion.mnms import preprocess_mnms
from medseg.phantom.generator import SyntheticSettings, generate_dataset
from medseg.phantom.report import dice, feret_diameter, find_domains, otsu_threshold, robust_cov
from medseg.phantom.report import central_round_blob, highpass_noise, roundness, slice_statistics
from medseg.phantom.report import threshold_rule
from medseg.phantom.report_output import plot_histograms

TINY = SyntheticSettings(fov_mm=(260.0, 300.0), spacing_scale=2.5, n_slices=(6, 7), mnms_frames=(4, 5))


def _disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.hypot(yy - centre[0], xx - centre[1]) <= radius


def _cartoon() -> tuple[np.ndarray, np.ndarray]:
    """A bright LV disc in a dark ring, a bright RV crescent beside it, a small round vessel far away."""
    shape = (192, 192)
    lv = _disc(shape, (96, 110), 18)
    epi = _disc(shape, (96, 110), 26)
    rv = _disc(shape, (96, 80), 30) & ~epi
    image = np.full(shape, 0.05)
    image[epi] = 0.25
    image[lv] = 0.8
    image[rv] = 0.75
    label = np.zeros(shape, dtype=np.uint8)
    label[rv], label[epi], label[lv] = 3, 2, 1
    return image, label


def test_threshold_rule_solves_a_cartoon():
    image, label = _cartoon()
    lv, myo, rv = threshold_rule(image)
    assert dice(lv, label == 1) > 0.97 and dice(rv, label == 3) > 0.95
    assert 0.4 < dice(myo, label == 2) < 0.99  # the 9 px band also takes dark background beyond the 8 px ring
    stats = slice_statistics(image, label)
    assert stats["lv_dice_best"] == pytest.approx(stats["lv_dice"], abs=1e-6)
    assert stats["blood_cov"] == 0.0 and stats["bright"] > 0.05


def test_the_roundest_blob_wins_and_the_best_blob_does_not_care():
    image, label = _cartoon()
    image[_disc(image.shape, (24, 24), 10)] = 0.9  # a round, bright descending aorta
    notch = _disc(image.shape, (96, 128), 9) & (label == 1)
    image[notch] = 0.25  # a papillary muscle on the wall makes the LV less round
    stats = slice_statistics(image, label)
    assert stats["lv_dice"] == 0.0 and stats["lv_dice_best"] > 0.8


def test_helpers():
    values = np.concatenate([np.full(500, 0.2), np.full(500, 0.8)])
    assert 0.2 < otsu_threshold(values) < 0.8
    square = np.zeros((50, 50), dtype=bool)
    square[10:30, 10:40] = True
    assert feret_diameter(square) == pytest.approx(math.hypot(20, 30), abs=1.5)
    assert roundness(_disc((80, 80), (40, 40), 20)) == pytest.approx(1.0, abs=0.05)
    assert 0.8 < roundness(square) < 0.9  # 4π·600 / 100² = 0.75; four-direction Crofton is ~6 % short here
    assert robust_cov(np.full(100, 3.0)) == 0.0 and math.isnan(robust_cov(np.ones(3)))
    assert math.isnan(dice(np.zeros(4, bool), np.zeros(4, bool)))


def test_highpass_noise_sees_grain_not_shading():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:192, :192] / 191.0
    shading = 0.05 + 0.3 * xx + 0.2 * yy**2  # coil-like low-frequency shading only
    assert highpass_noise(shading) < 1e-3
    grainy = shading + rng.normal(0.0, 0.02, shading.shape)
    assert 0.014 < highpass_noise(grainy) < 0.022  # white noise keeps ~85 % of its SD after a 1.5 px high-pass
    valid = np.zeros(shading.shape, dtype=bool)
    valid[:, 40:150] = True
    padded = np.where(valid, grainy, 0.0)  # zero padding beside the image is neither dark tissue nor grain
    assert 0.014 < highpass_noise(padded, valid) < 0.022


def test_central_probe_and_ed_statistics():
    image, label = _cartoon()
    image[_disc(image.shape, (24, 24), 10)] = 0.9  # a round vessel far from the centre does not distract it
    assert dice(central_round_blob(image), label == 1) > 0.95
    stats = slice_statistics(image, label)
    assert stats["probe_central_dice"] > 0.95 and stats["grad_p99"] >= stats["grad_p90"]
    assert stats["median"] == pytest.approx(0.05) and stats["p75"] == pytest.approx(0.05)


def test_find_domains_names_the_expected_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="ACDC/, MM/"):
        find_domains(tmp_path)


def _load_script(name: str):
    path = Path(__file__).resolve().parents[2] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_report_cli_on_a_tiny_prepared_set(tmp_path):
    generate_dataset(tmp_path, n_acdc=2, n_mnms_per_vendor=1, seed=3, settings=TINY)
    assert preprocess_acdc(tmp_path / "raw/ACDC", tmp_path / "ACDC").ok
    assert preprocess_mnms(tmp_path / "raw/MnMs", tmp_path / "MM").ok
    shutil.copytree(tmp_path / "ACDC/001", tmp_path / "ACDC-C/RandomBias/001_0")  # an ACDC-C-like set
    out = tmp_path / "report"
    assert _load_script("phantom_report").main([str(tmp_path), "--out", str(out), "--no-progress"]) == 0
    summaries = json.loads((out / "report.json").read_text())
    assert list(summaries) == ["ACDC", "MM-A", "MM-B", "MM-C", "MM-D", "ACDC-C/RandomBias"]
    for summary in summaries.values():
        assert 0.0 <= summary["dark"] <= 1.0 and 0.0 < summary["heart_extent"] < 1.0
        assert 0.0 <= summary["lv_dice_best_median"] <= 1.0 and summary["grad_p90"] > 0
    volumes = json.loads((out / "volumes.json").read_text())
    assert set(volumes["ACDC"]) == {"DCM"} and volumes["ACDC"]["DCM"]["lv_ED_median"] > 0  # ids 1-2: DCM
    assert volumes["ACDC"]["DCM"]["lv_ES_median"] < volumes["ACDC"]["DCM"]["lv_ED_median"]
    text = (out / "report.md").read_text()
    assert "Ventricular volumes per group" in text and "probe round" in text
    assert "| ACDC |" in text and "| ACDC-C/RandomBias |" in text and "![histograms](histograms.png)" in text
    for name in ("histograms.png", "montage_ACDC.png", "montage_MM-B.png", "montage_ACDC-C_RandomBias.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert _load_script("phantom_report").main([str(tmp_path / "missing"), "--out", str(out), "--no-progress"]) == 2


def _png_width(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[16:20], "big")  # IHDR width


def test_histogram_figure_leaves_out_a_panel_without_data(tmp_path):
    rng = np.random.default_rng(0)
    crop = [SimpleNamespace(image=rng.random((8, 8)))]
    both = plot_histograms({"ACDC": crop, "ACDC-C/RandomBias": crop}, tmp_path / "both.png")
    clean = plot_histograms({"ACDC": crop, "MM-A": crop}, tmp_path / "clean.png")
    corrupted = plot_histograms({"ACDC-C/RandomBias": crop}, tmp_path / "corrupted.png")
    assert _png_width(clean) < 0.6 * _png_width(both) and _png_width(corrupted) == _png_width(clean)
