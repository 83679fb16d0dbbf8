"""Files on a data mount changed by someone who can write there, between a scan and a read
or as names the database cannot hold: what the daemon must not archive, follow, hang on,
or die of. Each test states what should hold."""

from __future__ import annotations

import os
import threading

import pytest

from archive_daemon import filerow
from archive_daemon.config import load_config
from archive_daemon.loader import ingest
from conftest import failures, rows, write_config
from fitsmaker import image

PUBLIC = "2019-05/02/cam"      # an old night: everything there is public by now
SECRET = "2024-03/04/secret"


def _config(tmp_path, root, **extra):
    return load_config(str(write_config(tmp_path, root, **extra)))


def reconcile(engine, tmp_path, root, **extra):
    config = _config(tmp_path, root, **extra)
    return ingest(engine, config, config.root("data"), [""], workers=1, drop_gone=True)


def _in_thread(target, seconds: float):
    """Run target(); return (finished, the exception it raised as text, or None)."""
    outcome: dict = {}

    def run():
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            outcome["exc"] = f"{type(exc).__name__}: {str(exc)[:300]}"  # not the object: its traceback may be 1000 frames deep
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive(), outcome.get("exc")


# -- the scan looks with lstat, the reader opens by name and follows ----------------------

def _swap_before_read(monkeypatch, swap):
    """The race an attacker runs: the scan lstat()s a regular file; by the time the header
    reader opens the same name, it is something else."""
    real = filerow.read_headers
    done = []

    def racing(root, path):
        if not done:
            done.append(path)
            swap(os.path.join(root, path))
        return real(root, path)
    monkeypatch.setattr(filerow, "read_headers", racing)


def test_a_file_swapped_for_a_link_between_scan_and_read_is_not_archived_through_it(
        engine, tmp_path, archive_root, monkeypatch):
    secret = image(archive_root / SECRET / "r1.fits", {"PROPID": "P1", "OBJECT": "the secret target"})
    reconcile(engine, tmp_path, archive_root)
    bait = image(archive_root / PUBLIC / "bait_ql.fits", {"OBJECT": "harmless"})  # _ql.fits: public at once

    def swap(path):
        os.unlink(path)
        os.symlink(secret, path)
    _swap_before_read(monkeypatch, swap)
    reconcile(engine, tmp_path, archive_root, access={"public_suffixes": ["_ql.fits"]})
    stolen = rows(engine).get(f"{PUBLIC}/bait_ql.fits")
    assert stolen is None or "the secret target" not in stolen["header"], \
        "the proprietary header was archived under a public name through a link"
    assert bait.is_symlink()


def test_a_file_swapped_for_a_fifo_between_scan_and_read_does_not_hang_the_load(
        engine, tmp_path, archive_root, monkeypatch):
    image(archive_root / PUBLIC / "a.fits")

    def swap(path):
        os.unlink(path)
        os.mkfifo(path)
    _swap_before_read(monkeypatch, swap)
    finished, exc = _in_thread(lambda: reconcile(engine, tmp_path, archive_root), 10)
    if not finished:  # free the stuck reader so that the test run can go on
        fd = os.open(archive_root / PUBLIC / "a.fits", os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        _in_thread(lambda: None, 0)
        import time
        time.sleep(2)
    assert finished, "the header reader blocked on a FIFO: a worker (and the daemon's loop) hangs"
    assert exc is None


def test_a_directory_swapped_for_a_link_is_not_read_by_name(engine, tmp_path, archive_root, monkeypatch):
    """The same race on a directory component: the secret file carries the public name."""
    image(archive_root / SECRET / "x_ql.fits", {"PROPID": "P1", "OBJECT": "the secret target"})
    image(archive_root / "2024-03/05/pub" / "x_ql.fits", {"OBJECT": "harmless"})
    # the secret directory is not archived in this test: only its file is the target
    swapped = []

    def swap(path):
        directory = os.path.dirname(path)
        os.rename(directory, directory + ".old")
        os.symlink(archive_root / SECRET, directory)
        swapped.append(directory)
    _swap_before_read(monkeypatch, swap)
    config = _config(tmp_path, archive_root, access={"public_suffixes": ["_ql.fits"]})
    ingest(engine, config, config.root("data"), ["2024-03/05"], workers=1)
    assert swapped
    row = rows(engine).get("2024-03/05/pub/x_ql.fits")
    assert row is None or "the secret target" not in row["header"], \
        "a proprietary header archived as public: the reader followed a linked directory"


# -- hard links: not symbolic, and not caught ---------------------------------------------

def test_a_hard_link_to_a_proprietary_file_does_not_make_it_public(engine, tmp_path, archive_root):
    secret = image(archive_root / SECRET / "r1.fits", {"PROPID": "P1", "OBJECT": "the secret target"})
    (archive_root / PUBLIC).mkdir(parents=True)
    os.link(secret, archive_root / PUBLIC / "r1_ql.fits")  # no read permission needed over NFS
    reconcile(engine, tmp_path, archive_root, access={"public_suffixes": ["_ql.fits"]})
    assert f"{PUBLIC}/r1_ql.fits" not in rows(engine)
    refused = failures(engine)
    assert refused[f"{PUBLIC}/r1_ql.fits"].startswith("hard links are not archived")
    assert refused[f"{SECRET}/r1.fits"].startswith("hard links are not archived")  # either name could be the bait


def test_a_hard_link_in_a_directory_with_a_public_override_does_not_publish_the_file(
        engine, tmp_path, archive_root):
    secret = image(archive_root / SECRET / "r1.fits", {"PROPID": "P1", "OBJECT": "the secret target"})
    (archive_root / PUBLIC).mkdir(parents=True)
    (archive_root / PUBLIC / "override.access").write_text("* access public\n")
    os.link(secret, archive_root / PUBLIC / "r1.fits")
    reconcile(engine, tmp_path, archive_root)
    linked = rows(engine).get(f"{PUBLIC}/r1.fits")
    assert linked is None or linked["access_rule"].startswith("program"), linked and linked["access_rule"]


# -- names and times the database or datetime cannot hold ---------------------------------

def test_a_file_name_that_is_not_utf8_is_one_failure_not_a_lost_run(engine, tmp_path, archive_root):
    image(archive_root / PUBLIC / "good.fits")
    bad = os.path.join(os.fsencode(archive_root / PUBLIC), b"caf\xe9.fits")
    with open(bad, "wb") as out:
        out.write((archive_root / PUBLIC / "good.fits").read_bytes())
    finished, exc = _in_thread(lambda: reconcile(engine, tmp_path, archive_root), 60)
    assert finished
    assert exc is None, f"the whole run failed: {exc}"
    assert f"{PUBLIC}/good.fits" in rows(engine)


def _far_future(path):
    os.utime(path, ns=(253402300800 * 10**9, 253402300800 * 10**9))  # 10000-01-01


@pytest.fixture
def shm_root(tmp_path):
    """A root on tmpfs, which (like btrfs, ZFS, and NFS exports of them) keeps any 64-bit mtime;
    ext4 stops at 2446."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no tmpfs")
    import tempfile
    import shutil
    base = tempfile.mkdtemp(prefix="archive-mount-", dir="/dev/shm")
    root = os.path.join(base, "data")
    os.mkdir(root)
    yield __import__("pathlib").Path(root)
    shutil.rmtree(base, ignore_errors=True)


def test_a_file_dated_after_9999_is_one_failure_not_a_lost_run(engine, tmp_path, shm_root):
    image(shm_root / PUBLIC / "good.fits")
    late = image(shm_root / PUBLIC / "late.fits")
    _far_future(late)
    finished, exc = _in_thread(lambda: reconcile(engine, tmp_path, shm_root), 60)
    assert finished
    assert exc is None, f"the whole run failed: {exc}"
    assert f"{PUBLIC}/good.fits" in rows(engine)


def test_a_file_dated_before_year_1_is_one_failure_not_a_lost_run(engine, tmp_path, shm_root):
    image(shm_root / PUBLIC / "good.fits")
    early = image(shm_root / PUBLIC / "early.fits")
    os.utime(early, ns=(-62135596900 * 10**9, -62135596900 * 10**9))
    finished, exc = _in_thread(lambda: reconcile(engine, tmp_path, shm_root), 60)
    assert finished
    assert exc is None, f"the whole run failed: {exc}"
    assert f"{PUBLIC}/good.fits" in rows(engine)


# -- the running daemon: one odd name must not stop it -------------------------------------

def test_the_daemon_survives_a_file_name_that_is_not_utf8(tmp_path, archive_root, database_url, engine):
    """One file named in Latin-1 on the mount: the daemon dies on it, and dies again at every
    restart (the start-up reconcile finds it again): a crash loop that archives nothing more."""
    import time
    from daemonproc import Daemon
    from test_daemon import NIGHT, daemon_config
    config = daemon_config(tmp_path, archive_root)
    night = archive_root / NIGHT / "cam"
    night.mkdir(parents=True)
    source = image(tmp_path / "made" / "x.fits").read_bytes()
    with open(os.path.join(os.fsencode(night), b"caf\xe9.fits"), "wb") as out:
        out.write(source)
    for attempt in range(2):  # as systemd would: start it again
        daemon = Daemon(config, database_url, tmp_path, f"daemon{attempt}")
        daemon.start(wait_ready=False)
        try:
            (night / f"after{attempt}.fits").write_bytes(source)
            deadline = time.monotonic() + 15
            while daemon.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert daemon.process.poll() is None, f"the daemon exited:\n{daemon.log()[-1500:]}"
        finally:
            if daemon.process.poll() is None:
                daemon.stop()


# -- headers that cost the reader without bound -------------------------------------------

def _card(text: str) -> bytes:
    return text.ljust(80).encode()


def _read_in_child(path, seconds: float = 30) -> tuple[bool, str, int]:
    """read_headers of `path` in a child limited to 2 GiB of address space: (finished in time,
    what it said, peak RSS in MiB)."""
    import subprocess
    import sys
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
        "from archive_daemon.fitsfile import read_headers, BadFile\n"
        "try:\n"
        "    read_headers(*sys.argv[1].rsplit('/', 1)); said = 'archived'\n"
        "except BadFile as exc:\n"
        "    said = f'BadFile: {exc}'\n"
        "except BaseException as exc:\n"
        "    said = f'{type(exc).__name__}: {exc}'\n"
        # VmHWM, not ru_maxrss: an exec'd child's ru_maxrss keeps the peak of the process that forked it
        "peak = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
        "print(said); print(int(peak.split()[1]) // 1024)\n")
    try:
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                             timeout=seconds, cwd=os.path.dirname(os.path.dirname(__file__)))
    except subprocess.TimeoutExpired:
        return False, "timed out", -1
    said, rss = out.stdout.strip().rsplit("\n", 1)
    return True, said, int(rss)


def test_a_header_claiming_a_billion_axes_is_a_quick_failure(tmp_path):
    """2880 bytes on disk: NAXIS = 1000000000. data_size() builds a list of a billion NAXISn
    look-ups: minutes of CPU and gigabytes before anything is said."""
    data = _card("SIMPLE  =                    T") + _card("BITPIX  =                   16") + \
        _card("NAXIS   =           1000000000") + _card("END")
    path = tmp_path / "axes.fits"
    path.write_bytes(data + b" " * (-len(data) % 2880))
    finished, said, rss = _read_in_child(path)
    assert finished and said.startswith("BadFile"), (said, rss)


def test_a_gzip_bomb_of_blank_header_cards_is_refused_without_reading_it_all(tmp_path):
    """0.3 MB of gzip: SIMPLE and then 300 MB of spaces, a header with no END. Every block is
    kept in memory until the stream ends; a 15 MB bomb takes 15 GB."""
    import gzip
    path = tmp_path / "bomb.fits.gz"
    with gzip.open(path, "wb", compresslevel=9) as out:
        out.write(_card("SIMPLE  =                    T"))
        for _ in range(300):
            out.write(b" " * (1 << 20))
    finished, said, rss = _read_in_child(path)
    assert finished and said.startswith("BadFile"), (said, rss)
    assert rss < 200, f"peak RSS {rss} MiB to read one header"
