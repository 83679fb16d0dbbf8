"""Believable pixels for the sample files, so that previews show something real: a sky of
noise and stars for imagers, a spectrum's trace with sky lines for spectrographs, a bias
level with noise and hot pixels for darks. Deterministic (seeded by the file's name).

Frames with more data than `SPARSE_ABOVE` keep their zero-filled (sparse) data part but for
their stars, written a few rows at a time, so the demo costs little disk.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from .fitsfile import Cards

SPARSE_ABOVE = 8 << 20
_TYPES = {8: ">u1", 16: ">i2", 32: ">i4", -32: ">f4", -64: ">f8"}
_STAR = 7  # half-width of a drawn star, pixels


def kind_of(rel: str, cards: Cards) -> str:
    """'spectrum', 'dark' or 'sky', from the frame type and the instrument directory."""
    frame = str(cards.get("OBSTYPE", cards.get("IMAGETYP", ""))).strip().lower()
    if frame in ("dark", "bias", "zero"):
        return "dark"
    instrument = str(cards.get("INSTRUME", "")).lower()
    parts = rel.split("/")
    if "spectrograph" in instrument or "kast" in instrument or (len(parts) > 2 and parts[2] == "shane"):
        return "spectrum"
    return "sky"


def fill(path: Path, offset: int, cards: Cards, rel: str) -> None:
    """Writes the data part of the FITS file at `path`, which starts at `offset`."""
    try:
        dtype = _TYPES[int(cards.get("BITPIX"))]
        shape = (int(cards.get("NAXIS2")), int(cards.get("NAXIS1")))
    except (KeyError, TypeError, ValueError):
        return  # not a plain 2-D image: left as it is
    if int(cards.get("NAXIS", 0)) != 2 or min(shape) < 2:
        return
    zero, scale = float(cards.get("BZERO", 0.0)), float(cards.get("BSCALE", 1.0)) or 1.0
    rng = np.random.default_rng(zlib.crc32(rel.encode()))
    data = np.memmap(path, dtype=dtype, mode="r+", offset=offset, shape=shape)
    kind = kind_of(rel, cards)
    if shape[0] * shape[1] * data.itemsize > SPARSE_ABOVE:
        if kind == "sky":
            _stars(data, rng, zero, scale, background=0.0)
    else:
        physical = {"sky": _sky, "spectrum": _spectrum, "dark": _dark}[kind](shape, rng)
        data[:] = _raw(physical, data.dtype, zero, scale)
    data.flush()
    del data


def _raw(physical: np.ndarray, dtype: np.dtype, zero: float, scale: float) -> np.ndarray:
    raw = (physical - zero) / scale
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        raw = np.clip(np.round(raw), info.min, info.max)
    return raw.astype(dtype)


def _sky(shape, rng) -> np.ndarray:
    """Bias plus sky with Poisson-like noise, a gentle vignetting, and stars."""
    ny, nx = shape
    y, x = np.ogrid[:ny, :nx]
    vignette = 1 - 0.15 * (((x - nx / 2) / nx) ** 2 + ((y - ny / 2) / ny) ** 2)
    image = 1000 + 400 * vignette + rng.normal(0, 22, shape)
    count = max(20, ny * nx // 2500)
    for cy, cx, flux, sigma in _star_list(shape, rng, count):
        y0, y1, x0, x1 = max(cy - _STAR, 0), min(cy + _STAR + 1, ny), max(cx - _STAR, 0), min(cx + _STAR + 1, nx)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        image[y0:y1, x0:x1] += flux * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
    return image


def _star_list(shape, rng, count):
    ny, nx = shape
    ys, xs = rng.integers(0, ny, count), rng.integers(0, nx, count)
    fluxes = 150 * (1 - rng.random(count)) ** -1.2  # many faint stars, a few bright ones
    sigmas = rng.uniform(1.3, 2.0, count)
    return zip(ys.tolist(), xs.tolist(), np.minimum(fluxes, 40000).tolist(), sigmas.tolist())


def _stars(data: np.memmap, rng, zero: float, scale: float, background: float) -> None:
    """Stars alone on a large frame, each written in its own few rows (the rest stays sparse)."""
    ny, nx = data.shape
    for cy, cx, flux, sigma in _star_list(data.shape, rng, max(40, ny * nx // 40000)):
        y0, y1, x0, x1 = max(cy - _STAR, 0), min(cy + _STAR + 1, ny), max(cx - _STAR, 0), min(cx + _STAR + 1, nx)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        star = background + flux * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
        data[y0:y1, x0:x1] = _raw(star, data.dtype, zero, scale)


def _spectrum(shape, rng) -> np.ndarray:
    """A long-slit spectrum along the longer axis: an object's trace (a smooth continuum with
    absorption lines), night-sky emission lines across the slit, bias and noise."""
    transposed = shape[0] > shape[1]
    n_disp, n_slit = (shape[0], shape[1]) if transposed else (shape[1], shape[0])
    w = np.linspace(0, 1, n_disp)
    continuum = 3000 * np.exp(-((w - 0.45) / 0.35) ** 2)
    for centre in rng.uniform(0.1, 0.9, 6):
        continuum *= 1 - 0.5 * np.exp(-((w - centre) / 0.004) ** 2)
    sky = 40 + np.zeros(n_disp)
    for centre, strength in zip(rng.uniform(0, 1, 12), rng.uniform(200, 2500, 12)):
        sky += strength * np.exp(-((w - centre) / 0.0015) ** 2)
    s = np.arange(n_slit)[:, None]
    centre = n_slit / 2 + 0.02 * n_slit * (w - 0.5)  # a slightly tilted trace
    profile = np.exp(-((s - centre[None, :]) / 2.5) ** 2 / 2)
    image = 1000 + sky[None, :] + continuum[None, :] * profile + rng.normal(0, 12, (n_slit, n_disp))
    return image.T if transposed else image


def _dark(shape, rng) -> np.ndarray:
    image = 1000 + rng.normal(0, 8, shape)
    hot = rng.integers(0, shape[0], 60), rng.integers(0, shape[1], 60)
    image[hot] += rng.uniform(500, 20000, 60)
    return image
