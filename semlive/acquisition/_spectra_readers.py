"""Readers for the EDS spectra of a session folder: ``spectra/*.npz``, ``*.msa`` and ``*.bcf``.

Each reader returns a validated :class:`~semlive.records.SpectraBatch` or raises
:class:`~semlive.errors.InputDataError` with a one-line message that names the file, says what
was expected and what arrived, and what to do. Units are converted here, once: positions to µm,
channel energies to eV, beam energy to kV.

The checksum (BLAKE2b, 16 bytes, hex) is taken over exactly the bytes that are parsed: the
``.npz`` reader parses the bytes it hashed from memory, and the rosettasciio readers (which only
take a file name) parse a private copy written while hashing, so a file that changes under the
reader can never pair one checksum with other contents.

rosettasciio (the ``formats`` extra) is imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import re
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from semlive.errors import InputDataError
from semlive.records import SpectraBatch

__all__ = ["FORMATS_EXTRA_HINT", "read_bcf", "read_msa", "read_spectra_npz"]

FORMATS_EXTRA_HINT = (
    "reading .bcf/.msa files needs the 'formats' extra: pip install 'semlive[formats]'"
)

_NPZ_REQUIRED = ("xy_um", "counts")
_NPZ_KEYS = (*_NPZ_REQUIRED, "tile")
_MSA = "an EMSA/MSA text spectrum (ISO 22029)"
_BCF = "a Bruker Esprit hypermap (.bcf)"
_EXACT_FLOAT_INT = 2**53  # float64 holds every integer up to this exactly
_BCF_SIGNATURE = b"AAMVHFSS"  # AidAim single-file-system container that Bruker Esprit writes
_LENGTH_UM = {"mm": 1e3, "um": 1.0, "µm": 1.0, "μm": 1.0, "micron": 1.0, "microns": 1.0, "nm": 1e-3}
_ENERGY_EV = {"ev": 1.0, "kev": 1e3}
_VOLTAGE_KV = {"kv": 1.0, "v": 1e-3}
# what a hostile or half-written zip archive raises (encrypted or unknown compression included)
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)
_BSE_TITLE = re.compile(r"bse|asb|bsd|backscatter", re.IGNORECASE)
_ENERGY_UNIT = re.compile(r"\b(k?ev)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _File:
    """The file being read: its path on disk and its name relative to the session folder."""

    path: Path
    name: str

    def refuse(self, problem: str, expected: str, action: str, got: Any = None) -> InputDataError:
        """An error that says what arrived, what was expected and what to do."""
        return InputDataError(
            f"{self.name}: {problem}; expected {expected} — {action}",
            path=self.path,
            expected=expected,
            got=got,
        )


@dataclass(frozen=True, slots=True)
class _NpyHeader:
    shape: tuple[int, ...]
    dtype: np.dtype[Any]


# -- spectra/<batch>.npz -------------------------------------------------------------------


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
    src = _File(path, name)
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
    counts = _integral_counts(src, "counts", arrays["counts"])
    tile = _npz_tile(src, arrays["tile"]) if "tile" in arrays else None
    return SpectraBatch(
        name=name,
        xy_um=_readonly(_npz_xy(src, arrays["xy_um"])),
        counts=_readonly(counts),
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


def _npz_headers(src: _File, data: bytes, max_values: int) -> dict[str, _NpyHeader]:
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
    src: _File, archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_values: int
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
    src: _File, headers: Mapping[str, _NpyHeader], channels: int | None, max_values: int
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
    _check_counts_shape(src, n, c, channels, max_values)
    if "tile" in headers:
        _check_kind(src, "tile", headers["tile"].dtype, "US", "a string (the tile name)")


def _check_kind(src: _File, key: str, dtype: np.dtype[Any], kinds: str, what: str) -> None:
    if dtype.kind not in kinds:
        raise src.refuse(f"{key} has dtype {dtype}", what, "re-export the batch", got=str(dtype))


def _check_counts_shape(src: _File, n: int, c: int, channels: int | None, max_values: int) -> None:
    if n < 1 or c < 1:
        raise src.refuse(
            f"counts has shape ({n}, {c})",
            "at least one spectrum of at least one channel",
            "re-export the batch or remove the empty file",
            got=(n, c),
        )
    if channels is not None and c != channels:
        raise src.refuse(
            f"counts has {c} channels",
            f"{channels} channels as session.json spectra.channels says",
            "fix spectra.channels in session.json or re-export the batch",
            got=c,
        )
    if n * c > max_values:
        raise src.refuse(
            f"counts holds {n:,} × {c:,} = {n * c:,} values",
            f"at most {max_values:,} values (the max_values limit)",
            "acquire smaller batches or raise the max_values limit",
            got=n * c,
        )


def _load_npz(
    src: _File, data: bytes, headers: Mapping[str, _NpyHeader]
) -> dict[str, NDArray[Any]]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {key: np.asarray(npz[key]) for key in headers}
    except (ValueError, OSError, *_ZIP_ERRORS) as exc:
        raise src.refuse(
            f"its arrays could not be decompressed ({exc})",
            "a complete file written by numpy.savez",
            "re-export the batch; a file still being written is retried when it settles",
        ) from exc


def _npz_xy(src: _File, xy: NDArray[Any]) -> NDArray[np.float64]:
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


def _npz_tile(src: _File, tile: NDArray[Any]) -> str:
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


# -- counts shared by all readers ------------------------------------------------------------


def _integral_counts(src: _File, what: str, values: NDArray[Any]) -> NDArray[np.integer]:
    """Counts as an integer array: integers as they are, floats only when integral."""
    if values.dtype.kind in "iu":
        counts = np.ascontiguousarray(values)
        if counts.dtype.kind == "i" and counts.size and int(counts.min()) < 0:
            raise src.refuse(
                f"{what} has negative values (minimum {int(counts.min())})",
                "non-negative X-ray counts",
                "re-export the spectra without background subtraction",
                got=int(counts.min()),
            )
        return counts
    floats = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(floats) | (floats < 0) | (floats > _EXACT_FLOAT_INT)
    bad |= floats != np.floor(floats)
    if bad.any():
        first = float(floats.ravel()[np.flatnonzero(bad.ravel())[0]])
        raise src.refuse(
            f"{what} has {int(bad.sum())} values that are not non-negative whole numbers "
            f"(first: {first})",
            "raw X-ray counts (non-negative integers)",
            "export raw counts, not processed intensities",
            got=first,
        )
    return np.ascontiguousarray(floats.astype(np.int64))


def _as_float(value: Any) -> float:
    """``value`` as a float, NaN where it is not a number (a keyword the parser left as text)."""
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return float("nan")


def _readonly(array: NDArray[Any]) -> NDArray[Any]:
    array.flags.writeable = False
    return array


def _checksum(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


# -- rosettasciio plumbing -----------------------------------------------------------------


def _rsciio_reader(src: _File, module: str) -> Callable[..., Any]:
    """``file_reader`` of a rosettasciio plugin, or an error that names the 'formats' extra."""
    try:
        importlib.import_module("rsciio")
        plugin = importlib.import_module(module)
    except ImportError as exc:
        raise InputDataError(
            f"{src.name}: {FORMATS_EXTRA_HINT} (rosettasciio is not installed)",
            path=src.path,
            expected="rosettasciio installed",
            got="ImportError",
        ) from exc
    reader: Callable[..., Any] = plugin.file_reader
    return reader


@contextlib.contextmanager
def _hashed_copy(src: _File, suffix: str) -> Iterator[tuple[Path, str]]:
    """Copy the file to a private folder while hashing it; yield the copy and the checksum."""
    digest = hashlib.blake2b(digest_size=16)
    with tempfile.TemporaryDirectory(prefix="semlive-read-") as folder:
        copy = Path(folder) / f"input{suffix}"
        with src.path.open("rb") as source, copy.open("wb") as target:
            for chunk in iter(partial(source.read, 1 << 20), b""):
                digest.update(chunk)
                target.write(chunk)
        yield copy, digest.hexdigest()


def _call_rsciio(
    src: _File, copy: Path, call: Callable[[str], Any], problem: str, expected: str
) -> Any:
    """Run a rosettasciio call on the private copy; wrap its failure with its short reason."""
    try:
        return call(str(copy))
    except Exception as exc:  # rosettasciio raises many builtin types on malformed files
        reason = f"{type(exc).__name__}: {str(exc).strip()}".replace(str(copy), src.name)
        reason = reason.splitlines()[0][:200]
        raise src.refuse(
            f"{problem} (rosettasciio: {reason})",
            expected,
            "re-export the file, or remove it from the session folder",
        ) from exc


def _factor(units: str, table: Mapping[str, float], default: str | None = None) -> float | None:
    key = units.strip().lower()
    return table.get(key or (default or ""))


def _energy_axis_ev(src: _File, axis: Mapping[str, Any]) -> tuple[float, float]:
    """(offset, width) of the channels in eV from a rosettasciio signal axis."""
    units = str(axis.get("units") or "")
    match = _ENERGY_UNIT.search(units)
    factor = _ENERGY_EV[match.group(1).lower()] if match else None
    offset, width = _as_float(axis.get("offset", 0.0)), _as_float(axis.get("scale"))
    if factor is None or not np.isfinite([offset, width]).all() or width <= 0:
        raise src.refuse(
            f"the energy axis has units {units!r}, offset {offset} and channel width {width}",
            "an energy calibration in eV or keV with a positive channel width",
            "re-export the spectrum with its energy calibration",
            got=(units, offset, width),
        )
    return offset * factor, width * factor


# -- spectra/<name>.msa --------------------------------------------------------------------


def read_msa(path: Path, name: str, *, max_values: int) -> SpectraBatch:
    """Read one EMSA/MSA spectrum (ISO 22029) through rosettasciio.

    Its stage position comes from ``#XPOSITION`` / ``#YPOSITION``, in mm unless the keyword
    states other units (``#XPOSITION-um``), and is returned in µm; the energy axis comes from
    ``#OFFSET`` / ``#XPERCHAN`` in ``#XUNITS`` (eV or keV), the beam energy from ``#BEAMKV``.

    Raises :class:`InputDataError` for malformed content, :class:`OSError` if unreadable.
    """
    src = _File(path, name)
    file_reader = _rsciio_reader(src, "rsciio.msa")
    size = path.stat().st_size
    if size > 64 * max_values + 65536:
        raise src.refuse(
            f"the file has {size:,} bytes",
            f"a spectrum of at most {max_values:,} values",
            "check the file is one spectrum, or raise the max_values limit",
        )
    with _hashed_copy(src, ".msa") as (copy, checksum):
        items = _call_rsciio(src, copy, file_reader, "not a readable EMSA/MSA spectrum", _MSA)
    item: Mapping[str, Any] = items[0]
    keywords: Mapping[str, Any] = item["original_metadata"]
    counts = _msa_counts(src, item["data"], keywords, max_values)
    offset_ev, width_ev = _energy_axis_ev(src, item["axes"][0])
    xy_um = np.array([[_msa_position_um(src, keywords, axis) for axis in "XY"]])
    return SpectraBatch(
        name=name,
        xy_um=_readonly(xy_um),
        counts=_readonly(counts.reshape(1, -1)),
        channel_offset_ev=offset_ev,
        channel_width_ev=width_ev,
        beam_energy_kev=_msa_beam_kev(src, keywords),
        tile=None,
        bse=None,
        pixel_size_um=None,
        checksum=checksum,
    )


def _msa_counts(
    src: _File, data: Any, keywords: Mapping[str, Any], max_values: int
) -> NDArray[np.integer]:
    values = np.asarray(data)
    declared = _msa_keyword(keywords, "NPOINTS")
    if values.ndim != 1 or values.size == 0:
        raise src.refuse(
            f"the spectrum has {values.size} values",
            "at least one channel of counts after #SPECTRUM",
            "re-export the spectrum",
        )
    stated = None if declared is None or declared[1] in (None, "") else declared[1]
    npoints = None if stated is None else _msa_number(src, "NPOINTS", stated)
    if npoints is not None and npoints != values.size:
        raise src.refuse(
            f"#NPOINTS says {npoints:g} but {values.size} values follow #SPECTRUM",
            "as many values as #NPOINTS declares",
            "re-export the spectrum; a file still being written is retried when it settles",
            got=values.size,
        )
    if values.size > max_values:
        raise src.refuse(
            f"the spectrum has {values.size:,} values",
            f"at most {max_values:,} values (the max_values limit)",
            "raise the max_values limit",
        )
    return _integral_counts(src, "the spectrum", values)


def _msa_keyword(keywords: Mapping[str, Any], keyword: str) -> tuple[str, Any] | None:
    """(units, value) of an EMSA keyword such as ``XPOSITION``, ``BEAMKV -kV``, ``XPOSITION mm``."""
    for key, value in keywords.items():
        base, _, units = str(key).partition("-")
        words = base.split()
        if words and words[0].lstrip("#").upper() == keyword:
            return (units.strip() or " ".join(words[1:])), value
    return None


def _msa_number(src: _File, keyword: str, value: Any) -> float:
    number = _as_float(value if isinstance(value, int | float) else (str(value).split() or [""])[0])
    if not np.isfinite(number):
        raise src.refuse(
            f"#{keyword} is {value!r}", f"a number after #{keyword}", "fix or re-export the file"
        )
    return number


def _msa_position_um(src: _File, keywords: Mapping[str, Any], axis: str) -> float:
    found = _msa_keyword(keywords, f"{axis}POSITION")
    if found is None or found[1] is None:
        raise src.refuse(
            f"the position keyword #{axis}POSITION is missing",
            "the spectrum's stage position in #XPOSITION and #YPOSITION (mm)",
            "re-export the spectrum with its stage position",
        )
    units, value = found
    factor = _factor(units, _LENGTH_UM, default="mm")
    if factor is None:
        raise src.refuse(
            f"#{axis}POSITION is in units {units!r}",
            "a position in mm (the EMSA default), µm or nm",
            "re-export the spectrum with its position in mm",
        )
    return _msa_number(src, f"{axis}POSITION", value) * factor


def _msa_beam_kev(src: _File, keywords: Mapping[str, Any]) -> float | None:
    found = _msa_keyword(keywords, "BEAMKV")
    if found is None or found[1] is None:
        return None
    units, value = found
    factor = _factor(units, _VOLTAGE_KV, default="kv")
    if factor is None:
        raise src.refuse(
            f"#BEAMKV is in units {units!r}", "a beam energy in kV", "fix or re-export the file"
        )
    return _msa_number(src, "BEAMKV", value) * factor


# -- spectra/<name>.bcf --------------------------------------------------------------------


def read_bcf(path: Path, name: str, *, max_values: int) -> SpectraBatch:
    """Read a Bruker Esprit hypermap (``.bcf``) through rosettasciio.

    The EDS cube becomes one spectrum a pixel, in row-major order (N = rows·cols). Its
    ``xy_um`` are the pixel centres **relative to the map's first pixel** (x = col·pixel size,
    y = row·pixel size): a hypermap carries no stage origin that Contract 1 can rely on, so the
    caller places the map. ``bse`` is the backscatter image acquired with the map (or its first
    image of the same size). The map size is checked against ``max_values`` from the file header
    before the cube is decoded.

    Raises :class:`InputDataError` for malformed content, :class:`OSError` if unreadable.
    """
    src = _File(path, name)
    file_reader = _rsciio_reader(src, "rsciio.bruker")
    with _hashed_copy(src, ".bcf") as (copy, checksum):
        problem = _bcf_signature_problem(copy)
        _check_bcf_size(src, copy, max_values, problem)
        items = _call_rsciio(src, copy, file_reader, problem, _BCF)
    cube_item = _bcf_cube_item(src, items)
    cube = np.asarray(cube_item["data"])
    rows, cols, channels = cube.shape
    _check_counts_shape(src, rows * cols, channels, None, max_values)
    pixel_y_um, pixel_x_um = (_bcf_pixel_um(src, cube_item["axes"][i]) for i in (0, 1))
    offset_ev, width_ev = _energy_axis_ev(src, cube_item["axes"][2])
    row, col = np.divmod(np.arange(rows * cols), cols)
    xy_um = np.column_stack([col * pixel_x_um, row * pixel_y_um]).astype(np.float64)
    bse = _bcf_bse(items, (rows, cols))
    return SpectraBatch(
        name=name,
        xy_um=_readonly(xy_um),
        counts=_readonly(_integral_counts(src, "the EDS cube", cube.reshape(-1, channels))),
        channel_offset_ev=offset_ev,
        channel_width_ev=width_ev,
        beam_energy_kev=_bcf_beam_kev(cube_item["metadata"]),
        tile=None,
        bse=None if bse is None else _readonly(bse),
        pixel_size_um=pixel_x_um,
        checksum=checksum,
    )


def _bcf_signature_problem(copy: Path) -> str:
    with copy.open("rb") as fh:
        head = fh.read(len(_BCF_SIGNATURE))
    if head == _BCF_SIGNATURE:
        return "not a readable Bruker hypermap"
    return (
        f"not a Bruker hypermap: it starts with {head!r}, not the Bruker container "
        f"signature {_BCF_SIGNATURE.decode()}"
    )


def _check_bcf_size(src: _File, copy: Path, max_values: int, problem: str) -> None:
    """Refuse a map larger than ``max_values`` from its header, before decoding the cube."""
    try:
        from rsciio.bruker._api import BCF_reader
    except ImportError:  # a rosettasciio without this class: the cube is checked once decoded
        return

    def cube_shape(filename: str) -> tuple[int, int, int]:
        reader = BCF_reader(filename)
        header = reader.header
        spectrum = header.spectra_data[reader.def_index]
        return int(header.image.height), int(header.image.width), int(spectrum.data.size)

    rows, cols, channels = _call_rsciio(src, copy, cube_shape, problem, _BCF)
    _check_counts_shape(src, rows * cols, channels, None, max_values)


def _bcf_cube_item(src: _File, items: list[dict[str, Any]]) -> dict[str, Any]:
    for item in items:
        if np.ndim(item["data"]) == 3:
            return item
    titles = [item.get("metadata", {}).get("General", {}).get("title") for item in items]
    raise src.refuse(
        f"the hypermap holds no EDS cube (only images: {titles})",
        "a Bruker hypermap with an EDS spectrum image",
        "export the map with its spectra, or remove the file",
    )


def _bcf_pixel_um(src: _File, axis: Mapping[str, Any]) -> float:
    units = str(axis.get("units") or "")
    factor = _factor(units, _LENGTH_UM)
    size = _as_float(axis.get("scale")) * (factor or 0.0)
    if not np.isfinite(size) or size <= 0:
        raise src.refuse(
            f"the map's {axis.get('name', 'spatial')} axis has units {units!r} and "
            f"scale {axis.get('scale')}",
            "a calibrated pixel size in µm",
            "re-export the map with its calibration (magnification) from Esprit",
        )
    return size


def _bcf_bse(items: list[dict[str, Any]], shape: tuple[int, int]) -> NDArray[np.integer] | None:
    """The backscatter image taken with the map, else its first image of the same size."""
    images = [item for item in items if np.shape(item["data"]) == shape]
    for item in images:
        title = str(item.get("metadata", {}).get("General", {}).get("title", ""))
        if _BSE_TITLE.search(title):
            return np.asarray(item["data"])
    return np.asarray(images[0]["data"]) if images else None


def _bcf_beam_kev(metadata: Mapping[str, Any]) -> float | None:
    for instrument in (metadata.get("Acquisition_instrument") or {}).values():
        energy = instrument.get("beam_energy") if isinstance(instrument, Mapping) else None
        kev = _as_float(energy)
        if np.isfinite(kev) and kev > 0:
            return kev
    return None
