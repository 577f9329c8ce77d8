"""ACDC-C at the model's grid: the published spike drawn on the coarse grid keeps its stripes (period and contrast
measured on the corrupted coarse image), while the native-grid spike resampled to that grid loses them; the
experiment's copy writes both sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.conversion.acdc_c import corrupt_case, grid_crop
from medseg.io.nifti import Volume, read_volume
from medseg.conversion.preprocessing import resample_in_plane
from medseg.experiments import data as exp_data

NATIVE, COARSE = 1.36719, 2.73438


def phantom(n: int, spacing: float) -> np.ndarray:
    """A smooth bright blob on a dim background, the same anatomy in millimetres on any grid: (3, n, n)."""
    y, x = np.mgrid[0:n, 0:n] * spacing
    c = n * spacing / 2
    image = 0.2 + 0.8 * np.exp(-((x - c) ** 2 + (y - c) ** 2) / 1600.0) + 0.3 * np.exp(
        -((x - c - 30) ** 2 + (y - c) ** 2) / 300.0)
    return np.stack([image * (1 + 0.1 * z) for z in range(3)]).astype(np.float32)


def strongest_stripe(image: np.ndarray, low: int = 6) -> tuple[float, float]:
    """``(period in pixels, amplitude)`` of the strongest plane wave outside the lowest ``low`` frequencies: the
    amplitude of ``A cos(2 pi k.x / n)`` is ``2 |F(k)| / n^2``."""
    n = image.shape[-1]
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(image - image.mean())))
    ky, kx = np.mgrid[-n // 2:n // 2, -n // 2:n // 2]
    spectrum[(np.abs(kx) < low) & (np.abs(ky) < low)] = 0
    i = np.unravel_index(np.argmax(spectrum), spectrum.shape)
    return float(n / np.hypot(kx[i], ky[i])), float(2 * spectrum[i] / image.size)


def test_grid_crop_keeps_the_field_of_view() -> None:
    assert grid_crop(COARSE, NATIVE) == (96, 96) and grid_crop(NATIVE, NATIVE) == (192, 192)


@pytest.mark.parametrize("seed", [0, 4])
def test_spike_stripes_survive_at_the_test_grid(seed: int) -> None:
    coarse = corrupt_case({"ED": phantom(96, COARSE)}, "RandomSpike", "007", 0, seed, grid_crop(COARSE, NATIVE))["ED"]
    clean_period, clean_amplitude = strongest_stripe(phantom(96, COARSE)[1])
    period, amplitude = strongest_stripe(coarse[1])
    assert 2.0 <= period <= 8.0  # resolvable stripes of a few of the model's pixels
    assert amplitude > 0.1 and amplitude > 20 * clean_amplitude  # contrast of a tenth of the image range
    # the same case drawn on the native grid has the same period in (native) pixels and the same contrast ...
    native = corrupt_case({"ED": phantom(192, NATIVE)}, "RandomSpike", "007", 0, seed)["ED"]
    native_period, native_amplitude = strongest_stripe(native[1])
    assert native_period == pytest.approx(period, rel=0.05) and native_amplitude == pytest.approx(amplitude, rel=0.1)
    # ... but resampled to the coarse grid (anti-aliased, as the experiment's copy) its stripes are gone
    volume = Volume(native, (NATIVE, NATIVE, 10.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    resampled = resample_in_plane(volume, (COARSE, COARSE), anti_alias=True).array
    assert strongest_stripe(resampled[1])[1] < amplitude / 5


def test_copy_writes_both_acdc_c_sets(tmp_path: Path) -> None:
    from medseg.phantom.tiny import write_subjects, write_tiny_acdc

    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tiny_acdc(src / "ACDC", pids=["007"], shape=(2, 64, 64))
    write_subjects(src / "ACDC-C" / "RandomSpike", ["007_0", "007_1"], shape=(2, 64, 64), seed=3)
    files = exp_data.source_files(src, ["ACDC", "RandomSpike"], ["007"])
    exp_data.resample_copy(src, dst, files, COARSE)
    for case in ("007_0", "007_1"):
        for frame in ("ED", "ES"):
            at_grid = read_volume(dst / "ACDC-C" / "RandomSpike" / case / f"{frame}_img.nii.gz")
            resampled = read_volume(dst / "ACDC-C" / "RandomSpike_resampled" / case / f"{frame}_img.nii.gz")
            clean = read_volume(dst / "ACDC" / "007" / f"{frame}_img.nii.gz")
            assert at_grid.array.shape == resampled.array.shape == clean.array.shape == (2, 32, 32)
            assert at_grid.spacing[:2] == pytest.approx((COARSE, COARSE))
            assert not np.allclose(at_grid.array, resampled.array)
            assert (dst / "ACDC-C" / "RandomSpike" / case / f"{frame}_seg.nii.gz").read_bytes() == \
                (dst / "ACDC" / "007" / f"{frame}_seg.nii.gz").read_bytes()
    # the at-grid cases are the generator's draws: the same case twice gives the same image, another copy another
    first = read_volume(dst / "ACDC-C" / "RandomSpike" / "007_0" / "ED_img.nii.gz").array
    again = corrupt_case({"ED": read_volume(dst / "ACDC" / "007" / "ED_img.nii.gz").array,
                          "ES": read_volume(dst / "ACDC" / "007" / "ES_img.nii.gz").array},
                         "RandomSpike", "007", 0, 0, grid_crop(COARSE, NATIVE))["ED"]
    assert np.allclose(first, again, atol=1e-6)
    assert not np.allclose(first, read_volume(dst / "ACDC-C" / "RandomSpike" / "007_1" / "ED_img.nii.gz").array)
