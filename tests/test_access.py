"""Who may read what: every access rule, their precedence, and the one visibility predicate."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import pytest
import yaml

from zoneinfo import ZoneInfo

from archive_daemon import principals, schedule
from archive_daemon.access import Facts, Rules, Schedule, add_months
from archive_daemon.config import load_config
from archive_daemon.loader import ingest
from archive_daemon.visibility import VISIBLE, principals_of, user_of_token
from conftest import rows, write_config
from fitsmaker import image
from test_cli import cli

LICK_OVERRIDES = Path(__file__).parent.parent / "samples" / "lick" / "2012-01" / "18" / "shane"
TODAY = dt.date.today()
RECENT = TODAY - dt.timedelta(days=30)          # a night still in its proprietary period
NIGHT, NEXT = f"{RECENT:%Y-%m/%d}", f"{RECENT + dt.timedelta(days=1):%Y-%m/%d}"
ISO, NEXT_ISO = RECENT.isoformat(), (RECENT + dt.timedelta(days=1)).isoformat()


def observe(root: Path, path: str, **cards) -> None:
    """A Shane exposure on the file's night, with these header cards changed."""
    night = dt.date.fromisoformat(path[:10].replace("/", "-")) if path[4] == "-" else RECENT
    defaults = {"TELESCOP": "Shane", "INSTRUME": "Kast", "OBSTYPE": "OBJECT",
                "DATE-OBS": f"{night + dt.timedelta(days=1)}T05:00:00"}
    image(root / path, {**defaults, **cards})


def load(engine, tmp_path, root, **access):
    config = load_config(str(write_config(tmp_path, root, access=access) if access else write_config(tmp_path, root)))
    ingest(engine, config, config.root("data"), [""], workers=1)
    return config


def decided(engine) -> dict[str, tuple]:
    """path -> (public now?, grants, frame type, rule)."""
    now = dt.datetime.now(dt.timezone.utc)
    return {p: (r["public_date"] is not None and r["public_date"] <= now, r["grants"], r["frame_type"], r["access_rule"])
            for p, r in rows(engine).items()}


def visible(engine, who: list[str], where: str = "true") -> list[str]:
    connection = engine.raw_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT f.path FROM files f WHERE {VISIBLE} AND {where} ORDER BY f.path",
                           {"principals": who})
            return [r[0] for r in cursor.fetchall()]
    finally:
        connection.close()


def set_schedule(engine, *entries):
    connection = engine.raw_connection()
    schedule.store(connection, [(t, dt.date.fromisoformat(n), p) for t, n, p in entries])
    connection.close()


def test_lick_override_files_the_highest_number_is_in_force(engine, tmp_path, archive_root):
    directory = archive_root / NIGHT / "cam"
    directory.mkdir(parents=True)
    for override in LICK_OVERRIDES.glob("override*.access"):
        shutil.copy(override, directory)
    for name in ("r1234", "r2345", "r3000", "b3000", "b2345", "b2345.red"):
        observe(archive_root, f"{NIGHT}/cam/{name}.fits")
    set_schedule(engine, ("Shane", ISO, "2024A-007"))
    load(engine, tmp_path, archive_root)
    result = decided(engine)
    at = f"{NIGHT}/cam/"
    # override.3.access is in force; the lines of override.access and override.1.access are not
    assert result[at + "r3000.fits"][:2] == (False, ["ownerhint1"])
    assert "override.3.access line 2" in result[at + "r3000.fits"][3]
    assert result[at + "b3000.fits"][0] is True
    assert result[at + "r2345.fits"][2] == "object"              # obstype science
    assert result[at + "b2345.fits"][1:3] == (["2024A-007"], "arc")  # an arc: the night's programs
    assert result[at + "b2345.red.fits"][2] == "arc"                 # b2345.fits also covers b2345.*.fits
    assert result[at + "r1234.fits"][1] == ["2024A-007"]            # no override line: the schedule


def test_lower_numbered_override_applies_when_alone(engine, tmp_path, archive_root):
    directory = archive_root / NIGHT / "cam"
    directory.mkdir(parents=True)
    shutil.copy(LICK_OVERRIDES / "override.access", directory)
    shutil.copy(LICK_OVERRIDES / "override.1.access", directory)
    observe(archive_root, f"{NIGHT}/cam/r1234.fits")
    load(engine, tmp_path, archive_root, calibrations="public")
    public, grants, frame_type, _ = decided(engine)[f"{NIGHT}/cam/r1234.fits"]
    assert (grants, frame_type) == (["ownerhint3", "ownerhint4"], "arc")
    assert public is False  # an override's access line comes before the calibration rule


@pytest.mark.parametrize("name", ["override.\u0669.access", "override.\uff19.yaml", "override.access\n",
                                  "override.2.yaml\n", "override.1e3.access"],
                         ids=["arabic-indic-digit", "fullwidth-digit", "newline", "numbered-newline", "not-a-number"])
def test_only_ascii_numbered_names_are_override_files(engine, tmp_path, archive_root, name):
    """A number in another script, or a name ending in a newline, is not an override file:
    it neither governs the directory nor supersedes the one in force."""
    directory = archive_root / NIGHT / "cam"
    observe(archive_root, f"{NIGHT}/cam/r1.fits")
    (directory / "override.access").write_text("r* access alice\n")
    (directory / name).write_text("r* access public\n")
    load(engine, tmp_path, archive_root)
    public, grants, _, rule = decided(engine)[f"{NIGHT}/cam/r1.fits"]
    assert (public, grants) == (False, ["alice"]) and "override.access line 1" in rule, rule


def test_a_night_directory_named_in_other_digits_is_off_the_layout(engine, tmp_path, archive_root):
    """`２０１９-05/02` is no night directory: the file's night comes from its observation time,
    so a directory name cannot date a recent exposure years back and make it public."""
    image(archive_root / "\uff12\uff10\uff11\uff19-05/02/cam/r1.fits",
          {"TELESCOP": "Shane", "PROPID": "P1", "DATE-OBS": f"{RECENT + dt.timedelta(days=1)}T05:00:00"})
    load(engine, tmp_path, archive_root)
    public, grants, _, _ = next(iter(decided(engine).values()))
    assert (public, grants) == (False, ["P1"])
    assert next(iter(rows(engine).values()))["night"] == RECENT


def test_broken_override_file_fails_closed_and_names_the_line(engine, tmp_path, archive_root):
    (archive_root / NIGHT / "cam").mkdir(parents=True)
    (archive_root / NIGHT / "cam" / "override.access").write_text("# ok\nr* access\n")
    observe(archive_root, f"{NIGHT}/cam/r1.fits", PROPID="2024A-007")
    observe(archive_root, f"{NIGHT}/cam2/d1.fits", PROPID="2024A-007")
    config = load(engine, tmp_path, archive_root, unknown_owner="public")
    broken = rows(engine)[f"{NIGHT}/cam/r1.fits"]
    assert broken["public_date"] is None and broken["grants"] == []
    assert "override.access line 2: access needs at least one name" in broken["access_rule"]
    assert rows(engine)[f"{NIGHT}/cam2/d1.fits"]["grants"] == ["2024A-007"]  # other directories unaffected
    explained = cli("--config", config.source, "access", "explain", str(archive_root / NIGHT / "cam" / "r1.fits"),
                    database_url=str(engine.url.render_as_string(hide_password=False)))
    assert "public from: never" in explained.stdout and "line 2" in explained.stdout


def test_yaml_override_and_all_observers(engine, tmp_path, archive_root):
    (archive_root / NIGHT / "cam").mkdir(parents=True)
    (archive_root / NIGHT / "cam" / "override.yaml").write_text(yaml.safe_dump([
        {"files": "pub*", "access": "public"},
        {"files": "team*", "access": ["all-observers", "alice"]},
    ]))
    observe(archive_root, f"{NIGHT}/cam/pub1.fits")
    observe(archive_root, f"{NIGHT}/cam/team1.fits")
    set_schedule(engine, ("Shane", ISO, "P1"), ("Shane", ISO, "P2"), ("Nickel", ISO, "P3"))
    load(engine, tmp_path, archive_root)
    result = decided(engine)
    assert result[f"{NIGHT}/cam/pub1.fits"][0] is True
    assert result[f"{NIGHT}/cam/team1.fits"][:2] == (False, ["P1", "P2", "alice"])


def test_always_public_instruments_and_suffixes_come_before_programs(engine, tmp_path, archive_root):
    observe(archive_root, f"{NIGHT}/allsky/a.fits", INSTRUME="AllSkyCam", PROPID="P1")
    observe(archive_root, f"{NIGHT}/cam/r1_ql.fits", PROPID="P1")
    observe(archive_root, f"{NIGHT}/cam/R2_QL.fits", PROPID="P1")
    observe(archive_root, f"{NIGHT}/cam/r1.fits", PROPID="P1")
    load(engine, tmp_path, archive_root, public_instruments=["allskycam"], public_suffixes=["_ql.fits"])
    result = decided(engine)
    assert result[f"{NIGHT}/allsky/a.fits"][0] is True
    assert result[f"{NIGHT}/cam/r1_ql.fits"][0] is True
    assert result[f"{NIGHT}/cam/R2_QL.fits"][0] is True       # suffixes match whatever the case
    assert result[f"{NIGHT}/cam/r1.fits"][:2] == (False, ["P1"])


@pytest.mark.parametrize("policy, public", [("share", False), ("public", True)])
def test_calibrations_are_shared_with_the_nights_programs_or_public(engine, tmp_path, archive_root, policy, public):
    observe(archive_root, f"{NIGHT}/cam/bias1.fits", OBSTYPE="BIAS")
    set_schedule(engine, ("Shane", ISO, "P1"), ("Shane", ISO, "P2"))
    load(engine, tmp_path, archive_root, calibrations=policy)
    result = decided(engine)[f"{NIGHT}/cam/bias1.fits"]
    assert result[0] is public
    if not public:
        assert result[1] == ["P1", "P2"]


def test_program_from_the_header_wins_over_the_schedule(engine, tmp_path, archive_root):
    observe(archive_root, f"{NIGHT}/cam/h.fits", PROPID="HEADER-P")
    observe(archive_root, f"{NIGHT}/cam/s.fits")
    set_schedule(engine, ("Shane", ISO, "SCHED-P"))
    load(engine, tmp_path, archive_root)
    result = decided(engine)
    assert result[f"{NIGHT}/cam/h.fits"][1] == ["HEADER-P"]
    assert result[f"{NIGHT}/cam/s.fits"][1] == ["SCHED-P"]
    assert "schedule" in result[f"{NIGHT}/cam/s.fits"][3]


@pytest.mark.parametrize("default, public", [("proprietary", False), ("public", True)])
def test_owner_unknown_takes_the_configured_default(engine, tmp_path, archive_root, default, public):
    observe(archive_root, f"{NIGHT}/cam/x.fits")
    load(engine, tmp_path, archive_root, unknown_owner=default)
    assert decided(engine)[f"{NIGHT}/cam/x.fits"][:2] == (public, [])


def test_proprietary_period_ended_yesterday_vs_ends_tomorrow(engine, tmp_path, archive_root):
    # public at local noon after the night, 12 months on: nights chosen to end yesterday and tomorrow
    ended = dt.date(TODAY.year - 1, TODAY.month, 1) + (TODAY - dt.date(TODAY.year, TODAY.month, 1)) - dt.timedelta(days=2)
    ends = ended + dt.timedelta(days=2)
    for night in (ended, ends):
        observe(archive_root, f"{night:%Y-%m/%d}/cam/r.fits", PROPID="P1")
    load(engine, tmp_path, archive_root)
    assert visible(engine, []) == [f"{ended:%Y-%m/%d}/cam/r.fits"]
    assert len(visible(engine, ["P1"])) == 2


def test_period_per_program_instrument_and_telescope(engine, tmp_path, archive_root):
    observe(archive_root, f"{NIGHT}/cam/p.fits", PROPID="LONG")
    observe(archive_root, f"{NIGHT}/cam/i.fits", INSTRUME="ShARCS")
    observe(archive_root, f"{NIGHT}/nickel/t.fits", TELESCOP="Nickel")
    load(engine, tmp_path, archive_root, programs={"LONG": {"proprietary_months": 36}},
         instruments={"ShARCS": {"proprietary_months": 18}},
         telescopes={"Nickel": {"proprietary_months": 6, "timezone": "America/Los_Angeles"}})
    dates = {p: r["public_date"] for p, r in rows(engine).items()}
    after = RECENT + dt.timedelta(days=1)
    assert dates[f"{NIGHT}/cam/p.fits"].date() == add_months(after, 36)
    assert dates[f"{NIGHT}/cam/i.fits"].date() == add_months(after, 18)
    noon = dt.datetime.combine(add_months(after, 6), dt.time(12), ZoneInfo("America/Los_Angeles"))
    assert dates[f"{NIGHT}/nickel/t.fits"] == noon


def test_a_file_with_no_date_off_the_layout_uses_its_mtime(engine, tmp_path, archive_root):
    observe(archive_root, "loose/x.fits", **{"DATE-OBS": None})
    load(engine, tmp_path, archive_root)
    row = rows(engine)["loose/x.fits"]
    assert "modification time" in row["access_rule"]
    assert row["public_date"].date() > TODAY


def test_user_in_two_programs_sees_both_and_a_public_granted_file_once(engine, tmp_path, archive_root):
    observe(archive_root, f"{NIGHT}/cam/a.fits", PROPID="A")
    observe(archive_root, f"{NIGHT}/cam/b.fits", PROPID="B")
    observe(archive_root, f"{NIGHT}/cam/c.fits", PROPID="C")
    observe(archive_root, "2019-01/01/cam/old.fits", PROPID="A")  # public long ago, and granted to A
    load(engine, tmp_path, archive_root)
    connection = engine.raw_connection()
    principals.add_user(connection, "alice")
    principals.grant(connection, "alice", "A")
    principals.grant(connection, "alice", "B")
    who = principals_of(connection, "alice")
    assert sorted(who) == ["A", "B", "alice"]
    assert visible(engine, who) == ["2019-01/01/cam/old.fits", f"{NIGHT}/cam/a.fits", f"{NIGHT}/cam/b.fits"]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM files f WHERE {VISIBLE} AND f.path LIKE '2019%%'", {"principals": who})
        assert cursor.fetchone()[0] == 1
    assert visible(engine, principals_of(connection, None)) == ["2019-01/01/cam/old.fits"]


def test_disabled_users_and_revoked_tokens_see_public_files_only(engine):
    connection = engine.raw_connection()
    principals.add_user(connection, "bob")
    principals.grant(connection, "bob", "P1")
    token = principals.create_token(connection, "bob")
    assert user_of_token(connection, token) == "bob"
    assert user_of_token(connection, token + "x") is None
    principals.revoke_tokens(connection, "bob")
    assert user_of_token(connection, token) is None
    again = principals.create_token(connection, "bob")
    principals.disable_user(connection, "bob")
    assert user_of_token(connection, again) is None
    assert principals_of(connection, "bob") == []
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM api_tokens WHERE token_hash = %s OR token_hash = %s", (token, again))
        assert cursor.fetchone()[0] == 0  # only hashes are stored


def test_a_schedule_change_moves_a_night_to_another_program(engine, tmp_path, archive_root, database_url):
    observe(archive_root, f"{NIGHT}/cam/r1.fits")
    observe(archive_root, f"{NEXT}/cam/r2.fits")
    set_schedule(engine, ("Shane", ISO, "OLD"), ("Shane", NEXT_ISO, "OTHER"))
    config = load(engine, tmp_path, archive_root)
    assert decided(engine)[f"{NIGHT}/cam/r1.fits"][1] == ["OLD"]
    (tmp_path / "schedule.csv").write_text(f"telescope,night,program\nShane,{ISO},NEW\n")
    result = cli("--config", config.source, "schedule", "load", str(tmp_path / "schedule.csv"), database_url=database_url)
    assert result.returncode == 0, result.stderr
    assert "access changed for 1 files" in result.stdout
    assert decided(engine)[f"{NIGHT}/cam/r1.fits"][1] == ["NEW"]
    assert decided(engine)[f"{NEXT}/cam/r2.fits"][1] == ["OTHER"]


def test_recompute_applies_changed_rules_and_explain_says_why(engine, tmp_path, archive_root, database_url):
    observe(archive_root, f"{NIGHT}/cam/r1.fits", PROPID="P1")
    load(engine, tmp_path, archive_root)
    before = rows(engine)[f"{NIGHT}/cam/r1.fits"]["public_date"]
    config = write_config(tmp_path, archive_root, access={"proprietary_months": 24})
    stale = cli("--config", str(config), "access", "explain", str(archive_root / NIGHT / "cam" / "r1.fits"),
                database_url=database_url)
    assert "program P1 (header)" in stale.stdout and "older decision" in stale.stdout
    result = cli("--config", str(config), "access", "recompute", "--night", ISO, database_url=database_url)
    assert "1 files, 1 changed" in result.stdout
    after = rows(engine)[f"{NIGHT}/cam/r1.fits"]["public_date"]
    assert after.date() == add_months(before.date(), 12)
    assert cli("--config", str(config), "access", "recompute", "--night", "nonsense",
               database_url=database_url).returncode == 2


def test_cli_users_and_tokens(database_url):
    assert cli("users", "add", "carol", database_url=database_url).returncode == 0
    assert cli("users", "add", "carol", database_url=database_url).returncode == 2
    assert cli("users", "grant", "carol", "P9", database_url=database_url).returncode == 0
    assert "carol: P9" in cli("users", "list", database_url=database_url).stdout
    token = cli("tokens", "create", "carol", database_url=database_url)
    assert len(token.stdout.strip()) > 30 and "shown once" in token.stderr
    assert "1 tokens of carol revoked" in cli("tokens", "revoke", "carol", database_url=database_url).stdout
    missing = cli("tokens", "create", "nobody", database_url=database_url)
    assert missing.returncode == 2 and "no user named 'nobody'" in missing.stderr


@pytest.mark.parametrize("day, months, expected", [
    (dt.date(2024, 1, 31), 1, dt.date(2024, 2, 29)),    # clipped to a leap February
    (dt.date(2023, 1, 31), 1, dt.date(2023, 2, 28)),
    (dt.date(2024, 1, 31), 12, dt.date(2025, 1, 31)),   # a 12-month period from Jan 31
    (dt.date(2024, 2, 29), 12, dt.date(2025, 2, 28)),
    (dt.date(2024, 10, 31), 1, dt.date(2024, 11, 30)),
    (dt.date(2024, 11, 30), 3, dt.date(2025, 2, 28)),   # across the year end
    (dt.date(2024, 12, 31), 12, dt.date(2025, 12, 31)),  # December has 31 days
    (dt.date(2024, 5, 15), 0, dt.date(2024, 5, 15)),
])
def test_month_end_clipping_of_proprietary_periods(day, months, expected):
    assert add_months(day, months) == expected


ROOT = "/data"  # a root with no time zone of its own


def _rules(tmp_path, **access):
    return Rules(load_config(str(write_config(tmp_path, tmp_path, access=access))).access, Schedule())


def _facts(path, **values):
    base = dict(telescope="Shane", instrument="Kast", frame_type="object", program=None, obs_start=None,
                mtime=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))
    return Facts(path, **{**base, **values})


def test_public_at_local_noon_exactly_a_period_after_the_night(tmp_path):
    rules = _rules(tmp_path, telescopes={"Shane": {"timezone": "America/Los_Angeles"}})
    facts = _facts("2024-01/30/cam/r.fits")
    night, _ = rules.night(ROOT, facts)
    assert night == dt.date(2024, 1, 30)
    # the night of Jan 30 ends at noon on Jan 31; 12 months on, at 12:00:00 Pacific (20:00 UTC)
    assert rules.public_date(ROOT, facts, night, ()) == dt.datetime(2025, 1, 31, 20, tzinfo=dt.timezone.utc)
    late = _facts("loose/r.fits", obs_start=dt.datetime(2024, 1, 31, 19, 59, 59, tzinfo=dt.timezone.utc))
    assert rules.night(ROOT, late)[0] == dt.date(2024, 1, 30)    # 11:59:59 local: still the night before
    early = _facts("loose/r.fits", obs_start=dt.datetime(2024, 1, 31, 20, tzinfo=dt.timezone.utc))
    assert rules.night(ROOT, early)[0] == dt.date(2024, 1, 31)   # noon local: the next night begins
    tokyo = _rules(tmp_path, timezone="Asia/Tokyo")         # no telescope zone: the global one
    assert tokyo.public_date(ROOT, _facts("2024-01/30/cam/r.fits"), night, ()) == dt.datetime(
        2025, 1, 31, 3, tzinfo=dt.timezone.utc)


def test_the_longest_period_of_the_sharing_programs_wins_and_programs_come_first(tmp_path):
    rules = _rules(tmp_path, programs={"LONG": {"proprietary_months": 24}, "SHORT": {"proprietary_months": 6}},
                   instruments={"Kast": {"proprietary_months": 18}})
    facts = _facts("2024-01/30/cam/r.fits")
    night = dt.date(2024, 1, 30)
    assert rules.months(facts, ("SHORT", "LONG")) == 24
    assert rules.months(facts, ("LONG", "SHORT")) == 24
    assert rules.months(facts, ("SHORT",)) == 6            # the program's, although the instrument's is longer
    assert rules.months(facts, ("UNSET",)) == 18
    assert rules.months(_facts("x", instrument="Other"), ()) == 12
    assert rules.public_date(ROOT, facts, night, ("SHORT", "LONG")).date() == dt.date(2026, 1, 31)


def test_calibrations_are_shared_with_the_header_program_too_and_take_the_longest_period(engine, tmp_path,
                                                                                         archive_root):
    observe(archive_root, f"{NIGHT}/cam/bias1.fits", OBSTYPE="BIAS", PROPID="HP")
    set_schedule(engine, ("Shane", ISO, "P1"), ("Shane", ISO, "P2"))
    load(engine, tmp_path, archive_root, programs={"P1": {"proprietary_months": 6}, "P2": {"proprietary_months": 30},
                                                   "HP": {"proprietary_months": 3}})
    row = rows(engine)[f"{NIGHT}/cam/bias1.fits"]
    assert row["grants"] == ["HP", "P1", "P2"]
    assert row["public_date"].date() == add_months(RECENT + dt.timedelta(days=1), 30)


def test_override_grants_to_a_user_take_the_period_of_the_nights_programs(engine, tmp_path, archive_root):
    (archive_root / NIGHT / "cam").mkdir(parents=True)
    (archive_root / NIGHT / "cam" / "override.access").write_text("r* access alice\n")
    observe(archive_root, f"{NIGHT}/cam/r1.fits")
    set_schedule(engine, ("Shane", ISO, "P1"))
    load(engine, tmp_path, archive_root, programs={"P1": {"proprietary_months": 30}})
    row = rows(engine)[f"{NIGHT}/cam/r1.fits"]
    assert row["grants"] == ["alice"]
    assert row["public_date"].date() == add_months(RECENT + dt.timedelta(days=1), 30)


def test_the_visibility_predicate_at_public_date_equal_to_now(engine, tmp_path, archive_root):
    observe(archive_root, f"{NIGHT}/cam/r1.fits", PROPID="P1")
    load(engine, tmp_path, archive_root)
    connection = engine.raw_connection()
    try:
        with connection.cursor() as cursor:  # one transaction: now() is the same instant throughout
            query = f"SELECT count(*) FROM files f WHERE {VISIBLE}"
            cursor.execute("UPDATE files SET public_date = now()")
            cursor.execute(query, {"principals": []})
            assert cursor.fetchone()[0] == 1
            cursor.execute("UPDATE files SET public_date = now() + interval '1 microsecond'")
            cursor.execute(query, {"principals": []})
            assert cursor.fetchone()[0] == 0
            cursor.execute(query, {"principals": ["P1"]})
            assert cursor.fetchone()[0] == 1
            cursor.execute(query, {"principals": ["P2", "alice"]})
            assert cursor.fetchone()[0] == 0
    finally:
        connection.rollback()
        connection.close()


def test_settling_boundaries_during_a_reconcile(tmp_path):
    from archive_daemon.config import RootConfig
    from archive_daemon.settle import Settler
    from archive_daemon.watcher import DiskEntry

    T = 1_700_000_000  # whole seconds: the comparisons below are exact
    (tmp_path / "a.fits").write_bytes(b"x")
    os.utime(tmp_path / "a.fits", (T, T))
    now = [T + 10.0]
    settler = Settler({"r": RootConfig("r", tmp_path, settle_seconds=10)}, clock=lambda: now[0])
    entry = DiskEntry("a.fits", 1, T * 1_000_000)
    settler.found("r", entry)              # exactly settle_seconds old: complete as the scan saw it,
    os.utime(tmp_path / "a.fits", (T + 5, T + 5))  # not looked at again
    assert settler.due() == ([("r", entry)], [])
    os.utime(tmp_path / "a.fits", (T, T))
    now[0] = T + 9.5
    settler.found("r", entry)              # younger: waits
    assert settler.due() == ([], [])
    now[0] = T + 10.0
    assert settler.due() == ([("r", entry)], [])

    os.utime(tmp_path / "a.fits", (T + 100, T + 100))  # a clock ahead of ours: watched unchanged instead
    later = DiskEntry("a.fits", 1, (T + 100) * 1_000_000)
    now[0] = T
    settler.touched("r", "a.fits")
    assert settler.due() == ([], [])       # first seen now
    now[0] = T + 9.5
    assert settler.due() == ([], [])
    now[0] = T + 10.0                      # unchanged for exactly settle_seconds
    assert settler.due() == ([("r", later)], [])


def test_scan_problems_cover_a_directory_and_what_is_below_it_only():
    from archive_daemon.watcher import ScanProblems
    problems = ScanProblems([("2024-03/04", "Permission denied")])
    assert problems.covers("2024-03/04") and problems.covers("2024-03/04/cam/r.fits")
    assert not problems.covers("2024-03/040/cam/r.fits") and not problems.covers("2024-03/0")
    assert ScanProblems([("", "gone")]).covers("anything") and not ScanProblems().covers("x")


def test_a_bulk_recompute_writes_through_connections_of_its_own_chunk_by_chunk(engine, tmp_path, archive_root,
                                                                               database_url, monkeypatch):
    """Given the database's URL (as `access recompute` and the daemon give it), the changed
    decisions of many chunks are written by other connections while deciding goes on, and
    every file ends as deciding it alone would leave it."""
    from archive_daemon import recompute as bulk
    monkeypatch.setattr(bulk, "CHUNK", 40)
    (archive_root / NIGHT / "cam").mkdir(parents=True)
    connection = engine.raw_connection()
    with connection.cursor() as cursor:
        cursor.execute("""
            INSERT INTO files (root, path, size, mtime, header, telescope, instrument, program, obs_start)
            SELECT 'data', %s || lpad(i::text, 4, '0') || '.fits', 2880, now(), '', 'Shane', 'Kast',
                   'P' || (i %% 7), %s::date + interval '29 hours'
            FROM generate_series(1, 500) i""", (f"{NIGHT}/cam/r", ISO))
    connection.commit()
    for months, url in ((24, database_url), (12, None), (24, database_url)):
        config = load_config(str(write_config(tmp_path, archive_root, access={"proprietary_months": months})))
        rules = Rules(config.access, Schedule(), config.keywords.frame_type_of)
        assert bulk.recompute(connection, config, rules, url=url) == (500, 500)
        expected = rules.decide(str(archive_root), Facts(f"{NIGHT}/cam/r0001.fits", "Shane", "Kast", None, "P1",
                                                         dt.datetime.combine(RECENT, dt.time(5), dt.timezone.utc)
                                                         + dt.timedelta(days=1), dt.datetime.now(dt.timezone.utc)))
        stored = {(r["public_date"], tuple(r["grants"]), r["night"]) for r in rows(engine).values()}
        assert stored == {(expected.public_date, (f"P{i}",), RECENT) for i in range(7)}
    connection.close()
