"""Readers for the EDS spectra of a session folder: ``spectra/*.npz``, ``*.msa`` and ``*.bcf``.

Each reader returns a validated :class:`~semlive.records.SpectraBatch` or raises
:class:`~semlive.errors.InputDataError` with a one-line message that names the file, says what
was expected and what arrived, and what to do. Units are converted once: positions to µm,
channel energies to eV, beam energy to kV. The checksum is taken over exactly the bytes parsed.
"""

from semlive.acquisition._npz_reader import read_spectra_npz
from semlive.acquisition._rsciio_readers import read_bcf, read_msa
from semlive.acquisition._spectra_common import FORMATS_EXTRA_HINT

__all__ = ["FORMATS_EXTRA_HINT", "read_bcf", "read_msa", "read_spectra_npz"]
