"""Readers for EMSA/MSA spectra and Bruker ``.bcf`` hypermaps, through rosettasciio.

rosettasciio (the ``formats`` extra) only takes a file name, so each file is parsed from a
private copy written while it is hashed: the checksum is always of exactly what was parsed.
rosettasciio is imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from semlive.acquisition._spectra_common import (
    FORMATS_EXTRA_HINT,
    File,
    as_float,
    check_counts_shape,
    integral_counts,
    readonly,
)
from semlive.errors import InputDataError
from semlive.records import SpectraBatch

__all__ = ["read_bcf", "read_msa"]

_MSA = "an EMSA/MSA text spectrum (ISO 22029)"
_BCF = "a Bruker Esprit hypermap (.bcf)"
_BCF_SIGNATURE = b"AAMVHFSS"  # AidAim single-file-system container that Bruker Esprit writes
_LENGTH_UM = {"mm": 1e3, "um": 1.0, "µm": 1.0, "μm": 1.0, "micron": 1.0, "microns": 1.0, "nm": 1e-3}
_ENERGY_EV = {"ev": 1.0, "kev": 1e3}
_VOLTAGE_KV = {"kv": 1.0, "v": 1e-3}
_BSE_TITLE = re.compile(r"bse|asb|bsd|backscatter", re.IGNORECASE)
_ENERGY_UNIT = re.compile(r"\b(k?ev)\b", re.IGNORECASE)


# -- rosettasciio plumbing -----------------------------------------------------------------


def _rsciio_reader(src: File, module: str) -> Callable[..., Any]:
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
def _hashed_copy(src: File, suffix: str) -> Iterator[tuple[Path, str]]:
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
    src: File, copy: Path, call: Callable[[str], Any], problem: str, expected: str
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


def _energy_axis_ev(src: File, axis: Mapping[str, Any]) -> tuple[float, float]:
    """(offset, width) of the channels in eV from a rosettasciio signal axis."""
    units = str(axis.get("units") or "")
    match = _ENERGY_UNIT.search(units)
    factor = _ENERGY_EV[match.group(1).lower()] if match else None
    offset, width = as_float(axis.get("offset", 0.0)), as_float(axis.get("scale"))
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
    src = File(path, name)
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
        xy_um=readonly(xy_um),
        counts=readonly(counts.reshape(1, -1)),
        channel_offset_ev=offset_ev,
        channel_width_ev=width_ev,
        beam_energy_kev=_msa_beam_kev(src, keywords),
        tile=None,
        bse=None,
        pixel_size_um=None,
        checksum=checksum,
    )


def _msa_counts(
    src: File, data: Any, keywords: Mapping[str, Any], max_values: int
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
    return integral_counts(src, "the spectrum", values)


def _msa_keyword(keywords: Mapping[str, Any], keyword: str) -> tuple[str, Any] | None:
    """(units, value) of an EMSA keyword such as ``XPOSITION``, ``BEAMKV -kV``, ``XPOSITION mm``."""
    for key, value in keywords.items():
        base, _, units = str(key).partition("-")
        words = base.split()
        if words and words[0].lstrip("#").upper() == keyword:
            return (units.strip() or " ".join(words[1:])), value
    return None


def _msa_number(src: File, keyword: str, value: Any) -> float:
    number = as_float(value if isinstance(value, int | float) else (str(value).split() or [""])[0])
    if not np.isfinite(number):
        raise src.refuse(
            f"#{keyword} is {value!r}", f"a number after #{keyword}", "fix or re-export the file"
        )
    return number


def _msa_position_um(src: File, keywords: Mapping[str, Any], axis: str) -> float:
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


def _msa_beam_kev(src: File, keywords: Mapping[str, Any]) -> float | None:
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
    src = File(path, name)
    file_reader = _rsciio_reader(src, "rsciio.bruker")
    with _hashed_copy(src, ".bcf") as (copy, checksum):
        problem = _bcf_signature_problem(copy)
        _check_bcf_size(src, copy, max_values, problem)
        items = _call_rsciio(src, copy, file_reader, problem, _BCF)
    cube_item = _bcf_cube_item(src, items)
    cube = np.asarray(cube_item["data"])
    rows, cols, channels = cube.shape
    check_counts_shape(src, rows * cols, channels, None, max_values)
    pixel_y_um, pixel_x_um = (_bcf_pixel_um(src, cube_item["axes"][i]) for i in (0, 1))
    offset_ev, width_ev = _energy_axis_ev(src, cube_item["axes"][2])
    row, col = np.divmod(np.arange(rows * cols), cols)
    xy_um = np.column_stack([col * pixel_x_um, row * pixel_y_um]).astype(np.float64)
    bse = _bcf_bse(items, (rows, cols))
    return SpectraBatch(
        name=name,
        xy_um=readonly(xy_um),
        counts=readonly(integral_counts(src, "the EDS cube", cube.reshape(-1, channels))),
        channel_offset_ev=offset_ev,
        channel_width_ev=width_ev,
        beam_energy_kev=_bcf_beam_kev(cube_item["metadata"]),
        tile=None,
        bse=None if bse is None else readonly(bse),
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


def _check_bcf_size(src: File, copy: Path, max_values: int, problem: str) -> None:
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
    check_counts_shape(src, rows * cols, channels, None, max_values)


def _bcf_cube_item(src: File, items: list[dict[str, Any]]) -> dict[str, Any]:
    for item in items:
        if np.ndim(item["data"]) == 3:
            return item
    titles = [item.get("metadata", {}).get("General", {}).get("title") for item in items]
    raise src.refuse(
        f"the hypermap holds no EDS cube (only images: {titles})",
        "a Bruker hypermap with an EDS spectrum image",
        "export the map with its spectra, or remove the file",
    )


def _bcf_pixel_um(src: File, axis: Mapping[str, Any]) -> float:
    units = str(axis.get("units") or "")
    factor = _factor(units, _LENGTH_UM)
    size = as_float(axis.get("scale")) * (factor or 0.0)
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
        kev = as_float(energy)
        if np.isfinite(kev) and kev > 0:
            return kev
    return None
