"""Small real FITS files for tests, written with astropy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

DEFAULT_CARDS = {"OBJECT": "NGC 3115", "DATE-OBS": "2024-03-05T06:07:08", "EXPTIME": 30.0,
                 "RA": "10:05:13.9", "DEC": "-07:43:07", "EQUINOX": 2000.0, "OBSTYPE": "OBJECT"}
WCS_CARDS = {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 150.0, "CRVAL2": 2.0,
             "CRPIX1": 5.5, "CRPIX2": 5.5, "CD1_1": -0.01, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": 0.01}


def header(cards: dict | None = None) -> fits.Header:
    """The default observation cards, changed by `cards` (a None value removes a card)."""
    h = fits.Header()
    for key, value in {**DEFAULT_CARDS, **(cards or {})}.items():
        if value is not None:
            h[key] = value
    return h


def image(path: Path, cards: dict | None = None, shape=(10, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(np.zeros(shape, dtype=np.int16), header=header(cards)).writeto(path, overwrite=True)
    return path


def card(key: str, value: str) -> bytes:
    """One card image with `value` written exactly as given (columns 11-80)."""
    return f"{key:<8}= {value:>20}".ljust(80).encode("ascii")


def raw(path: Path, cards: dict[str, str], data: bytes = b"", naxis: tuple[int, ...] = ()) -> Path:
    """A FITS file written byte by byte, so that values astropy would refuse to write can be."""
    head = [card("SIMPLE", "T"), card("BITPIX", "8"), card("NAXIS", str(len(naxis)))]
    head += [card(f"NAXIS{i}", str(n)) for i, n in enumerate(naxis, 1)]
    head += [card(key, value) for key, value in cards.items()]
    block = b"".join(head) + b"END".ljust(80)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(block.ljust(-(-len(block) // 2880) * 2880) + data.ljust(-(-len(data) // 2880) * 2880, b"\0"))
    return path
