"""Heart of the synthetic short-axis phantom: a bullet-shaped LV with trabeculae and papillary muscles, an RV crescent
with trabeculation and a moderator band, patchy epicardial fat, the LV outflow tract at the base and the atria and
great vessels above it.

Frame: millimetres in the *canonical* slice plane (``x`` to the image right = patient left, ``y`` down = posterior,
the RV to the left and a little anterior). Along the long axis, ``s`` is the distance below the mitral-valve plane
(the base) and ``u = s / L`` the normalised position (0 base, 1 endocardial apex). During systole the base descends
toward the fixed apex (``descent`` mm at ES), so a fixed slice is more basal at ES than at ED, as in real cine.

Every outline is star-shaped about the LV centre and stored as a radius per angle bin
(:data:`~medseg.phantom.texture.ANGLES`); papillary muscles, the moderator band, the LVOT and the
atria are explicit primitives. Labels follow ACDC practice in the medseg convention: 1 LV cavity *including*
papillary muscles and trabeculae (the compact-myocardium boundary), 2 LV myocardium, 3 RV cavity (its trabeculae and
the moderator band included, the outflow tract up to the pulmonary valve). The atria and great vessels are unlabelled;
the myocardial ring is open across the LVOT on basal slices (the LV label closes the ring there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from medseg.phantom.shapes import Grid, capsule_distance, ellipse_distance, occupancy, paint
from medseg.phantom.texture import ANGLES, N_ANGLES, angle_index, bump_profile, harmonic_profile
from medseg.phantom.texture import sector_profile, wrap_angle

LV, MYO, RV = 1, 2, 3

#: ACDC pathology groups at end diastole: endocardial radius (mm), wall thickness (mm), ejection fraction, RV crescent
#: depth (relative to the LV epicardial radius), LV length base → endocardial apex (mm), base descent at ES (mm).
GROUPS: dict[str, dict[str, tuple[float, float]]] = {
    "NOR": {"radius": (25.5, 30.0), "thickness": (7.5, 9.5), "ef": (0.55, 0.70), "rv": (0.65, 0.9),
            "length": (76.0, 90.0), "descent": (11.0, 16.0)},
    "DCM": {"radius": (31.0, 38.0), "thickness": (5.5, 7.5), "ef": (0.15, 0.38), "rv": (0.5, 0.72),
            "length": (88.0, 106.0), "descent": (4.0, 8.0)},
    "HCM": {"radius": (22.0, 26.5), "thickness": (10.0, 13.0), "ef": (0.62, 0.80), "rv": (0.6, 0.85),
            "length": (72.0, 86.0), "descent": (8.0, 12.0)},
    "MINF": {"radius": (27.0, 34.0), "thickness": (7.0, 9.0), "ef": (0.22, 0.42), "rv": (0.5, 0.72),
             "length": (84.0, 100.0), "descent": (5.0, 9.0)},
    "RV": {"radius": (22.0, 26.5), "thickness": (7.0, 9.0), "ef": (0.48, 0.65), "rv": (1.05, 1.35),
           "length": (74.0, 90.0), "descent": (7.0, 11.0)},
}

_FAR = np.float32(1e3)


@dataclass(frozen=True)
class HeartModel:
    """All random geometry of one heart (mm, radians; profiles are ``(N_ANGLES,)``)."""

    group: str
    length: float  # ED base → endocardial apex
    descent: float  # base displacement toward the apex at ES
    radius: float  # ED endocardial radius of the cylindrical part
    cylinder: float  # u where the rounded apical cap begins
    thickness: float  # ED wall thickness (mean)
    thickness_profile: np.ndarray  # relative regional thickness (HCM septum, MINF thinning, variation)
    apex_thickness: float
    ef_area: float  # fractional loss of cross-sectional cavity area at ES (global EF with the descent)
    motion_profile: np.ndarray  # regional contraction (1 normal, ~0.1 akinetic)
    wobble: np.ndarray  # (2, N_ANGLES) relative endocardial outline irregularity at base / apex
    epi_wobble: np.ndarray  # relative epicardial outline irregularity
    flattening: tuple[float, float]  # septal flattening distance / epicardial radius at ED, ES (>= 9 = none)
    drift: tuple[float, float]  # LV centre displacement base → apex
    rv_angle: float
    rv_profile: np.ndarray  # 0..1 angular profile of the RV depth
    rv_wobble: np.ndarray
    rv_depth: float
    rv_end: float  # u of the RV apex
    rv_ef: float
    rv_wall: float
    rvot_length: float  # mm above the base still labelled RV (outflow tract below the pulmonary valve)
    rv_trabeculae: np.ndarray  # (K, 3): angle, half-width (mm), length (relative to the crescent depth)
    moderator: np.ndarray  # (5,): septal angle, free-wall angle, radius mm, u_lo, u_hi (radius 0 = none)
    papillary: np.ndarray  # (2, 6): angle, size mm, aspect, u_lo, u_hi, second-head angular offset (0 = none)
    trabeculae: np.ndarray  # (K, 5): angle, half-width mm, length mm, u_lo, u_hi
    fringe: float  # depth (mm) of the non-compact trabecular fringe at mid-ventricular ED on the lateral wall
    fat_patch: np.ndarray  # 0..1 patchiness of the epicardial fat
    fat_lv: float
    fat_rv: float
    fat_av: float  # atrioventricular groove fat at the base
    fat_groove: float  # interventricular grooves (RV insertion points)
    lvot: np.ndarray  # (4,): angle, aortic radius mm, depth of the LVOT below the base mm, root distance factor
    la: np.ndarray  # (7,): angle from the aortic root, gap factor, radius x, radius y, orientation, appendage angle,
    #                 appendage size
    ra: np.ndarray  # (6,): angle offset from the RV direction, gap factor, radius, orientation, appendage angle, size


def sample_heart(rng: np.random.Generator, group: str = "NOR", size_scale: float = 1.0, adiposity: float = 1.0
                 ) -> HeartModel:
    """Draw a random heart of an ACDC pathology group.

    Args:
        rng: random generator.
        group: a key of :data:`GROUPS`.
        size_scale: population scale of the linear heart size (per-site populations differ).
        adiposity: the subject's fat factor (1 typical): scales the epicardial and AV-groove fat.
    """
    if group not in GROUPS:
        raise ValueError(f"group must be one of {sorted(GROUPS)}, got {group!r}")
    g = GROUPS[group]
    u = rng.uniform
    radius = u(*g["radius"]) * size_scale
    thickness = u(*g["thickness"])
    length = u(*g["length"]) * size_scale
    descent = u(*g["descent"])
    ef = u(*g["ef"])
    # Global volume EF = 1 - (1 - area loss) * (L - descent) / L  →  area loss at ES.
    ef_area = float(np.clip(1.0 - (1.0 - ef) * length / (length - descent), 0.1, 0.8))
    rv_angle = math.pi + u(0.15, 0.55)  # left and a little anterior (y points down)
    septum = rv_angle
    thick = 1.0 + harmonic_profile(rng, (1, 2, 3), u(0.05, 0.15))
    motion = np.ones(N_ANGLES, dtype=np.float32)
    if group == "HCM":  # asymmetric septal hypertrophy
        thick += u(0.6, 1.3) * sector_profile(septum + u(-0.3, 0.5), u(0.6, 1.1), 0.5)
    if group == "MINF":  # a thinned, akinetic territory (LAD anteroseptal, RCA inferior or LCx lateral)
        territory = septum + rng.choice([0.9, -1.6, 2.6]) + u(-0.3, 0.3)
        scar = sector_profile(territory, u(0.5, 1.0), 0.35)
        thick *= 1.0 - u(0.5, 0.7) * scar
        motion -= u(0.7, 0.95) * scar
    wobble = np.stack([harmonic_profile(rng, (2, 3, 4, 5, 6, 7), u(0.10, 0.15)) for _ in range(2)])
    epi_wobble = harmonic_profile(rng, (2, 3, 4), u(0.02, 0.06))
    flattening = (9.0, 9.0)
    if group == "RV":  # pressure / volume overload flattens the septum: D-shaped LV
        flattening = (u(0.75, 0.95), u(0.55, 0.8))
    # RV crescent: deeper on the anterior side, insertions ~55–80° either side of its centre.
    hw_ant, hw_inf = u(1.45, 1.85), u(1.15, 1.5)
    rel = wrap_angle(ANGLES - np.float32(rv_angle))
    t = np.clip(np.where(rel > 0, rel / hw_ant, -rel / hw_inf), 0.0, 1.0)
    rv_profile = (np.clip(np.cos(t * (math.pi / 2)), 0.0, 1.0) ** u(0.4, 0.8)).astype(np.float32)
    n_rv_trab = int(rng.integers(3, 7))  # coarse RV trabeculation along the free wall
    rv_trab = np.stack([rv_angle + rng.uniform(-1.0, 1.0, n_rv_trab), rng.uniform(2.5, 5.0, n_rv_trab),
                        rng.uniform(0.06, 0.16, n_rv_trab)], axis=1)
    moderator = np.zeros(5)
    if rng.random() < 0.6:
        moderator = np.array([rv_angle + u(0.35, 0.7), rv_angle + u(-0.25, 0.2), u(1.5, 2.5), u(0.55, 0.65),
                              u(0.75, 0.9)])
    lateral = rv_angle + math.pi
    # Papillary muscles: large (10-16 mm across at mid-ventricle), broad-based on the wall, often bifid.
    papillary = np.array([
        [lateral + u(-1.2, -0.6), u(5.0, 8.0), u(0.9, 1.4), u(0.15, 0.28), u(0.72, 0.88),
         u(-0.5, 0.5) if rng.random() < 0.7 else 0.0],
        [lateral + u(0.9, 1.6), u(5.0, 8.0), u(0.9, 1.4), u(0.15, 0.28), u(0.72, 0.88),
         u(-0.5, 0.5) if rng.random() < 0.7 else 0.0],
    ])
    n_trab = int(rng.integers(12, 31))
    # Fewer fingers on the septum (it is smooth on the LV side); more toward the apex (u windows reach it).
    trab_angles = lateral + rng.normal(0.0, 1.3, n_trab)
    trab_lo = rng.uniform(0.0, 0.7, n_trab)
    trabeculae = np.stack([trab_angles, rng.uniform(0.8, 2.0, n_trab), rng.uniform(1.5, 4.5, n_trab), trab_lo,
                           np.minimum(trab_lo + rng.uniform(0.25, 0.8, n_trab), 1.05)], axis=1)
    fat_patch = np.clip(0.65 + harmonic_profile(rng, (1, 2, 3, 5, 7), u(0.6, 1.0)), 0.0, 1.0) ** 1.5
    ao_angle = rv_angle + hw_ant * u(0.55, 0.85)  # LVOT leaves anteroseptally, near the anterior RV insertion
    return HeartModel(
        group=group,
        length=length,
        descent=descent,
        radius=radius,
        cylinder=u(0.5, 0.65),
        thickness=thickness,
        thickness_profile=thick.astype(np.float32),
        apex_thickness=thickness * u(0.55, 0.8),
        ef_area=ef_area,
        motion_profile=np.clip(motion, 0.05, 1.0).astype(np.float32),
        wobble=wobble.astype(np.float32),
        epi_wobble=epi_wobble.astype(np.float32),
        flattening=flattening,
        drift=(float(rng.normal(0.0, 4.0)), float(rng.normal(2.0, 4.0))),
        rv_angle=rv_angle,
        rv_profile=rv_profile,
        rv_wobble=harmonic_profile(rng, (2, 3, 4, 5), u(0.06, 0.14)),
        rv_depth=u(*g["rv"]),
        rv_end=u(0.75, 0.92),
        rv_ef=u(0.3, 0.5) if group != "RV" else u(0.15, 0.35),
        rv_wall=u(2.0, 3.5) if group != "RV" else u(3.0, 5.0),
        rvot_length=u(6.0, 14.0),
        rv_trabeculae=rv_trab,
        moderator=moderator,
        papillary=papillary,
        trabeculae=trabeculae,
        fringe=u(2.5, 5.0),
        fat_patch=fat_patch.astype(np.float32),
        fat_lv=u(0.5, 3.5) * adiposity,
        fat_rv=u(1.0, 5.0) * adiposity,
        fat_av=u(3.0, 9.0) * adiposity,
        fat_groove=u(2.0, 7.0) * adiposity,
        lvot=np.array([ao_angle, u(11.0, 15.0), u(7.0, 13.0), u(0.85, 1.1)]),
        la=np.array([math.pi / 2 + u(-0.35, 0.35), u(0.7, 1.0), u(26.0, 34.0), u(19.0, 27.0), u(-0.6, 0.6),
                     u(-1.4, -0.8), u(0.3, 0.45)]),
        ra=np.array([u(-1.0, -0.6), u(0.7, 1.0), u(22.0, 30.0), u(-0.6, 0.6), u(0.6, 1.2), u(0.35, 0.5)]),
    )


def lv_centre(model: HeartModel, z: float) -> tuple[float, float]:
    """LV centre of the slice at ``z`` mm below the ED base (drifts linearly from base to apex)."""
    f = min(max(z / model.length, 0.0), 1.1)
    return model.drift[0] * f, model.drift[1] * f


def _bullet(u: float, cylinder: float) -> float:
    """Radius factor of a bullet: 1 on the cylinder, an elliptical cap to 0 at ``u = 1``."""
    if u < 0.0 or u >= 1.0:
        return 0.0
    shape = 1.0 - 0.08 * u  # slight taper from base to the cap
    if u <= cylinder:
        return shape
    t = (u - cylinder) / (1.0 - cylinder)
    return shape * math.sqrt(max(0.0, 1.0 - t * t))


def _bin(angle: float) -> int:
    """Index into :data:`ANGLES` of a direction (radians)."""
    return int(((angle + math.pi) % (2 * math.pi)) * N_ANGLES / (2 * math.pi)) % N_ANGLES


def _periodic_slope(r: np.ndarray) -> np.ndarray:
    """``1 / sqrt(1 + (dr/dphi / r)^2)``: converts radial distance to the outline into normal distance."""
    dr = (np.roll(r, -1) - np.roll(r, 1)) * np.float32(N_ANGLES / (4 * math.pi))
    return (1.0 / np.sqrt(1.0 + (dr / np.maximum(r, 1.0)) ** 2)).astype(np.float32)


@dataclass(frozen=True)
class HeartShape:
    """Outlines of one heart cross-section at one long-axis position and contraction state.

    Radii ``(N_ANGLES,)`` in mm about the LV centre; an absent structure has radius 0 (or the inner one).
    """

    s: float  # distance below the base (at this contraction)
    fat_av: float  # AV-groove fat thickness of the heart (mm), around the basal structures
    u: float
    c: float
    r_blood: np.ndarray  # LV blood (inside the trabecular fingers)
    blood_slope: np.ndarray
    r_endo: np.ndarray  # compact myocardium inner boundary (LV label outline)
    r_fringe: np.ndarray  # inner edge of the trabecular fringe (between it and r_endo blood and muscle mix)
    r_epi: np.ndarray  # LV epicardium as imaged (the LVOT does not change it; it is painted over)
    r_rv_blood: np.ndarray  # RV blood (inside its trabeculae)
    r_rv: np.ndarray  # RV cavity outline (label)
    rv_labelled: np.ndarray  # bool (N_ANGLES,): angles where the RV cavity carries the RV label
    r_wall: np.ndarray  # outer myocardium (LV epicardium or RV free wall)
    r_fat: np.ndarray  # outer outline of the epicardial fat
    papillary: tuple[tuple[float, float, float, float, float], ...]  # (x, y, a, b, angle) ellipses
    stalks: tuple[tuple[float, float, float, float, float], ...]  # capsules (x0, y0, x1, y1, radius)
    moderator: tuple[float, float, float, float, float] | None  # capsule
    lvot: tuple[float, float, float, float, float] | None  # capsule from the LV cavity toward the aortic root
    #: (x, y, rx, ry, angle, kind, group): atria (lobulated: several ellipses of one group), great vessels
    #: (unlabelled) and the RV outflow tract ("rvot", labelled RV)
    vessels: tuple[tuple[float, float, float, float, float, str, int], ...]


def _papillary_muscles(m: HeartModel, u: float, c: float, endo: np.ndarray, centre: tuple[float, float],
                       r_mean: float) -> tuple[list, list]:
    """Papillary-muscle heads (ellipses) and the stalks (capsules) that tie them to the wall."""
    cx, cy = centre
    papillary, stalks = [], []
    for angle, size, aspect, lo, hi, second in m.papillary:
        w = math.sin(math.pi * min(max((u - lo) / (hi - lo), 0.0), 1.0)) ** 0.5
        if w <= 0.05 or r_mean < 4.0:
            continue
        wall = float(endo[_bin(angle)])
        b = size * w * (1.0 + 0.25 * c) * min(1.0, 0.5 + r_mean / 40.0)  # tangential semi-axis; thicker at ES
        a = b * aspect  # radial semi-axis
        heads = [(angle, 1.0)] + ([(angle + second * 9.0 / max(wall, 6.0), 0.7)] if second else [])
        for ang, scale in heads:
            # ED: the head stands a little off the wall on a broad base; ES: it merges with the wall.
            dist = max(wall - a * scale * (1.1 - 0.5 * c), 0.45 * wall)
            px, py = cx + dist * math.cos(ang), cy + dist * math.sin(ang)
            papillary.append((px, py, a * scale, b * scale, ang + 0.4 * second))
            wx, wy = cx + (wall + 1.0) * math.cos(ang), cy + (wall + 1.0) * math.sin(ang)
            stalks.append((px, py, wx, wy, (0.55 + 0.25 * c) * b * scale))
    return papillary, stalks


def _basal_structures(m: HeartModel, s: float, c: float, centre: tuple[float, float], r_mean: float,
                      lv_present: bool) -> tuple[tuple[float, float, float, float, float] | None, list]:
    """The LVOT capsule (just below the base) and the atria, aortic root, RVOT / pulmonary trunk around the base."""
    cx, cy = centre
    lvot = None
    vessels: list[tuple[float, float, float, float, float, str, int]] = []
    ao_angle, ao_r, lvot_depth, ao_dist = m.lvot
    ca, sa = math.cos(ao_angle), math.sin(ao_angle)
    root_d = (m.radius + m.thickness) * ao_dist
    if 0.0 <= s < lvot_depth and lv_present:
        t = 1.0 - s / lvot_depth
        reach = float(r_mean) * 0.4 + (root_d - float(r_mean) * 0.4) * t + ao_r * 0.3
        width = ao_r * (0.55 + 0.35 * t)
        lvot = (cx + 0.3 * r_mean * ca, cy + 0.3 * r_mean * sa, cx + reach * ca, cy + reach * sa, width)
    # Around the base the aortic root is central and the atria and the RV outflow tract pack around it.
    ao_x, ao_y = cx + root_d * ca, cy + root_d * sa
    if s < 0.0:
        # Above the valve planes the atria sit over the ventricles they empty into (the left atrium behind the LV
        # footprint, the right atrium over the inflow part of the RV), so a slab that straddles the base blends
        # ventricle into atrium instead of showing both side by side; the aortic root is central and anterior.
        fade = min(1.0, -s / 6.0) ** 0.5 * (1.0 + 0.12 * c)  # the atria fill during systole
        la_a, la_gap, la_rx, la_ry, la_o, app_a, app_s = m.la
        ra_a, ra_gap, ra_r, ra_o, rapp_a, rapp_s = m.ra
        r_epi = m.radius + m.thickness
        scale = r_epi / 36.0
        atria = ((la_a, la_rx * scale, la_ry * scale, la_o, app_a, app_s, 0.45 * la_gap * r_epi),
                 (m.rv_angle + 0.6 * ra_a, ra_r * scale, 0.85 * ra_r * scale, ra_o, rapp_a, rapp_s,
                  (0.9 + 0.4 * ra_gap) * r_epi))
        for group, (ang, rx, ry, orient, app, size, dist) in enumerate(atria, start=1):
            rx, ry = rx * fade, ry * fade
            ax, ay = cx + dist * math.cos(ang), cy + dist * math.sin(ang)
            vessels.append((ax, ay, rx, ry, orient, "atrium", group))
            # The appendage: a smaller lobe on the body's rim, so the atrium is not a plain ellipse.
            bx, by = ax + 0.8 * rx * math.cos(ang + app), ay + 0.8 * ry * math.sin(ang + app)
            vessels.append((bx, by, size * rx * 1.3, size * ry, ang + app, "atrium", group))
        vessels.append((ao_x, ao_y, ao_r, ao_r, 0.0, "aorta", 0))
    if s < 0.0:  # the RV outflow tract (labelled RV up to the pulmonary valve), then the pulmonary trunk
        ot_a = m.rv_angle + 0.55
        if s > -m.rvot_length:
            ot_r = max(0.45 * m.rv_depth * (m.radius + m.thickness), 9.0) * (1.0 + 0.4 * s / m.rvot_length)
            kind = "rvot"
        else:
            ot_r, kind = ao_r * 0.95, "pulmonary"
        ot_d = ao_r + 0.8 * ot_r + 1.5
        vessels.insert(0, (ao_x + ot_d * math.cos(ot_a), ao_y + ot_d * math.sin(ot_a), ot_r, 0.8 * ot_r, ot_a, kind, 3))
    return lvot, vessels


def heart_shape(model: HeartModel, z: float, c: float) -> HeartShape:
    """Cross-section of the heart at ``z`` mm below the ED base and contraction ``c`` (0 ED, 1 ES)."""
    m = model
    s = z - m.descent * c
    length = m.length - m.descent * c
    u = s / length
    cx, cy = lv_centre(m, z)
    zero = np.zeros(N_ANGLES, dtype=np.float32)
    mix = min(max(u, 0.0), 1.0)
    wob = (1.0 - mix) * m.wobble[0] + mix * m.wobble[1]
    # Endocardium (compact myocardium) at ED, then regional contraction (area loss ef_area * motion).
    endo_ed = np.float32(m.radius * _bullet(u, m.cylinder)) * (1.0 + wob)
    area_keep = 1.0 - m.ef_area * (0.9 + 0.25 * mix) * m.motion_profile * c
    endo = endo_ed * np.sqrt(np.clip(area_keep, 0.15, 1.0))
    # Epicardium: its own bullet (longer by the apical wall), plus regional thickness; myocardial area is conserved.
    epi_length = m.length + m.apex_thickness
    u_epi = s / (epi_length - m.descent * c)
    cyl_epi = m.cylinder * m.length / epi_length
    epi_base = (m.radius + m.thickness) * _bullet(u_epi, cyl_epi)
    if epi_base <= 0.0:
        r_epi_ed = zero.copy()
    else:
        # The wall follows the endocardial outline with its regional thickness (the bullet difference, which grows
        # in the apical cap where the slice cuts the wall obliquely); a small independent epicardial wobble.
        wall = max(epi_base - m.radius * _bullet(u, m.cylinder), 0.0)
        r_epi_ed = np.where(endo_ed > 0, endo_ed + np.float32(wall) * m.thickness_profile, np.float32(epi_base))
        r_epi_ed = (r_epi_ed + np.float32(0.4 * epi_base) * m.epi_wobble).astype(np.float32)
        r_epi_ed = np.maximum(r_epi_ed, endo_ed + np.float32(2.5) * (endo_ed > 0))
    r_epi = np.sqrt(np.maximum(r_epi_ed**2 - endo_ed**2 + endo**2, 0.0)).astype(np.float32)
    # Septal flattening (D-shaped LV): cap the radius by a line on the RV side.
    flat = m.flattening[0] + (m.flattening[1] - m.flattening[0]) * c
    if flat < 5.0 and r_epi.max() > 0:
        cosang = np.cos(ANGLES - np.float32(m.rv_angle))
        limit = np.where(cosang > 0.05, np.float32(flat * float(r_epi.mean())) / np.maximum(cosang, 0.05), _FAR)
        shift = np.maximum(r_epi - limit, 0.0)
        r_epi = r_epi - shift
        endo = np.maximum(endo - shift, 0.0)
    # Trabecular fingers reduce the blood pool inside the compact wall (more toward the apex, thicker at ES).
    tr = m.trabeculae
    active = np.clip(np.minimum(u - tr[:, 3], tr[:, 4] - u) / 0.08, 0.0, 1.0)
    r_mean = max(float(endo.mean()), 1.0)
    keep = active > 0
    size = min(1.0, r_mean / 22.0)  # small (ES, hypertrophied) cavities have proportionally smaller fingers
    fingers = bump_profile(tr[keep, 0], (tr[keep, 1] * (1.0 + 0.3 * c) * size) / r_mean,
                           tr[keep, 2] * active[keep] * (0.7 + 0.6 * mix) * size, power=1.0)
    fingers = np.minimum(fingers, np.float32(0.5) * endo)
    r_blood = np.maximum(endo - fingers, 0.0).astype(np.float32)
    # The non-compact fringe: fine trabeculae that blur the endocardium, deeper on the lateral and inferior wall,
    # toward the apex and at ES (when the trabeculae are pressed together).
    lateral = 0.5 + 0.5 * np.cos(ANGLES - np.float32(m.rv_angle + math.pi))
    depth = m.fringe * (1.0 + 0.8 * c) * (0.8 + 0.5 * mix) * min(1.0, r_mean / 20.0)
    fringe = np.float32(depth) * (0.35 + 0.65 * lateral)
    r_fringe = np.maximum(np.minimum(r_blood, endo - fringe), 0.65 * endo).astype(np.float32)
    papillary, stalks = _papillary_muscles(m, u, c, endo, (cx, cy), r_mean)
    # RV crescent (below the base; above it only the outflow tract remains, see the vessels).
    r_epi_mean = float(r_epi.mean()) if r_epi.max() > 0 else 0.0
    rv_depth_mm = 0.0
    if r_epi_mean > 0 and 0.0 <= s < m.rv_end * length:
        t = max(0.0, (u / m.rv_end - 0.45) / 0.55)
        taper = math.sqrt(max(0.0, 1.0 - t * t))
        # The RV empties mostly by long-axis shortening: its cross-section shrinks less than its volume.
        rv_depth_mm = m.rv_depth * (m.radius + m.thickness) * taper * (1.0 - 0.7 * m.rv_ef * c)
    depth = np.float32(rv_depth_mm) * m.rv_profile * (1.0 + m.rv_wobble)
    inner, ref = r_epi, np.float32(r_epi_mean)
    r_rv = np.where(depth > 0.5, np.maximum(inner, ref + depth), inner).astype(np.float32)
    rv_open = (r_rv - inner) > 0.5
    rv_labelled = rv_open
    rt = m.rv_trabeculae
    rv_fingers = bump_profile(rt[:, 0], rt[:, 1] / max(ref + rv_depth_mm, 5.0), rt[:, 2], power=1.0)
    r_rv_blood = np.where(rv_open, r_rv - np.minimum(rv_fingers * (r_rv - inner), 0.5 * (r_rv - inner)),
                          inner).astype(np.float32)
    wall_rv = np.float32(m.rv_wall) * np.clip((r_rv - inner) / 4.0, 0.0, 1.0)
    r_wall = np.maximum(r_rv + wall_rv, inner).astype(np.float32)
    moderator = None
    mod = m.moderator
    if mod[2] > 0 and mod[3] * m.rv_end <= u <= mod[4] * m.rv_end and r_epi_mean > 0:
        k1, k2 = _bin(mod[0]), _bin(mod[1])
        if 6.0 < r_rv[k2] - inner[k2] < 28.0:  # a short band across the narrowing apical RV
            r1, r2 = float(inner[k1]) - 1.0, float(r_rv[k2]) + 0.5
            moderator = (cx + r1 * math.cos(mod[0]), cy + r1 * math.sin(mod[0]),
                         cx + r2 * math.cos(mod[1]), cy + r2 * math.sin(mod[1]), float(mod[2]))
    # Epicardial / pericardial fat: patchy, thicker on the RV, in the grooves and in the AV groove at the base.
    groove = bump_profile(np.array([m.rv_angle + 1.2, m.rv_angle - 1.0]), np.array([0.35, 0.35]),
                          np.array([m.fat_groove, m.fat_groove * 0.8]))
    av = m.fat_av * math.exp(-max(s, 0.0) / 12.0)
    fat = m.fat_patch * (m.fat_lv + m.fat_rv * m.rv_profile + av) + groove * (1.0 - 0.5 * mix)
    fat = np.clip(fat, 0.0, 18.0).astype(np.float32)
    r_fat = np.where(r_wall > 0, r_wall + fat, zero).astype(np.float32)
    lvot, vessels = _basal_structures(m, s, c, (cx, cy), r_mean, r_epi_mean > 0)
    return HeartShape(
        s=s, fat_av=m.fat_av, u=u, c=c, r_blood=r_blood, blood_slope=_periodic_slope(r_blood),
        r_endo=endo.astype(np.float32), r_fringe=r_fringe,
        r_epi=r_epi, r_rv_blood=r_rv_blood, r_rv=r_rv, rv_labelled=rv_labelled, r_wall=r_wall, r_fat=r_fat,
        papillary=tuple(papillary), stalks=tuple(stalks), moderator=moderator, lvot=lvot, vessels=tuple(vessels),
    )


def heart_reach(model: HeartModel, z: float | None = None, thickness: float = 0.0) -> float:
    """Radius (mm) about the LV centre that holds every heart structure of the slice at ``z`` (of ``thickness``) in
    every phase; the atria and great vessels count only for slices that can reach above the base (all for None)."""
    m = model
    rv = (m.radius + m.thickness) * (1.0 + m.rv_depth * 1.15) + m.rv_wall
    root = (m.radius + m.thickness) * m.lvot[3] + m.lvot[1]
    reach = max(rv, root)
    if z is None or z - thickness / 2 - m.descent < 6.0:
        reach = max(reach, root + 2.0 * max(m.la[2], m.la[3], m.ra[2]) + 12.0)
    return reach + 14.0


@dataclass(frozen=True)
class SlicePolar:
    """Polar coordinates of a pixel box about the LV centre of one slice (fixed over the cardiac cycle)."""

    grid: Grid  # canonical coordinates of the box pixels
    rho: np.ndarray  # (h, w) distance to the LV centre, mm
    index: np.ndarray  # (h, w) angle bins

    @property
    def x(self) -> np.ndarray:
        return self.grid.x

    @property
    def y(self) -> np.ndarray:
        return self.grid.y


def slice_polar(grid: Grid, centre: tuple[float, float]) -> SlicePolar:
    """Polar frame of a (box) grid about ``centre``."""
    dx, dy = grid.x - np.float32(centre[0]), grid.y - np.float32(centre[1])
    return SlicePolar(grid=grid, rho=np.hypot(dx, dy), index=angle_index(dx, dy))


@dataclass(frozen=True)
class HeartMasks:
    """Pixel-centre masks ``(h, w)`` bool of one cross-section (for labels and anatomy checks)."""

    lv: np.ndarray  # LV label (cavity incl. papillary muscles and trabeculae, LVOT closed)
    myo: np.ndarray
    rv: np.ndarray
    blood: np.ndarray  # LV blood pool proper (outside fingers and papillary muscles)
    papillary: np.ndarray
    trabecular: np.ndarray  # inside the compact wall but not blood and not papillary


def _gather(profile: np.ndarray, polar: SlicePolar) -> np.ndarray:
    return profile[polar.index]


def _inside(polar: SlicePolar, centre: tuple[float, float], reach: float, distance) -> tuple[tuple[slice, slice],
                                                                                           np.ndarray] | None:
    """``distance(x, y) < 0`` on the window of the box within ``reach`` mm of ``centre`` (None off the box)."""
    box = polar.grid.window(centre[0], centre[1], reach)
    if box is None:
        return None
    return box, distance(polar.x[box], polar.y[box]) < 0


def heart_masks(shape: HeartShape, polar: SlicePolar) -> HeartMasks:
    """Hard masks at the pixel centres (the label map is built from them)."""
    rho = polar.rho
    endo = rho < _gather(shape.r_endo, polar)
    epi = rho < _gather(shape.r_epi, polar)
    pap = np.zeros(rho.shape, dtype=bool)
    for e, cap in zip(shape.papillary, shape.stalks):
        reach = max(e[2], e[3], math.hypot(cap[2] - cap[0], cap[3] - cap[1]) + cap[4]) + 2.0
        hit = _inside(polar, (e[0], e[1]), reach, lambda x, y, e=e, cap=cap: np.minimum(
            ellipse_distance(x, y, e), capsule_distance(x, y, cap)))
        if hit is not None:
            pap[hit[0]] |= hit[1]
    pap &= endo
    blood = (rho < _gather(shape.r_fringe, polar)) & ~pap  # the trabecular fringe mixes blood and muscle
    lv = endo.copy()
    rv_cavity = (rho < _gather(shape.r_rv, polar)) & ~epi & _gather(shape.rv_labelled, polar)
    if shape.lvot is not None:
        lvot = capsule_distance(polar.x, polar.y, shape.lvot) < 0
        lv |= lvot & epi
        blood |= lvot & epi
        rv_cavity &= ~lvot
    myo = epi & ~lv
    for x, y, rx, ry, angle, kind, _ in shape.vessels:
        hit = _inside(polar, (x, y), max(rx, ry) + 2.0,
                      lambda px, py, e=(x, y, rx, ry, angle): ellipse_distance(px, py, e))
        if hit is None:
            continue
        box, inside = hit
        if kind == "rvot":
            rv_cavity[box] |= inside & ~epi[box]
        else:  # atria and great vessels are drawn over the ventricles: the labels yield to what is visible
            rv_cavity[box] &= ~inside
            lv[box] &= ~inside
            myo[box] &= ~inside
    return HeartMasks(lv=lv, myo=myo, rv=rv_cavity, blood=blood, papillary=pap, trabecular=endo & ~blood & ~pap)


def heart_labels(masks: HeartMasks) -> np.ndarray:
    """Label map ``(h, w)`` uint8 in the medseg convention."""
    label = np.zeros(masks.lv.shape, dtype=np.uint8)
    label[masks.rv] = RV
    label[masks.myo] = MYO
    label[masks.lv] = LV
    return label


def render_heart(
    image: np.ndarray, shape: HeartShape, polar: SlicePolar, contrast: dict[str, float], flow: np.ndarray,
    myo_texture: np.ndarray, fringe_texture: np.ndarray | None = None,
) -> None:
    """Paint one cross-section over the background signal ``image`` ``(h, w)`` in place.

    Fat is painted with a negative sign (bSSFP water and fat are out of phase at the echo time, so a voxel that
    mixes them cancels: the dark boundary line).

    Args:
        image: signed signal of the box (blood ~ 1), modified in place.
        shape: the cross-section.
        polar: the box's polar frame.
        contrast: tissue signals (see :mod:`~medseg.phantom.appearance`).
        flow: ``(h, w)`` multiplicative blood shading (about 1).
        myo_texture: ``(h, w)`` multiplicative myocardial texture (about 1).
        fringe_texture: ``(h, w)`` zero-mean, unit-variance field that makes the trabecular fringe spotty (None: a
            uniform half-and-half mix).
    """
    w = polar.grid.spacing
    rho = polar.rho
    blood = contrast["blood"] * flow
    myo = contrast["myocardium"] * myo_texture
    outer = _gather(shape.r_fat, polar)
    if shape.r_fat.max() > 0:
        paint(image, occupancy(rho - outer - 1.3, w), contrast["pericardium"])
        paint(image, occupancy(rho - outer, w), -contrast["fat"] * myo_texture)
        paint(image, occupancy(rho - _gather(shape.r_wall, polar), w), myo)
    rv_occ = None
    if shape.rv_labelled.any() or (shape.r_rv > shape.r_epi + 0.5).any():
        rv_occ = occupancy(rho - _gather(shape.r_rv_blood, polar), w)
        paint(image, rv_occ, blood * np.float32(contrast["rv_blood"]))
    if shape.moderator is not None:
        box = polar.grid.window(*shape.moderator[:2], 60.0)
        if box is not None:
            d = capsule_distance(polar.x[box], polar.y[box], shape.moderator)
            paint(image[box], occupancy(d, w), myo[box])
    r_epi = _gather(shape.r_epi, polar)
    if shape.r_epi.max() > 0:
        paint(image, occupancy(rho - r_epi, w), myo)
        dist = (rho - _gather(shape.r_blood, polar)) * _gather(shape.blood_slope, polar)
        paint(image, occupancy(dist, w), blood)
        # Trabecular fringe: between r_fringe and the compact wall, blood and fine muscle strands mix.
        inner, endo_r = _gather(shape.r_fringe, polar), _gather(shape.r_endo, polar)
        depth = np.maximum(endo_r - inner, 0.5)
        ramp = np.clip((rho - inner) / depth, 0.0, 1.0) * (rho < endo_r)
        spots = 0.5 if fringe_texture is None else np.clip(0.45 + 0.45 * fringe_texture, 0.0, 1.0)
        paint(image, (ramp * spots * 0.8).astype(np.float32), myo)
        for e, cap in zip(shape.papillary, shape.stalks):
            box = polar.grid.window(e[0], e[1], max(e[2], e[3]) + 8.0)
            if box is None:
                continue
            d = np.minimum(ellipse_distance(polar.x[box], polar.y[box], e),
                           capsule_distance(polar.x[box], polar.y[box], cap))
            paint(image[box], occupancy(d, w), myo[box] * np.float32(1.05))
    if shape.lvot is not None:
        d = capsule_distance(polar.x, polar.y, shape.lvot)
        occ = occupancy(d, w)
        if rv_occ is not None:
            occ *= 1.0 - occupancy(rho - _gather(shape.r_rv, polar), w) * (rho > r_epi)
        paint(image, occ, blood * np.float32(0.97))
    values = {"aorta": 0.95, "atrium": 0.92, "pulmonary": 0.9, "rvot": contrast["rv_blood"]}
    groups: dict[int, list] = {}
    for vessel in shape.vessels:
        groups.setdefault(vessel[6], []).append(vessel)
    halo = 2.0 + 0.6 * shape.fat_av
    steps = ("halo", "wall", "blood")
    for lobes in groups.values():  # a structure's fat, walls, then blood: lobes merge without inner walls
        for step in steps:
            for x, y, rx, ry, angle, kind, _ in lobes:
                box = polar.grid.window(x, y, max(rx, ry) + halo + 4.0)
                if rx < 1.0 or box is None:
                    continue
                d = ellipse_distance(polar.x[box], polar.y[box], (x, y, rx, ry, angle))
                if step == "halo":  # AV-groove / mediastinal fat around the basal structures
                    paint(image[box], occupancy(d - halo, w), -contrast["fat"] * myo_texture[box])
                elif step == "wall":
                    paint(image[box], occupancy(d - 1.8, w), myo[box] * np.float32(0.8))
                else:
                    paint(image[box], occupancy(d, w), blood[box] * np.float32(values[kind]))
