"""Readers for the files of Contract 1: each validates once and returns a frozen record.

Every reader takes the file's bytes as read once (the checksum is of exactly what was parsed)
and raises :class:`~semlive.errors.InputDataError` with a one-line reason a person can act on.
Images are checked against the session's tile shape, dtype and the size limit from their
headers, before any pixel is decoded.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from semlive.errors import InputDataError
from semlive.records import (
    EdsMaps,
    EpmaProfile,
    SessionInfo,
    StandardMeasurement,
    StandardSpec,
    TileImage,
    TileSidecar,
)

__all__ = [
    "checksum",
    "read_eds",
    "read_epma",
    "read_session",
    "read_sidecar",
    "read_standard",
    "read_standard_image",
    "read_standard_sidecar",
    "read_tile",
]

FORMAT = "semlive.session/1"
_ELEMENT = re.compile(r"^[A-Z][a-z]?$")


def checksum(data: bytes) -> str:
    """The checksum recorded in the ledger for a file's bytes."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _fail(name: str, problem: str, todo: str) -> InputDataError:
    return InputDataError(f"{name}: {problem}; {todo}", path=name)


def _json(data: bytes, name: str) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(name, f"is not valid JSON ({exc})", "write it as UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise _fail(
            name, f"holds a JSON {type(value).__name__}, expected an object", "fix the export"
        )
    return value


def _number(obj: dict[str, Any], key: str, name: str, *, positive: bool = False) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(name, f"{key} is {value!r}, expected a finite number", f"set {key}")
    if positive and value <= 0:
        raise _fail(name, f"{key} is {value}, expected a positive number", f"set {key}")
    return float(value)


def _time(obj: dict[str, Any], key: str, name: str) -> datetime:
    raw = obj.get(key)
    try:
        when = datetime.fromisoformat(str(raw))
    except ValueError:
        raise _fail(
            name,
            f"{key} is {raw!r}, expected ISO 8601 time",
            "write e.g. 2026-03-09T08:16:50+01:00",
        ) from None
    if when.utcoffset() is None:
        raise _fail(name, f"{key} {raw!r} has no UTC offset", "add one, e.g. +01:00 or Z")
    return when


# -- session.json ---------------------------------------------------------------------------
def read_session(data: bytes, name: str = "session.json") -> SessionInfo:
    meta = _json(data, name)
    if meta.get("format") != FORMAT:
        raise _fail(
            name,
            f"format is {meta.get('format')!r}, expected {FORMAT!r}",
            "export with a semlive.session/1 writer",
        )
    if meta.get("stage_axes", {"x": "+col", "y": "+row"}) != {"x": "+col", "y": "+row"}:
        raise _fail(
            name,
            f"stage_axes {meta.get('stage_axes')!r} are not supported; version 1 "
            'supports {"x": "+col", "y": "+row"}',
            "flip the export's axes to match",
        )
    shape = meta.get("tile_shape")
    if not (
        isinstance(shape, list)
        and len(shape) == 2
        and all(isinstance(v, int) and v > 0 for v in shape)
    ):
        raise _fail(
            name,
            f"tile_shape is {shape!r}, expected [rows, cols] of positive integers",
            "set tile_shape",
        )
    bse = meta.get("bse") or {}
    bits = bse.get("bit_depth", 16)
    if bits not in (8, 16):
        raise _fail(name, f"bse.bit_depth is {bits!r}, expected 8 or 16", "set bse.bit_depth")
    elements = tuple((meta.get("eds") or {}).get("elements", ()))
    bad = [e for e in elements if not (isinstance(e, str) and _ELEMENT.match(e))]
    if bad:
        raise _fail(
            name,
            f"eds.elements has {bad!r}, expected element symbols like 'Mg'",
            "list element symbols",
        )
    grid = meta.get("grid") or {}
    spectra = meta.get("spectra") or {}
    return SessionInfo(
        sample=str(meta.get("sample", "")),
        pixel_size_um=_number(meta, "pixel_size_um", name, positive=True),
        tile_shape=(shape[0], shape[1]),
        grid_rows=_optional_int(grid, "rows", name),
        grid_cols=_optional_int(grid, "cols", name),
        overlap_fraction=_overlap(grid.get("overlap_fraction"), name),
        bse_bit_depth=int(bits),
        beam_energy_kev=_optional_float(bse, "kV", name),
        probe_current_na=_optional_float(bse, "probe_nA", name),
        eds_elements=elements,
        spectra_channel_offset_ev=_optional_float(spectra, "channel_offset_ev", name),
        spectra_channel_width_ev=_optional_float(spectra, "channel_width_ev", name),
        spectra_channels=_optional_int(spectra, "channels", name),
        standards=_standards(meta.get("standards") or {}, name),
        checksum=checksum(data),
    )


def _optional_int(obj: dict[str, Any], key: str, name: str) -> int | None:
    if key not in obj:
        return None
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(name, f"{key} is {value!r}, expected a positive integer", f"set {key}")
    return value


def _optional_float(obj: dict[str, Any], key: str, name: str) -> float | None:
    return None if obj.get(key) is None else _number(obj, key, name)


def _overlap(value: Any, name: str) -> tuple[float, float] | None:
    if value is None:
        return None
    pair = value if isinstance(value, list) else [value, value]
    if len(pair) != 2 or not all(isinstance(v, int | float) and 0 <= v < 1 for v in pair):
        raise _fail(
            name,
            f"grid.overlap_fraction is {value!r}, expected a fraction in [0, 1) "
            "or a [rows, cols] pair",
            "set grid.overlap_fraction",
        )
    return float(pair[0]), float(pair[1])


def _standards(table: dict[str, Any], name: str) -> tuple[StandardSpec, ...]:
    specs = []
    for sid, entry in table.items():
        entry = entry if isinstance(entry, dict) else {}
        specs.append(
            StandardSpec(
                standard_id=str(sid),
                description=str(entry.get("description", "")),
                mean_z=_optional_float(entry, "mean_z", name),
                mg_number=_optional_float(entry, "mg_number", name),
                bse_reference_dn=_optional_float(entry, "bse_reference", name),
            )
        )
    return tuple(specs)


# -- images ---------------------------------------------------------------------------------
def _image(data: bytes, name: str, max_pixels: int, pages: int | None) -> NDArray[np.generic]:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            series = tif.series[0]
            shape, dtype = tuple(series.shape), np.dtype(series.dtype)
            _check_header(name, shape, dtype, max_pixels, pages)
            array: NDArray[np.generic] = series.asarray()
    except InputDataError:
        raise
    except Exception as exc:  # tifffile raises many types for broken files
        raise _fail(
            name,
            f"is not a readable TIFF ({type(exc).__name__}: {exc})",
            "re-export the file; a half-written file is retried until it settles",
        ) from None
    return array


def _check_header(
    name: str, shape: tuple[int, ...], dtype: np.dtype[Any], max_pixels: int, pages: int | None
) -> None:
    expected_ndim = 2 if pages is None else 3
    if pages == 1 and len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != expected_ndim:
        what = "a 2-D image" if pages is None else f"{pages} pages of 2-D maps"
        raise _fail(name, f"has shape {shape}, expected {what}", "export one image per file")
    if math.prod(shape[-2:]) > max_pixels:
        raise _fail(
            name,
            f"has {math.prod(shape[-2:])} pixels per page, above the limit of {max_pixels}",
            "raise acquisition.max_image_pixels if this is intended",
        )
    if pages is not None and shape[0] != pages:
        raise _fail(
            name,
            f"has {shape[0]} pages, expected {pages} (one per element of "
            "session.json eds.elements)",
            "export every element map in that order",
        )
    if pages is None and dtype not in (np.uint8, np.uint16):
        raise _fail(name, f"has dtype {dtype}, expected uint8 or uint16", "export 8 or 16 bit")


def read_tile(
    data: bytes, name: str, tile: str, session: SessionInfo, max_pixels: int
) -> TileImage:
    image = _image(data, name, max_pixels, None)
    if image.shape != session.tile_shape:
        raise _fail(
            name,
            f"is {image.shape[0]}×{image.shape[1]} px, expected "
            f"{session.tile_shape[0]}×{session.tile_shape[1]} (session.json tile_shape)",
            "export tiles of the planned size",
        )
    image.setflags(write=False)
    return TileImage(tile, image, checksum(data))  # type: ignore[arg-type]


def read_eds(
    data: bytes,
    name: str,
    stem: str,
    session: SessionInfo,
    max_pixels: int,
    shape: tuple[int, int] | None,
) -> EdsMaps:
    if not session.eds_elements:
        raise _fail(
            name,
            "is an EDS map but session.json lists no eds.elements",
            "declare eds.elements in session.json",
        )
    maps = _image(data, name, max_pixels, len(session.eds_elements))
    maps = maps.reshape(len(session.eds_elements), *maps.shape[-2:])
    if shape is not None and maps.shape[1:] != shape:
        raise _fail(
            name,
            f"maps are {maps.shape[1]}×{maps.shape[2]} px, expected {shape[0]}×"
            f"{shape[1]} like the BSE tile",
            "export the maps on the tile's grid",
        )
    if np.issubdtype(maps.dtype, np.floating):
        values = np.asarray(maps, dtype=np.float64)
        if not np.isfinite(values).all() or (values < 0).any():
            raise _fail(name, "has NaN, infinite or negative counts", "export counts")
    elif not np.issubdtype(maps.dtype, np.integer):
        raise _fail(name, f"has dtype {maps.dtype}, expected counts", "export integer counts")
    maps.setflags(write=False)
    return EdsMaps(stem, session.eds_elements, maps, checksum(data))  # type: ignore[arg-type]


# -- sidecars -------------------------------------------------------------------------------
def read_sidecar(data: bytes, name: str, tile: str, session: SessionInfo) -> TileSidecar:
    side = _json(data, name)
    if side.get("tile") != tile:
        raise _fail(
            name,
            f"names tile {side.get('tile')!r} but the file is {tile!r}",
            "write the sidecar's tile as its file name",
        )
    if side.get("kind", "bse") != "bse":
        raise _fail(name, f"kind is {side.get('kind')!r}, expected 'bse'", "set kind")
    row, col = side.get("row"), side.get("col")
    if not (isinstance(row, int) and isinstance(col, int) and row >= 0 and col >= 0):
        raise _fail(name, f"row, col are {row!r}, {col!r}, expected integers ≥ 0", "set them")
    for value, limit, what in ((row, session.grid_rows, "rows"), (col, session.grid_cols, "cols")):
        if limit is not None and value >= limit:
            raise _fail(
                name,
                f"{what[:-1]} {value} is outside the planned grid of {limit} {what}",
                "check session.json grid",
            )
    return TileSidecar(
        tile=tile,
        row=row,
        col=col,
        stage_x_um=_number(side, "stage_x_um", name),
        stage_y_um=_number(side, "stage_y_um", name),
        acquired_at=_time(side, "acquired_at", name),
        checksum=checksum(data),
    )


def read_standard_image(data: bytes, name: str, max_pixels: int) -> NDArray[np.generic]:
    """standards/<m>.tif: a 2-D uint8/uint16 image of any size within the limit."""
    image = _image(data, name, max_pixels, None)
    image.setflags(write=False)
    return image


def read_standard_sidecar(data: bytes, name: str, session: SessionInfo) -> tuple[str, datetime]:
    """standards/<m>.json: the standard's id (declared in session.json) and the time."""
    side = _json(data, name)
    declared = {s.standard_id for s in session.standards}
    sid = side.get("standard")
    if not isinstance(sid, str) or (declared and sid not in declared):
        raise _fail(
            name,
            f"standard is {sid!r}, expected one declared in session.json "
            f"({', '.join(sorted(declared)) or 'none declared'})",
            "fix the standard id",
        )
    if side.get("kind", "bse") != "bse":
        raise _fail(name, f"kind is {side.get('kind')!r}, expected 'bse'", "set kind")
    return sid, _time(side, "acquired_at", name)


def read_standard(
    image_data: bytes,
    image_name: str,
    side_data: bytes,
    side_name: str,
    stem: str,
    session: SessionInfo,
    max_pixels: int,
) -> StandardMeasurement:
    sid, when = read_standard_sidecar(side_data, side_name, session)
    image = read_standard_image(image_data, image_name, max_pixels)
    return StandardMeasurement(
        stem,
        sid,
        when,
        image,  # type: ignore[arg-type]
        checksum(image_data + side_data),
    )


# -- EPMA -----------------------------------------------------------------------------------
def read_epma(data: bytes, name: str) -> EpmaProfile:
    try:
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise _fail(name, f"is not a CSV file ({exc})", "export x_um,y_um,mg_number") from None
    if not rows or not {"x_um", "y_um", "mg_number"} <= set(rows[0]):
        found = ", ".join(rows[0]) if rows else "no rows"
        raise _fail(
            name,
            f"has columns {found}, expected x_um, y_um, mg_number",
            "export those three columns with a header line",
        )
    try:
        values = np.array(
            [[float(r["x_um"]), float(r["y_um"]), float(r["mg_number"])] for r in rows]
        )
    except (TypeError, ValueError) as exc:
        raise _fail(name, f"has a value that is not a number ({exc})", "fix that line") from None
    if not np.isfinite(values).all() or len(values) < 2:
        raise _fail(name, "needs at least two finite points", "export the whole profile")
    if ((values[:, 2] < 0) | (values[:, 2] > 1)).any():
        raise _fail(name, "has mg_number outside 0–1", "give mg# as a fraction, not percent")
    xy = values[:, :2].copy()
    mg = values[:, 2].copy()
    xy.setflags(write=False)
    mg.setflags(write=False)
    return EpmaProfile(name, xy, mg, checksum(data))
