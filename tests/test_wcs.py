"""Footprints from image WCS headers: the corners astropy's WCS gives, whatever form the WCS takes.

The usual gnomonic form is computed by the archive and the others by wcslib from the cards (footprint.py);
both must give what astropy.wcs.WCS gives for the same header.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from archive_daemon.fitsfile import Cards
from archive_daemon.footprint import wcs_footprint
from archive_daemon.skypos import PositionError

TAN = {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 150.0, "CRVAL2": 2.0, "CRPIX1": 1024.5, "CRPIX2": 1000.0}
FORMS = {
    "CD matrix, rotated": {**TAN, "CD1_1": -1.1e-4, "CD1_2": 2e-5, "CD2_1": 1.9e-5, "CD2_2": 1.0e-4},
    "CD matrix, off-diagonal left out": {**TAN, "CD1_1": -1e-4, "CD2_2": 1e-4, "CUNIT1": "deg", "CUNIT2": "deg"},
    "units in capitals": {**TAN, "CDELT1": -1e-4, "CDELT2": 1e-4, "CUNIT1": "DEG", "CUNIT2": "DEG"},
    "units in capitals, SIN (read from the cards)": {**TAN, "CTYPE1": "RA---SIN", "CTYPE2": "DEC--SIN",
                                                     "CDELT1": -1e-4, "CDELT2": 1e-4, "CUNIT1": "DEG", "CUNIT2": "DEG"},
    "CDELT alone": {**TAN, "CDELT1": -2e-4, "CDELT2": 2e-4},
    "PC matrix and CDELT": {**TAN, "CDELT1": -2e-4, "CDELT2": 2e-4, "PC1_1": 0.9, "PC1_2": -0.4, "PC2_1": 0.4,
                            "PC2_2": 0.9},
    "PC without CDELT": {**TAN, "PC1_1": -1e-4, "PC2_2": 1e-4},
    "SIN projection across RA 0": {**TAN, "CTYPE1": "RA---SIN", "CTYPE2": "DEC--SIN", "CRVAL1": 0.05,
                                   "CDELT1": -1e-4, "CDELT2": 1e-4},
    "near the pole": {**TAN, "CRVAL2": 89.95, "CDELT1": -1e-4, "CDELT2": 1e-4},
    "at the pole": {**TAN, "CRVAL2": 90.0, "CDELT1": -1e-4, "CDELT2": 1e-4},
    "south, across RA 0, wide": {**TAN, "CRVAL1": 359.9, "CRVAL2": -62.5, "CD1_1": -2e-3, "CD1_2": -1e-3,
                                 "CD2_1": -1e-3, "CD2_2": 2e-3},
    "integer values": {**TAN, "CRVAL1": 10, "CRVAL2": -5, "CRPIX1": 1024, "CRPIX2": 1000, "CDELT1": -1, "CDELT2": 1,
                       "PC1_1": 0, "PC1_2": 1e-4, "PC2_1": 1e-4, "PC2_2": 0},
    "CROTA2 (read from the cards)": {**TAN, "CDELT1": -2e-4, "CDELT2": 2e-4, "CROTA2": 30.0},
    "LONPOLE (read from the cards)": {**TAN, "CDELT1": -2e-4, "CDELT2": 2e-4, "LONPOLE": 170.0},
    "arcseconds (read from the cards)": {**TAN, "CDELT1": -0.5, "CDELT2": 0.5, "CUNIT1": "arcsec",
                                         "CUNIT2": "arcsec"},
    "CD with CDELT (read from the cards)": {**TAN, "CD1_1": -1e-4, "CD2_2": 1e-4, "CDELT1": 3.0, "CDELT2": 3.0},
    "NCP, the old radio form (read from the cards)": {**TAN, "CTYPE1": "RA---NCP", "CTYPE2": "DEC--NCP",
                                                      "CDELT1": -1e-4, "CDELT2": 1e-4},
    "ZPN with PV terms (read from the cards)": {**TAN, "CTYPE1": "RA---ZPN", "CTYPE2": "DEC--ZPN", "CDELT1": -1e-4,
                                                "CDELT2": 1e-4, "PV2_1": 1.0, "PV2_3": 20.0},
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.filterwarnings("ignore::astropy.wcs.FITSFixedWarning")  # astropy telling what it mended
def test_the_footprint_is_the_corners_astropy_gives(form):
    header = fits.Header({"NAXIS": 2, "NAXIS1": 2048, "NAXIS2": 2000, **FORMS[form]})
    centre, corners = wcs_footprint(Cards(header.tostring()))
    pixels = np.array([[0.5, 0.5], [2048.5, 0.5], [2048.5, 2000.5], [0.5, 2000.5], [1024.5, 1000.5]])
    expected = WCS(header).wcs_pix2world(pixels, 1)
    got = np.array([*corners, centre])
    assert np.allclose(got[:, 1], expected[:, 1], rtol=0, atol=1e-9)
    assert np.allclose((got[:, 0] - expected[:, 0] + 180) % 360 - 180, 0, rtol=0, atol=1e-9)


def test_a_singular_gnomonic_wcs_gives_no_footprint_and_says_why():
    values = {"NAXIS": "2", "NAXIS1": "2048", "NAXIS2": "2000", **{k: repr(v) for k, v in TAN.items()},
              "CD1_1": "0.0", "CD2_2": "0.0"}
    text = "".join(f"{key:<8}= {value:>20}".ljust(80) for key, value in values.items()) + "END".ljust(80)
    with pytest.raises(PositionError, match="WCS unusable: .*singular"):
        wcs_footprint(Cards(text))


@pytest.mark.parametrize("projection", ["TAN", "SIN"])
def test_a_real_with_a_d_exponent_is_read_as_the_standard_says(projection):
    values = {"NAXIS": "2", "NAXIS1": "2048", "NAXIS2": "2000", "CTYPE1": f"'RA---{projection}'",
              "CTYPE2": f"'DEC--{projection}'", "CRVAL1": "1.5D2", "CRVAL2": "2.0D0", "CRPIX1": "1.0245D3",
              "CRPIX2": "1000.5", "CDELT1": "-1.0D-4", "CDELT2": "1.0D-4"}
    text = "".join(f"{key:<8}= {value:>20}".ljust(80) for key, value in values.items()) + "END".ljust(80)
    centre, _ = wcs_footprint(Cards(text))
    assert centre == pytest.approx((150.0, 2.0), abs=1e-9)
