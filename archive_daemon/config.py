"""The YAML configuration, parsed once at start-up into typed, frozen objects.

Look-up order: `--config FILE`, else `$ARCHIVE_CONFIG`, else
`/etc/archive-daemon/config.yaml`, else the built-in development defaults. The database URL
is always overridable with `$ARCHIVE_DATABASE_URL`, the API's replica with
`$ARCHIVE_DATABASE_READ_URL`.
"""

from __future__ import annotations

import os
import pwd
import re
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .confread import ConfigError, Section
from .keywords import InstrumentProfile, KeywordMap, read_keyword_map, read_profile

SYSTEM_CONFIG = Path("/etc/archive-daemon/config.yaml")
DEFAULTS_FILE = Path(__file__).with_name("defaults.yaml")

DEFAULT_INCLUDE = (
    "*.fits", "*.fit", "*.fts", "*.fits.gz", "*.fit.gz", "*.fts.gz", "*.fits.fz", "*.fz", "*.ccd",
)
DEFAULT_EXCLUDE = (".*", "*.tmp", "*.part", "*~")

__all__ = ["Config", "ConfigError", "RootConfig", "load_config", "config_path"]


@dataclass(frozen=True)
class RootConfig:
    """One watched directory tree; `name` is how the database refers to it."""

    name: str
    path: Path
    mode: str = "auto"
    poll_interval: float = 5.0
    settle_seconds: float = 10.0
    recent_nights: int = 3  # polling: night directories this recent are polled; older ones reconciled
    include: tuple[str, ...] = DEFAULT_INCLUDE
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    timezone: str | None = None  # the site's, for its nights, unless its telescope has one


@dataclass(frozen=True)
class Period:
    """Settings for one telescope, instrument or program; None: not set at this level."""

    proprietary_months: int | None = None
    timezone: str | None = None


@dataclass(frozen=True)
class AccessConfig:
    """The access rules (docs/access.md explains them with examples)."""

    proprietary_months: int = 12
    timezone: str = "UTC"                       # for noon-to-noon nights, unless a telescope or root says
    telescopes: tuple[tuple[str, Period], ...] = ()   # (lower-case name, settings)
    instruments: tuple[tuple[str, Period], ...] = ()
    programs: tuple[tuple[str, Period], ...] = ()
    public_instruments: tuple[str, ...] = ()    # lower case
    public_suffixes: tuple[str, ...] = ()       # lower case, e.g. ".jpg"
    calibration_types: tuple[str, ...] = ("bias", "dark", "flat", "arc", "focus")
    calibrations: str = "share"                 # share with the night's programs, or public
    unknown_owner: str = "proprietary"          # or public
    rule_file_max_bytes: int = 1 << 20          # override and schedule files larger than this are refused
    rule_file_owners: tuple[int, ...] | None = None   # uids besides root; None: the root directory's owner

    def setting(self, table: str, name: str | None) -> Period:
        lowered = (name or "").lower()
        return next((p for n, p in getattr(self, table) if n == lowered), Period())


@dataclass(frozen=True)
class IngestConfig:
    workers: int = 0  # 0: one per core
    batch_size: int = 500
    max_header_cards: int = 10000  # of a file's header kept in the database
    previews: tuple[int, ...] = ()  # preview sizes rendered into api.preview_cache_dir at ingest

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1


@dataclass(frozen=True)
class DaemonConfig:
    reconcile_interval: float = 3600.0
    max_delete_fraction: float = 0.1  # a reconcile dropping more of a root than this waits for the operator


@dataclass(frozen=True)
class ApiConfig:
    """The web API (docs/api.md)."""

    max_limit: int = 1000             # rows per page
    default_limit: int = 100
    exact_count_limit: int = 10000    # searches matching more files get an estimated count
    max_radius_deg: float = 10.0      # cone searches
    user_header: str | None = None    # names the user Apache authenticated; believed only with the secret
    front_end_secret: str | None = field(default=None, repr=False)  # None: no request speaks for Apache
    x_sendfile: bool = False          # let Apache's mod_xsendfile send downloads
    tar_max_files: int = 10000
    tar_max_bytes: int = 50 * 2**30
    max_body_bytes: int = 2**20       # request bodies (the tar download's list): 413 above
    stream_write_timeout: float = 60.0  # seconds a client may take to accept one chunk of a download
    max_streams: int = 6              # downloads at once per worker process (keep below its threads)
    max_streams_per_client: int = 4   # of those, to one client (user, else address)
    db_pool_size: int = 4             # database connections per worker process
    statement_timeout: float = 30.0   # seconds one query may run (a search too broad is cut off: 503)
    preview_max_size: int = 1024      # pixels, the longer side of a preview PNG
    preview_cache_dir: Path | None = None  # rendered previews; None: rendered every time
    preview_cache_bytes: int = 2**30  # the cache's bound; the least recently served go first
    calibration_nights: int = 1       # calibrations from this many nights before and after a file's


@dataclass(frozen=True)
class IvoaConfig:
    """The IVOA services under /ivoa/ (docs/ivoa.md)."""

    authority: str = "archive.invalid"  # of the ivo:// identifiers: the observatory's domain
    default_maxrec: int = 10000       # rows a TAP, SCS or SIA query returns when it does not say
    max_maxrec: int = 100000          # rows it may ask for, at most
    sync_timeout: float = 60.0        # seconds a synchronous query may run
    async_duration: float = 3600.0    # seconds an asynchronous job may run (its default and maximum)
    async_destruction: float = 7 * 86400.0  # seconds before a finished job and its result are removed
    results_dir: Path | None = None   # where async results are written; None: under the temporary directory
    jobs_per_user: int = 2            # asynchronous jobs one caller may have running or queued
    bands: tuple[tuple[str, float, float], ...] = ()  # (lower-case filter, shortest, longest wavelength in m)
    spectrum_instruments: tuple[str, ...] = ()        # lower case: their files are spectra


@dataclass(frozen=True)
class Config:
    source: str
    database_url: str | None
    roots: tuple[RootConfig, ...]
    keywords: KeywordMap
    instruments: tuple[InstrumentProfile, ...]
    access: AccessConfig
    ingest: IngestConfig
    daemon: DaemonConfig
    api: ApiConfig
    base_dir: Path
    ivoa: IvoaConfig = IvoaConfig()
    database_read_url: str | None = None  # a streaming replica the API reads from (api/replica.py)
    max_replica_lag: float = 30.0         # seconds of staleness beyond which the API reads the primary

    def root(self, name: str) -> RootConfig:
        for root in self.roots:
            if root.name == name:
                return root
        known = ", ".join(r.name for r in self.roots) or "none configured"
        raise ConfigError(f"{self.source}: roots: no root named {name!r} (known: {known})")

    def root_for(self, path: Path, name: str | None = None) -> tuple[RootConfig, str]:
        """The configured root holding `path` (the one called `name`, if given), and the
        path relative to it."""
        given = Path(os.path.abspath(path))
        # Roots are resolved: so are the directories above the path (its last part only
        # when it is a root itself: nothing in a root is reached through a link).
        spellings = (given, Path(os.path.realpath(given.parent)) / given.name, Path(os.path.realpath(given)))
        candidates = [self.root(name)] if name else sorted(self.roots, key=lambda r: len(str(r.path)), reverse=True)
        for path in spellings:
            for root in candidates:
                if path == root.path:
                    return root, ""
                if root.path in path.parents and path is not spellings[2]:
                    return root, path.relative_to(root.path).as_posix()
        path = given
        if name:
            raise ConfigError(f"{path} is not under root {name} ({candidates[0].path})")
        raise ConfigError(f"{path} is not under any configured root "
                          f"(roots in {self.source}: {', '.join(str(r.path) for r in self.roots) or 'none'})")


def config_path(explicit: str | None) -> Path | None:
    """Which file to read, following the documented look-up order (None: built-in defaults)."""
    if explicit:
        return Path(explicit)
    if os.environ.get("ARCHIVE_CONFIG"):
        return Path(os.environ["ARCHIVE_CONFIG"])
    if SYSTEM_CONFIG.exists():
        return SYSTEM_CONFIG
    return None


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: top level: must be a mapping of settings")
    return data or {}


def _merge(defaults: dict, overrides: dict) -> dict:
    """Mappings merge key by key; anything else (lists included) is replaced whole."""
    merged = dict(defaults)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_root(section: Section, base_dir: Path) -> RootConfig:
    path = Path(section.string("path", required=True)).expanduser()
    root = RootConfig(
        name=section.string("name", required=True),
        # Resolved once, here: a root may be a link to a mount, while nothing below it is followed.
        path=Path(os.path.realpath(base_dir / path)),
        mode=section.choice("mode", "auto", ("auto", "inotify", "polling")),
        poll_interval=section.number("poll_interval", 5.0, minimum=0.1),
        settle_seconds=section.number("settle_seconds", 10.0),
        recent_nights=section.integer("recent_nights", 3, 1),
        include=section.strings("include", DEFAULT_INCLUDE),
        exclude=section.strings("exclude", DEFAULT_EXCLUDE),
        timezone=_timezone(section),
    )
    section.done()
    return root


def _read_periods(section: Section, with_timezone: bool) -> tuple[tuple[str, Period], ...]:
    periods = []
    for name in section.keys():
        entry = section.section(str(name))
        timezone = _timezone(entry) if with_timezone else None
        periods.append((str(name).lower(), Period(entry.integer("proprietary_months", None) if
                                                  entry.has("proprietary_months") else None, timezone)))
        entry.done()
    return tuple(periods)


def _timezone(section: Section, default: str | None = None) -> str | None:
    """The section's `timezone`, checked against the time zone database."""
    name = section.string("timezone", default)
    if name is not None:
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise section.fail("timezone", f"unknown time zone {name!r}") from None
    return name


def _read_access(section: Section) -> AccessConfig:
    config = AccessConfig(
        proprietary_months=section.integer("proprietary_months", 12),
        timezone=_timezone(section, "UTC"),
        telescopes=_read_periods(section.section("telescopes"), True),
        instruments=_read_periods(section.section("instruments"), False),
        programs=_read_periods(section.section("programs"), False),
        public_instruments=tuple(s.lower() for s in section.strings("public_instruments")),
        public_suffixes=tuple(s.lower() for s in section.strings("public_suffixes")),
        calibration_types=tuple(s.lower() for s in section.strings(
            "calibration_types", AccessConfig.calibration_types)),
        calibrations=section.choice("calibrations", "share", ("share", "public")),
        unknown_owner=section.choice("unknown_owner", "proprietary", ("proprietary", "public")),
        rule_file_max_bytes=section.integer("rule_file_max_bytes", 1 << 20, 1),
        rule_file_owners=_rule_file_owners(section),
    )
    section.done()
    return config


def _rule_file_owners(section: Section) -> tuple[int, ...] | None:
    """access.rule_file_owners as uids: user names are looked up once, here."""
    value = section.raw("rule_file_owners")
    if value is None:
        return None
    if not isinstance(value, list):
        raise section.fail("rule_file_owners", "must be a list of user names or uids")
    uids = []
    for owner in value:
        if isinstance(owner, int) and not isinstance(owner, bool) and owner >= 0:
            uids.append(owner)
        elif isinstance(owner, str) and owner:
            try:
                uids.append(pwd.getpwnam(owner).pw_uid)
            except KeyError:
                raise section.fail("rule_file_owners", f"no user named {owner!r} on this host") from None
        else:
            raise section.fail("rule_file_owners", f"{owner!r} is not a user name or uid")
    return tuple(sorted(set(uids)))


FRONT_END_SECRET_ENV = "ARCHIVE_API_FRONT_END_SECRET"
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")  # no "_": gunicorn drops such headers
_SECRET = re.compile(r"[!-~]{32,}")                    # visible ASCII: it travels in a header


def _read_secret(api: Section, base_dir: Path) -> str | None:
    """The shared secret Apache sends (docs/security.md): from the environment, else from a
    file only its owners can read, so that it never sits in the configuration."""
    name = api.string("front_end_secret_file")
    if os.environ.get(FRONT_END_SECRET_ENV):
        where, secret = f"${FRONT_END_SECRET_ENV}", os.environ[FRONT_END_SECRET_ENV].strip()
    elif name is None:
        return None
    else:
        path = base_dir / Path(name).expanduser()
        try:
            if os.stat(path).st_mode & 0o004:
                raise api.fail("front_end_secret_file", f"{path} is readable by every user (chmod o-r)")
            secret = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not text"
            raise api.fail("front_end_secret_file", f"cannot read {path}: {reason}") from None
        where = f"{api.source}: api.front_end_secret_file: {path}"
    if not _SECRET.fullmatch(secret):
        raise ConfigError(f"{where}: the secret must be at least 32 visible ASCII characters, no spaces "
                          "(openssl rand -hex 32 makes one)")
    return secret


def _optional_path(name: str | None, base_dir: Path) -> Path | None:
    return None if name is None else base_dir / Path(name).expanduser()


def _read_api(api: Section, base_dir: Path) -> ApiConfig:
    user_header = api.string("user_header")
    if user_header is not None and not _HEADER_NAME.fullmatch(user_header):
        raise api.fail("user_header", f"{user_header!r} is not a header name (letters, digits and '-')")
    secret = _read_secret(api, base_dir)
    if user_header is not None and secret is None:
        raise api.fail("user_header", "is believed only from a front end that sends the shared secret: "
                       f"set api.front_end_secret_file or ${FRONT_END_SECRET_ENV} (docs/security.md)")
    config = ApiConfig(
        max_limit=api.integer("max_limit", 1000, 1), default_limit=api.integer("default_limit", 100, 1),
        exact_count_limit=api.integer("exact_count_limit", 10000, 1),
        max_radius_deg=api.number("max_radius_deg", 10.0), user_header=user_header, front_end_secret=secret,
        x_sendfile=api.boolean("x_sendfile", False), tar_max_files=api.integer("tar_max_files", 10000, 1),
        tar_max_bytes=api.integer("tar_max_bytes", 50 * 2**30, 1),
        max_body_bytes=api.integer("max_body_bytes", 2**20, 1024),
        stream_write_timeout=api.number("stream_write_timeout", 60.0, 1.0),
        max_streams=api.integer("max_streams", 6, 1),
        max_streams_per_client=api.integer("max_streams_per_client", 4, 1),
        db_pool_size=api.integer("db_pool_size", 4, 1),
        statement_timeout=api.number("statement_timeout", 30.0, 0.001),
        preview_max_size=api.integer("preview_max_size", 1024, 16),
        preview_cache_dir=_optional_path(api.string("preview_cache_dir"), base_dir),
        preview_cache_bytes=api.integer("preview_cache_bytes", 2**30, 0),
        calibration_nights=api.integer("calibration_nights", 1, 0))
    api.done()
    return config


_AUTHORITY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~()'!*:@,;+?-]{2,}")  # IVOA Identifiers 2.0


def _read_ivoa(ivoa: Section, base_dir: Path) -> IvoaConfig:
    authority = ivoa.string("authority", IvoaConfig.authority)
    if not _AUTHORITY.fullmatch(authority):
        raise ivoa.fail("authority", f"{authority!r} is not an IVOA authority (e.g. obs.example.edu)")
    bands = []
    section = ivoa.section("bands")
    for name in section.keys():
        limits = section.raw(name)
        if (not isinstance(limits, list) or len(limits) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in limits)
                or limits[0] > limits[1]):
            raise section.fail(str(name), "must be [shortest, longest] wavelength in nm")
        bands.append((str(name).lower(), limits[0] * 1e-9, limits[1] * 1e-9))
    config = IvoaConfig(
        authority=authority, default_maxrec=ivoa.integer("default_maxrec", 10000, 0),
        max_maxrec=ivoa.integer("max_maxrec", 100000, 1),
        sync_timeout=ivoa.number("sync_timeout", 60.0, 0.1), async_duration=ivoa.number("async_duration", 3600.0, 1.0),
        async_destruction=ivoa.number("async_destruction", 7 * 86400.0, 60.0),
        results_dir=_optional_path(ivoa.string("results_dir"), base_dir),
        jobs_per_user=ivoa.integer("jobs_per_user", 2, 1), bands=tuple(bands),
        spectrum_instruments=tuple(s.lower() for s in ivoa.strings("spectrum_instruments")))
    ivoa.done()
    if config.default_maxrec > config.max_maxrec:
        raise ivoa.fail("default_maxrec", "must not exceed ivoa.max_maxrec")
    return config


def load_config(explicit: str | None = None) -> Config:
    """Read, merge with the defaults and validate; raises ConfigError naming the key."""
    path = config_path(explicit)
    data = _read_yaml(DEFAULTS_FILE)
    source = "built-in defaults"
    base_dir = Path.cwd()
    if path is not None:
        data = _merge(data, _read_yaml(path))
        source = str(path)
        base_dir = path.resolve().parent
    top = Section(data, "", source)

    database = top.section("database")
    url = database.string("url")
    url = os.environ.get("ARCHIVE_DATABASE_URL") or url
    read_url = database.string("read_url")
    read_url = os.environ.get("ARCHIVE_DATABASE_READ_URL") or read_url
    max_replica_lag = database.number("max_replica_lag", 30.0, minimum=1.0)
    database.done()
    for key, value in (("url", url), ("read_url", read_url)):
        if value is not None and not value.startswith(("postgresql://", "postgres://", "postgresql+psycopg2://")):
            raise ConfigError(f"{source}: database.{key}: must be a postgresql:// URL (got {value!r})")

    roots = tuple(_read_root(s, base_dir) for s in top.sections("roots"))
    names = [r.name for r in roots]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{source}: roots: the name {name!r} is used twice")

    ingest = top.section("ingest")
    previews = ingest.raw("previews", [])
    if not isinstance(previews, list) or not all(type(s) is int and s >= 16 for s in previews):
        raise ingest.fail("previews", "must be a list of preview sizes in pixels (16 or more)")
    ingest_config = IngestConfig(workers=ingest.integer("workers", 0), batch_size=ingest.integer("batch_size", 500, 1),
                                 max_header_cards=ingest.integer("max_header_cards", 10000, 1),
                                 previews=tuple(previews))
    ingest.done()
    daemon = top.section("daemon")
    daemon_config = DaemonConfig(reconcile_interval=daemon.number("reconcile_interval", 3600.0, minimum=1.0),
                                 max_delete_fraction=daemon.number("max_delete_fraction", 0.1))
    daemon.done()
    if daemon_config.max_delete_fraction > 1:
        raise ConfigError(f"{source}: daemon.max_delete_fraction: must be between 0 and 1")
    access_config = _read_access(top.section("access"))
    api_config = _read_api(top.section("api"), base_dir)
    if ingest_config.previews and api_config.preview_cache_dir is None:
        raise ConfigError(f"{source}: ingest.previews: needs api.preview_cache_dir, where the API finds them")
    if any(size > api_config.preview_max_size for size in ingest_config.previews):
        raise ConfigError(f"{source}: ingest.previews: sizes above api.preview_max_size are never asked for")

    ivoa_config = _read_ivoa(top.section("ivoa"), base_dir)
    generic = read_keyword_map(top.section("keywords"), KeywordMap())
    instruments = tuple(read_profile(s, generic) for s in top.sections("instruments"))
    top.done()
    return Config(source=source, database_url=url, roots=roots, keywords=generic,
                  instruments=instruments, access=access_config, ingest=ingest_config,
                  daemon=daemon_config, api=api_config, base_dir=base_dir, ivoa=ivoa_config,
                  database_read_url=read_url, max_replica_lag=max_replica_lag)
