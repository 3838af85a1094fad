"""Convex polygons in sample coordinates (µm) and their rasterisation onto any pixel window.

Every object of the phantom (crystal, vesicle, lath, crack segment) is a convex polygon, so a
window can be rendered at any sub-pixel position exactly: a pixel belongs to a polygon when its
centre lies inside. Windows are given by the stage position of their pixel (0, 0) centre and the
pixel size, the same convention as Contract 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from skimage.draw import polygon as _fill_polygon

__all__ = [
    "Window",
    "ellipse",
    "euhedral_prism",
    "fill",
    "fill_rectangles",
    "inward_distance",
    "octagon",
    "polygon_area",
    "rectangle",
    "rotate",
]

Float = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Window:
    """A pixel grid: pixel (r, c) centre at stage (x0_um + c·px, y0_um + r·px)."""

    x0_um: float
    y0_um: float
    rows: int
    cols: int
    pixel_size_um: float = 1.0

    @property
    def bounds_um(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the pixel centres."""
        px = self.pixel_size_um
        return (
            self.x0_um,
            self.y0_um,
            self.x0_um + (self.cols - 1) * px,
            self.y0_um + (self.rows - 1) * px,
        )

    def grid_um(self) -> tuple[Float, Float]:
        """Stage x and y of every pixel centre, as two (rows, cols) arrays."""
        px = self.pixel_size_um
        ys = self.y0_um + px * np.arange(self.rows)
        xs = self.x0_um + px * np.arange(self.cols)
        return np.broadcast_to(xs, (self.rows, self.cols)), np.broadcast_to(
            ys[:, None], (self.rows, self.cols)
        )


def fill(vertices_um: Float, window: Window) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Row and column indices of the window pixels whose centres lie inside the polygon."""
    px = window.pixel_size_um
    rows = (vertices_um[:, 1] - window.y0_um) / px
    cols = (vertices_um[:, 0] - window.x0_um) / px
    rr, cc = _fill_polygon(rows, cols, shape=(window.rows, window.cols))
    return rr, cc


def fill_rectangles(
    rects: Float, window: Window
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    """Rasterise many small rotated rectangles at once; where they overlap, the later one wins.

    ``rects`` (N, 5): centre x, centre y (µm), length, width (µm), angle (rad). Returns the
    row, column and owning rectangle index of every covered window pixel (each pixel once).
    """
    px = window.pixel_size_um
    cx, cy, length, width, angle = (rects[:, i] for i in range(5))
    cos, sin = np.cos(angle), np.sin(angle)
    half_x = 0.5 * (np.abs(cos) * length + np.abs(sin) * width)
    half_y = 0.5 * (np.abs(sin) * length + np.abs(cos) * width)
    c0 = np.maximum(np.ceil((cx - half_x - window.x0_um) / px), 0).astype(np.intp)
    c1 = np.minimum(np.floor((cx + half_x - window.x0_um) / px), window.cols - 1).astype(np.intp)
    r0 = np.maximum(np.ceil((cy - half_y - window.y0_um) / px), 0).astype(np.intp)
    r1 = np.minimum(np.floor((cy + half_y - window.y0_um) / px), window.rows - 1).astype(np.intp)
    w, h = np.maximum(c1 - c0 + 1, 0), np.maximum(r1 - r0 + 1, 0)
    owner = np.repeat(np.arange(len(rects)), w * h)
    if owner.size == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty, empty
    local = np.arange(owner.size) - np.repeat(np.cumsum(w * h) - w * h, w * h)
    rr = r0[owner] + local // w[owner]
    cc = c0[owner] + local % w[owner]
    dx = window.x0_um + cc * px - cx[owner]
    dy = window.y0_um + rr * px - cy[owner]
    inside = (np.abs(dx * cos[owner] + dy * sin[owner]) <= 0.5 * length[owner]) & (
        np.abs(-dx * sin[owner] + dy * cos[owner]) <= 0.5 * width[owner]
    )
    rr, cc, owner = rr[inside], cc[inside], owner[inside]
    linear = rr * window.cols + cc
    _, last = np.unique(linear[::-1], return_index=True)  # the last rectangle drawn wins
    keep = owner.size - 1 - last
    return rr[keep], cc[keep], owner[keep]


def inward_distance(vertices_um: Float, x_um: Float, y_um: Float) -> Float:
    """Distance (µm) from points inside a convex polygon to its outline (negative outside)."""
    v = vertices_um
    edges = np.roll(v, -1, axis=0) - v
    lengths = np.hypot(edges[:, 0], edges[:, 1])
    sign = 1.0 if _signed_area(v) > 0 else -1.0
    # inward normal of each edge for a counter-clockwise (positive area) polygon is (-ey, ex)
    nx, ny = -edges[:, 1] * sign / lengths, edges[:, 0] * sign / lengths
    d = (x_um[..., None] - v[:, 0]) * nx + (y_um[..., None] - v[:, 1]) * ny
    result: Float = d.min(axis=-1)
    return result


def polygon_area(vertices_um: Float) -> float:
    """Area in µm² (shoelace formula)."""
    return abs(_signed_area(vertices_um))


def _signed_area(v: Float) -> float:
    x, y = v[:, 0], v[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def rotate(vertices: Float, angle_rad: float, centre_um: tuple[float, float]) -> Float:
    """Rotate vertices given around the origin by ``angle_rad`` and move them to ``centre_um``."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    x, y = vertices[:, 0], vertices[:, 1]
    return np.stack([c * x - s * y + centre_um[0], s * x + c * y + centre_um[1]], axis=1)


def rectangle(length: float, width: float) -> Float:
    """A rectangle centred on the origin, long axis along x."""
    a, b = length / 2, width / 2
    return np.array([[-a, -b], [a, -b], [a, b], [-a, b]], dtype=np.float64)


def euhedral_prism(length: float, width: float, tip: float) -> Float:
    """An olivine-like section: a prism with pyramidal terminations (a hexagon or an octagon).

    ``tip`` in [0, 1) is the fraction of the half-length taken by each pyramidal end; the ends
    are truncated (octagon) when ``tip`` is above 0.5 of the width.
    """
    a, b = length / 2, width / 2
    t = tip * a
    points = [[-a + t, -b], [a - t, -b], [a, -b * 0.25], [a, b * 0.25], [a - t, b], [-a + t, b]]
    points += [[-a, b * 0.25], [-a, -b * 0.25]]
    return np.array(points, dtype=np.float64)


def octagon(size: float, aspect: float) -> Float:
    """A stubby eight-sided section (augite basal sections), ``size`` across the long axis."""
    a, b = size / 2, size / 2 / aspect
    k = 0.42
    points = [[-a * k, -b], [a * k, -b], [a, -b * k], [a, b * k], [a * k, b], [-a * k, b]]
    points += [[-a, b * k], [-a, -b * k]]
    return np.array(points, dtype=np.float64)


def ellipse(rx: float, ry: float, n: int = 24, wobble: Float | None = None) -> Float:
    """An ellipse as an ``n``-gon; ``wobble`` (n,) scales the radius per vertex (≈1).

    With a wobble the polygon may be non-convex; :func:`fill` handles any simple polygon.
    """
    theta = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    scale = np.ones(n) if wobble is None else wobble
    return np.stack([rx * scale * np.cos(theta), ry * scale * np.sin(theta)], axis=1)
