"""Microprobe (EPMA) profiles across zoned olivine phenocrysts.

Each profile runs rim to rim through the crystal's centre in 5 µm steps, skipping points within
2 µm of anything that is not olivine (an operator avoids cracks, holes and inclusions). The
measured mg# is the true mg# averaged over the probe's ~1 µm analytical volume plus microprobe
noise (σ = 0.003); the coordinates are the true stage positions moved by one fixed offset of a
few µm per session (two instruments) and rounded to 0.1 µm, as a user transfers them.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
from scipy.ndimage import distance_transform_edt, uniform_filter

from semlive.virtual_sem._geometry import Window, polygon_area
from semlive.virtual_sem._materials import Phase
from semlive.virtual_sem._scene import Scene

if TYPE_CHECKING:
    from semlive.virtual_sem._crystals import Crystal
    from semlive.virtual_sem._session import Item, VirtualSession

__all__ = ["epma_items"]

STEP_UM = 5.0
NOISE_MG = 0.003


def epma_items(session: VirtualSession) -> Iterator[Item]:
    from semlive.virtual_sem._session import Item

    chosen = _profile_crystals(session)
    hours = session.plan.end_hours
    for k, crystal in enumerate(chosen):
        name = f"epma/profile-{k + 1:02d}.csv"
        yield Item(
            hours,
            name,
            "epma",
            None,
            partial(_profile, session, crystal, k, name),
        )


def _profile_crystals(session: VirtualSession) -> list[Crystal]:
    x0, y0, x1, y1 = session.grid.window.bounds_um
    inside = [
        c
        for c in session.scene.crystals
        if c.phase is Phase.OLIVINE
        and c.population in ("phenocryst", "microphenocryst")
        and not c.broken
        and c.bbox_um[0] > x0 + 20
        and c.bbox_um[1] > y0 + 20
        and c.bbox_um[2] < x1 - 20
        and c.bbox_um[3] < y1 - 20
    ]
    # zoned phenocrysts first (they calibrate best), the largest first
    inside.sort(
        key=lambda c: (c.profile.kind not in ("normal", "reverse"), -polygon_area(c.outline_um))
    )
    return inside[: session.plan.preset.epma_profiles]


def _profile(session: VirtualSession, crystal: Crystal, k: int, name: str) -> bytes:
    rng = np.random.default_rng([session.plan.seed & 0xFFFFFFFF, session.plan.session, 6, k])
    xmin, ymin, xmax, ymax = (int(np.floor(v)) for v in crystal.bbox_um)
    win = Window(xmin - 3.0, ymin - 3.0, ymax - ymin + 7, xmax - xmin + 7)
    phase = np.full((win.rows, win.cols), Phase.GLASS, dtype=np.uint8)
    x = np.zeros((win.rows, win.cols), dtype=np.float32)
    ids = np.zeros((win.rows, win.cols), dtype=np.uint32)
    xs, ys = win.grid_um()
    Scene._draw_crystal(crystal, win, xs, ys, phase, x, ids)
    clear = distance_transform_edt(phase == Phase.OLIVINE) > 2.0
    mg = uniform_filter(x.astype(np.float64), 3)
    centre = crystal.outline_um.mean(axis=0)
    angle = rng.uniform(0, np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    reach = float(np.hypot(xmax - xmin, ymax - ymin))
    t = np.arange(-reach / 2, reach / 2, STEP_UM)
    points = centre + t[:, None] * direction
    r = np.rint(points[:, 1] - win.y0_um).astype(int)
    c = np.rint(points[:, 0] - win.x0_um).astype(int)
    ok = (r >= 0) & (r < win.rows) & (c >= 0) & (c < win.cols)
    r, c, points = r[ok], c[ok], points[ok]
    keep = clear[r, c]
    r, c, points = r[keep], c[keep], points[keep]
    true_mg = mg[r, c]
    measured = true_mg + rng.normal(0, NOISE_MG, len(true_mg))
    offset = np.array(session.plan.epma_offset_um)
    reported = np.round(points + offset, 1)
    session.truth_records[name] = {
        "xy_um": points,
        "mg_number": true_mg,
        "crystal_id": np.array(crystal.crystal_id),
    }
    buf = io.StringIO()
    buf.write("x_um,y_um,mg_number\n")
    for (px, py), value in zip(reported, measured, strict=True):
        buf.write(f"{px:.1f},{py:.1f},{value:.4f}\n")
    return buf.getvalue().encode("utf-8")
