"""Render one subject's short-axis cine stack: anatomy → clean signed signal (with through-plane partial volume) →
bSSFP acquisition → stored intensities, plus the label maps.

The torso is rendered once per slice and follows the heart's outline through the cycle near it
(:func:`follow_heart`); the heart, which moves, is rendered once per slice, frame and through-plane sample, inside
its bounding box only. Each image slice averages the heart over 3 positions across the slice thickness (profile
weights 0.3 / 0.4 / 0.3); labels are those of the slice centre, as annotators draw them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from medseg.phantom.anatomy import Torso, render_torso, sample_torso, torso_mobility
from medseg.phantom.appearance import Appearance, SiteStyle, sample_appearance, site_style
from medseg.phantom.heart import HeartModel, heart_labels, heart_masks, heart_reach, heart_shape
from medseg.phantom.heart import lv_centre, render_heart, sample_heart, slice_polar
from medseg.phantom.mri import Acquisition, acquire, build_scanner, sample_acquisition, saturation_limit, store
from medseg.phantom.shapes import Grid, make_grid
from medseg.phantom.texture import texture_pair

#: Through-plane samples (offsets as fractions of the slice thickness) and their slice-profile weights.
THROUGH_PLANE = ((-1.0 / 3.0, 0.3), (0.0, 0.4), (1.0 / 3.0, 0.3))
#: How the tissue around the heart follows its outline through the cycle: rigidly within ``FOLLOW_LAYER`` mm of it
#: (pericardium, paracardiac fat, the diaphragm the heart rests on and the liver surface below), then less and less
#: over a transition of at least ``FOLLOW_MM`` mm; beyond it nothing moves (spine, chest wall, distant lung).
FOLLOW_LAYER = 5.0
FOLLOW_MM = 9.0


@dataclass(frozen=True)
class SyntheticSettings:
    """Size knobs of the generator (the defaults give realistic stacks; tests shrink them).

    Attributes:
        fov_mm: range of the field-of-view width in mm; None uses each site's own range.
        spacing_scale: multiplies the in-plane pixel size of every domain (> 1 gives smaller matrices).
        n_slices: inclusive range of slices per stack.
        mnms_frames: inclusive range of cine frames in the M&Ms 4D volumes.
        acdc_frames: inclusive range of ``NbFrame`` in ACDC ``Info.cfg``.
    """

    fov_mm: tuple[float, float] | None = None
    spacing_scale: float = 1.0
    n_slices: tuple[int, int] = (6, 14)
    mnms_frames: tuple[int, int] = (8, 13)
    acdc_frames: tuple[int, int] = (20, 35)


@dataclass(frozen=True)
class Stack:
    """A synthetic cine stack: ``images``/``labels`` are ``(T, Z, H, W)`` (int16 / uint8 medseg labels)."""

    images: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]  # x, y, z in mm
    origin: tuple[float, float, float]
    direction: tuple[float, ...]  # 3×3 row-major


@dataclass(frozen=True)
class Subject:
    """Everything drawn for one subject before rendering (useful for inspection and tests)."""

    style: SiteStyle
    heart: HeartModel
    torso: Torso
    appearance: Appearance
    acquisition: Acquisition
    spacing: float  # in-plane, mm
    shape_hw: tuple[int, int]
    positions: np.ndarray  # (Z,) slice centres, mm below the ED base
    slice_spacing: float
    thickness: float
    fov_centre: tuple[float, float]  # canonical
    scene_angle: float
    wrap: int  # pixels of phase-encoding extension folded back (arm wrap-around); 0 = none


def plan_slices(heart: HeartModel, spacing: float, rng: np.random.Generator, n_range: tuple[int, int]
                ) -> tuple[np.ndarray, float]:
    """Slice centres (mm below the ED base) from a little above the base to the apex, and the slice spacing.

    The last slice usually falls in the apical cap (myocardium only, 80 %), else just beyond it or just before
    the cavity closes; the stack then extends toward the base by whole spacings until it passes the base.
    """
    r = rng.random()
    if r < 0.8:
        last = heart.length + heart.apex_thickness * rng.uniform(0.2, 0.75)
    elif r < 0.9:
        last = heart.length + heart.apex_thickness * rng.uniform(1.05, 1.3)
    else:
        last = heart.length - rng.uniform(3.0, 8.0)
    first_target = -rng.uniform(0.0, 0.6) * spacing
    n = math.ceil((last - first_target) / spacing) + 1
    if n < n_range[0]:
        n = n_range[0]
        spacing = (last - first_target) / (n - 1)
    n = min(n, n_range[1])
    return last - spacing * np.arange(n - 1, -1, -1, dtype=np.float64), float(spacing)


def sample_subject(domain: str, group: str, rng: np.random.Generator, settings: SyntheticSettings,
                   centre: int | None = None) -> Subject:
    """Draw a subject of a site: anatomy, contrast, scanner, field of view and slice plan."""
    style = site_style(domain, centre)
    appearance = sample_appearance(style, rng)
    acq = sample_acquisition(style, appearance.field_strength, rng)
    spacing = float(rng.uniform(*style.spacing)) * settings.spacing_scale
    fov_x = float(rng.uniform(*(settings.fov_mm or style.fov)))
    fov = [fov_x, fov_x]
    if rng.random() < style.p_rectangular:
        fov[acq.pe_axis] = fov_x * float(rng.uniform(0.75, 0.9))  # fewer phase-encoding lines
    fov_y, fov_x = (fov[0], fov[1]) if acq.pe_axis == 0 else (fov[1], fov[0])
    shape_hw = (max(16, round(fov_y / spacing)), max(16, round(fov_x / spacing)))
    # Adiposity: one factor for the subject's epicardial, mediastinal and subcutaneous fat (lean to obese).
    adiposity = float(np.clip(rng.lognormal(0.0, 0.75), 0.3, 3.5))
    heart = sample_heart(rng, group, float(rng.uniform(*style.heart_scale)), adiposity)
    torso = sample_torso(rng, heart, float(rng.uniform(*style.body_scale)), arms=rng.random() < style.p_arms,
                         adiposity=adiposity)
    slice_spacing = float(rng.uniform(*style.slice_spacing))
    positions, slice_spacing = plan_slices(heart, slice_spacing, rng, settings.n_slices)
    thickness = min(float(rng.uniform(*style.thickness)), slice_spacing)
    wrap = 0
    if torso.arms and rng.random() < style.p_wrap:
        wrap = round(shape_hw[acq.pe_axis] * rng.uniform(0.15, 0.35))
    fov_centre = (float(rng.normal(-15.0, 10.0)), float(rng.normal(-10.0, 10.0)))
    scene_angle = float(rng.uniform(-0.35, 0.35))
    if style.p_saturated > 0 and rng.random() < style.p_saturated:
        appearance = replace(appearance, saturation=float(rng.uniform(*style.saturation)))
    return Subject(
        style=style, heart=heart, torso=torso, appearance=appearance, acquisition=acq, spacing=spacing,
        shape_hw=shape_hw, positions=positions, slice_spacing=slice_spacing, thickness=thickness,
        fov_centre=fov_centre, scene_angle=scene_angle, wrap=wrap,
    )


def _extended_grid(subject: Subject) -> Grid:
    """The FOV grid, extended by ``wrap`` pixels on both sides along phase encoding."""
    h, w = subject.shape_hw
    if subject.acquisition.pe_axis == 0:
        h += 2 * subject.wrap
    else:
        w += 2 * subject.wrap
    return make_grid((h, w), subject.spacing, subject.fov_centre, subject.scene_angle)


def _fold(image: np.ndarray, wrap: int, axis: int) -> np.ndarray:
    """Alias the signal outside the FOV back into it (``(..., H', W')`` → ``(..., H, W)``)."""
    if wrap == 0:
        return image
    axis = image.ndim - 2 + axis
    n = image.shape[axis] - 2 * wrap
    core = np.take(image, np.arange(wrap, wrap + n), axis=axis).copy()
    low = np.take(image, np.arange(0, wrap), axis=axis)
    high = np.take(image, np.arange(wrap + n, n + 2 * wrap), axis=axis)
    index_low = [slice(None)] * image.ndim
    index_low[axis] = slice(n - wrap, n)
    core[tuple(index_low)] += low
    index_high = [slice(None)] * image.ndim
    index_high[axis] = slice(0, wrap)
    core[tuple(index_high)] += high
    return core


def render_stack(
    domain: str, group: str, contractions: Sequence[float], rng: np.random.Generator, settings: SyntheticSettings,
    centre: int | None = None,
) -> Stack:
    """Draw a subject of ``domain`` (and ``centre``) and render its stack at the given contraction states.

    Args:
        domain: ``"ACDC"`` or an M&Ms vendor letter.
        group: ACDC pathology group.
        contractions: contraction state per frame (0 ED, 1 ES).
        rng: the subject's generator.
        settings: size knobs.
        centre: the vendor's centre (vendor B has two); None for the domain's first.
    """
    subject = sample_subject(domain, group, rng, settings, centre)
    return render_subject(subject, contractions, rng)


def render_subject(subject: Subject, contractions: Sequence[float], rng: np.random.Generator) -> Stack:
    """Render a drawn subject (see :func:`render_stack`)."""
    sub = subject
    grid = _extended_grid(sub)
    contrast = sub.appearance.contrast
    heart = sub.heart
    n_t, n_z = len(contractions), len(sub.positions)
    pe = sub.acquisition.pe_axis
    shape_ext = grid.shape
    scanner = build_scanner(sub.shape_hw, sub.acquisition)
    signal = np.empty((n_t, n_z, *shape_ext), dtype=np.float32)
    labels_ext = np.zeros((n_t, n_z, *shape_ext), dtype=np.uint8)
    for k, z in enumerate(sub.positions):
        # The heart is drawn only inside its box for this slice (the atria need room on basal slices only).
        box = grid.window(*lv_centre(heart, float(z)), heart_reach(heart, float(z), sub.thickness))
        if box is None:
            raise ValueError("the heart lies outside the field of view; the FOV centre offset is too large")
        box_grid = grid.crop(box)
        texture = texture_pair(rng, shape_ext, sub.spacing, weights=(1.0, 0.6, 0.45, 0.5))
        background = render_torso(sub.torso, heart, grid, float(z), contrast, texture, sub.thickness)
        mobile = torso_mobility(sub.torso, heart, grid, float(z), sub.thickness) if len(contractions) > 1 else None
        flow_fields = texture_pair(rng, box_grid.shape, sub.spacing, scales_mm=(4.0, 8.0, 16.0),
                                   weights=(0.5, 0.5, 0.4))
        myo_texture = 1.0 + 0.08 * texture[1][box]
        fringe_texture = texture[0][box]
        polar = slice_polar(box_grid, lv_centre(heart, float(z)))
        flow_phase = float(rng.uniform(0.0, 2 * math.pi))
        for t, c in enumerate(contractions):
            surroundings = follow_heart(background, grid, heart, float(z), float(c), mobile)
            base_box = surroundings[box]
            heart_signal = np.zeros(base_box.shape, dtype=np.float32)
            for offset, weight in THROUGH_PLANE:
                zz = float(z) + offset * sub.thickness
                shape = heart_shape(heart, zz, float(c))
                basal = min(max(1.0 - shape.u / 0.3, 0.0), 1.0)
                amp = 0.12 * (1.0 + 0.3 * float(c)) * (1.0 + 0.5 * basal)
                theta = flow_phase + math.pi * float(c)
                flow = 1.0 + amp * (math.cos(theta) * flow_fields[0] + math.sin(theta) * flow_fields[1])
                part = base_box.copy()
                render_heart(part, shape, polar, contrast, flow, myo_texture, fringe_texture)
                heart_signal += np.float32(weight) * part
                if offset == 0.0:
                    labels_ext[t, k][box] = heart_labels(heart_masks(shape, polar))
            signal[t, k] = surroundings
            signal[t, k][box] = heart_signal
    images = np.empty((n_t, n_z, *sub.shape_hw), dtype=np.int16)
    app = sub.appearance
    limit = None
    for t in range(n_t):
        magnitude = acquire(_fold(signal[t], sub.wrap, pe), scanner, rng)
        if t == 0 and app.saturation is not None:  # the scaling is set once for the stack
            limit = saturation_limit(magnitude, app.gamma, app.scale, app.saturation)
        images[t] = store(magnitude, app.gamma, app.scale, limit)
    labels = _crop_wrap(labels_ext, sub.wrap, pe)
    direction = _random_rotation(rng)
    origin = rng.uniform(-200.0, 200.0, 3)
    return Stack(images, labels, (sub.spacing, sub.spacing, sub.slice_spacing), tuple(origin.tolist()),
                 tuple(direction.ravel().tolist()))


def follow_heart(background: np.ndarray, grid: Grid, heart: HeartModel, z: float, contraction: float,
                 mobile: np.ndarray | None = None) -> np.ndarray:
    """The surroundings of the slice at ``z`` at a contraction state: tissue abutting the heart follows its outer
    outline (epicardial fat) from ED, less and less with distance.

    The pericardium, the diaphragm with the liver surface below it and the paracardiac fat stay against the heart as
    it contracts, while the spine, the chest wall and the distant lung do not move. Per direction, with
    ``delta = R_ED - R_c`` (ED minus current outer radius), a pixel at distance ``d`` outside the current outline
    shows the tissue that lay ``delta * g(d)`` mm farther out at ED: ``g = 1`` within ``FOLLOW_LAYER`` mm (so that
    layer moves rigidly with the outline), then a smoothstep down to 0 over ``w = max(FOLLOW_MM, 3 |delta|)`` mm,
    wide enough for the map to stay one-to-one and to stretch the tissue at most twofold. Directions where either
    outline is absent (a slice above the base or below the apex) do not move, and ``delta`` is smoothed over ±7
    degrees; ``mobile`` (:func:`~medseg.phantom.anatomy.torso_mobility`) holds the rigid body wall,
    ribs, sternum and spine still. Returns ``background`` itself at ED.
    """
    if contraction == 0.0:
        return background
    r_ed = heart_shape(heart, z, 0.0).r_fat
    r_now = heart_shape(heart, z, float(contraction)).r_fat
    present = (r_ed > 0) & (r_now > 0)
    delta = np.where(present, r_ed - r_now, 0.0).astype(np.float32)
    # Smoothed over ±7 degrees: steps of the outline (RV insertions) would otherwise shear the tissue radially.
    delta = ndimage.uniform_filter1d(delta, 15, mode="wrap")
    if not np.any(delta):
        return background
    width = np.maximum(np.float32(FOLLOW_MM), np.float32(3.0) * np.abs(delta))
    centre = lv_centre(heart, z)
    reach = float(np.max(np.where(present, r_now, 0.0) + FOLLOW_LAYER + width)) + 2.0 * grid.spacing
    box = grid.window(*centre, reach)
    if box is None:
        return background
    polar = slice_polar(grid.crop(box), centre)
    k = polar.index
    t = np.clip((polar.rho - np.where(present, r_now, 0.0).astype(np.float32)[k] - np.float32(FOLLOW_LAYER))
                / width[k], 0.0, 1.0)
    shift = delta[k] * (1.0 - t * t * (3.0 - 2.0 * t))
    if mobile is not None:
        shift = shift * mobile[box]
    stretch = 1.0 + shift / np.maximum(polar.rho, np.float32(1e-3))  # rho_source / rho
    r0, c0 = box[0].start or 0, box[1].start or 0
    h, w = polar.rho.shape
    rows = np.arange(r0, r0 + h, dtype=np.float32)[:, None]
    cols = np.arange(c0, c0 + w, dtype=np.float32)[None, :]
    pr, pc = grid.pixel_of(*centre)
    src_r = np.float32(pr) + (rows - np.float32(pr)) * stretch
    src_c = np.float32(pc) + (cols - np.float32(pc)) * stretch
    out = background.copy()
    out[box] = ndimage.map_coordinates(background, [src_r, src_c], order=1, mode="nearest")
    return out


def _crop_wrap(labels: np.ndarray, wrap: int, axis: int) -> np.ndarray:
    if wrap == 0:
        return labels
    index = [slice(None)] * labels.ndim
    index[labels.ndim - 2 + axis] = slice(wrap, labels.shape[labels.ndim - 2 + axis] - wrap)
    return np.ascontiguousarray(labels[tuple(index)])


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return qform_safe_rotation(q)


def qform_safe_rotation(direction: np.ndarray) -> np.ndarray:
    """``direction`` (ITK, LPS), or the same axes with two of them reversed if its NIfTI qform would be a rotation
    near 180 degrees: the qform's quaternion then has ``a`` near 0, which float32 header fields store so coarsely that
    the qform and the sform disagree by a noticeable part of a voxel. Of the four choices the one with the largest
    ``a`` (at least 0.5 among the flips) is taken, so every written header reads back with one geometry."""
    ras = np.diag([-1.0, -1.0, 1.0]) @ direction
    if 1.0 + np.trace(ras) >= 4 * 0.1**2:  # a = sqrt(1 + trace) / 2 >= 0.1: well conditioned
        return direction
    flips = [np.diag(f) for f in ((1.0, -1.0, -1.0), (-1.0, 1.0, -1.0), (-1.0, -1.0, 1.0))]
    best = max(flips, key=lambda flip: np.trace(ras @ flip))
    return direction @ best
