"""Phantom anatomy of a short-axis cardiac cine stack: geometry and tissue layout, no scanner appearance.

A subject is a :class:`Anatomy` drawn once from a random generator. Every slice of its stack is rendered from it at a
position ``u`` along the left-ventricular long axis (0 = base, 1 = apex) and a contraction state ``c`` (0 = end
diastole, 1 = end systole). All lengths are millimetres in a *patient* in-plane frame whose origin is the centre of
the body outline: ``x`` points to the patient's left (image right), ``y`` posterior (image down). Shapes are described
by approximate signed distances (negative inside), which give both the hard label masks (at pixel centres) and soft
partial-volume occupancies for the image.

Labels follow the medseg convention (1 LV cavity incl. papillary muscles, 2 LV myocardium, 3 RV cavity); the writers
in :mod:`medseg.dataset_loader.synthetic` convert them to the raw ACDC convention when needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LV, MYO, RV = 1, 2, 3

#: Pathology groups of the ACDC challenge, with (endocardial radius mm, myocardial thickness mm, ejection fraction,
#: RV crescent depth relative to the LV epicardial radius) ranges at end diastole.
GROUPS: dict[str, dict[str, tuple[float, float]]] = {
    "NOR": {"radius": (21.0, 25.0), "thickness": (7.0, 9.5), "ef": (0.55, 0.70), "rv": (0.75, 1.05)},
    "DCM": {"radius": (27.0, 32.0), "thickness": (6.0, 7.5), "ef": (0.40, 0.47), "rv": (0.60, 0.90)},
    "HCM": {"radius": (17.0, 21.0), "thickness": (10.0, 12.0), "ef": (0.60, 0.70), "rv": (0.70, 0.95)},
    "MINF": {"radius": (24.0, 29.0), "thickness": (6.0, 8.5), "ef": (0.40, 0.50), "rv": (0.65, 0.95)},
    "RV": {"radius": (20.0, 24.0), "thickness": (7.0, 9.5), "ef": (0.50, 0.65), "rv": (1.10, 1.45)},
}


@dataclass(frozen=True)
class Ellipse:
    """An ellipse (or disk) in the patient frame; ``angle`` rotates its first axis (radians)."""

    x: float
    y: float
    ax: float
    ay: float
    angle: float = 0.0

    def distance(self, px: np.ndarray, py: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """Approximate signed distance in mm (radial to the outline), negative inside; ``scale`` shrinks the axes."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx, dy = px - self.x, py - self.y
        u = c * dx + s * dy
        v = -s * dx + c * dy
        ax, ay = max(self.ax * scale, 1e-3), max(self.ay * scale, 1e-3)
        k = np.hypot(u / ax, v / ay)
        rho = np.hypot(u, v)
        return np.where(k > 1e-6, rho * (1.0 - 1.0 / np.maximum(k, 1e-6)), -min(ax, ay))


@dataclass(frozen=True)
class Anatomy:
    """All random geometry of one subject (mm, radians; see the module docstring for the frame)."""

    group: str
    scene_angle: float  # rotation of the whole scene in the image
    body_offset: tuple[float, float]  # body centre relative to the FOV centre, image frame
    body: Ellipse
    fat_thickness: float
    fat_modulation: np.ndarray  # (2, 2): relative amplitude and phase of orders 2 and 3 of the fat thickness
    muscle_thickness: float
    cavity: Ellipse  # thoracic cavity (lungs unless something else is painted)
    mediastinum: Ellipse
    liver: Ellipse
    stomach: Ellipse
    stomach_start: float  # u from which the stomach appears
    vertebra: Ellipse
    canal: Ellipse
    aorta: Ellipse
    great_vessels: tuple[Ellipse, ...]  # aortic root / pulmonary trunk, basal slices only
    lung_vessels: np.ndarray  # (N, 5): x, y, radius, drift_x, drift_y (drift per unit u)
    heart_centre: tuple[float, float]
    heart_drift: tuple[float, float]  # displacement of the LV centre from base to apex
    endo_radius: float  # ED endocardial radius at the base
    thickness: float  # ED myocardial thickness at the base
    ef: float
    rv_angle: float  # direction from the LV centre to the RV
    rv_half_width: float  # angular half-width of the RV crescent
    rv_depth: float  # ED crescent depth relative to the epicardial radius, at the base
    rv_end: float  # u at which the RV has vanished
    rv_ef: float
    rv_wall: float
    harmonics: np.ndarray  # (2, K, 2): base/apex amplitude and phase of orders 2..K+1 of the wall outline
    papillary: np.ndarray  # (2, 3): angle, radial position (fraction of endo radius), radius (mm)
    deformation: np.ndarray  # (3, 5): amplitude_x, amplitude_y, wave_x, wave_y, phase of a smooth warp
    epicardial_fat: tuple[float, float]  # max width (mm), centre angle
    u_range: tuple[float, float]  # long-axis positions of the first (basal) and last (apical) slice


def sample_anatomy(rng: np.random.Generator, fov: tuple[float, float], group: str = "NOR") -> Anatomy:
    """Draw a random subject.

    Args:
        rng: random generator (all randomness of the subject comes from it).
        fov: field of view ``(width, height)`` in mm.
        group: ACDC pathology group (a key of :data:`GROUPS`), which sets the heart size, wall thickness and function.
    """
    if group not in GROUPS:
        raise ValueError(f"group must be one of {sorted(GROUPS)}, got {group!r}")
    g = GROUPS[group]
    fov_x, fov_y = fov
    u = rng.uniform
    body_ax = fov_x * u(0.44, 0.56)
    body_ay = min(body_ax * u(0.62, 0.78), fov_y * 0.5)
    fat_t, muscle_t = u(6.0, 20.0), u(8.0, 15.0)
    cav_ax = body_ax - fat_t - muscle_t
    cav_ay = body_ay - fat_t - muscle_t - 10.0
    cavity = Ellipse(0.0, -10.0, cav_ax, cav_ay)
    radius, thickness = u(*g["radius"]), u(*g["thickness"])
    hx, hy = cav_ax * u(0.08, 0.22), -10.0 - cav_ay * u(0.0, 0.15)
    # Spine behind the heart, the descending aorta to its left-anterior side.
    vr = u(13.0, 17.0)
    vx, vy = u(-8.0, 8.0), cavity.y + cav_ay - vr * 0.6
    vertebra = Ellipse(vx, vy, vr * u(1.0, 1.2), vr)
    canal = Ellipse(vx, vy + vr + u(7.0, 10.0), u(5.0, 7.0), u(5.0, 7.0))
    ar = u(9.0, 12.0)
    aorta = Ellipse(vx + u(18.0, 28.0), vy - vr - u(2.0, 8.0), ar, ar)
    mediastinum = Ellipse(
        (hx + vx) / 2, (hy + vy) / 2, u(28.0, 40.0), (vy - hy) / 2 + u(12.0, 22.0), u(-0.3, 0.3)
    )
    liver = Ellipse(
        -cav_ax * u(0.30, 0.50), cavity.y + cav_ay * u(0.25, 0.45), cav_ax * u(0.45, 0.6), cav_ay * u(0.5, 0.7),
        u(-0.4, 0.4),
    )
    stomach = Ellipse(
        cav_ax * u(0.45, 0.65), cavity.y + cav_ay * u(0.15, 0.4), u(24.0, 38.0), u(16.0, 26.0), u(-0.5, 0.5)
    )
    epi = radius + thickness
    rv_angle = math.pi + u(0.1, 0.55)
    gv_dir = [rv_angle + u(0.6, 1.0), rv_angle + u(0.15, 0.4)]
    great_vessels = tuple(
        Ellipse(hx + (epi + d) * math.cos(a), hy + (epi + d) * math.sin(a), r, r * u(0.85, 1.0))
        for a, d, r in zip(gv_dir, (u(6.0, 12.0), u(22.0, 32.0)), (u(11.0, 14.0), u(10.0, 13.0)))
    )
    n_vessels = int(rng.integers(6, 15))
    ang = rng.uniform(0, 2 * math.pi, n_vessels)
    rad = rng.uniform(0.35, 0.95, n_vessels)
    lung_vessels = np.stack(
        [cav_ax * rad * np.cos(ang), cavity.y + cav_ay * rad * np.sin(ang), rng.uniform(1.5, 4.5, n_vessels),
         rng.normal(0.0, 10.0, n_vessels), rng.normal(0.0, 10.0, n_vessels)],
        axis=1,
    )
    harmonics = np.stack([rng.uniform(0.0, 0.05, (2, 3)), rng.uniform(0.0, 2 * math.pi, (2, 3))], axis=-1)
    pap_side = np.array([1.0, -1.0])
    papillary = np.stack(
        [rv_angle + math.pi + pap_side * rng.uniform(0.8, 1.25, 2), rng.uniform(0.62, 0.75, 2),
         radius * rng.uniform(0.13, 0.2, 2)],
        axis=1,
    )
    direction = rng.uniform(0, 2 * math.pi, 3)
    wave_dir = rng.uniform(0, 2 * math.pi, 3)
    wave_k = 2 * math.pi / rng.uniform(60.0, 150.0, 3)
    amp = rng.uniform(1.0, 3.0, 3)
    deformation = np.stack(
        [amp * np.cos(direction), amp * np.sin(direction), wave_k * np.cos(wave_dir), wave_k * np.sin(wave_dir),
         rng.uniform(0, 2 * math.pi, 3)],
        axis=1,
    )
    return Anatomy(
        group=group,
        scene_angle=u(-0.7, 0.7),
        body_offset=(u(-0.05, 0.05) * fov_x, u(-0.05, 0.05) * fov_y),
        body=Ellipse(0.0, 0.0, body_ax, body_ay),
        fat_thickness=fat_t,
        fat_modulation=np.stack([rng.uniform(0.15, 0.45, 2), rng.uniform(0, 2 * math.pi, 2)], axis=1),
        muscle_thickness=muscle_t,
        cavity=cavity,
        mediastinum=mediastinum,
        liver=liver,
        stomach=stomach,
        stomach_start=u(0.35, 0.6),
        vertebra=vertebra,
        canal=canal,
        aorta=aorta,
        great_vessels=great_vessels,
        lung_vessels=lung_vessels,
        heart_centre=(hx, hy),
        heart_drift=(rng.normal(0.0, 6.0), rng.normal(0.0, 6.0)),
        endo_radius=radius,
        thickness=thickness,
        ef=u(*g["ef"]),
        rv_angle=rv_angle,
        rv_half_width=u(1.15, 1.5),
        rv_depth=u(*g["rv"]),
        rv_end=u(0.68, 0.88),
        rv_ef=u(0.35, 0.55),
        rv_wall=u(2.0, 3.5),
        harmonics=harmonics,
        papillary=papillary,
        deformation=deformation,
        epicardial_fat=(u(1.5, 6.0), u(0, 2 * math.pi)),
        u_range=(u(0.0, 0.06), u(0.84, 0.95)),
    )


@dataclass(frozen=True)
class SliceGrid:
    """Pixel centres of one slice in the patient frame (mm), each ``(H, W)``, and the pixel size."""

    px: np.ndarray
    py: np.ndarray
    spacing: float

    def crop(self, box: tuple[slice, slice]) -> "SliceGrid":
        """The sub-grid of a ``(rows, cols)`` box."""
        return SliceGrid(px=self.px[box], py=self.py[box], spacing=self.spacing)


def make_grid(anatomy: Anatomy, shape_hw: tuple[int, int], spacing: float) -> SliceGrid:
    """Patient-frame coordinates of the pixel centres of an ``(H, W)`` slice with square pixels of ``spacing`` mm."""
    h, w = shape_hw
    ys = (np.arange(h, dtype=np.float32) - (h - 1) / 2) * spacing - anatomy.body_offset[1]
    xs = (np.arange(w, dtype=np.float32) - (w - 1) / 2) * spacing - anatomy.body_offset[0]
    x, y = np.meshgrid(xs, ys)
    c, s = math.cos(anatomy.scene_angle), math.sin(anatomy.scene_angle)
    return SliceGrid(px=(c * x + s * y).astype(np.float32), py=(-s * x + c * y).astype(np.float32), spacing=spacing)


def occupancy(distance: np.ndarray, width: float) -> np.ndarray:
    """Partial-volume fraction of a shape from its signed distance, ramping over ``width`` mm at the outline."""
    return np.clip(0.5 - distance / width, 0.0, 1.0)


def _paint(image: np.ndarray, weight: np.ndarray, value: float) -> None:
    image += weight * (value - image)


def render_background(anatomy: Anatomy, grid: SliceGrid, u: float, contrast: dict[str, float]) -> np.ndarray:
    """Signal of the unlabelled surroundings (body wall, lungs, liver, stomach, spine, vessels), ``(H, W)``."""
    a, px, py, w = anatomy, grid.px, grid.py, grid.spacing
    img = np.full(px.shape, contrast["air"], dtype=np.float32)
    body = occupancy(a.body.distance(px, py), w)
    _paint(img, body, contrast["fat"])
    inner = Ellipse(0.0, 0.0, a.body.ax - a.fat_thickness, a.body.ay - a.fat_thickness)
    theta = np.arctan2(py, px)
    (a2, p2), (a3, p3) = a.fat_modulation
    fat_shift = a.fat_thickness * (a2 * np.cos(2 * theta + p2) + a3 * np.cos(3 * theta + p3))
    inside_fat = occupancy(inner.distance(px, py) + fat_shift, w)
    _paint(img, inside_fat, contrast["muscle"])
    lung = occupancy(a.cavity.distance(px, py), w)
    _paint(img, lung, contrast["lung"])
    for shape, key, scale, clip in (
        (a.mediastinum, "mediastinum", 1.0, lung),
        (a.liver, "liver", 0.55 + 0.6 * u, inside_fat),
        (a.stomach, "stomach", math.sqrt(np.clip((u - a.stomach_start) / 0.3, 0.0, 1.0)), inside_fat),
    ):
        if scale <= 0:
            continue
        occ = occupancy(shape.distance(px, py, scale), w) * clip
        _paint(img, occ, contrast[key])
        lung = lung * (1.0 - occ)
    _paint(img, occupancy(a.vertebra.distance(px, py) - 2.0, w), contrast["muscle"] * 0.4)  # cortical rim
    _paint(img, occupancy(a.vertebra.distance(px, py), w), contrast["bone"])
    _paint(img, occupancy(a.canal.distance(px, py), w), contrast["csf"])
    _paint(img, occupancy(a.aorta.distance(px, py), w), contrast["blood"] * 0.95)
    if u - a.u_range[0] < 0.1:
        for vessel in a.great_vessels:
            _paint(img, occupancy(vessel.distance(px, py), w), contrast["blood"] * 0.9)
    for x, y, r, dx, dy in a.lung_vessels:
        d = np.hypot(px - (x + dx * u), py - (y + dy * u)) - r
        _paint(img, occupancy(d, w) * lung, contrast["blood"] * 0.75)
    return img


@dataclass(frozen=True)
class HeartSlice:
    """Signed distance maps (mm) of the heart in one slice, each ``(h, w)`` (the heart's bounding box)."""

    endo: np.ndarray  # LV cavity outline
    epi: np.ndarray  # LV epicardium
    papillary: np.ndarray  # union of the papillary muscles
    rv: np.ndarray  # outer outline of the RV cavity (inner boundary is the LV epicardium)
    rv_wall: np.ndarray
    fat: np.ndarray  # outer outline of the epicardial fat


@dataclass(frozen=True)
class HeartPolar:
    """Per-slice quantities that do not change over the cardiac cycle (polar frame about the LV centre)."""

    u: float
    centre: tuple[float, float]
    px: np.ndarray  # warped patient coordinates, (h, w)
    py: np.ndarray
    rho: np.ndarray
    wobble: np.ndarray  # relative radius modulation of the wall outline
    rv_profile: np.ndarray  # 0..1 angular profile of the RV crescent depth
    fat_profile: np.ndarray  # 0..1 angular profile of the epicardial fat


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + math.pi) % (2 * math.pi) - math.pi


def heart_box(anatomy: Anatomy, grid: SliceGrid, margin: float = 25.0) -> tuple[slice, slice]:
    """Row/column slices of the smallest box holding every pixel the heart can reach, over the whole stack."""
    a = anatomy
    reach = (a.endo_radius + a.thickness) * (1.0 + a.rv_depth) + a.rv_wall + a.epicardial_fat[0] + margin
    near = np.zeros(grid.px.shape, dtype=bool)
    for u in (0.0, 0.5, 1.0):
        cx = a.heart_centre[0] + a.heart_drift[0] * u
        cy = a.heart_centre[1] + a.heart_drift[1] * u
        near |= np.hypot(grid.px - cx, grid.py - cy) < reach
    if not near.any():
        return slice(0, 0), slice(0, 0)
    rows, cols = np.flatnonzero(near.any(axis=1)), np.flatnonzero(near.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def heart_polar(anatomy: Anatomy, grid: SliceGrid, u: float) -> HeartPolar:
    """Polar frame of the heart at long-axis position ``u`` (0 base, 1 apex) on ``grid`` (usually the heart box)."""
    a = anatomy
    px, py = grid.px, grid.py
    for ampx, ampy, kx, ky, phase in a.deformation:  # smooth warp of the heart region
        wave = np.sin(kx * px + ky * py + phase)
        px, py = px + ampx * wave, py + ampy * wave
    cx = a.heart_centre[0] + a.heart_drift[0] * u
    cy = a.heart_centre[1] + a.heart_drift[1] * u
    dx, dy = px - cx, py - cy
    phi = np.arctan2(dy, dx)
    amp = (1 - u) * a.harmonics[0, :, 0] + u * a.harmonics[1, :, 0]
    pha = (1 - u) * a.harmonics[0, :, 1] + u * a.harmonics[1, :, 1]
    wobble = np.ones_like(phi)
    for k in range(amp.shape[0]):
        wobble += amp[k] * np.cos((k + 2) * phi + pha[k])
    rel = _wrap(phi - a.rv_angle)
    rv_profile = np.cos(np.clip(rel / a.rv_half_width, -1.0, 1.0) * (math.pi / 2)) ** 0.6
    fat_profile = np.cos(0.5 * _wrap(phi - a.epicardial_fat[1])) ** 4
    return HeartPolar(u, (cx, cy), px, py, np.hypot(dx, dy), wobble, rv_profile, fat_profile)


def heart_geometry(anatomy: Anatomy, polar: HeartPolar, c: float) -> HeartSlice:
    """Heart shape of a slice (see :func:`heart_polar`) at contraction ``c`` (0 ED, 1 ES)."""
    a, u, rho = anatomy, polar.u, polar.rho
    cx, cy = polar.centre
    # Truncated ellipsoid: the cavity closes at u = 1, the epicardium a little beyond.
    taper = math.sqrt(max(0.0, 1.0 - u**2))
    endo_ed = a.endo_radius * taper
    epi_ed = endo_ed + a.thickness * (1.0 - 0.3 * u)
    ef = a.ef * (0.9 + 0.2 * u)  # the apex contracts a little more
    endo_r = endo_ed * math.sqrt(max(0.0, 1.0 - ef * c))
    epi_r = math.sqrt(endo_r**2 + epi_ed**2 - endo_ed**2)  # myocardial area is conserved: thicker at ES
    endo = rho - endo_r * polar.wobble
    epi = rho - epi_r * (1.0 + 0.6 * (polar.wobble - 1.0))
    # Papillary muscles: two blobs near the wall in the mid-ventricle, thicker at ES.
    pap = np.full_like(rho, 1e3)
    pap_weight = math.sin(math.pi * min(max((u - 0.15) / 0.7, 0.0), 1.0)) ** 0.5
    if pap_weight > 0 and endo_r > 0:
        for angle, position, size in a.papillary:
            r = size * pap_weight * (1.0 - 0.3 * c)  # the cavity shrinks around them at ES
            bx = cx + position * endo_r * math.cos(angle)
            by = cy + position * endo_r * math.sin(angle)
            pap = np.minimum(pap, np.hypot(polar.px - bx, polar.py - by) - r)
    # RV crescent wrapped around the septal side, depth tapering to the insertion points and toward the apex.
    rv_taper = math.sqrt(max(0.0, 1.0 - (u / a.rv_end) ** 2))
    depth = (a.rv_depth * epi_r * rv_taper * (1.0 - a.rv_ef * c)) * polar.rv_profile
    rv = np.where(depth > 0, epi - depth, 1e3)
    rv_wall = epi - depth - a.rv_wall * np.minimum(depth / 3.0, 1.0)
    fat = rv_wall - a.epicardial_fat[0] * polar.fat_profile
    return HeartSlice(endo=endo, epi=epi, papillary=pap, rv=rv, rv_wall=rv_wall, fat=fat)


def heart_labels(heart: HeartSlice) -> np.ndarray:
    """Hard label map ``(h, w)`` uint8 in the medseg convention (papillary muscles belong to the LV cavity)."""
    label = np.zeros(heart.endo.shape, dtype=np.uint8)
    label[(heart.rv < 0) & (heart.epi >= 0)] = RV
    label[heart.epi < 0] = MYO
    label[heart.endo < 0] = LV
    return label


def render_heart(image: np.ndarray, heart: HeartSlice, spacing: float, contrast: dict[str, float]) -> np.ndarray:
    """Paint the heart over a background signal ``(h, w)`` (returns a new array)."""
    img = image.copy()
    _paint(img, occupancy(heart.fat, spacing), contrast["fat"] * 0.9)
    _paint(img, occupancy(heart.rv_wall, spacing), contrast["myocardium"])
    _paint(img, occupancy(heart.rv, spacing), contrast["blood"] * 0.93)
    _paint(img, occupancy(heart.epi, spacing), contrast["myocardium"])
    endo = occupancy(heart.endo, spacing)
    _paint(img, endo, contrast["blood"])
    _paint(img, occupancy(heart.papillary, spacing) * endo, contrast["myocardium"] * 1.1)
    return img
