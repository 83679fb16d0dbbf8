"""Quick-look previews: known arrays give known images (unit tests of archive_daemon.quicklook), and the
endpoint's access rule, errors and disk cache (in process, real PostgreSQL, real files)."""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import time
import tracemalloc

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from archive_daemon.loader import ingest
from archive_daemon.quicklook import NoData, render
from apiserver import NIGHT, OLD, build_archive
from test_api_contract import assert_names, client_for


def grey(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.mode == "L"
    return np.asarray(image)


def write(path, data, header=None, compressed=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    hdus = [fits.PrimaryHDU(data, header=header)] if not compressed else \
        [fits.PrimaryHDU(), fits.CompImageHDU(data, header=header)]
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def ramp(ny=64, nx=64) -> np.ndarray:
    return np.add.outer(np.arange(ny), np.zeros(nx)).astype(np.float32)  # rises with the row


def test_an_image_is_drawn_north_up_at_the_size_asked(tmp_path):
    pixels = grey(render(write(tmp_path / "a.fits", ramp(128, 64)), 32, "linear"))
    assert pixels.shape == (32, 16)  # binned by 4, aspect kept
    column = pixels[:, 0].astype(int)
    assert column[0] > column[-1] and (np.diff(column) <= 0).all()  # the last FITS row on top


def test_a_small_image_is_not_enlarged(tmp_path):
    assert grey(render(write(tmp_path / "a.fits", ramp(10, 12)), 256, "asinh")).shape == (10, 12)


def test_the_stretch_changes_the_midtones(tmp_path):
    path = write(tmp_path / "a.fits", ramp())
    linear, asinh = grey(render(path, 64, "linear")), grey(render(path, 64, "asinh"))
    assert asinh[32, 0] > linear[32, 0]


def test_a_cube_shows_its_first_plane(tmp_path):
    cube = np.stack([ramp(), np.full((64, 64), 5, np.float32)])
    pixels = grey(render(write(tmp_path / "cube.fits", cube), 64, "linear"))
    assert pixels.shape == (64, 64) and pixels[0, 0] != pixels[-1, 0]


@pytest.mark.parametrize("shape", [(300,), (1, 300)])
def test_a_spectrum_is_a_line_plot(tmp_path, shape):
    values = np.sin(np.linspace(0, 6, 300)).astype(np.float32).reshape(shape)
    pixels = grey(render(write(tmp_path / "spec.fits", values), 200, "asinh"))
    assert pixels.shape == (100, 200)
    assert set(np.unique(pixels)) == {0, 255}
    assert (pixels == 0).any(axis=0).all()  # a line through every column
    assert pixels[:, 0].argmin() > pixels[:, 50].argmin()  # sin(0) lower than sin(1)


def test_nan_and_blank_pixels_are_black_and_do_not_spoil_the_rest(tmp_path):
    data = ramp()
    data[10:20, 10:20] = np.nan
    pixels = grey(render(write(tmp_path / "nan.fits", data), 64, "linear"))
    assert (pixels[64 - 20:64 - 10, 10:20] == 0).all()
    assert pixels[0, 0] == 255
    ints = (ramp() * 10).astype(np.int16)
    ints[:5, :5] = -32768
    header = fits.Header({"BLANK": -32768})
    pixels = grey(render(write(tmp_path / "blank.fits", ints, header), 64, "linear"))
    assert (pixels[-5:, :5] == 0).all() and pixels[0, 0] == 255
    assert (grey(render(write(tmp_path / "allnan.fits", np.full((8, 8), np.nan, np.float32)), 64, "asinh")) == 0).all()


def test_compressed_files_show_what_the_plain_one_shows(tmp_path):
    data = (ramp() * 7).astype(np.int16)
    plain = render(write(tmp_path / "p.fits", data), 64, "asinh")
    assert render(write(tmp_path / "p.fits.fz", data, compressed=True), 64, "asinh") == plain
    (tmp_path / "p.fits.gz").write_bytes(gzip.compress((tmp_path / "p.fits").read_bytes()))
    assert render(tmp_path / "p.fits.gz", 64, "asinh") == plain


def test_a_file_without_data_has_no_preview(tmp_path):
    with pytest.raises(NoData):
        render(write(tmp_path / "empty.fits", None), 64, "asinh")
    table = fits.BinTableHDU.from_columns([fits.Column(name="x", format="E", array=np.zeros(3))])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp_path / "table.fits")
    with pytest.raises(NoData):
        render(tmp_path / "table.fits", 64, "asinh")


def test_a_large_image_renders_quickly_without_being_read_whole(tmp_path):
    rng = np.random.default_rng(1)
    path = write(tmp_path / "big.fits", rng.normal(100, 5, (4096, 4096)).astype(np.float32))
    tracemalloc.start()
    started = time.perf_counter()
    png = render(path, 512, "asinh")
    took = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert grey(png).shape == (512, 512)
    assert peak < 40 << 20, f"{peak / 2**20:.0f} MiB allocated for a 64 MiB image"
    assert took < 3, f"{took:.2f} s"  # about 0.3 s alone; generous for a loaded machine


# -- the endpoint ----------------------------------------------------------------------------

def _data_files(root):
    write(root / OLD / "look" / "sky.fits", ramp(), fits.Header({"DATE-OBS": "2019-05-03T05:00:00",
                                                                 "OBJECT": "sky"}))
    write(root / OLD / "look" / "empty.fits", None, fits.Header({"DATE-OBS": "2019-05-03T05:00:00"}))
    write(root / OLD / "look" / "broken.fits", ramp(), fits.Header({"DATE-OBS": "2019-05-03T05:00:00"}))


@pytest.fixture(scope="module")
def archive(cluster, tmp_path_factory):
    base = tmp_path_factory.mktemp("preview")
    built = build_archive(cluster, base, extra=_data_files, api={"preview_max_size": 512})
    broken = built["root"] / OLD / "look" / "broken.fits"
    os.truncate(broken, 2880)  # archived whole, then its data cut off
    cache = base / "previews"
    config = dataclasses.replace(built["config"], api=dataclasses.replace(
        built["config"].api, preview_cache_dir=cache, preview_cache_bytes=10_000))
    built.update(client=client_for(config, built["engine"]), cache=cache)
    yield built
    built["close"]()


def preview(archive, path, headers=None, **params):
    return archive["client"].simulate_get(f"/api/v1/files/{archive['ids'][path]}/preview", params=params,
                                          headers=headers)


def test_the_preview_of_a_visible_file_is_a_png(archive):
    answer = preview(archive, f"{OLD}/look/sky.fits", size="32")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert grey(answer.content).shape == (32, 32)
    assert "private" in answer.headers["cache-control"]


def test_a_file_the_caller_may_not_read_has_no_preview(archive):
    mine = f"{NIGHT}/cam/mine.fits"
    assert preview(archive, mine).status_code == 404
    assert preview(archive, f"{NIGHT}/cam/theirs.fits", {"Authorization": f"Bearer {archive['tokens']['alice']}"}
                   ).status_code == 404
    assert preview(archive, mine, {"Authorization": f"Bearer {archive['tokens']['alice']}"}).status_code == 200


def test_no_data_is_a_404_saying_so(archive):
    assert_names(preview(archive, f"{OLD}/look/empty.fits"), 404, "file_id")


def test_data_cut_off_after_archiving_is_a_404_until_read_anew(archive):
    answer = preview(archive, f"{OLD}/look/broken.fits")
    assert answer.status_code == 404 and "changed since it was archived" in answer.json["description"]


@pytest.mark.parametrize("params, name", [({"size": "513"}, "size"), ({"size": "8"}, "size"),
                                          ({"stretch": "log"}, "stretch"), ({"zoom": "2"}, "zoom")])
def test_a_wrong_parameter_is_a_400_naming_it(archive, params, name):
    assert_names(preview(archive, f"{OLD}/look/sky.fits", **params), 400, name)


def test_a_cached_preview_is_served_until_the_file_changes(archive):
    path = archive["root"] / OLD / "look" / "sky.fits"
    first = preview(archive, f"{OLD}/look/sky.fits", size="48")
    cached = set(archive["cache"].glob("*.png"))
    assert any(p.read_bytes() == first.content for p in cached)
    again = preview(archive, f"{OLD}/look/sky.fits", size="48")
    assert again.content == first.content and set(archive["cache"].glob("*.png")) == cached
    assert preview(archive, f"{OLD}/look/sky.fits", size="48",
                   headers={"If-None-Match": first.headers["etag"]}).status_code == 304
    write(path, ramp()[::-1].copy())  # the same file, new data
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert preview(archive, f"{OLD}/look/sky.fits", size="48").status_code == 404  # until read anew
    config = archive["config"]
    ingest(archive["engine"], config, config.root("data"), [f"{OLD}/look/sky.fits"], workers=1)
    changed = preview(archive, f"{OLD}/look/sky.fits", size="48")
    assert changed.status_code == 200 and changed.content != first.content
    assert changed.headers["etag"] != first.headers["etag"]


def test_the_cache_stays_within_its_bound(archive):
    for size in range(100, 140):
        assert preview(archive, f"{OLD}/look/sky.fits", size=str(size)).status_code == 200
    assert sum(p.stat().st_size for p in archive["cache"].glob("*.png")) <= 10_000


# -- the demo's sample pixels ----------------------------------------------------------------

def _sample(tmp_path, name, pixels):
    from archive_daemon import samples
    source = samples.SAMPLES / name
    lines = [line.ljust(80)[:80] for line in source.read_bytes().split(b"\n") if line]
    target = tmp_path / ("pixels" if pixels else "plain") / name.replace(".txt", ".fits")
    samples.write_fits(b"".join(lines) + b"END".ljust(80), target, samples.header_file_path(name) if pixels else None)
    return target


@pytest.mark.parametrize("name", ["2019-05_06_nickel_d109-hdu0.txt", "2019-05_02_shane_r650-hdu0.txt"])
def test_sample_pixels_change_only_the_data_and_are_the_same_every_time(tmp_path, name):
    plain, drawn = _sample(tmp_path, name, False), _sample(tmp_path, name, True)
    assert drawn.stat().st_size == plain.stat().st_size
    header = fits.getheader(plain)
    assert fits.getheader(drawn) == header
    again = _sample(tmp_path / "again", name, True)
    assert again.read_bytes() == drawn.read_bytes()
    pixels = grey(render(drawn, 256, "asinh"))
    assert pixels.std() > 10  # not a flat frame


def test_an_imagers_sample_is_a_star_field(tmp_path):
    sky = fits.getdata(_sample(tmp_path, "2019-05_06_nickel_d109-hdu0.txt", True)).astype(float)
    background = np.median(sky)
    assert 1000 < background < 1500 and 10 < np.std(sky[sky < background + 100]) < 60
    assert (sky > background + 1000).sum() > 50  # stars


# -- previews rendered at ingest -------------------------------------------------------------

def test_previews_rendered_at_ingest_are_what_the_api_serves(tmp_path, archive_root, engine):
    from archive_daemon.config import load_config
    from archive_daemon.loader import ingest
    from conftest import write_config
    write(archive_root / "2019-05/02/cam/sky.fits", ramp(), fits.Header({"DATE-OBS": "2019-05-03T05:00:00"}))
    write(archive_root / "2019-05/02/cam/empty.fits", None, fits.Header({"DATE-OBS": "2019-05-03T05:00:00"}))
    cache = tmp_path / "previews"
    config = load_config(str(write_config(tmp_path, archive_root, ingest={"previews": [48, 96]},
                                          api={"preview_cache_dir": str(cache)})))
    summary = ingest(engine, config, config.root("data"), [""], workers=1)
    assert summary.ok  # a file without data is archived all the same
    rendered = set(cache.glob("*.png"))
    assert len(rendered) == 2  # sky.fits at two sizes
    client = client_for(config, engine)
    with engine.connect() as connection:
        sky = connection.exec_driver_sql("SELECT id FROM files WHERE path = %s", ("2019-05/02/cam/sky.fits",)).scalar()
    answer = client.simulate_get(f"/api/v1/files/{sky}/preview", params={"size": "96"})
    assert answer.status_code == 200 and grey(answer.content).shape == (64, 64)
    assert set(cache.glob("*.png")) == rendered  # served from what the ingest rendered


@pytest.mark.parametrize("settings, message", [
    ({"ingest": {"previews": [96]}}, "needs api.preview_cache_dir"),
    ({"ingest": {"previews": [8]}}, "ingest.previews"),
    ({"ingest": {"previews": [2048]}, "api": {"preview_cache_dir": "p"}}, "api.preview_max_size"),
])
def test_ingest_previews_are_checked_at_start_up(tmp_path, archive_root, settings, message):
    from archive_daemon.config import ConfigError, load_config
    from conftest import write_config
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(str(write_config(tmp_path, archive_root, **settings)))
