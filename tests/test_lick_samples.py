"""Every Lick sample, through the real loader into real PostgreSQL.

The expected values were checked by hand against the headers: RA as sexagesimal hours,
DEC as sexagesimal degrees, times in UTC, FK5 positions of date precessed to ICRS.
"""

import datetime as dt

import pytest

from conftest import failures, rows

# path: (object, observation start UTC, RA, DEC in ICRS degrees rounded to 0.001)
EXPECTED = {
    '2006-08/17/shane/b100.fits': ('sn2006eb uv', '2006-08-18T10:31:16', 18.570, 0.009),
    '2006-08/17/shane/r96.fits': ('IR arc R2', '2006-08-18T10:16:20', 354.703, -20.668),
    '2006-09/20/nickel/spec122.fits': ('flat field lamp', '2006-09-21T09:21:18', 15.248, 13.510),
    '2006-09/20/nickel/version_verify_error_2006_09_20_nickel_spec122.ccd': ('flat field lamp', '2006-09-21T09:21:18', 15.248, 13.510),
    '2006-12/06/nickel/lick320-no-object.fits': (None, '2006-12-06T21:00:04', 86.823, 64.195),
    '2006-12/06/nickel/lick320.fits': ('GRB061126', '2006-12-06T21:00:04', 86.823, 64.195),
    '2006-12/06/nickel/spec100.fits': ('neon lamp', '2006-12-07T05:09:04', 3.758, 20.251),
    '2007-03/17/nickel/g953-no-obstype.fits': ('dark', '2007-03-18T07:37:05', 149.394, -0.516),
    '2007-03/17/nickel/g953.fits': ('dark', '2007-03-18T07:37:05', 149.394, -0.516),
    '2007-03/29/nickel/spec154.fits': ('Hg', '2007-03-30T10:35:36', 185.764, 27.565),
    '2007-04/24/nickel/spec200.fits': ('bias', '2007-04-25T03:08:54', 138.691, -7.528),
    '2007-04/24/nickel/spec289-bad-version-bad-instr.fits': ('HD_1682345_B9III', '2007-04-25T11:56:56', 274.888, 3.202),
    '2007-04/24/nickel/spec289-bad-version.fits': ('HD_1682345_B9III', '2007-04-25T11:56:56', 274.888, 3.202),
    '2007-04/24/nickel/spec289-no-version-no-instr.fits': ('HD_1682345_B9III', '2007-04-25T11:56:56', 274.888, 3.202),
    '2007-08/10/shane/r1014.fits': ('flat', '2007-08-11T00:59:09', 213.000, 37.433),
    '2007-08/20/shane/r90.fits': ('Vis2S flat', '2007-08-21T10:07:51', 41.074, 37.446),
    '2008-03/11/shane/r814.fits': ('test', '2008-03-11T23:24:44', None, None),
    '2008-09/16/shane/b7993.fits': ('KAST BLUE -108c dark ARAL s8g1', '2008-09-16T19:29:46', 3.821, 0.000),
    '2012-01/02/shane/b808.fits': ('test', '2012-01-03T00:06:00', 341.777, 37.343),
    '2012-01/02/shane/r36.fits': ('IR flat', '2012-01-03T06:12:31', 25.702, 29.370),
    '2012-01/18/shane/b1011.fits': ('Bias', '2012-01-19T00:58:14', 10.704, 37.340),
    '2012-01/18/shane/good_2012_01_18_r1002.fits': ('Arc', '2012-01-19T00:54:16', 9.719, 37.341),
    '2012-01/18/shane/no_end_2012_01_18_b1083.fits': ('GD319', '2012-01-19T10:36:40', 192.620, 55.042),
    '2012-01/18/shane/verify_error_2012_01_18_r1002.fits': ('Arc', '2012-01-19T00:54:16', 9.719, 37.341),
    '2012-01/20/shane/r104.fits': (None, '2012-01-21T01:01:22', 13.476, 37.341),
    '2012-01/25/nickel/d189-no-coord.fits': ('m67', '2012-01-26T07:07:32', None, None),
    '2012-01/25/nickel/d189-no-date.fits': ('m67', '2012-01-25T00:00:00', 132.785, 11.872),
    '2014-04/16/AO/m140417-1202-modified-2.fits': ('Modified arc', '2014-04-16T21:35:13', None, None),
    '2014-04/16/AO/m140417-1202-modified.fits': ('Modified arc', '2014-04-16T21:35:13', None, None),
    '2014-04/16/AO/m140417-1203-1-modified.fits': ('K6021275', '2014-04-16T22:32:10', None, None),
    '2014-04/16/AO/m140417-1203-1.fits': ('K6021275', '2014-04-16T22:32:10', None, None),
    '2014-05/19/AO/m140520-0441-modified.fits': ('modified for test', '2014-05-19T23:58:12', 115.383, 37.354),
    '2014-05/20/AO/s0002.fits': ('domeflats', '2014-05-20T22:49:25', 129.436, 37.370),
    '2014-05/20/AO/s0010-001.fits': (None, '2014-05-20T00:00:00', None, None),
    '2014-05/20/AO/s0011-1.fits': (None, '2014-05-20T23:15:39', None, None),
    '2014-05/20/AO/s0051.fits': ('flats H', '2014-05-21T03:38:45', 171.367, 38.010),
    '2014-07/16/AO/s0196-modified.fits': (None, '2014-07-16T00:00:00', None, None),
    '2014-07/16/AO/s0196.fits': (None, '2014-07-16T21:55:15', None, None),
    '2018-06/24/nickel/d38034-no-date.fits': ('dflat', '2018-06-25T02:37:11', 190.810, -5.044),
    '2018-11/16/shane/b1004.fits': ('arc_2', '2018-11-17T03:08:07', 341.519, 37.276),
    '2018-11/16/shane/r1011.fits': ('arc_05', '2018-11-17T03:15:20', 343.182, 37.275),
    '2018-11/20/AO/s0066.fits': ('Seeing', '2018-11-21T07:56:19', 41.844, 43.402),
    '2019-01/22/AO/s0000.fits': ('alignment', '2019-01-22T22:19:34', 335.081, 37.286),
    '2019-04/16/AO/s0545.fits': ('G_258-33', '2019-04-17T12:47:54', 275.397, 37.357),
    '2019-04/21/AO/s0180.fits': (None, '2019-04-22T09:12:40', 224.930, 51.653),
    '2019-05/02/shane/b607.fits': ('blue flat', '2019-05-03T01:03:06', 114.709, 37.414),
    '2019-05/02/shane/r650.fits': ('AT2019 ehk', '2019-05-03T04:22:58', 185.734, 15.826),
    '2019-05/02/shane/r684.fits': ('HACN143arc', '2019-05-03T09:28:29', 247.428, 17.469),
    '2019-05/04/shane/b2.fits': (None, '2019-05-05T00:19:33', None, None),
    '2019-05/06/nickel/d109.fits': ('Bias', '2019-05-07T04:14:46', 167.097, 39.945),
    '2019-05/13/nickel/d185.fits': ('morning flats', '2019-05-14T18:00:03', 20.933, 39.754),
    '2019-05/24/nickel/d116.fits': ('Focusing 14', '2019-05-25T07:28:38', 217.765, 28.043),
    '2019-07/18/AO/s1173.fits': (None, '2019-07-18T22:52:14', None, None),
    '2019-11/09/AO/s1303-modified.fits': ('dark', '2019-11-10T13:39:38', 132.362, 37.561),
    '2019-11/09/AO/s1303.fits': ('dark', '2019-11-10T13:39:38', 132.362, 37.561),
    '2019-12/16/shane/r5079.fits': (None, '2019-12-17T01:00:59', None, None),
}

BROKEN = {
    "2012-01/18/shane/no_simple_2012_01_18_r1002.fits": "not a FITS file: no SIMPLE card (the first keyword is TESTVAL)",
    "2012-01/18/shane/no_end_no_simple_2012_01_18_b1083.fits": "not a FITS file: no SIMPLE card (the first keyword is TEST)",
}


@pytest.fixture(scope="module")
def archived(sample_archive):
    engine, _, _ = sample_archive
    return rows(engine)


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_sample_is_archived_with_object_time_and_position(archived, path):
    obj, start, ra, dec = EXPECTED[path]
    row = archived[path]
    assert row["object"] == obj
    assert row["obs_start"].astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") == start
    assert (None if row["ra"] is None else round(row["ra"], 3)) == (None if ra is None else pytest.approx(ra, abs=1e-3))
    assert (None if row["dec"] is None else round(row["dec"], 3)) == (None if dec is None else pytest.approx(dec, abs=1e-3))
    assert (row["pos"] is None) == (ra is None)


def test_broken_samples_are_recorded_with_their_reason(sample_archive):
    engine, summary, _ = sample_archive
    assert failures(engine) == BROKEN
    assert sorted(path for path, _ in summary.failed) == sorted(BROKEN)


def test_nothing_is_lost_every_sample_file_is_archived_or_recorded(sample_archive, archived):
    engine, summary, tree = sample_archive
    on_disk = {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.suffix in (".fits", ".ccd")}
    assert on_disk == set(archived) | set(failures(engine))
    assert summary.new == len(archived)


def test_impossible_position_is_stored_as_none_and_noted(archived):
    row = archived["2008-03/11/shane/r814.fits"]
    assert row["ra"] is None and row["pos"] is None
    assert "RA '29829:03:39.4'" in row["notes"]


def test_header_date_from_another_year_is_ignored_for_the_good_one(archived):
    # ShARCS wrote a stale DATE-OBS (2007) next to the right DATE-BEG.
    row = archived["2019-04/16/AO/s0545.fits"]
    assert row["date_source"] == "DATE-BEG"
    assert row["program"] == "2019A_S014 [4662]"
    assert row["exptime"] == pytest.approx(15.0)


def test_date_falls_back_to_the_night_directory_and_says_so(archived):
    row = archived["2014-07/16/AO/s0196-modified.fits"]
    assert row["date_source"] == "night directory"
    assert "TIME-OBS '21:589895:15.624' is not a time of day" in row["notes"]
    assert "using the night directory (2014-07-16)" in row["notes"]


def test_garbage_date_keyword_is_skipped_for_the_next(archived):
    row = archived["2014-07/16/AO/s0196.fits"]
    assert row["date_source"] == "DATE-OBS+TIME-OBS"
    assert "DATE-BEG '584556019-04-03T14:25:51.615' is not a date" in row["notes"]


def test_fk5_position_of_date_is_precessed_to_icrs(archived):
    row = archived["2012-01/25/nickel/d189-no-date.fits"]
    assert "converted from FK5 equinox 2012.07" in row["notes"]
    assert row["ra"] == pytest.approx(132.785, abs=1e-3)  # header: 08:51:48.1 of date = 132.950


def test_header_is_stored_whole_as_80_column_cards(archived):
    header = archived["2019-05/02/shane/r650.fits"]["header"]
    assert len(header) % 80 == 0
    assert header.startswith("SIMPLE  =")
    assert header[-80:].rstrip() == "END"
    assert "OBJECT  = 'AT2019 ehk        '" in header


def test_corrupt_card_is_replaced_and_noted(archived):
    row = archived["2008-09/16/shane/b7993.fits"]
    assert "\x00" not in row["header"]
    assert "non-printable characters replaced" in row["notes"]


def test_file_with_bytes_after_its_data_is_archived_with_a_note(archived):
    row = archived["2012-01/18/shane/no_end_2012_01_18_b1083.fits"]
    assert "bytes after the primary data are not a FITS extension" in row["notes"]


def test_out_of_order_mandatory_cards_are_archived_with_a_note(archived):
    assert "not standard FITS" in archived["2012-01/18/shane/verify_error_2012_01_18_r1002.fits"]["notes"]


def test_instrument_profiles_set_telescope_and_ignore_software_names_as_programs(archived):
    kast = archived["2019-05/02/shane/r650.fits"]
    assert (kast["telescope"], kast["instrument"], kast["program"]) == ("Shane", "Kast", None)
    assert archived["2019-05/24/nickel/d116.fits"]["instrument"] == "Nickel Direct Camera"


def test_cone_search_uses_pgsphere(sample_archive):
    engine, _, _ = sample_archive
    cone = "pos <@ scircle(spoint(radians(185.734), radians(15.826)), radians(0.01))"
    assert list(rows(engine, cone)) == ["2019-05/02/shane/r650.fits"]


def test_footprint_answers_which_images_cover_a_point(sample_archive):
    engine, _, _ = sample_archive
    covering = "spoint(radians(217.7646), radians(28.00996)) @ footprint"
    assert list(rows(engine, covering)) == ["2019-05/24/nickel/d116.fits"]
