"""A single field for ``semlive gdls FIELD``: a BSE image and the sparse EDS spectra in it.

Two forms are read (docs/session-folder.md, "A GDLS field"):

* a folder with ``field.json`` (``pixel_size_um``, optional ``origin_um`` — the stage position
  of the BSE's first pixel centre, default [0, 0] — and ``spectra`` {channel_offset_ev,
  channel_width_ev, kV}), exactly one BSE TIFF (2-D, uint8 or uint16) and one or more spectra
  ``.npz`` in Contract 1's form (``xy_um`` stage µm, ``counts``); stage x runs along columns and
  y along rows;
* a Bruker ``.bcf`` hypermap: its BSE image and its EDS cube, whose pixels every ``step`` along
  both axes are taken as the sparse points (the paper's dot mapping).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from semlive.errors import InputDataError

__all__ = ["FIELD_JSON", "GdlsField", "read_field"]

FIELD_JSON = "field.json"
_TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True, slots=True)
class GdlsField:
    """A BSE image and the EDS points in it (pixel row, col) with their spectra."""

    name: str
    bse: NDArray[np.integer]
    rows: NDArray[np.intp]
    cols: NDArray[np.intp]
    counts: NDArray[np.integer]  # (points, channels)
    channel_offset_ev: float
    channel_width_ev: float
    beam_energy_kev: float
    pixel_size_um: float | None


def read_field(path: Path, *, step: int = 3, max_values: int = 2_000_000_000) -> GdlsField:
    """Read a field folder or a ``.bcf`` (``step``: the EDS points' spacing in its pixels).

    Raises :class:`InputDataError` for anything that is not a readable field."""
    if path.is_dir():
        return _read_folder(path, max_values)
    if path.suffix.lower() == ".bcf" and path.is_file():
        return _read_bcf(path, step, max_values)
    raise InputDataError(
        f"{path}: not a field; expected a folder with {FIELD_JSON}, a BSE .tif and spectra "
        "(.npz), or a Bruker .bcf hypermap — give one of those",
        path=path,
        expected="a field folder or a .bcf file",
        got="missing" if not path.exists() else ("file" if path.is_file() else "other"),
    )


def _refuse(path: Path, problem: str, expected: str, action: str) -> InputDataError:
    return InputDataError(f"{path}: {problem}; expected {expected} — {action}", path=path)


def _read_bcf(path: Path, step: int, max_values: int) -> GdlsField:
    from semlive.acquisition._rsciio_readers import read_bcf

    if step < 1:
        raise _refuse(path, f"step {step}", "a step of 1 pixel or more", "give --step 1 or more")
    batch = read_bcf(path, path.name, max_values=max_values)
    if batch.bse is None or batch.pixel_size_um is None:
        raise _refuse(
            path,
            "the hypermap holds no BSE image of the map's size",
            "a .bcf saved with its backscatter image",
            "export the hypermap with the BSE image",
        )
    bse = np.asarray(batch.bse)
    height, width = bse.shape
    grid_rows, grid_cols = np.meshgrid(
        np.arange(step // 2, height, step), np.arange(step // 2, width, step), indexing="ij"
    )
    rows, cols = grid_rows.ravel(), grid_cols.ravel()
    counts = np.asarray(batch.counts)[rows * width + cols]
    return GdlsField(
        name=path.name,
        bse=bse,
        rows=rows.astype(np.intp),
        cols=cols.astype(np.intp),
        counts=counts,
        channel_offset_ev=batch.channel_offset_ev,
        channel_width_ev=batch.channel_width_ev,
        beam_energy_kev=batch.beam_energy_kev or 20.0,
        pixel_size_um=batch.pixel_size_um,
    )


def _read_folder(folder: Path, max_values: int) -> GdlsField:
    from semlive.acquisition._npz_reader import read_spectra_npz
    from semlive.acquisition._readers import read_standard_image

    meta = _field_json(folder)
    tiffs = sorted(p for p in folder.iterdir() if p.suffix.lower() in _TIFF_SUFFIXES)
    if len(tiffs) != 1:
        raise _refuse(
            folder,
            f"{len(tiffs)} TIFF files ({', '.join(p.name for p in tiffs) or 'none'})",
            "exactly one BSE image (.tif)",
            "keep one BSE TIFF in the field folder",
        )
    bse = np.asarray(read_standard_image(tiffs[0].read_bytes(), tiffs[0].name, 200_000_000))
    npzs = sorted(folder.glob("*.npz"))
    if not npzs:
        raise _refuse(
            folder, "no spectra", "one or more .npz (xy_um, counts)", "add the spectra batch"
        )
    spectra = meta["spectra"]
    batches = [
        read_spectra_npz(
            p,
            p.name,
            channel_offset_ev=spectra["channel_offset_ev"],
            channel_width_ev=spectra["channel_width_ev"],
            channels=None,
            beam_energy_kev=spectra["kV"],
            max_values=max_values,
        )
        for p in npzs
    ]
    if len({b.counts.shape[1] for b in batches}) > 1:
        raise _refuse(
            folder,
            f"batches with {sorted({b.counts.shape[1] for b in batches})} channels",
            "every batch with the same channels",
            "export the spectra with one channel calibration",
        )
    xy = np.concatenate([b.xy_um for b in batches])
    counts = np.concatenate([b.counts for b in batches])
    rows, cols = _pixels_of(folder, xy, meta, bse.shape)
    return GdlsField(
        name=folder.name,
        bse=bse,
        rows=rows,
        cols=cols,
        counts=counts,
        channel_offset_ev=spectra["channel_offset_ev"],
        channel_width_ev=spectra["channel_width_ev"],
        beam_energy_kev=spectra["kV"],
        pixel_size_um=meta["pixel_size_um"],
    )


def _field_json(folder: Path) -> dict[str, Any]:
    """field.json, checked: pixel_size_um > 0, origin_um [x, y], spectra calibration."""
    path = folder / FIELD_JSON
    expected = (
        'a JSON object {"pixel_size_um": 0.5, "origin_um": [0, 0], "spectra": '
        '{"channel_offset_ev": 0, "channel_width_ev": 10, "kV": 20}}'
    )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _refuse(folder, f"no {FIELD_JSON}", expected, f"write {FIELD_JSON}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _refuse(path, f"not valid JSON ({exc})", expected, "fix the file") from None
    try:
        pixel = float(meta["pixel_size_um"])
        origin = [float(v) for v in meta.get("origin_um", [0.0, 0.0])]
        spectra = meta["spectra"]
        calibration = {
            "channel_offset_ev": float(spectra.get("channel_offset_ev", 0.0)),
            "channel_width_ev": float(spectra["channel_width_ev"]),
            "kV": float(spectra.get("kV", 20.0)),
        }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _refuse(path, f"missing or malformed {exc}", expected, "fix the file") from None
    values = [pixel, *origin, *calibration.values()]
    if len(origin) != 2 or not np.isfinite(values).all() or pixel <= 0:
        raise _refuse(path, f"pixel_size_um {pixel}, origin_um {origin}", expected, "fix the file")
    if calibration["channel_width_ev"] <= 0 or calibration["kV"] <= 0:
        raise _refuse(path, f"spectra {calibration}", expected, "fix the file")
    return {"pixel_size_um": pixel, "origin_um": origin, "spectra": calibration}


def _pixels_of(
    folder: Path, xy_um: NDArray[np.float64], meta: dict[str, Any], shape: tuple[int, ...]
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """The BSE pixel (row, col) of each stage position; all must fall inside, none twice."""
    x0, y0 = meta["origin_um"]
    pixel = meta["pixel_size_um"]
    cols = np.rint((xy_um[:, 0] - x0) / pixel).astype(np.intp)
    rows = np.rint((xy_um[:, 1] - y0) / pixel).astype(np.intp)
    outside = (rows < 0) | (rows >= shape[0]) | (cols < 0) | (cols >= shape[1])
    if outside.any():
        raise _refuse(
            folder,
            f"{int(outside.sum())} of {len(rows)} spectra lie outside the "
            f"{shape[0]}×{shape[1]}-px BSE image (first at x {xy_um[outside][0, 0]:.2f} µm, "
            f"y {xy_um[outside][0, 1]:.2f} µm)",
            "every spectrum inside the image",
            "check origin_um and pixel_size_um in field.json",
        )
    flat = rows * shape[1] + cols
    if len(np.unique(flat)) != len(flat):
        raise _refuse(
            folder,
            f"{len(flat) - len(np.unique(flat))} spectra fall on a pixel another one already has",
            "at most one spectrum a BSE pixel",
            "check pixel_size_um in field.json, or sum repeated spectra before export",
        )
    return rows, cols
