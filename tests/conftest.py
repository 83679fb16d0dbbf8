"""Fixtures: a throwaway PostgreSQL cluster with pg_sphere, a fresh database per test."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import psycopg2
import pytest
import sqlalchemy as sa
import yaml

from archive_daemon import db, samples
from archive_daemon.config import load_config
from archive_daemon.devdb import DATABASE, DevDB
from archive_daemon.loader import ingest


def _private_cluster():
    base = Path(tempfile.mkdtemp(prefix="archive-test-"))
    os.chmod(base, 0o755)  # the server runs as postgres, which must reach its data directory
    devdb = DevDB(base, fast=True)
    devdb.start()
    yield devdb
    devdb.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster():
    """A private cluster for the whole run; its `archive` database is the migrated template."""
    for devdb in _private_cluster():
        yield devdb.url()


@pytest.fixture
def own_cluster():
    """A cluster of the test's own, for tests that stop and start the server."""
    yield from _private_cluster()


def _admin(url: str):
    parsed = sa.engine.make_url(url)
    connection = psycopg2.connect(host=parsed.host, port=parsed.port, user=parsed.username,
                                  password=parsed.password, dbname="postgres")
    connection.autocommit = True
    return connection


def fresh_database(cluster_url: str, template: str = DATABASE):
    """A new database cloned from the migrated template (or another); returns (url, drop)."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = _admin(cluster_url)
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    url = sa.engine.make_url(cluster_url).set(database=name).render_as_string(hide_password=False)

    def drop():
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
    return url, drop


def database_at(cluster_url: str, revision: str):
    """A new database whose schema is at an older `revision`, to test what migrates it; (url, drop)."""
    url, drop = fresh_database(cluster_url, "template0")
    engine = db.create_engine(url)
    db.upgrade(engine, revision)
    engine.dispose()
    return url, drop


@pytest.fixture
def database_url(cluster):
    url, drop = fresh_database(cluster)
    yield url
    drop()


@pytest.fixture
def engine(database_url):
    engine = db.create_engine(database_url)
    yield engine
    engine.dispose()


def write_config(directory: Path, root: Path, **extra) -> Path:
    """A configuration file with one root named `data`."""
    settings = {"roots": [{"name": "data", "path": str(root)}], **extra}
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.fixture
def archive_root(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    return root


@pytest.fixture
def config(tmp_path, archive_root):
    return load_config(str(write_config(tmp_path, archive_root)))


def rows(engine, where: str = "true") -> dict[str, dict]:
    with engine.connect() as connection:
        result = connection.execute(sa.text(f"SELECT * FROM files WHERE {where}"))
        return {row.path: row._asdict() for row in result}


def failures(engine) -> dict[str, str]:
    with engine.connect() as connection:
        return dict(connection.execute(sa.text("SELECT path, reason FROM ingest_failures")).all())


@pytest.fixture(scope="module")
def sample_archive(cluster, tmp_path_factory):
    """The Lick sample tree, ingested once for a module: (engine, summary, tree)."""
    tree = tmp_path_factory.mktemp("lick") / "data"
    samples.build_tree(tree)
    config = load_config(str(write_config(tree.parent, tree)))
    url, drop = fresh_database(cluster)
    engine = db.create_engine(url)
    summary = ingest(engine, config, config.root("data"), [""], workers=2)
    yield engine, summary, tree
    engine.dispose()
    drop()
