"""Ingest speed against the baselines, measured in one run on this machine.

    .venv/bin/python benchmarks/ingest.py --files 10000 [--files 100000 ...]

For each N it writes N realistic files (real Lick headers of 150-210 cards in three
instruments' styles, sparse data parts) into a night/instrument tree and measures:
  (a) bare header parsing: astropy `getheader` in one process, no database;
  (b) `archive-daemon ingest` as a whole process, into PostgreSQL;
  (c) the peer-archive baseline: `getheader`, the same position, time and object read the
      usual astropy way (SkyCoord, Time), an existence query, one INSERT and one commit per
      file;
  (d) `archive-daemon ingest` again over the unchanged tree;
  (e) the limit: plain header reading (2880-byte blocks to END, Header.fromstring), one
      loop per core, no database;
and the peak memory of (b) and (d), the worker processes included. The database keeps
PostgreSQL's default durability (fsync on), as a production one does.
(a) and (c) run on a sample of the files (they are per-file loops; their rate does not
depend on N). Targets: b >= 10 x c, b >= 1.4 x a, b >= 0.7 x e, d >= 20k files/s, memory
flat in N.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import time
from pathlib import Path

import astropy.units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.time import Time

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from archive_daemon import db  # noqa: E402
from archive_daemon.fitsfile import BLOCK, Cards, data_size  # noqa: E402
from bench import fresh_database, run_command, tree_sizes, workspace  # noqa: E402

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "lick"
STYLES = {"shane": "2019-05_02_shane_r650-hdu0.txt", "AO": "2019-04_16_AO_s0545-hdu0.txt",
          "nickel": "2019-05_24_nickel_d116-hdu0.txt"}
BASELINE_SAMPLE = 2000


def templates() -> dict[str, tuple[bytes, int]]:
    """Per style: header bytes (padded, with END) and the size of the data part."""
    out = {}
    for style, name in STYLES.items():
        cards = [line.ljust(80)[:80] for line in (SAMPLES / name).read_bytes().split(b"\n") if line]
        raw = b"".join(cards) + b"END".ljust(80)
        raw += b" " * (-len(raw) % BLOCK)
        size = data_size(Cards(raw.decode("ascii", "replace")))
        out[style] = (raw, size + (-size % BLOCK))
    return out


def make_tree(root: Path, n: int) -> list[Path]:
    """N files, 200 per night and instrument directory, each with its own OBJECT."""
    styles = templates()
    paths = []
    for i in range(n):
        style = list(styles)[i % 3]
        raw, data = styles[style]
        night = f"{2019 + (i // 60000)}-{1 + (i // 5000) % 12:02}/{1 + (i // 200) % 28:02}/{style}"
        path = root / night / f"r{i:07}.fits"
        path.parent.mkdir(parents=True, exist_ok=True)
        at = raw.find(b"OBJECT  = ")
        body = raw[:at] + f"OBJECT  = 'target {i:<10}'".ljust(80).encode() + raw[at + 80:] if at >= 0 else raw
        with open(path, "wb") as out:
            out.write(body)
            out.truncate(len(body) + data)
        paths.append(path)
    return paths


def bare_parse(paths: list[Path]) -> float:
    start = time.perf_counter()
    for path in paths:
        fits.getheader(path)
    return len(paths) / (time.perf_counter() - start)


def read_header(path: Path) -> fits.Header:
    """The primary header the plain way: 2880-byte blocks up to the one holding END, parsed
    by astropy's Header.fromstring."""
    blocks = []
    with open(path, "rb") as f:
        while True:
            block = f.read(BLOCK)
            blocks.append(block)
            if len(block) < BLOCK or any(block[i:i + 8] == b"END     " for i in range(0, BLOCK, 80)):
                break
    return fits.Header.fromstring(b"".join(blocks).decode("ascii"))


def header_reading_limit(paths: list[Path]) -> float:
    """Files/s of plain header reading with one loop per core (forked processes): the two-core
    limit an ingest, which must also read these headers, is measured against."""
    cores = os.cpu_count() or 1
    start = time.perf_counter()
    children = []
    for share in range(cores):
        pid = os.fork()
        if pid == 0:
            try:
                for path in paths[share::cores]:
                    read_header(path)
            finally:
                os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    return len(paths) / (time.perf_counter() - start)


def peer_metadata(header) -> tuple:
    """The columns a peer archive fills, read its way: astropy Header, SkyCoord, Time."""
    coord = SkyCoord(header["RA"], header["DEC"], unit=(u.hourangle, u.deg)) if "RA" in header else None
    date = header.get("DATE-OBS")
    if date and "T" not in date and header.get("TIME-OBS"):
        date = f"{date}T{header['TIME-OBS']}"
    return (str(header.get("OBJECT")), header.get("INSTRUME"), header.get("EXPTIME"), header.get("OBSTYPE"),
            Time(date).datetime if date else None,
            float(coord.ra.deg) if coord else None, float(coord.dec.deg) if coord else None)


def peer_baseline(url: str, root: Path, paths: list[Path]) -> float:
    """What peer archives do: header, existence check, insert, commit, one file at a time."""
    engine = db.create_engine(url)
    connection = engine.raw_connection()
    cursor = connection.cursor()
    start = time.perf_counter()
    for path in paths:
        header = fits.getheader(path)
        rel = path.relative_to(root).as_posix()
        cursor.execute("SELECT id FROM files WHERE root = %s AND path = %s", ("peer", rel))
        if cursor.fetchone() is None:
            st = path.stat()
            cursor.execute(
                "INSERT INTO files (root, path, size, mtime, object, instrument, exptime, frame_type, obs_start,"
                " ra, dec, pos, header) VALUES (%s, %s, %s, to_timestamp(%s), %s, %s, %s, %s, %s, %s, %s,"
                " spoint(radians(%s), radians(%s)), %s)",
                ("peer", rel, st.st_size, st.st_mtime, *(m := peer_metadata(header)), m[-2], m[-1], header.tostring()))
        connection.commit()
    rate = len(paths) / (time.perf_counter() - start)
    connection.close()
    engine.dispose()
    return rate


def main() -> None:
    with workspace("ingest") as (work, devdb):
        for n in tree_sizes(__doc__, 10000):
            root = work / f"tree{n}"
            started = time.perf_counter()
            paths = make_tree(root, n)
            print(f"\n== {n} files ({time.perf_counter() - started:.0f} s to write)")
            sample = random.Random(1).sample(paths, min(BASELINE_SAMPLE, n))
            a = bare_parse(sample)
            e = header_reading_limit(paths)
            url = fresh_database(devdb, f"bench{n}")
            config = work / f"config{n}.yaml"
            config.write_text(f"roots:\n  - name: bench\n    path: {root}\n")
            ran = run_command(config, url, "ingest", str(root))
            elapsed, peak_b, line = ran.elapsed, ran.peak_mb, ran.summary
            b = n / elapsed
            c = peer_baseline(url, root, sample)
            ran = run_command(config, url, "ingest", str(root))
            elapsed_d, peak_d, line_d = ran.elapsed, ran.peak_mb, ran.summary
            d = n / elapsed_d
            print(f"  {line}\n  {line_d}")
            print(f"  (a) astropy getheader, 1 process, no database: {a:8.0f} files/s")
            print(f"  (b) archive-daemon ingest, whole process:      {b:8.0f} files/s  peak {peak_b:.0f} MB")
            print(f"  (c) peer baseline, one insert+commit per file: {c:8.0f} files/s")
            print(f"  (d) re-ingest of the unchanged tree:           {d:8.0f} files/s  peak {peak_d:.0f} MB")
            print(f"  (e) plain header reading, one loop per core:   {e:8.0f} files/s")
            print(f"  ratios: b/c = {b / c:.1f} (target >= 10)   b/a = {b / a:.2f} (target >= 1.4)   "
                  f"b/e = {b / e:.2f} (target >= 0.70)")
            shutil.rmtree(root)


if __name__ == "__main__":
    main()
