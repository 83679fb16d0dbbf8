"""The daemon's database link alone: leader lock, backoff, heartbeat (real PostgreSQL)."""

from __future__ import annotations

import logging
import socket

import pytest

from archive_daemon.link import HEARTBEAT, MAX_BACKOFF, Link
from daemonproc import Clock, wait_until


def heartbeats(engine) -> dict[str, str]:
    with engine.connect() as connection:
        return dict(connection.exec_driver_sql("SELECT name, role FROM daemon_heartbeat").all())


@pytest.fixture
def links(database_url):
    made: list[Link] = []

    def make(url=None) -> Link:
        link = Link(url or database_url, clock=Clock())
        host = link.leader.name.rsplit(" ", 1)[0]
        link.leader.name = f"{host} {len(made) + 1}"  # daemons of one process: each its own pid
        made.append(link)
        return link

    yield make
    for link in made:
        link.close()


def beat(link: Link, times: int = 1) -> None:
    for _ in range(times):
        link.heartbeat("status")
        link.clock.now += HEARTBEAT


def test_one_heartbeat_row_per_running_daemon_however_long_it_runs(links, engine):
    with engine.begin() as connection:  # daemons that ran before, on this host and others
        connection.exec_driver_sql("INSERT INTO daemon_heartbeat (name, role, status) VALUES "
                                   "('archive-daemon old-host 4242', 'leader', 'x'), "
                                   "('archive-daemon here 17', 'standby', 'x')")
    leader, standby = links(), links()
    assert leader.take_lock() and not standby.take_lock()
    beat(leader, 5)
    beat(standby, 5)
    assert heartbeats(engine) == {leader.leader.name: "leader", standby.leader.name: "standby"}
    leader.close()  # its server process ends a moment later
    wait_until(lambda: beat(standby) or heartbeats(engine) == {standby.leader.name: "standby"},
               what="the closed daemon's row gone")


def test_a_long_host_name_keeps_its_heartbeat(links, engine, monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "archive-primary.lick-observatory.ucolick.example.org")
    first, second = links(), links()
    first.take_lock()
    second.take_lock()
    beat(first)
    beat(second)
    assert len(heartbeats(engine)) == 2  # each daemon's row survives the other's clean-up


def test_an_unreachable_database_is_tried_again_each_time_later(links):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    link = links(f"postgresql://archive@127.0.0.1:{port}/archive")
    waits = []
    for _ in range(8):
        assert link.due()
        with pytest.raises(Exception) as failure:
            link.take_lock()
        link.unreachable(failure.value)
        assert link.state.startswith("unreachable: ") and not link.due()
        waits.append(link.next_attempt - link.clock.now)
        link.clock.now = link.next_attempt
    assert waits == [1, 2, 4, 8, 16, 30, 30, 30] and MAX_BACKOFF == 30


def test_a_standby_says_once_who_writes_the_archive(links, caplog):
    caplog.set_level(logging.INFO, logger="archive_daemon")
    leader, standby = links(), links()
    assert leader.take_lock()
    for _ in range(3):
        assert standby.due() and not standby.take_lock()
        standby.stands_by()
        assert not standby.due()
        standby.clock.now = standby.next_attempt
    assert standby.state.startswith(f"standby (the archive is written by {leader.leader.name} (")
    assert caplog.text.count("standing by") == 1
