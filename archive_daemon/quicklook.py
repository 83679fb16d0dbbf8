"""Quick-look PNGs of FITS data: images (a cube's first plane) through zscale and an asinh
or linear stretch, 1-D spectra as a line plot.

Images are read in bands of rows through astropy's `section` (only the bytes of the band,
scaled by BZERO/BSCALE band by band) and binned down as they come, so a 4k x 4k float32
image never sits in memory whole; tile-compressed (.fz) images decompress tile by tile the
same way, and gzip files are read forward once.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
from astropy.io import fits
from astropy.visualization import AsinhStretch, LinearStretch, ZScaleInterval
from PIL import Image

STRETCHES = {"asinh": AsinhStretch, "linear": LinearStretch}
_BAND_BYTES = 8 << 20  # rows read at once: a few MB, whatever the image's width
_BLANK_GREY = 0        # NaN and BLANK pixels are drawn black
_SPECTRUM_ASPECT = 2   # a spectrum's plot is twice as wide as it is high


class NoData(Exception):
    """The file holds nothing to draw: no image, no spectrum."""


def _data_hdu(hdulist: fits.HDUList):
    """The first HDU holding an image or a spectrum, without reading its data."""
    for hdu in hdulist:
        if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)) and hdu.shape \
                and all(n > 0 for n in hdu.shape):
            return hdu
    raise NoData("the file has no image or spectrum data")


def _blank_to_nan(band: np.ndarray) -> np.ndarray:
    """Float pixels, infinities as NaN (astropy has made BLANK pixels NaN already)."""
    band = band.astype(np.float32, copy=False)
    band[np.isinf(band)] = np.nan
    return band


def _binned_image(hdu, size: int) -> np.ndarray:
    """The first plane, mean-binned by a whole factor so that its longer side is at most
    `size`; read a band of rows at a time."""
    shape = hdu.shape
    lead = (0,) * (len(shape) - 2)  # a cube's first plane
    ny, nx = shape[-2:]
    factor = max(1, math.ceil(max(ny, nx) / size))
    oy, ox = max(1, ny // factor), max(1, nx // factor)
    step = min(factor, ny), min(factor, nx)
    band_rows = max(1, _BAND_BYTES // (nx * 4 * step[0])) * step[0]
    out = np.empty((oy, ox), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-blank block is NaN, as it should be
        for top in range(0, oy * step[0], band_rows):
            rows = min(band_rows, oy * step[0] - top)
            band = _blank_to_nan(hdu.section[lead + (slice(top, top + rows), slice(0, ox * step[1]))])
            blocks = band.reshape(rows // step[0], step[0], ox, step[1])
            out[top // step[0]:(top + rows) // step[0]] = np.nanmean(blocks, axis=(1, 3))
    return out


def image_png(pixels: np.ndarray, stretch: str) -> bytes:
    """An 8-bit grey PNG of a 2-D array: zscale limits, the stretch, north (last row) up."""
    finite = pixels[np.isfinite(pixels)]
    grey = np.full(pixels.shape, _BLANK_GREY, dtype=np.uint8)
    if finite.size:
        low, high = ZScaleInterval().get_limits(finite)
        if high <= low:
            high = low + 1
        # The interval's limits to 0..1, then the stretch (astropy's ImageNormalize would
        # do the same, but needs matplotlib).
        scaled = np.clip((np.where(np.isfinite(pixels), pixels, low) - low) / (high - low), 0, 1)
        scaled = STRETCHES[stretch]()(scaled, clip=True)
        grey = np.where(np.isfinite(pixels), np.round(scaled * 255), _BLANK_GREY).astype(np.uint8)
    return _png(np.flipud(grey))


def spectrum_png(values: np.ndarray, size: int) -> bytes:
    """A line plot of a 1-D spectrum, `size` wide: each column spans the values it covers
    (and joins the one before), black on white."""
    width = max(2, min(size, values.size))
    height = max(2, width // _SPECTRUM_ASPECT)
    canvas = np.full((height, width), 255, dtype=np.uint8)
    finite = values[np.isfinite(values)]
    if finite.size:
        low, high = np.percentile(finite, [0.5, 99.5])
        if high <= low:
            low, high = low - 1, high + 1
        edges = np.linspace(0, values.size, width + 1).astype(int)
        previous = None
        for x in range(width):
            column = values[edges[x]:max(edges[x + 1], edges[x] + 1)]
            column = column[np.isfinite(column)]
            if not column.size:
                previous = None  # a gap in the spectrum stays a gap
                continue
            ys = np.clip(np.round((np.array([column.min(), column.max()]) - low) / (high - low) * (height - 1)),
                         0, height - 1).astype(int)
            lo, hi = ys.min(), ys.max()
            if previous is not None:
                lo, hi = min(lo, previous), max(hi, previous)
            canvas[height - 1 - hi:height - lo, x] = 0
            previous = int(ys[-1])
    return _png(canvas)


def _png(grey: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(grey).save(out, format="PNG", compress_level=6)
    return out.getvalue()


def render(source, size: int, stretch: str) -> bytes:
    """A PNG of the first image or spectrum in `source` (a path or a binary file object)."""
    # memmap left to astropy: a strict memory map refuses BZERO/BSCALE/BLANK data outright,
    # and `section` reads only the bands asked for either way.
    with fits.open(source, lazy_load_hdus=True) as hdulist:
        hdu = _data_hdu(hdulist)
        shape = [n for n in hdu.shape if n > 1] or [1]
        if len(shape) == 1:
            values = _blank_to_nan(np.asarray(hdu.section[...]).ravel())
            return spectrum_png(values, size)
        return image_png(_binned_image(hdu, size), stretch)
