"""Torso of the synthetic short-axis phantom: chest wall, lungs, liver and diaphragm, stomach, spleen, spine, aorta,
arms, drawn around a :class:`~medseg.phantom.heart.HeartModel`.

Canonical frame as in :mod:`~medseg.phantom.heart` (mm, origin at the LV centre, ``x`` image right =
patient left, ``y`` down = posterior). A short-axis plane is double oblique to the body, so the torso section is a
tilted ellipse that is wider than most fields of view; the anterior chest wall runs diagonally across the top, its
inner surface against the RV free wall; lungs lie at the sides and behind the heart; below the diaphragm the liver
(image left) rises against the inferior wall from mid-ventricular level on, the stomach and spleen appear at apical
levels on the image right. Signals are signed (fat negative, see
:func:`~medseg.phantom.heart.render_heart`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from medseg.phantom.heart import HeartModel, heart_shape, lv_centre
from medseg.phantom.shapes import EllipseSpec, Grid, ellipse_distance, occupancy, paint, paint_ellipse
from medseg.phantom.texture import ANGLES, angle_index, harmonic_profile


@dataclass(frozen=True)
class Torso:
    """Random geometry of the body around one heart (canonical frame, mm)."""

    centre: tuple[float, float]  # of the body outline
    radius: np.ndarray  # (N_ANGLES,) polar radius of the body outline about its centre (a tilted superellipse)
    fat: np.ndarray  # (N_ANGLES,) subcutaneous fat thickness about the body centre
    muscle: np.ndarray  # (N_ANGLES,) chest-wall muscle thickness
    breast: EllipseSpec | None
    ribs: tuple[EllipseSpec, ...]
    sternum: EllipseSpec
    drift: tuple[float, float]  # torso displacement per mm of slice position (relative to the heart)
    diaphragm: np.ndarray  # (6,): normal angle, dome curvature 1/mm, gap at the base mm, z of contact mm,
    #                        liver/left-abdomen split mm, diaphragm thickness mm
    liver_vessels: np.ndarray  # (N, 4): along-normal depth, tangential offset, radius, z phase
    stomach: EllipseSpec
    stomach_start: float  # z (mm below the ED base) from which the stomach is cut
    gas: float  # fraction of the stomach (anterior part) filled with gas
    spleen: EllipseSpec
    spleen_start: float
    vertebra: EllipseSpec
    canal: EllipseSpec
    paraspinal: tuple[EllipseSpec, EllipseSpec]
    aorta: EllipseSpec
    oesophagus: EllipseSpec
    mediastinal_fat: tuple[EllipseSpec, ...]
    fat_pads: tuple[tuple[float, float, float, float], ...]  # paracardiac: angle about the LV, semi-axes, tilt
    ivc: tuple[float, float, float, float]  # inferior vena cava in the liver: angle, depth below the dome, radii
    lung_vessels: np.ndarray  # (N, 5): x, y, radius, drift x, drift y (per mm z)
    arms: tuple[tuple[EllipseSpec, float, float], ...]  # outline, fat thickness, humerus radius


def _rotate(x: float, y: float, angle: float) -> tuple[float, float]:
    c, s = math.cos(angle), math.sin(angle)
    return c * x - s * y, s * x + c * y


def _edge(centre: tuple[float, float], radius: np.ndarray, side: str, at: float) -> tuple[int, float]:
    """Angle bin and coordinate of the body outline on one side: ``"top"``/``"bottom"`` at abscissa ``at`` (returns
    the outline's y there), ``"right"`` at ordinate ``at`` (returns its x)."""
    x = centre[0] + radius * np.cos(ANGLES)
    y = centre[1] + radius * np.sin(ANGLES)
    if side == "right":
        mask, miss = np.cos(ANGLES) > 0, np.abs(y - at)
    else:
        mask, miss = (np.sin(ANGLES) < 0) if side == "top" else (np.sin(ANGLES) > 0), np.abs(x - at)
    k = int(np.argmin(np.where(mask, miss, np.inf)))
    return k, float(x[k] if side == "right" else y[k])


def _heart_outline(heart: HeartModel, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Outer heart outline (incl. epicardial fat) at ED: canonical ``x, y`` ``(N_ANGLES,)``."""
    shape = heart_shape(heart, z, 0.0)
    cx, cy = lv_centre(heart, z)
    r = shape.r_fat
    return cx + r * np.cos(ANGLES), cy + r * np.sin(ANGLES)


def sample_torso(rng: np.random.Generator, heart: HeartModel, body_scale: float = 1.0, arms: bool = True,
                 adiposity: float = 1.0) -> Torso:
    """Draw the body around ``heart``.

    Args:
        rng: random generator.
        heart: the subject's heart (the chest wall and diaphragm are placed against it).
        body_scale: population scale of the body size.
        arms: whether the arms lie beside the torso (they may fall outside the field of view and wrap around).
        adiposity: the subject's fat factor (1 typical): subcutaneous, mediastinal and paracardiac fat.
    """
    u = rng.uniform
    mid = 0.35 * heart.length
    hx, hy = _heart_outline(heart, mid)
    top = int(np.argmin(hy))
    angle = u(0.05, 0.35)  # tilt: the chest wall runs from upper left to lower right
    a_body, b_body = u(165.0, 215.0) * body_scale, u(115.0, 145.0) * body_scale
    fat_level = u(8.0, 28.0) * body_scale * adiposity
    fat = np.clip(fat_level * (1.0 + harmonic_profile(rng, (1, 2, 3), u(0.2, 0.45))), 3.0, None).astype(np.float32)
    # Chest-wall muscle: pectoral anteriorly, thin laterally, thick paraspinal muscles behind.
    rel = np.sin(ANGLES - np.float32(angle))
    muscle = (u(14.0, 22.0) + u(4.0, 12.0) * np.clip(-rel, 0.0, 1.0) ** 2 + u(25.0, 45.0) * np.clip(rel, 0.0, 1.0) ** 4
              + harmonic_profile(rng, (2, 3, 4), 2.0)).astype(np.float32)
    # A torso section is a rounded rectangle rather than an ellipse: a tilted superellipse, irregular, flatter behind.
    power = u(2.2, 3.0)
    c, s_ = np.abs(np.cos(ANGLES - angle)), np.abs(np.sin(ANGLES - angle))
    shape = 1.0 + harmonic_profile(rng, (2, 3, 4, 5), u(0.03, 0.06)) - u(0.04, 0.1) * np.clip(rel, 0.0, None) ** 3
    gap_ant, gap_lat, behind = u(0.0, 5.0), u(10.0, 40.0), u(90.0, 130.0)
    for _ in range(8):  # deepen the body until its back lies ``behind`` mm below the heart
        radius = (((c / a_body) ** power + (s_ / b_body) ** power) ** (-1.0 / power) * shape).astype(np.float32)
        bx, by = _place_body(radius, hx, hy, top, fat, muscle, gap_ant, gap_lat)
        if _edge((bx, by), radius, "bottom", float(np.mean(hx)))[1] >= float(np.max(hy)) + behind:
            break
        b_body *= 1.08
    ant = _edge((bx, by), radius, "top", float(hx[top]))[0]
    breast = None
    if rng.random() < 0.4:  # female: the left breast over the anterior-lateral chest wall
        bxa = float(hx[top]) + u(20.0, 70.0)
        bya = _edge((bx, by), radius, "top", bxa)[1]
        r_b = u(30.0, 60.0)
        breast = (bxa, bya - r_b * 0.25, r_b * u(1.1, 1.6), r_b * u(0.5, 0.8), angle + u(-0.2, 0.2))
    # Ribs along the inner chest wall, cut obliquely; the sternum above the RV.
    ribs = []
    n_ribs = int(rng.integers(7, 12))
    for theta in np.sort(rng.uniform(-math.pi, math.pi, n_ribs)):
        k = int(angle_index(np.float32(math.cos(theta)), np.float32(math.sin(theta))))
        depth = float(fat[k] + 0.55 * muscle[k])
        px, py = _boundary_point((bx, by), radius, theta, depth)
        ribs.append((px, py, u(6.0, 11.0), u(3.5, 5.5), theta + math.pi / 2 + u(-0.3, 0.3)))
    sx, sy = _boundary_point((bx, by), radius, -math.pi / 2 + angle - u(0.1, 0.35),
                             float(fat[ant]) + 0.5 * float(muscle[ant]))
    sternum = (sx, sy, u(10.0, 16.0), u(4.0, 6.0), angle)
    # Spine and aorta behind the heart, near the posterior body wall.
    back_x = bx + u(-25.0, 15.0)
    back_y = _edge((bx, by), radius, "bottom", back_x)[1]
    vr = u(14.0, 19.0)
    vy = max(back_y - u(45.0, 62.0) * body_scale, float(np.max(hy)) + vr + u(15.0, 30.0))
    vertebra = (back_x, vy, vr * u(1.0, 1.2), vr, angle * 0.5)
    canal = (back_x + 0.2 * vr, vy + vr + u(7.0, 10.0), u(6.0, 8.0), u(5.0, 7.0), 0.0)
    paraspinal = tuple(
        (back_x + side * u(22.0, 32.0), vy + vr + u(12.0, 20.0), u(18.0, 26.0), u(14.0, 20.0), side * u(0.1, 0.4))
        for side in (-1.0, 1.0)
    )
    ar = u(10.0, 13.5)
    aorta = (back_x + u(18.0, 32.0), vy - vr - ar - u(0.0, 6.0), ar, ar * u(0.9, 1.0), 0.0)
    oesophagus = (back_x + u(-4.0, 10.0), vy - vr - u(14.0, 22.0), u(6.0, 9.0), u(4.0, 6.0), u(-0.5, 0.5))
    # Diaphragm / liver below the inferior wall; they meet it from z_contact on.
    n_angle = math.pi / 2 + u(0.1, 0.6)  # the image left of a short-axis slice is more inferior
    # The heart rests on the diaphragm: the dome meets the inferior wall from the base or upper third on.
    diaphragm = np.array([n_angle, 1.0 / u(250.0, 500.0), u(0.0, 6.0), u(0.0, 0.2) * heart.length + 1.0,
                          u(-10.0, 25.0), u(3.0, 5.5)])
    n_lv = int(rng.integers(20, 45))
    liver_vessels = np.stack([rng.uniform(10.0, 90.0, n_lv), rng.uniform(-80.0, 20.0, n_lv),
                              rng.uniform(1.5, 6.0, n_lv), rng.uniform(0.0, 2 * math.pi, n_lv)], axis=1)
    st_r = u(28.0, 45.0)
    stomach = (u(30.0, 70.0), u(45.0, 80.0), st_r * u(1.0, 1.4), st_r * u(0.7, 1.0), u(-0.6, 0.6))
    spleen = (u(70.0, 110.0), u(60.0, 100.0), u(25.0, 40.0), u(15.0, 25.0), u(-1.2, -0.4))
    # Anterior mediastinal fat between the RV and the chest wall; paracardiac fat pads in the cardiophrenic angles
    # (where the heart meets the diaphragm), bright in bSSFP; posterior mediastinal fat around the aorta and
    # oesophagus behind the heart.
    fat_bodies = min(adiposity, 1.5)  # mediastinal fat grows less than the subcutaneous layer
    mediastinal = [(float(hx[top]) + u(-10.0, 20.0), float(hy[top]) + u(0.0, 6.0), u(15.0, 35.0) * fat_bodies,
                    u(3.0, 8.0) * fat_bodies, angle)]
    pads = []
    for side in (-1.0, 1.0):
        if rng.random() < 0.8:
            pads.append((n_angle + side * u(0.6, 1.2), u(10.0, 24.0) * fat_bodies, u(5.0, 11.0) * fat_bodies,
                         u(-0.3, 0.3)))
    mediastinal.append((0.5 * (back_x + float(np.mean(hx))) + u(-10.0, 10.0), 0.5 * (vy + float(np.max(hy))),
                        u(20.0, 40.0) * fat_bodies**0.5, u(10.0, 22.0) * fat_bodies**0.5, u(-0.5, 0.5)))
    n_vessels = int(rng.integers(80, 160))
    lung_vessels = np.stack([rng.uniform(-160.0, 160.0, n_vessels), rng.uniform(-90.0, 110.0, n_vessels),
                             rng.uniform(1.0, 3.5, n_vessels), rng.normal(0.0, 0.25, n_vessels),
                             rng.normal(0.0, 0.25, n_vessels)], axis=1)
    arm_list = []
    if arms:
        for side in (-1.0, 1.0):
            r_arm = u(38.0, 55.0) * body_scale
            ox, oy = _rotate(side * (a_body + r_arm + u(5.0, 40.0)), u(-30.0, 40.0), angle)
            arm_list.append(((bx + ox, by + oy, r_arm, r_arm * u(0.8, 1.0), angle + u(-0.5, 0.5)),
                             u(5.0, 15.0), u(9.0, 13.0)))
    return Torso(
        centre=(bx, by), radius=radius, fat=fat, muscle=muscle, breast=breast, ribs=tuple(ribs), sternum=sternum,
        drift=(float(rng.normal(0.0, 0.12)), float(u(-0.3, -0.05))),
        diaphragm=diaphragm, liver_vessels=liver_vessels, stomach=stomach,
        stomach_start=u(0.3, 0.7) * heart.length, gas=u(0.0, 0.35), spleen=spleen,
        spleen_start=u(0.5, 0.9) * heart.length, vertebra=vertebra, canal=canal, paraspinal=paraspinal,
        aorta=aorta, oesophagus=oesophagus, mediastinal_fat=tuple(mediastinal), fat_pads=tuple(pads),
        ivc=(n_angle + u(0.15, 0.5), u(6.0, 16.0), u(9.0, 13.0), u(6.5, 10.0)),
        lung_vessels=lung_vessels,
        arms=tuple(arm_list),
    )


def _place_body(radius: np.ndarray, hx: np.ndarray, hy: np.ndarray, top: int, fat: np.ndarray, muscle: np.ndarray,
                gap_ant: float, gap_lat: float) -> tuple[float, float]:
    """Centre of the body outline such that its inner anterior chest wall lies ``gap_ant`` mm above the heart top
    (point ``top`` of the outline ``hx, hy``) and its inner left lateral wall ``gap_lat`` mm beyond the heart."""
    bx, by = 0.0, 0.0
    for _ in range(3):  # the two placements interact through the tilt; a few rounds converge
        k, right = _edge((bx, by), radius, "right", 0.0)
        bx += float(np.max(hx)) + gap_lat + float(fat[k] + muscle[k]) - right
        ant, top_y = _edge((bx, by), radius, "top", float(hx[top]))
        by += float(hy[top]) - gap_ant - float(fat[ant] + muscle[ant]) - top_y
    return bx, by


def _boundary_point(centre: tuple[float, float], radius: np.ndarray, theta: float, depth: float
                    ) -> tuple[float, float]:
    """Point ``depth`` mm inside the body outline in direction ``theta`` from its centre."""
    k = int(angle_index(np.float32(math.cos(theta)), np.float32(math.sin(theta))))
    r = float(radius[k]) - depth
    return centre[0] + r * math.cos(theta), centre[1] + r * math.sin(theta)


def _shift(e: EllipseSpec, dx: float, dy: float) -> EllipseSpec:
    return (e[0] + dx, e[1] + dy, e[2], e[3], e[4])


def render_torso(
    torso: Torso, heart: HeartModel, grid: Grid, z: float, contrast: dict[str, float], texture: np.ndarray,
    thickness: float,
) -> np.ndarray:
    """Signed signal of everything but the heart for the slice ``z`` mm below the ED base, ``(H, W)`` float32.

    Args:
        torso, heart: the subject.
        grid: canonical coordinates of the (possibly phase-extended) pixel grid.
        z: slice position.
        contrast: tissue signals (blood 1).
        texture: ``(2, H, W)`` multi-scale random fields of this slice.
        thickness: slice thickness mm (through-plane partial volume of the fast-moving diaphragm).
    """
    t = torso
    w = grid.spacing
    ox, oy = t.drift[0] * (z - 0.4 * heart.length), t.drift[1] * (z - 0.4 * heart.length)
    x, y = grid.x - np.float32(ox), grid.y - np.float32(oy)  # torso-frame coordinates of this slice
    tex0, tex1 = texture[0], texture[1]
    img = np.zeros(grid.shape, dtype=np.float32)
    bx, by = t.centre
    dx_b, dy_b = x - np.float32(bx), y - np.float32(by)
    k = angle_index(dx_b, dy_b)
    d_body = np.hypot(dx_b, dy_b) - t.radius[k]  # radial distance to the outline
    fat_t, muscle_t = t.fat[k], t.muscle[k]
    septa = np.exp(-(tex1 / np.float32(0.12)) ** 2)  # zero crossings of a random field: a network of thin lines
    # Skin (dermis, ~2 mm of intermediate signal), then subcutaneous fat with fibrous septa, then muscle. The
    # double-oblique plane cuts the body wall obliquely, so its layers get a through-plane partial-volume ramp.
    w_wall = math.hypot(w, 0.35 * thickness)
    paint(img, occupancy(d_body, w_wall), contrast["muscle"] * 1.4)
    paint(img, occupancy(d_body + 2.0, w_wall), -contrast["fat"] * (1.0 + 0.3 * tex0 - 0.4 * septa))
    paint(img, occupancy(d_body + fat_t, w_wall), contrast["muscle"] * (1.0 + 0.25 * tex1 + 0.15 * tex0))
    cavity = occupancy(d_body + fat_t + muscle_t, w_wall)
    paint(img, cavity, contrast["lung"] * (1.0 + 0.35 * tex0))
    lung = cavity.copy()
    sub = Grid(x, y, grid.spacing, (grid.origin[0] - ox, grid.origin[1] - oy), grid.row_step, grid.col_step)
    if t.breast is not None:
        box = sub.window(t.breast[0], t.breast[1], max(t.breast[2], t.breast[3]) + 4)
        if box is not None:
            gland = np.clip(0.2 * tex1[box] + 0.12, 0.0, 1.0)
            value = -contrast["fat"] * (1.0 - gland) + contrast["gland"] * gland
            occ = occupancy(ellipse_distance(x[box], y[box], t.breast), w) * (d_body[box] > -3.0)
            paint(img[box], occ, value)
    for rib in t.ribs:
        paint_ellipse(img, sub, rib, contrast["cortex"], grow=1.5)
        paint_ellipse(img, sub, rib, contrast["marrow"] * 0.6 * (1.0 + 0.1 * tex1))
    paint_ellipse(img, sub, t.sternum, contrast["cortex"], grow=1.2)
    paint_ellipse(img, sub, t.sternum, contrast["marrow"])
    # Below the diaphragm: liver on the image left, abdominal fat / bowel on the right; a dome against the heart.
    n_angle, curv, gap0, z_contact, split, dia_t = t.diaphragm
    nx, ny = math.cos(n_angle), math.sin(n_angle)
    cx, cy = lv_centre(heart, z)
    shape = heart_shape(heart, min(z, heart.length + heart.apex_thickness + 40.0), 0.0)
    k_n = int(angle_index(np.float32(nx), np.float32(ny)))
    heart_r = float(shape.r_fat[k_n]) if shape.r_fat.max() > 0 else 0.0
    gap = gap0 * min(max(1.0 - z / z_contact, 0.0), 1.0) + 1.0
    offset = max(heart_r + dia_t + gap, 12.0)
    dx, dy = grid.x - np.float32(cx), grid.y - np.float32(cy)
    along = np.float32(nx) * dx + np.float32(ny) * dy
    across = np.float32(-ny) * dx + np.float32(nx) * dy
    d_liver = np.float32(offset) + np.float32(curv) * across * across - along
    # The dome moves through the slab: widen the ramp by the through-plane displacement.
    slope = gap0 / z_contact if z < z_contact else 0.3
    w_dia = math.sqrt(w * w + (thickness * slope) ** 2)
    abdomen = occupancy(d_liver - np.float32(dia_t), w_dia) * cavity
    paint(img, abdomen, contrast["muscle"] * (1.0 + 0.05 * tex1))
    below = occupancy(d_liver, w_dia) * cavity
    liver_side = occupancy(np.float32(split - 0.3 * z) - across, 8.0)
    # Left abdomen: bowel with a few fat islands (their fat–water boundaries come out dark).
    fat_islands = np.clip(2.0 * tex1 - 3.0, 0.0, 1.0)
    paint(img, below * (1.0 - liver_side), contrast["bowel"] * (1.0 + 0.12 * tex0) * (1.0 - fat_islands)
          - contrast["fat"] * 0.9 * fat_islands)
    liver = below * liver_side
    paint(img, liver, contrast["liver"] * (1.0 + 0.3 * tex0 + 0.12 * tex1))
    lung *= 1.0 - abdomen
    for depth, lateral, radius, phase in t.liver_vessels:
        px = cx + nx * (offset + depth) - ny * lateral
        py = cy + ny * (offset + depth) + nx * lateral
        r = radius * (0.6 + 0.4 * math.cos(phase + z / 12.0))
        paint_ellipse(img, grid, (px, py, r, r * 0.8, phase), contrast["blood"] * 0.85, clip=liver)
    if z < 0.6 * heart.length:  # the IVC climbs through the liver to the right atrium
        ia, depth, ra_, rb_ = t.ivc
        k_i = int(angle_index(np.float32(math.cos(ia)), np.float32(math.sin(ia))))
        r_i = (float(shape.r_fat[k_i]) if shape.r_fat.max() > 0 else heart_r) + dia_t + gap + depth + rb_
        ivc = (cx + r_i * math.cos(ia), cy + r_i * math.sin(ia), ra_, rb_, ia + math.pi / 2)
        paint_ellipse(img, grid, ivc, contrast["blood"] * 0.85 * (1.0 + 0.08 * tex1), clip=liver)
    if z > t.stomach_start:
        grow = min(1.0, (z - t.stomach_start) / 20.0)
        st = (cx + t.stomach[0], cy + t.stomach[1], t.stomach[2] * grow, t.stomach[3] * grow, t.stomach[4])
        paint_ellipse(img, grid, st, contrast["muscle"] * 1.2, grow=3.0, clip=below)
        box = grid.window(st[0], st[1], max(st[2], st[3]) + 2)
        if box is not None and st[2] > 2:
            occ = occupancy(ellipse_distance(grid.x[box], grid.y[box], st), w) * below[box]
            # Gas rises anteriorly (up), food and fluid below.
            level = grid.y[box] - np.float32(st[1] - st[3] * (1.0 - 2.0 * t.gas))
            content = np.where(level < 0, np.float32(contrast["air"]),
                               contrast["stomach"] * (1.0 - 0.45 * np.clip(tex1[box] + 0.3, 0.0, 1.0)))
            paint(img[box], occ, content)
    if z > t.spleen_start:
        grow = min(1.0, (z - t.spleen_start) / 25.0)
        sp = (cx + t.spleen[0], cy + t.spleen[1], t.spleen[2] * grow, t.spleen[3] * grow, t.spleen[4])
        paint_ellipse(img, grid, sp, contrast["spleen"] * (1.0 + 0.06 * tex0), clip=cavity)
    # Posterior structures.
    for e in t.paraspinal:
        paint_ellipse(img, sub, e, contrast["muscle"] * (1.0 + 0.08 * tex1))
    paint_ellipse(img, sub, t.vertebra, contrast["cortex"], grow=2.0)
    paint_ellipse(img, sub, t.vertebra, contrast["marrow"] * (1.0 + 0.12 * tex0))
    paint_ellipse(img, sub, t.canal, contrast["csf"])
    paint_ellipse(img, sub, (t.canal[0], t.canal[1], t.canal[2] * 0.5, t.canal[3] * 0.55, 0.0), contrast["cord"])
    for e in t.mediastinal_fat:
        _paint_fat_body(img, sub, e, contrast["fat"], texture, septa, cavity)
    if shape.r_fat.max() > 0:  # paracardiac fat pads against this slice's heart outline, flattened along it
        for angle, a_pad, b_pad, tilt in t.fat_pads:
            k_pad = int(angle_index(np.float32(math.cos(angle)), np.float32(math.sin(angle))))
            r_pad = float(shape.r_fat[k_pad]) + 0.5 * b_pad
            pad = (cx + r_pad * math.cos(angle), cy + r_pad * math.sin(angle), a_pad, b_pad,
                   angle + math.pi / 2 + tilt)
            _paint_fat_body(img, grid, pad, contrast["fat"], texture, septa, cavity)
    paint_ellipse(img, sub, t.aorta, contrast["muscle"] * 0.7, grow=1.8)
    paint_ellipse(img, sub, t.aorta, contrast["blood"] * contrast["vessel"] * (1.0 + 0.06 * tex1))
    lung *= (ellipse_distance(x, y, t.aorta) > 2.0)
    if z < 0.45 * heart.length:
        paint_ellipse(img, sub, t.oesophagus, contrast["muscle"] * 1.3)
    for vx, vy, r, ddx, ddy in t.lung_vessels:
        px, py = bx + vx + ddx * z, by + vy + ddy * z
        paint_ellipse(img, sub, (px, py, r, r * 0.85, 0.0), contrast["blood"] * 0.7, clip=lung)
    for outline, fat_mm, bone in t.arms:
        paint_ellipse(img, sub, outline, -contrast["fat"])
        inner = (outline[0], outline[1], outline[2] - fat_mm, outline[3] - fat_mm, outline[4])
        paint_ellipse(img, sub, inner, contrast["muscle"] * (1.0 + 0.08 * tex1))
        humerus = (outline[0] + 0.2 * outline[2], outline[1], bone, bone, 0.0)
        paint_ellipse(img, sub, humerus, contrast["cortex"], grow=2.5)
        paint_ellipse(img, sub, humerus, -contrast["fat"] * 0.7)
    return img


def _paint_fat_body(img: np.ndarray, grid: Grid, e: EllipseSpec, fat: float, texture: np.ndarray, septa: np.ndarray,
                    clip: np.ndarray) -> None:
    """A mediastinal or paracardiac fat body: an ellipse whose outline the random field ``texture[1]`` displaces by
    about ±3 mm (lobules), with a 2.5 mm partial-volume edge, ±20 % texture and darker fibrous septa, as real fat
    pads look rather than as uniform bright blobs."""
    box = grid.window(e[0], e[1], max(e[2], e[3]) + 8.0 + 2 * grid.spacing)
    if box is None:
        return
    lobes = np.float32(3.0) * texture[1][box]
    occ = occupancy(ellipse_distance(grid.x[box], grid.y[box], e) + lobes, max(2.5, grid.spacing)) * clip[box]
    paint(img[box], occ, -fat * (1.0 + 0.2 * texture[0][box] - 0.35 * septa[box]))


def torso_mobility(torso: Torso, heart: HeartModel, grid: Grid, z: float, thickness: float) -> np.ndarray:
    """Where the surroundings of the slice at ``z`` may follow the heart through the cycle, ``(H, W)`` float32 in
    [0, 1]: 1 inside the thoracic cavity (mediastinum, lung, diaphragm, liver), 0 in the rigid or distant parts (the
    body wall, ribs, sternum, spine with its muscles, the descending aorta, each with a 6 mm margin), smoothed over
    about 3 mm so that the tissue in between is stretched rather than torn."""
    t = torso
    ox, oy = t.drift[0] * (z - 0.4 * heart.length), t.drift[1] * (z - 0.4 * heart.length)
    x, y = grid.x - np.float32(ox), grid.y - np.float32(oy)
    dx_b, dy_b = x - np.float32(t.centre[0]), y - np.float32(t.centre[1])
    k = angle_index(dx_b, dy_b)
    d_body = np.hypot(dx_b, dy_b) - t.radius[k]
    w_wall = math.hypot(grid.spacing, 0.35 * thickness)
    margin = np.float32(6.0)
    mobile = occupancy(d_body + t.fat[k] + t.muscle[k] + margin, w_wall)
    for e, wall in [(rib, 1.5) for rib in t.ribs] + [(t.sternum, 1.2), (t.vertebra, 2.0), (t.canal, 0.0),
                                                    (t.aorta, 1.8)] + [(p, 0.0) for p in t.paraspinal]:
        mobile *= 1.0 - occupancy(ellipse_distance(x, y, e) - np.float32(wall) - margin, grid.spacing)
    return ndimage.gaussian_filter(mobile, 3.0 / grid.spacing, mode="nearest").astype(np.float32)
