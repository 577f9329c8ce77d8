"""Synthetic raw ACDC / M&Ms generator: determinism, file formats, label conventions, anatomy and realism."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import binary_fill_holes

from medseg.dataset_loader.nifti import read_volume
from medseg.dataset_loader.synthetic import (
    LV,
    MYO,
    RV,
    MNMS_CSV_NAME,
    SyntheticSettings,
    contraction_curve,
    generate_dataset,
    render_stack,
)

TINY = SyntheticSettings(fov_mm=(260.0, 300.0), spacing_scale=3.0, n_slices=(6, 7), mnms_frames=(4, 5))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    generate_dataset(out, n_acdc=2, n_mnms_per_vendor=2, seed=7, settings=TINY)
    return out


def test_same_seed_gives_identical_files(tiny_set, tmp_path):
    generate_dataset(tmp_path, n_acdc=2, n_mnms_per_vendor=2, seed=7, settings=TINY)
    first, second = _files(tiny_set), _files(tmp_path)
    assert first.keys() == second.keys()
    assert all(first[name] == second[name] for name in first)


def test_other_seed_gives_other_data(tiny_set, tmp_path):
    generate_dataset(tmp_path, n_acdc=1, n_mnms_per_vendor=0, seed=8, settings=TINY)
    a = read_volume(next((tiny_set / "raw/ACDC/patient001").glob("*_frame01.nii.gz"))).array
    b = read_volume(next((tmp_path / "raw/ACDC/patient001").glob("*_frame01.nii.gz"))).array
    assert a.shape != b.shape or not np.array_equal(a, b)


def _lv_enclosed_by_myo(label: np.ndarray, lv: int, myo: int, rv: int) -> bool:
    """Per slice: the LV lies inside the filled myocardial ring and the RV mostly outside it."""
    for sl in label:
        if not ((sl == myo).any() and (sl == lv).any()):
            continue
        filled = binary_fill_holes((sl == myo) | (sl == lv))
        if not filled[sl == lv].all():
            return False
        if (sl == rv).any() and filled[sl == rv].mean() > 0.2:
            return False
    return True


def test_acdc_raw_layout_and_labels(tiny_set):
    folder = tiny_set / "raw/ACDC/patient002"
    info = dict(line.split(": ") for line in (folder / "Info.cfg").read_text().splitlines())
    assert list(info) == ["ED", "ES", "Group", "Height", "NbFrame", "Weight"]
    assert info["Group"] == "DCM" and 1 == int(info["ED"]) < int(info["ES"]) <= int(info["NbFrame"])
    for frame in (int(info["ED"]), int(info["ES"])):
        image = read_volume(folder / f"patient002_frame{frame:02d}.nii.gz")
        gt = read_volume(folder / f"patient002_frame{frame:02d}_gt.nii.gz")
        assert image.array.dtype == np.int16 and image.array.min() >= 0
        assert gt.array.dtype == np.uint8 and set(np.unique(gt.array)) == {0, 1, 2, 3}
        assert gt.array.shape == image.array.shape and gt.spacing == image.spacing
        # raw ACDC convention: 1 RV, 2 MYO, 3 LV
        assert _lv_enclosed_by_myo(gt.array, lv=3, myo=2, rv=1)
        direction = np.asarray(image.direction).reshape(3, 3)
        assert np.allclose(direction @ direction.T, np.eye(3), atol=1e-5)
        assert not np.allclose(direction, np.eye(3), atol=0.05)  # rotated, like scanner data


def test_mnms_raw_layout_and_labels(tiny_set):
    root = tiny_set / "raw/MnMs"
    with open(root / MNMS_CSV_NAME, newline="") as handle:
        header = next(csv.reader(handle))
    assert header[0] == "" and header[1:7] == ["External code", "VendorName", "Vendor", "Centre", "ED", "ES"]
    with open(root / MNMS_CSV_NAME, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["Vendor"] for r in rows) == ["A", "A", "B", "B", "C", "C", "D", "D"]
    for row in rows:
        code = row["External code"]
        sub = "Training/Labeled" if row["Vendor"] in "AB" else "*"
        image_path = next(root.glob(f"{sub}/{code}/{code}_sa.nii.gz"))
        image = read_volume(image_path, ndim=4)
        gt = read_volume(image_path.with_name(f"{code}_sa_gt.nii.gz"), ndim=4)
        n_frames = image.array.shape[0]
        assert TINY.mnms_frames[0] <= n_frames <= TINY.mnms_frames[1] and image.array.dtype == np.int16
        ed, es = int(row["ED"]), int(row["ES"])  # 0-based
        labelled = [t for t in range(n_frames) if gt.array[t].any()]
        assert labelled == sorted({ed, es})
        # M&Ms convention: 1 LV, 2 MYO, 3 RV
        assert _lv_enclosed_by_myo(gt.array[ed], lv=1, myo=2, rv=3)
        assert len(image.spacing) == 4


@pytest.mark.parametrize("domain", ["ACDC", "A", "B", "C", "D"])
def test_anatomy_sanity(domain):
    apex_without_rv = 0
    n = 6
    for i in range(n):
        stack = render_stack(domain, "NOR", (0.0, 1.0), np.random.default_rng([11, i]), TINY)
        z = stack.labels.shape[1]
        for t in range(2):
            for k in range(z // 3, 2 * z // 3 + 1):  # mid-ventricular slices
                assert {LV, MYO, RV} <= set(np.unique(stack.labels[t, k]).tolist()), (domain, i, t, k)
        apex_without_rv += int(not (stack.labels[:, -1] == RV).any())
        lv_ed, lv_es = (stack.labels[0] == LV).sum(), (stack.labels[1] == LV).sum()
        assert lv_es < lv_ed
        assert 0.3 < 1 - lv_es / lv_ed < 0.8  # ejection fraction on the label maps (coarse tiny grid)
    assert apex_without_rv >= n // 2 + 1


def test_realistic_geometry_at_default_size():
    shapes, ratios = [], []
    for i, domain in enumerate(["ACDC", "A", "B", "C", "D"] * 2):
        stack = render_stack(domain, "NOR", (0.0,), np.random.default_rng([5, i]), SyntheticSettings())
        sx, sy, sz = stack.spacing
        assert 1.2 <= sx == sy <= 2.0 and 5.0 <= sz <= 10.0 and 6 <= stack.labels.shape[1] <= 12
        shapes.append(stack.labels.shape[2:])
        lv_outer = (stack.labels[0, 0] == LV) | (stack.labels[0, 0] == MYO)
        ratios.append(2 * np.sqrt(lv_outer.sum() / np.pi) / stack.labels.shape[3])
    assert any(max(s) < 224 for s in shapes) and any(max(s) > 224 for s in shapes)
    assert any(h != w for h, w in shapes) and any(h == w for h, w in shapes)
    assert 0.12 < float(np.median(ratios)) < 0.3  # LV outer diameter ~ 1/5 of the field of view


def test_contraction_curve():
    c = contraction_curve(12, ed=1, es=5)
    assert c[1] == 0.0 and c[5] == 1.0 and c.min() >= 0.0 and c.max() <= 1.0
    assert np.all(np.diff(c[1:6]) > 0)


def _load_script(name: str):
    path = Path(__file__).resolve().parents[2] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_writes_data_and_preview(tmp_path):
    main = _load_script("make_synthetic_data").main
    out, png = tmp_path / "data", tmp_path / "preview.png"
    rc = main(["--out", str(out), "--n-acdc", "1", "--n-mnms-per-vendor", "1", "--workers", "1",
               "--spacing-scale", "3", "--no-progress", "--preview", str(png)])
    assert rc == 0
    assert (out / "raw/ACDC/patient001/Info.cfg").is_file() and (out / "raw/MnMs" / MNMS_CSV_NAME).is_file()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
