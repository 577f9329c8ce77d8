"""Geometric primitives of the synthetic phantom: a rotated pixel grid with local windows, approximate signed
distances of ellipses and capsules (negative inside, mm), partial-volume occupancy and alpha painting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: ``(x, y, a, b, angle)``: centre, semi-axes (a along ``angle``), rotation in radians.
EllipseSpec = tuple[float, float, float, float, float]
#: ``(x0, y0, x1, y1, radius)``: a segment thickened by ``radius``.
CapsuleSpec = tuple[float, float, float, float, float]


@dataclass(frozen=True)
class Grid:
    """Canonical-frame coordinates (mm) of the pixel centres of a regular, rotated pixel grid.

    Pixel ``(r, c)`` sits at ``origin + r * row_step + c * col_step``; ``x``/``y`` hold them as ``(H, W)`` arrays.
    """

    x: np.ndarray
    y: np.ndarray
    spacing: float
    origin: tuple[float, float]
    row_step: tuple[float, float]
    col_step: tuple[float, float]

    @property
    def shape(self) -> tuple[int, int]:
        return self.x.shape

    def pixel_of(self, px: float, py: float) -> tuple[float, float]:
        """Fractional ``(row, col)`` of a canonical point."""
        dx, dy = px - self.origin[0], py - self.origin[1]
        (a, b), (c, d) = self.row_step, self.col_step  # columns of the 2×2 map (row, col) → (x, y)
        det = a * d - c * b
        return (d * dx - c * dy) / det, (-b * dx + a * dy) / det

    def window(self, px: float, py: float, reach: float) -> tuple[slice, slice] | None:
        """Rows/cols of the pixels within ``reach`` mm of a point (a square window; None if off the grid)."""
        r, c = self.pixel_of(px, py)
        n = reach / self.spacing + 1.0
        h, w = self.shape
        r0, r1 = max(math.floor(r - n), 0), min(math.ceil(r + n) + 1, h)
        c0, c1 = max(math.floor(c - n), 0), min(math.ceil(c + n) + 1, w)
        if r0 >= r1 or c0 >= c1:
            return None
        return slice(r0, r1), slice(c0, c1)

    def crop(self, box: tuple[slice, slice]) -> Grid:
        """The sub-grid of a ``(rows, cols)`` box."""
        r0, c0 = box[0].start or 0, box[1].start or 0
        ox = self.origin[0] + r0 * self.row_step[0] + c0 * self.col_step[0]
        oy = self.origin[1] + r0 * self.row_step[1] + c0 * self.col_step[1]
        return Grid(self.x[box], self.y[box], self.spacing, (ox, oy), self.row_step, self.col_step)


def make_grid(shape_hw: tuple[int, int], spacing: float, centre: tuple[float, float], angle: float) -> Grid:
    """Grid of ``(H, W)`` square pixels of ``spacing`` mm centred at canonical ``centre``, image axes rotated by
    ``angle`` (radians) relative to the canonical axes."""
    h, w = shape_hw
    ca, sa = math.cos(angle), math.sin(angle)
    col_step = (spacing * ca, spacing * sa)
    row_step = (-spacing * sa, spacing * ca)
    origin = (centre[0] - (h - 1) / 2 * row_step[0] - (w - 1) / 2 * col_step[0],
              centre[1] - (h - 1) / 2 * row_step[1] - (w - 1) / 2 * col_step[1])
    rows = np.arange(h, dtype=np.float32)[:, None]
    cols = np.arange(w, dtype=np.float32)[None, :]
    x = np.float32(origin[0]) + rows * np.float32(row_step[0]) + cols * np.float32(col_step[0])
    y = np.float32(origin[1]) + rows * np.float32(row_step[1]) + cols * np.float32(col_step[1])
    return Grid(x.astype(np.float32), y.astype(np.float32), spacing, origin, row_step, col_step)


def ellipse_distance(x: np.ndarray, y: np.ndarray, e: EllipseSpec) -> np.ndarray:
    """Approximate signed distance (mm) to an ellipse (first order: ``(k - 1) / |grad k|`` of the normalised radius
    ``k``), exact on the outline's normal directions near it."""
    ex, ey, a, b, ang = e
    a, b = max(a, 1e-3), max(b, 1e-3)
    c, s = math.cos(ang), math.sin(ang)
    dx, dy = x - np.float32(ex), y - np.float32(ey)
    p = (np.float32(c) * dx + np.float32(s) * dy) * np.float32(1.0 / a)
    q = (np.float32(-s) * dx + np.float32(c) * dy) * np.float32(1.0 / b)
    k = np.sqrt(p * p + q * q + np.float32(1e-12))  # the epsilons keep the centre pixel inside
    grad = np.sqrt(p * p * np.float32(1.0 / (a * a)) + q * q * np.float32(1.0 / (b * b))
                   + np.float32(1e-12 / max(a, b) ** 2))
    return (k - np.float32(1.0)) * k / grad


def capsule_distance(x: np.ndarray, y: np.ndarray, cap: CapsuleSpec) -> np.ndarray:
    """Signed distance (mm) to a capsule."""
    x0, y0, x1, y1, r = cap
    vx, vy = x1 - x0, y1 - y0
    inv = 1.0 / max(vx * vx + vy * vy, 1e-6)
    dx, dy = x - np.float32(x0), y - np.float32(y0)
    t = np.clip((dx * np.float32(vx) + dy * np.float32(vy)) * np.float32(inv), 0.0, 1.0)
    return np.hypot(dx - t * np.float32(vx), dy - t * np.float32(vy)) - np.float32(r)


def occupancy(distance: np.ndarray, width: float) -> np.ndarray:
    """Partial-volume fraction from a signed distance (negative inside), ramping linearly over ``width`` mm."""
    return np.clip(np.float32(0.5) - distance * np.float32(1.0 / width), 0.0, 1.0)


def paint(image: np.ndarray, weight: np.ndarray, value: np.ndarray | float) -> None:
    """Alpha-composite ``value`` over ``image`` in place with opacity ``weight``."""
    image += weight * (value - image)


def paint_ellipse(image: np.ndarray, grid: Grid, e: EllipseSpec, value: float | np.ndarray, grow: float = 0.0,
                  clip: np.ndarray | None = None) -> None:
    """Paint an ellipse (grown by ``grow`` mm) within its local window; ``value``/``clip`` may be full-grid arrays."""
    box = grid.window(e[0], e[1], max(e[2], e[3]) + grow + 2 * grid.spacing)
    if box is None:
        return
    occ = occupancy(ellipse_distance(grid.x[box], grid.y[box], e) - np.float32(grow), grid.spacing)
    if clip is not None:
        occ *= clip[box]
    paint(image[box], occ, value[box] if isinstance(value, np.ndarray) else value)
