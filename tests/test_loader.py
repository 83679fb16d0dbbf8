"""The loader on files a telescope (or a broken one) writes: formats, faults, changes."""

import datetime as dt
import gzip
import os
import shutil
from pathlib import Path

import astropy
import numpy as np
import pytest
from astropy.io import fits

from archive_daemon.fitsfile import Cards, printable
from archive_daemon.loader import ingest
from conftest import failures, rows
from fitsmaker import WCS_CARDS, header, image

NIGHT = "2024-03/04/cam"


def run(engine, config, *prefixes, workers=1):
    return ingest(engine, config, config.root("data"), list(prefixes) or [""], workers)


def test_gzip_file_is_read_through_the_compression(engine, config, archive_root):
    plain = image(archive_root / NIGHT / "a.fits")
    with open(plain, "rb") as src, gzip.open(archive_root / NIGHT / "a.fits.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    plain.unlink()
    run(engine, config)
    row = rows(engine)[f"{NIGHT}/a.fits.gz"]
    assert row["object"] == "NGC 3115"
    assert row["ra"] == pytest.approx(151.30792, abs=1e-4)


def test_tile_compressed_fz_gives_the_image_header_and_its_wcs(engine, config, archive_root):
    hdu = fits.CompImageHDU(np.zeros((10, 10), dtype=np.float32), header=header({**WCS_CARDS, "RA": None, "DEC": None}))
    path = archive_root / NIGHT / "c.fits.fz"
    path.parent.mkdir(parents=True)
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    run(engine, config)
    row = rows(engine)[f"{NIGHT}/c.fits.fz"]
    assert row["object"] == "NGC 3115"
    assert (row["ra"], row["dec"]) == (pytest.approx(150.0, abs=0.01), pytest.approx(2.0, abs=0.01))
    assert row["footprint"] is not None and row["footprint_circle"] is not None
    assert "position from the WCS" in row["notes"]
    covering = ("footprint_circle @> spoint(radians(150.0), radians(2.0)) "
                "AND spoint(radians(150.0), radians(2.0)) @ footprint")  # as searches ask it
    assert list(rows(engine, covering)) == [f"{NIGHT}/c.fits.fz"]


def test_multi_extension_file_takes_metadata_from_the_first_extension(engine, config, archive_root):
    primary = fits.PrimaryHDU(header=header({"RA": None, "DEC": None, "OBJECT": "M 51"}))
    ext = fits.ImageHDU(np.zeros((10, 10), dtype=np.int16), header=fits.Header(WCS_CARDS))
    path = archive_root / NIGHT / "mef.fits"
    path.parent.mkdir(parents=True)
    fits.HDUList([primary, ext, ext.copy()]).writeto(path)
    run(engine, config)
    row = rows(engine)[f"{NIGHT}/mef.fits"]
    assert row["object"] == "M 51"
    assert row["ra"] == pytest.approx(150.0, abs=0.01)
    assert "CTYPE1  = 'RA---TAN'" in row["header"]


@pytest.mark.parametrize("name, content, reason", [
    ("empty.fits", b"", "empty file"),
    ("text.fits", b"observing log, night of March 4\n", "not a FITS file: it is text"),
    ("photo.fits", b"\xff\xd8\xff\xe0" + bytes(3000), "not a FITS file: it is a JPEG image"),
    ("short.fits", b"SIMPLE  =                    T" + b" " * 50, "truncated: the primary header stops 80 bytes"),
    ("noend.fits", b"SIMPLE  =                    T".ljust(80) + b"BITPIX  =                   16".ljust(80)
     + b" " * (2880 - 160) + bytes(range(256)) * 12, "no END card in the primary header"),
])
def test_broken_file_is_recorded_with_a_specific_reason(engine, config, archive_root, name, content, reason):
    (archive_root / NIGHT).mkdir(parents=True)
    (archive_root / NIGHT / name).write_bytes(content)
    image(archive_root / NIGHT / "good.fits")
    summary = run(engine, config)
    assert failures(engine)[f"{NIGHT}/{name}"].startswith(reason)
    assert f"{NIGHT}/good.fits" in rows(engine)  # the run went on
    assert [path for path, _ in summary.failed] == [f"{NIGHT}/{name}"]


def test_truncated_file_is_not_archived(engine, config, archive_root):
    path = image(archive_root / NIGHT / "t.fits", shape=(100, 100))
    os.truncate(path, path.stat().st_size - 5000)
    run(engine, config)
    assert failures(engine)[f"{NIGHT}/t.fits"].startswith("truncated: the header promises 20000 bytes of data")


def test_failed_file_is_retried_once_it_changes(engine, config, archive_root):
    path = archive_root / NIGHT / "late.fits"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    run(engine, config)
    again = run(engine, config)
    assert again.failed == [] and [p for p, _ in again.failed_unchanged] == [f"{NIGHT}/late.fits"]
    image(path)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    summary = run(engine, config)
    assert summary.new == 1
    assert f"{NIGHT}/late.fits" in rows(engine) and failures(engine) == {}


def test_unchanged_files_are_skipped_and_changed_ones_reloaded(engine, config, archive_root):
    for i in range(5):
        image(archive_root / NIGHT / f"r{i}.fits")
    assert run(engine, config).new == 5
    before = rows(engine)
    image(archive_root / NIGHT / "r3.fits", {"OBJECT": "M 104"})
    os.utime(archive_root / NIGHT / "r3.fits", (0, before[f"{NIGHT}/r3.fits"]["mtime"].timestamp() + 1))
    summary = run(engine, config)
    assert (summary.new, summary.updated, summary.unchanged) == (0, 1, 4)
    after = rows(engine)
    assert after[f"{NIGHT}/r3.fits"]["object"] == "M 104"
    assert after[f"{NIGHT}/r1.fits"]["ingested_at"] == before[f"{NIGHT}/r1.fits"]["ingested_at"]


def test_a_directory_named_like_a_data_file_is_walked_not_loaded(engine, config, archive_root):
    image(archive_root / NIGHT / "odd.fits" / "inner.fits")
    summary = run(engine, config)
    assert set(rows(engine)) == {f"{NIGHT}/odd.fits/inner.fits"}
    assert summary.failed == []


def test_hidden_and_partial_files_are_left_alone(engine, config, archive_root):
    image(archive_root / NIGHT / ".r1.fits")
    image(archive_root / NIGHT / "r2.fits.part")
    image(archive_root / NIGHT / "r3.fits")
    run(engine, config)
    assert set(rows(engine)) == {f"{NIGHT}/r3.fits"}


def test_ingesting_a_subtree_or_one_file_touches_only_that(engine, config, archive_root):
    image(archive_root / "2024-03/04/cam/a.fits")
    image(archive_root / "2024-03/05/cam/b.fits")
    run(engine, config, "2024-03/05")
    assert set(rows(engine)) == {"2024-03/05/cam/b.fits"}
    summary = run(engine, config, "2024-03/04/cam/a.fits")
    assert summary.new == 1 and set(rows(engine)) == {"2024-03/04/cam/a.fits", "2024-03/05/cam/b.fits"}


@pytest.mark.parametrize("cards, expected", [
    ({"DATE-OBS": "05/03/98", "UT": "22:30:00"}, "1998-03-05 22:30:00"),
    ({"DATE-OBS": None, "MJD-OBS": 60374.25}, "2024-03-05 06:00:00"),
    ({"DATE-OBS": "2024-03-05", "TIME-OBS": "01:02:03.5"}, "2024-03-05 01:02:03.500000"),
])
def test_observation_date_forms(engine, tmp_path, config, archive_root, cards, expected):
    image(archive_root / "x.fits", cards)
    run(engine, config)
    assert str(rows(engine)["x.fits"]["obs_start"].astimezone(dt.timezone.utc))[:len(expected)] == expected


def test_fk4_b1950_position_is_converted_to_icrs(engine, config, archive_root):
    # 3C 273: B1950 12h26m33.246s +02d19m43.29s is ICRS 12h29m06.70s +02d03m08.6s.
    image(archive_root / "q.fits", {"RA": "12:26:33.246", "DEC": "+02:19:43.29", "EQUINOX": 1950.0, "RADESYS": "FK4"})
    run(engine, config)
    row = rows(engine)["q.fits"]
    assert row["ra"] == pytest.approx(187.27792, abs=2e-4)
    assert row["dec"] == pytest.approx(2.05239, abs=2e-4)


def test_parallel_and_serial_loading_agree(engine, config, archive_root):
    for i in range(80):
        image(archive_root / NIGHT / f"p{i:03}.fits", {"OBJECT": f"T{i}"})
    (archive_root / NIGHT / "bad.fits").write_bytes(b"nonsense")
    summary = run(engine, config, workers=2)
    assert summary.new == 80 and len(summary.failed) == 1
    assert {r["object"] for r in rows(engine).values()} == {f"T{i}" for i in range(80)}


ASTROPY_DATA = Path(astropy.__file__).parent / "io" / "fits" / "tests" / "data"


def test_astropy_test_files_are_each_archived_or_recorded(engine, config, archive_root):
    names = sorted(p.name for p in ASTROPY_DATA.iterdir() if p.is_file())
    assert len(names) > 20
    for name in names:
        shutil.copyfile(ASTROPY_DATA / name, archive_root / name)
    summary = run(engine, config, *names)
    archived, failed = rows(engine), failures(engine)
    assert set(archived) | set(failed) == set(names)
    assert not set(archived) & set(failed)
    assert not [r for r in failed.values() if r.startswith("internal error")]
    assert "compressed_image.fits" in archived and "test0.fits" in archived and "tb.fits" in archived
    assert failed["lzw.fits.Z"] == "not a FITS file: it is a Unix-compressed (.Z) stream"
    assert summary.new == len(archived)


def test_header_values_read_as_astropy_reads_them():
    """The fast card parser gives astropy's value for every card of the samples and of astropy's test files."""
    samples = Path(__file__).parent.parent / "samples" / "lick"
    headers = [b"".join(line.ljust(80)[:80] for line in p.read_bytes().split(b"\n") if line)
               for p in sorted(samples.glob("*.txt"))]
    headers += [p.read_bytes()[:2880 * 10] for p in sorted(ASTROPY_DATA.glob("*.fits"))]
    checked = 0
    for raw in headers:
        cards = Cards(printable(raw))
        for key in cards.keys():
            try:
                expected = fits.Card.fromstring(cards.image(key)).value
            except Exception:
                expected = None
            expected = None if isinstance(expected, fits.card.Undefined) else expected
            assert (cards.get(key), type(cards.get(key))) == (expected, type(expected)), cards.image(key)
            checked += 1
    assert checked > 5000


def test_footprint_pgsphere_rejects_leaves_the_file_and_its_batch_archived(engine, config, archive_root):
    tiny = {**WCS_CARDS, "CD1_1": -1e-13, "CD2_2": 1e-13}  # corners closer than pgsphere's precision
    image(archive_root / NIGHT / "tiny.fits", tiny)
    for i in range(5):
        image(archive_root / NIGHT / f"n{i}.fits", WCS_CARDS)
    summary = run(engine, config)
    archived = rows(engine)
    assert summary.new == 6 and len(archived) == 6
    assert archived[f"{NIGHT}/tiny.fits"]["footprint"] is None
    assert archived[f"{NIGHT}/tiny.fits"]["footprint_circle"] is None  # no circle of no footprint
    assert archived[f"{NIGHT}/tiny.fits"]["ra"] == pytest.approx(151.30792, abs=1e-4)
    assert all(archived[f"{NIGHT}/n{i}.fits"]["footprint"] is not None for i in range(5))
    assert all(archived[f"{NIGHT}/n{i}.fits"]["footprint_circle"] is not None for i in range(5))
