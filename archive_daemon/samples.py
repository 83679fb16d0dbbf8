"""Build a night-layout tree of real FITS files from the Lick sample headers.

The samples are primary headers as text (`2019-05_02_shane_r650-hdu0.txt`) plus whole,
partly broken files. The demo and the tests turn them into what a telescope leaves on a
mount: `2019-05/02/shane/r650.fits`, full size (the data part is sparse, so it costs no
disk), with the broken files placed in the nights their names give.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Iterator

from . import samplepixels
from .fitsfile import BLOCK, Cards, data_size, printable

_HEADER_NAME = re.compile(r"(\d{4}-\d{2})_(\d{2})_([^_]+)_(.+)-hdu0\.txt$")
_DATED_NAME = re.compile(r"_(\d{4})_(\d{2})_(\d{2})_(?:(nickel)_)?")

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "lick"


def header_file_path(name: str) -> str | None:
    """Where a `*-hdu0.txt` sample lives in the night layout, or None for other names."""
    match = _HEADER_NAME.match(name)
    if not match:
        return None
    month, day, instrument, stem = match.groups()
    return f"{month}/{day}/{instrument}/{stem}.fits"


def write_fits(cards: bytes, dest: Path, pixels: str | None = None) -> None:
    """A FITS file from raw 80-column header cards, with a sparse data part of the right size;
    with `pixels` (the file's place in the tree, which seeds them), believable pixel data."""
    header_bytes = cards + b" " * (-len(cards) % BLOCK)
    parsed = Cards(printable(cards))
    data = data_size(parsed)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        out.write(header_bytes)
        out.truncate(len(header_bytes) + data + (-data % BLOCK))
    if pixels is not None and data:
        samplepixels.fill(dest, len(header_bytes), parsed, pixels)


def _placements(source: Path) -> Iterator[tuple[str, Path]]:
    """(path in the night layout, sample file) for every sample that belongs in the tree."""
    for sample in sorted(source.iterdir()):
        rel = header_file_path(sample.name)
        if rel is not None:
            yield rel, sample
        elif sample.is_file() and sample.suffix in (".fits", ".ccd"):
            match = _DATED_NAME.search(sample.name)
            night = f"{match[1]}-{match[2]}/{match[3]}/{match[4] or 'shane'}" if match else "misc"
            yield f"{night}/{sample.name}", sample
    nested = source / "2012-01" / "18" / "shane"
    for sample in sorted(nested.iterdir()) if nested.is_dir() else []:
        yield f"2012-01/18/shane/{sample.name}", sample


def build_tree(dest: Path, source: Path = SAMPLES, pixels: bool = False) -> list[str]:
    """Write the sample tree under `dest`; returns its relative paths.

    Files already there are kept as they are, so loading a rebuilt tree again finds
    nothing changed.
    """
    placed = []
    for rel, sample in _placements(source):
        target = dest / rel
        if not target.exists():
            if header_file_path(sample.name) is not None:
                lines = [line.ljust(80)[:80] for line in sample.read_bytes().split(b"\n") if line]
                write_fits(b"".join(lines) + b"END".ljust(80), target, rel if pixels else None)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(sample, target)
        placed.append(rel)
    return placed
