"""Synthetic raw ACDC / M&Ms generator: determinism, file formats, label conventions, anatomy and realism."""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from medseg.io.nifti import read_volume
from medseg.phantom.generator import (
    LV,
    MNMS_CSV_NAME,
    MYO,
    RV,
    SyntheticSettings,
    contraction_curve,
    generate_dataset,
    render_stack,
)
from medseg.phantom.appearance import SITES, sample_group, site_style
from medseg.phantom.heart import GROUPS, heart_masks, heart_shape, lv_centre, sample_heart
from medseg.phantom.heart import slice_polar
from medseg.phantom.shapes import make_grid
from medseg.phantom.texture import ANGLES

TINY = SyntheticSettings(fov_mm=(260.0, 300.0), spacing_scale=3.0, n_slices=(6, 7), mnms_frames=(4, 5))
#: Coarse pixels but the sites' own slice spacing (base-to-apex coverage as in real stacks).
COARSE = SyntheticSettings(spacing_scale=3.0, mnms_frames=(4, 5))


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
        filled = ndimage.binary_fill_holes((sl == myo) | (sl == lv))
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
        # raw ACDC convention: 1 RV, 2 MYO, 3 LV (the LV is the label inside the myocardium)
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
    assert sorted(r["Centre"] for r in rows if r["Vendor"] == "B") == ["2", "3"]  # Philips' two centres
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


def _mid_slices(labels: np.ndarray) -> range:
    """The mid-ventricular slice (middle of the LV-labelled range at ED) and, in longer stacks, its neighbours."""
    z = np.flatnonzero((labels[0] == LV).any(axis=(1, 2)))
    mid = int(z[len(z) // 2])
    reach = 1 if len(z) >= 8 else 0
    return range(mid - reach, mid + reach + 1)


@pytest.mark.parametrize("domain", ["ACDC", "A", "B", "C", "D"])
def test_anatomy_sanity(domain):
    n = 6
    apex_cap = lvot_open = 0
    for i in range(n):
        stack = render_stack(domain, "NOR", (0.0, 1.0), np.random.default_rng([11, i]), COARSE)
        for t in range(2):
            for k in _mid_slices(stack.labels):
                sl = stack.labels[t, k]
                assert {LV, MYO, RV} <= set(np.unique(sl).tolist()), (domain, i, t, k)
                # Mid-ventricular rings are closed: the LV lies inside the myocardium; the RV touches the septum.
                assert ndimage.binary_fill_holes(sl == MYO)[sl == LV].mean() > 0.95, (domain, i, t, k)
                assert (ndimage.binary_dilation(sl == RV, iterations=1) & (sl == MYO)).any(), (domain, i, t, k)
        lv_ed, lv_es = (stack.labels[0] == LV).sum(), (stack.labels[1] == LV).sum()
        assert lv_es < lv_ed
        assert 0.25 < 1 - lv_es / lv_ed < 0.85  # ejection fraction on the label maps (coarse tiny grid)
        labelled = np.flatnonzero(stack.labels[0].any(axis=(1, 2)))
        last = stack.labels[0, labelled[-1]]
        apex_cap += int((last == MYO).any() and not (last == LV).any())
        lvot_open += int(any(_ring_open(stack.labels[t]) for t in range(2)))
    assert apex_cap >= n // 2  # most stacks end in a myocardium-only apical cap
    assert lvot_open >= n // 2  # most stacks show the LVOT breaking the ring on their basal slice


def _ring_open(labels: np.ndarray) -> bool:
    """On the most basal slice with LV label, some LV pixels border the unlabelled outside (no myocardium)."""
    z = np.flatnonzero((labels == LV).any(axis=(1, 2)))
    sl = labels[z[0]]
    return bool((ndimage.binary_dilation(sl == LV) & (sl == 0)).any())


def _fine_polar(heart, z: float, spacing: float = 0.5, size: int = 260):
    grid = make_grid((size, size), spacing, lv_centre(heart, z), 0.0)
    return slice_polar(grid, lv_centre(heart, z))


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_papillary_muscles_and_trabeculae_inside_the_cavity_and_attached(group):
    for i in range(4):
        heart = sample_heart(np.random.default_rng([3, i]), group)
        z = 0.5 * heart.length
        polar = _fine_polar(heart, z)
        for c in (0.0, 1.0):
            masks = heart_masks(heart_shape(heart, z, c), polar)
            assert masks.papillary.sum() > 40 and masks.trabecular.sum() > 40, (group, i, c)
            assert not (masks.papillary & ~masks.lv).any() and not (masks.trabecular & ~masks.lv).any()
            # Every papillary / trabecular piece is attached to the compact myocardium (specks below 1.25 mm² are
            # finger tips sampled between angle bins at this 0.5 mm grid).
            muscle = masks.papillary | masks.trabecular
            pieces, _ = ndimage.label(muscle | masks.myo, structure=np.ones((3, 3), dtype=bool))
            wall = set(np.unique(pieces[masks.myo]).tolist())
            sizes = np.bincount(pieces.ravel())
            loose = [k for k in np.unique(pieces[muscle]) if k not in wall and sizes[k] >= 5]
            assert not loose and masks.papillary.sum() > 0.5 * (pieces[masks.papillary] > 0).size, (group, i, c)
            assert masks.blood.sum() > 0.15 * masks.lv.sum()  # HCM at ES nearly obliterates the cavity


def test_lvot_breaks_the_basal_ring_and_is_closed_by_the_lv_label():
    for i in range(8):
        heart = sample_heart(np.random.default_rng([4, i]), "NOR")
        z = 0.3 * heart.lvot[2]
        masks = heart_masks(heart_shape(heart, z, 0.0), _fine_polar(heart, z))
        assert masks.lv.any() and masks.myo.any()
        assert (ndimage.binary_dilation(masks.lv) & ~(masks.lv | masks.myo | masks.rv)).any()
        mid = 0.5 * heart.length
        closed = heart_masks(heart_shape(heart, mid, 0.0), _fine_polar(heart, mid))
        assert not (ndimage.binary_dilation(closed.lv) & ~(closed.lv | closed.myo)).any()


def _wall_thickness(heart, angle: float, c: float = 0.0) -> float:
    shape = heart_shape(heart, 0.5 * heart.length, c)
    k = int(np.argmin(np.abs(np.angle(np.exp(1j * (ANGLES - angle))))))
    return float(shape.r_epi[k] - shape.r_endo[k])


def test_pathology_shapes():
    rng = np.random.default_rng(5)
    for _ in range(4):
        hcm = sample_heart(rng, "HCM")
        assert _wall_thickness(hcm, hcm.rv_angle) > 1.25 * _wall_thickness(hcm, hcm.rv_angle + math.pi)
        minf = sample_heart(rng, "MINF")
        shape = heart_shape(minf, 0.5 * minf.length, 0.0)
        thickness = shape.r_epi - shape.r_endo
        assert thickness.min() < 0.75 * np.median(thickness)
        rv = sample_heart(rng, "RV")
        es = heart_shape(rv, 0.5 * rv.length, 1.0)
        k = int(np.argmin(np.abs(np.angle(np.exp(1j * (ANGLES - rv.rv_angle))))))
        assert es.r_epi[k] < 0.85 * float(np.median(es.r_epi))  # flattened septum: D-shaped LV


def test_sites_and_pathology_mix():
    assert site_style("B", 2) is not site_style("B", 3) and site_style("B", 3).p_3t == 1.0
    assert site_style("C").phase_res[1] < site_style("ACDC").phase_res[0]  # GE: truncation ringing
    with pytest.raises(ValueError, match="centres"):
        site_style("A", 3)
    groups = [sample_group(SITES[("B", 2)], np.random.default_rng(i)) for i in range(200)]
    assert groups.count("DCM") > groups.count("RV")


def test_realistic_geometry_at_default_size():
    shapes, ratios = [], []
    for i, domain in enumerate(["ACDC", "A", "B", "C", "D", "B"]):
        stack = render_stack(domain, "NOR", (0.0,), np.random.default_rng([5, i]), SyntheticSettings())
        sx, sy, sz = stack.spacing
        assert 1.1 <= sx == sy <= 2.0 and 5.0 <= sz <= 10.5 and 6 <= stack.labels.shape[1] <= 14
        shapes.append(stack.labels.shape[2:])
        k = _mid_slices(stack.labels)[len(_mid_slices(stack.labels)) // 2]
        heart = stack.labels[0, k] > 0
        ratios.append(2 * np.sqrt(heart.sum() / np.pi) * sx)
    assert any(max(s) < 224 for s in shapes) and any(max(s) > 224 for s in shapes)
    assert any(h != w for h, w in shapes) and any(h == w for h, w in shapes)
    assert 75.0 < float(np.median(ratios)) < 120.0  # equivalent diameter of LV + MYO + RV, mm


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


def _mid_ed_areas(group: str, i: int) -> tuple[float, float, float]:
    """LV cavity, myocardium and RV cavity areas (mm²) of the mid-ventricular ED slice of one sampled heart."""
    heart = sample_heart(np.random.default_rng([9, i]), group)
    z = 0.45 * heart.length
    masks = heart_masks(heart_shape(heart, z, 0.0), _fine_polar(heart, z, size=400))
    pixel = 0.5 * 0.5
    return masks.lv.sum() * pixel, masks.myo.sum() * pixel, masks.rv.sum() * pixel


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_rv_and_wall_proportions_like_real_short_axis(group):
    """Mid-ventricular ED: the RV crescent is about as large as the LV cavity (much larger only in the RV group; the
    small HCM cavity makes the ratio larger there), and the compact wall is 5-11 mm thick (HCM thicker)."""
    areas = np.array([_mid_ed_areas(group, i) for i in range(6)])
    lv, myo, rv = areas.T
    ratio = float(np.median(rv / lv))
    diameter = 2 * np.sqrt(lv / np.pi)
    wall = float(np.median(myo / (np.pi * diameter)))  # ring area / mean circumference ~ thickness
    if group == "RV":
        assert 1.8 < ratio < 4.0, ratio
    elif group == "HCM":
        assert 1.0 < ratio < 2.8 and wall > 12.0, (ratio, wall)
    else:
        assert 0.5 < ratio < 1.7 and 5.0 < wall < 11.0, (group, ratio, wall)
    if group != "HCM":
        assert 5.0 < wall < 11.0, (group, wall)


def test_papillary_muscles_are_large_and_the_fringe_deepens_at_es():
    """Mid-ventricular papillary muscles are ~1 cm² each (not dots); the trabecular fringe (inside the LV label,
    outside the blood pool proper) takes a larger share of the cavity at ES than at ED."""
    for i in range(4):
        heart = sample_heart(np.random.default_rng([6, i]), "NOR", 1.04)
        z = 0.55 * heart.length
        polar = _fine_polar(heart, z)
        ed, es = (heart_masks(heart_shape(heart, z, c), polar) for c in (0.0, 1.0))
        assert ed.papillary.sum() * 0.25 > 100.0, i  # mm², both heads together
        share = [m.trabecular.sum() / m.lv.sum() for m in (ed, es)]
        assert share[1] > share[0] > 0.05, (i, share)


def test_epicardial_fat_lies_between_the_myocardium_and_its_neighbours():
    for group in sorted(GROUPS):
        heart = sample_heart(np.random.default_rng([8, 0]), group)
        mid = heart_shape(heart, 0.5 * heart.length, 0.0)
        base = heart_shape(heart, 4.0, 0.0)
        assert ((mid.r_fat - mid.r_wall) > 1.0).mean() > 0.3, group  # a fat layer around much of the heart
        assert float(np.mean(base.r_fat - base.r_wall)) > float(np.mean(mid.r_fat - mid.r_wall))  # AV groove


def test_liver_lies_below_the_heart_on_mid_slices():
    """Rendering the torso with liver as the only signal: on the mid-ventricular slice the liver is there, below
    the LV centre (image down = posterior-inferior in the canonical frame), and reaches within 12 mm of the heart's
    outer (fat) outline: the heart rests on the diaphragm."""
    from medseg.phantom.anatomy import render_torso
    from medseg.phantom.stack import sample_subject

    only_liver = {key: 0.0 for key in ("air", "lung", "fat", "muscle", "myocardium", "blood", "rv_blood", "vessel",
                                       "spleen", "stomach", "bowel", "marrow", "cortex", "csf", "cord", "gland",
                                       "pericardium")}
    only_liver["liver"] = 1.0
    for i in range(4):
        sub = sample_subject("ACDC", "NOR", np.random.default_rng([12, i]), SyntheticSettings())
        heart, z = sub.heart, 0.5 * sub.heart.length
        cx, cy = lv_centre(heart, z)
        grid = make_grid((200, 200), 1.5, (cx, cy + 40.0), 0.0)
        texture = np.zeros((2, 200, 200), dtype=np.float32)
        liver = render_torso(sub.torso, heart, grid, z, only_liver, texture, sub.thickness) > 0.5
        assert liver.sum() * 1.5**2 > 1000.0, i  # mm²
        assert float(grid.y[liver].mean()) > cy, i
        shape = heart_shape(heart, z, 0.0)
        rho = np.hypot(grid.x - cx, grid.y - cy)
        outline = shape.r_fat[slice_polar(grid, (cx, cy)).index]
        assert float((rho - outline)[liver].min()) < 12.0, i


def test_ventricular_volumes_per_group_in_real_ranges():
    """LV and RV cavity volumes integrated over the long axis (1 mm pixels, 3 mm steps) at ED and ES: the median of
    four hearts per group at the ACDC-like population scale lies in the plausible adult range of the report."""
    from medseg.phantom.report_output import VOLUME_RANGES

    for group in sorted(GROUPS):
        volumes = {key: [] for key in ("lv_ED", "lv_ES", "rv_ED", "rv_ES")}
        for i in range(4):
            heart = sample_heart(np.random.default_rng([13, i]), group, 1.04)
            for frame, c in (("ED", 0.0), ("ES", 1.0)):
                lv = rv = 0.0
                for z in np.arange(1.5, heart.length + heart.apex_thickness + 2.0, 3.0):
                    grid = make_grid((160, 160), 1.0, lv_centre(heart, z), 0.0)
                    masks = heart_masks(heart_shape(heart, z, c), slice_polar(grid, lv_centre(heart, z)))
                    lv += masks.lv.sum() * 3.0 / 1000.0
                    rv += masks.rv.sum() * 3.0 / 1000.0
                volumes[f"lv_{frame}"].append(lv)
                volumes[f"rv_{frame}"].append(rv)
        for key, values in volumes.items():
            lo, hi = VOLUME_RANGES[group][key]
            assert lo <= float(np.median(values)) <= hi, (group, key, values)


def test_surroundings_follow_the_heart_from_ed_to_es_but_the_spine_stays():
    """The liver (or bowel), below the diaphragm the heart rests on, stays against the heart as it contracts: along the
    diaphragm's normal from the LV centre its surface moves inward with the heart's outer outline from ED to ES
    (by the outline's change) and stays outside it, while the bones (spine, sternum, ribs) do not move; at ED
    nothing is warped."""
    from medseg.phantom.anatomy import render_torso, torso_mobility
    from medseg.phantom.stack import follow_heart, sample_subject
    from medseg.phantom.texture import angle_index

    def only(*tissues: str) -> dict[str, float]:
        signals = {key: 0.0 for key in ("air", "lung", "fat", "muscle", "myocardium", "blood", "rv_blood", "vessel",
                                        "liver", "spleen", "stomach", "bowel", "marrow", "cortex", "csf", "cord",
                                        "gland", "pericardium")}
        signals.update({tissue: 1.0 for tissue in tissues})
        return signals

    for i in range(3):
        sub = sample_subject("ACDC", "NOR", np.random.default_rng([12, i]), SyntheticSettings())
        heart, z = sub.heart, 0.5 * sub.heart.length
        cx, cy = lv_centre(heart, z)
        grid = make_grid((260, 260), 1.0, (cx, cy + 40.0), 0.0)
        texture = np.zeros((2, 260, 260), dtype=np.float32)
        liver = render_torso(sub.torso, heart, grid, z, only("liver", "bowel"), texture, sub.thickness)
        spine = render_torso(sub.torso, heart, grid, z, only("marrow"), texture, sub.thickness)
        mobile = torso_mobility(sub.torso, heart, grid, z, sub.thickness)
        assert follow_heart(liver, grid, heart, z, 0.0, mobile) is liver
        rho = np.hypot(grid.x - cx, grid.y - cy)
        normal = sub.torso.diaphragm[0]
        k = int(angle_index(np.float32(math.cos(normal)), np.float32(math.sin(normal))))
        ray = np.abs((slice_polar(grid, (cx, cy)).index - k + 180) % 360 - 180) <= 3  # a 7-degree wedge
        surface, outline = {}, {}
        for frame, c in (("ED", 0.0), ("ES", 1.0)):
            surface[frame] = float(rho[ray & (follow_heart(liver, grid, heart, z, c, mobile) > 0.5)].min())
            outline[frame] = float(heart_shape(heart, z, c).r_fat[k])
        assert surface["ES"] > outline["ES"], i
        expected = outline["ED"] - outline["ES"]
        assert expected > 1.0 and abs(surface["ED"] - surface["ES"] - expected) < 1.5, (i, surface, outline)
        moved = [ndimage.center_of_mass(follow_heart(spine, grid, heart, z, c, mobile) > 0.5) for c in (0.0, 1.0)]
        assert np.hypot(*np.subtract(*moved)) < 0.05, i  # pixels of 1 mm: sternum, ribs and spine stay


def test_saturating_export_scaling_flattens_the_brightest_values():
    """Stored intensities saturate at the stack's ceiling; about half of the ACDC-like scans saturate (at 50-90 % of
    the ED stack's 99th percentile), no M&Ms-like vendor scan does."""
    from medseg.phantom.mri import saturation_limit, store
    from medseg.phantom.stack import sample_subject

    magnitude = np.array([0.5, 1.0, 2.0, 4.0], dtype=np.float32)
    assert store(magnitude, 1.0, 100.0).tolist() == [50, 100, 200, 400]
    assert store(magnitude, 1.0, 100.0, limit=150.0).tolist() == [50, 100, 150, 150]
    ramp = np.linspace(0.0, 1.0, 1001, dtype=np.float32)
    assert saturation_limit(ramp, 1.0, 1000.0, 0.5) == pytest.approx(495.0, abs=1.0)
    levels = [sample_subject("ACDC", "NOR", np.random.default_rng([14, i]), TINY).appearance.saturation
              for i in range(40)]
    saturated = [level for level in levels if level is not None]
    assert 0.35 <= len(saturated) / len(levels) <= 0.75 and all(0.5 <= level <= 0.9 for level in saturated)
    for vendor in "ABCD":
        assert sample_subject(vendor, "NOR", np.random.default_rng([14, 0]), TINY).appearance.saturation is None
