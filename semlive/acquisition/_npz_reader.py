"""Reader for ``spectra/<batch>.npz`` (Contract 1): sparse spectra at stage positions.

The file's bytes are read once, hashed, and parsed from memory; member sizes and ``.npy``
headers are checked before anything is decompressed, and pickles are never loaded.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from semlive.acquisition._readers import checksum as _checksum
from semlive.acquisition._spectra_common import (
    File,
    check_counts_shape,
    integral_counts,
    readonly,
)
from semlive.errors import InputDataError
from semlive.records import SpectraBatch

__all__ = ["read_spectra_npz"]

_NPZ_REQUIRED = ("xy_um", "counts")
_NPZ_KEYS = (*_NPZ_REQUIRED, "tile")
# what a hostile or half-written zip archive raises (encrypted or unknown compression included)
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)


@dataclass(frozen=True, slots=True)
class _NpyHeader:
    shape: tuple[int, ...]
    dtype: np.dtype[Any]


def read_spectra_npz(
    path: Path,
    name: str,
    *,
    channel_offset_ev: float,
    channel_width_ev: float,
    channels: int | None,
    beam_energy_kev: float | None,
    max_values: int,
) -> SpectraBatch:
    """Read ``spectra/<batch>.npz``: ``xy_um`` (N, 2) stage µm, ``counts`` (N, C), ``tile``.

    The channel calibration and beam energy come from session.json (``spectra``); ``channels``,
    where session.json gives it, must match C. Shapes and dtypes are read from the ``.npy``
    member headers, and ``N·C`` is checked against ``max_values``, before any array is
    decompressed. Object arrays are refused: nothing is ever unpickled. Counts stored as floats
    are accepted when every value is a non-negative integer, and returned as int64.

    Raises :class:`InputDataError` for malformed content, :class:`OSError` if unreadable.
    """
    src = File(path, name)
    size = path.stat().st_size
    if size > 3 * _npz_member_byte_limit(max_values):
        raise src.refuse(
            f"the file has {size:,} bytes",
            f"a batch of at most {max_values:,} count values",
            "acquire smaller batches or raise the max_values limit",
        )
    data = path.read_bytes()
    headers = _npz_headers(src, data, max_values)
    _check_npz_shapes(src, headers, channels, max_values)
    arrays = _load_npz(src, data, headers)
    counts = integral_counts(src, "counts", arrays["counts"])
    tile = _npz_tile(src, arrays["tile"]) if "tile" in arrays else None
    return SpectraBatch(
        name=name,
        xy_um=readonly(_npz_xy(src, arrays["xy_um"])),
        counts=readonly(counts),
        channel_offset_ev=float(channel_offset_ev),
        channel_width_ev=float(channel_width_ev),
        beam_energy_kev=None if beam_energy_kev is None else float(beam_energy_kev),
        tile=tile,
        bse=None,
        pixel_size_um=None,
        checksum=_checksum(data),
    )


def _npz_member_byte_limit(max_values: int) -> int:
    """Largest uncompressed member accepted: 16 bytes a value (xy_um of C = 1) plus a header."""
    return 16 * max_values + 65536


def _npz_headers(src: File, data: bytes, max_values: int) -> dict[str, _NpyHeader]:
    """The ``.npy`` headers of the members semlive reads, checked against the size limit."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = {
                info.filename.removesuffix(".npy"): info
                for info in archive.infolist()
                if info.filename.endswith(".npy")
            }
            missing = [key for key in _NPZ_REQUIRED if key not in infos]
            if missing:
                raise src.refuse(
                    f"no {' or '.join(missing)} array (arrays found: {sorted(infos) or 'none'})",
                    "arrays xy_um (N, 2) and counts (N, channels), optionally tile",
                    "re-export the batch with numpy.savez",
                    got=sorted(infos),
                )
            return {
                key: _npy_header(src, archive, infos[key], max_values)
                for key in _NPZ_KEYS
                if key in infos
            }
    except InputDataError:
        raise
    except (ValueError, *_ZIP_ERRORS) as exc:  # ValueError: e.g. a member name that is not UTF-8
        raise src.refuse(
            f"not a readable .npz (zip) archive ({exc})",
            "a file written by numpy.savez or numpy.savez_compressed",
            "re-export the batch; a file still being written is retried when it settles",
        ) from exc


def _npy_header(
    src: File, archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_values: int
) -> _NpyHeader:
    key = info.filename.removesuffix(".npy")
    if info.file_size > _npz_member_byte_limit(max_values):
        raise src.refuse(
            f"{key} unpacks to {info.file_size:,} bytes",
            f"a batch of at most {max_values:,} count values",
            "acquire smaller batches or raise the max_values limit",
        )
    fmt = np.lib.format
    try:
        with archive.open(info) as member:
            version = fmt.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, _, dtype = fmt.read_array_header_2_0(member)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, *_ZIP_ERRORS) as exc:
        raise src.refuse(
            f"{key} has no readable .npy header ({exc})",
            "arrays written by numpy.savez",
            "re-export the batch",
        ) from exc
    return _NpyHeader(tuple(int(n) for n in shape), np.dtype(dtype))


def _check_npz_shapes(
    src: File, headers: Mapping[str, _NpyHeader], channels: int | None, max_values: int
) -> None:
    """Dtypes and shapes from the headers, before anything is decompressed."""
    for key, header in headers.items():
        if header.dtype.hasobject:
            raise src.refuse(
                f"{key} holds Python objects (dtype {header.dtype}), which would need unpickling",
                "plain numeric arrays (semlive never unpickles data)",
                "re-export the batch with numeric dtypes",
                got=str(header.dtype),
            )
    xy, counts = headers["xy_um"], headers["counts"]
    _check_kind(src, "xy_um", xy.dtype, "fiu", "real numbers (µm)")
    _check_kind(src, "counts", counts.dtype, "fiu", "integer counts")
    if len(counts.shape) != 2:
        raise src.refuse(
            f"counts has {len(counts.shape)} dimensions (shape {counts.shape})",
            "a (N, channels) array of counts",
            "re-export the batch",
            got=counts.shape,
        )
    n, c = counts.shape
    if xy.shape != (n, 2):
        raise src.refuse(
            f"xy_um has shape {xy.shape} for {n} spectra in counts",
            f"an (N, 2) array of stage x, y in µm with N = {n}",
            "re-export the batch",
            got=xy.shape,
        )
    check_counts_shape(src, n, c, channels, max_values)
    if "tile" in headers:
        _check_kind(src, "tile", headers["tile"].dtype, "US", "a string (the tile name)")


def _check_kind(src: File, key: str, dtype: np.dtype[Any], kinds: str, what: str) -> None:
    if dtype.kind not in kinds:
        raise src.refuse(f"{key} has dtype {dtype}", what, "re-export the batch", got=str(dtype))


def _load_npz(src: File, data: bytes, headers: Mapping[str, _NpyHeader]) -> dict[str, NDArray[Any]]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {key: np.asarray(npz[key]) for key in headers}
    except (ValueError, OSError, *_ZIP_ERRORS) as exc:
        raise src.refuse(
            f"its arrays could not be decompressed ({exc})",
            "a complete file written by numpy.savez",
            "re-export the batch; a file still being written is retried when it settles",
        ) from exc


def _npz_xy(src: File, xy: NDArray[Any]) -> NDArray[np.float64]:
    xy_um = np.ascontiguousarray(xy, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(xy_um).all(axis=1))
    if bad.size:
        raise src.refuse(
            f"xy_um has {bad.size} rows with NaN or infinite coordinates (first: row {bad[0]})",
            "finite stage coordinates in µm",
            "re-export the batch",
            got=int(bad.size),
        )
    return xy_um


def _npz_tile(src: File, tile: NDArray[Any]) -> str:
    if tile.shape != ():
        raise src.refuse(
            f"tile has shape {tile.shape}",
            "a single string (a 0-d array such as np.array('r003c017'))",
            "re-export the batch",
            got=tile.shape,
        )
    value = tile.item()
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    if not text.strip():
        raise src.refuse(
            "tile is an empty string", "a tile name such as 'r003c017'", "re-export the batch"
        )
    return text.strip()
