"""Preview rendering against a plain astropy + matplotlib quick-look, and a cached preview
against a download of a file of the same size, measured in one run on this machine.

    .venv/bin/python benchmarks/preview.py [--side 4096] [--size 512] [--requests 200]

Rendering: a side x side float32 image (noise and stars), each way in a fresh process:
  (a) quicklook.render (bands of rows through astropy's section, binned as they come);
  (b) astropy getdata + matplotlib imsave of the whole image between zscale limits
      (Pillow's save of the whole image when matplotlib is not installed).
Reported: seconds, seconds per megapixel, and the process's peak memory above its start.
Target: (a) under 1 s and 200 MB for 4096 x 4096.
Serving: GET /api/v1/files/{id}/preview through gunicorn, a cache hit (sendfile from the
preview cache), against GET /api/v1/files/{id}/download of a FITS file of the PNG's size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import fresh_database, workspace  # first: it puts the package on sys.path

import numpy as np
import requests
import yaml
from astropy.io import fits

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from apiserver import ApiServer  # noqa: E402

from archive_daemon import db  # noqa: E402
from archive_daemon.config import load_config  # noqa: E402
from archive_daemon.loader import ingest  # noqa: E402


def _peak_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def child(way: str, path: str, size: int) -> None:
    """One measurement in this fresh process; prints JSON (seconds, peak MB above start)."""
    from archive_daemon.quicklook import render
    from astropy.visualization import ZScaleInterval
    start_kb = _peak_kb()
    started = time.perf_counter()
    writer = "quicklook.render"
    if way == "render":
        render(path, size, "asinh")
    else:
        data = fits.getdata(path)
        low, high = ZScaleInterval().get_limits(data)
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            plt.imsave(Path(path).with_suffix(".baseline.png"), data, vmin=low, vmax=high, cmap="gray", origin="lower")
            writer = "matplotlib imsave"
        except ImportError:
            writer = "Pillow (no matplotlib here)"
            from PIL import Image
            grey = np.clip((data - low) / (high - low) * 255, 0, 255).astype(np.uint8)[::-1]
            Image.fromarray(grey).save(Path(path).with_suffix(".baseline.png"))
    print(json.dumps({"seconds": time.perf_counter() - started, "peak_mb": (_peak_kb() - start_kb) / 1024,
                      "writer": writer}))


def measure(way: str, path: Path, size: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", way, str(path), str(size)], check=True,
                         capture_output=True, text=True, cwd=REPO).stdout
    return json.loads(out.splitlines()[-1])


def image(path: Path, side: int) -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(1000, 20, (side, side)).astype(np.float32)
    ys, xs = rng.integers(5, side - 5, (2, side))
    data[ys, xs] += rng.uniform(500, 20000, side).astype(np.float32)
    fits.PrimaryHDU(data).writeto(path, overwrite=True)


def latency(server: ApiServer, path: str, count: int) -> list[float]:
    session = requests.Session()
    times = []
    for _ in range(count):
        started = time.perf_counter()
        answer = session.get(server.base + path, timeout=30)
        answer.raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    return times


def serving(work: Path, devdb, side: int, size: int, requests_count: int) -> None:
    root = work / "data"
    root.mkdir()
    image(root / "big.fits", side)
    url = fresh_database(devdb, "preview_bench")
    config_path = work / "config.yaml"
    config_path.write_text(yaml.safe_dump({"roots": [{"name": "data", "path": str(root)}],
                                           "access": {"unknown_owner": "public"},
                                           "api": {"preview_cache_dir": str(work / "previews"),
                                                   "preview_max_size": max(size, 1024)}}))
    config = load_config(str(config_path))
    engine = db.create_engine(url)
    ingest(engine, config, config.root("data"), [""], workers=1)
    server = ApiServer(config_path, url, work / "gunicorn.log")
    try:
        ids = dict(engine.connect().exec_driver_sql("SELECT path, id FROM files").fetchall())
        preview = f"/api/v1/files/{ids['big.fits']}/preview?size={size}"
        png = server.get(preview).content  # rendered and cached
        # A FITS file as large as the PNG, for the download to compare with.
        pixels = max(1, (len(png) - 2880) // 2)
        fits.PrimaryHDU(np.zeros(pixels, dtype=np.int16)).writeto(root / "same.fits")
        ingest(engine, config, config.root("data"), [""], workers=1)
        ids = dict(engine.connect().exec_driver_sql("SELECT path, id FROM files").fetchall())
        download = f"/api/v1/files/{ids['same.fits']}/download"
        size_download = len(server.get(download).content)
        for name, path, length in (("cached preview", preview, len(png)), ("download", download, size_download)):
            times = sorted(latency(server, path, requests_count))
            print(f"  {name:15} {length / 1024:7.0f} KiB  median {statistics.median(times):6.2f} ms  "
                  f"p99 {times[int(len(times) * 0.99) - 1]:6.2f} ms  ({requests_count} requests, one client)")
    finally:
        server.stop()
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=4096)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    with workspace(f"a {args.side} x {args.side} float32 image, previews of {args.size} pixels") as (work, devdb):
        path = work / "image.fits"
        image(path, args.side)
        megapixels = args.side * args.side / 1e6
        print("Rendering (a fresh process each; peak memory above the process's start):")
        for label, way in (("(a) quicklook.render", "render"), ("(b) getdata + imsave", "baseline")):
            result = measure(way, path, args.size)
            print(f"  {label:22} {result['seconds']:6.2f} s  {result['seconds'] / megapixels * 1000:6.1f} ms/Mpx  "
                  f"peak +{result['peak_mb']:5.0f} MB  ({result['writer']})")
        path.unlink()
        print("Serving through gunicorn:")
        serving(work, devdb, args.side, args.size, args.requests)


if __name__ == "__main__":
    main()
