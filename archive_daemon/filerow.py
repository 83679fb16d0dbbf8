"""One file's row, read from its header: what the loader's header-reading processes do.

Kept apart from loader.py so that the process that scans and writes never imports the
reading code; readers import astropy only for a header that needs it.
"""

from __future__ import annotations

import os

from . import access, store
from .config import Config, RootConfig
from .fitsfile import CARD, BadFile, Vanished, read_headers
from .fitsmeta import extract
from .skypos import scircle_literal, spoint_literal, spoly_literal
from .watcher import DiskEntry


def load_row(root: RootConfig, entry: DiskEntry, config: Config, rules: access.Rules) -> tuple:
    """The database row of one file (store.FILE_COLUMNS order); raises BadFile or Vanished."""
    if entry.refusal:
        raise BadFile(entry.refusal)  # the scan saw a link or a special file: never opened
    try:
        entry.path.encode("utf-8")
    except UnicodeEncodeError:  # os.fsdecode keeps such bytes as lone surrogates
        raise BadFile("the file name is not valid UTF-8") from None
    headers = read_headers(str(root.path), entry.path)
    meta = extract(headers, entry.path, config.instruments, config.keywords)
    header_text = kept_header(headers.text, config.ingest.max_header_cards, meta.notes)
    mtime = store.mtime_of(entry.mtime_us)
    facts = access.Facts(entry.path, meta.telescope, meta.instrument, meta.frame_type, meta.program,
                         meta.obs_start, mtime)
    decision = rules.decide(str(root.path), facts)
    if decision.night_note:
        meta.notes.append(decision.night_note)
    return (
        root.name, entry.path, entry.size, mtime, decision.night, meta.instrument, meta.telescope,
        meta.object, meta.obs_start, meta.obs_end, meta.date_source, meta.exptime, decision.frame_type,
        meta.filter, meta.program, meta.ra, meta.dec,
        None if meta.ra is None or meta.dec is None else spoint_literal(meta.ra, meta.dec),
        spoly_literal(meta.footprint) if meta.footprint else None,
        scircle_literal(meta.footprint) if meta.footprint else None,
        decision.public_date, header_text, "; ".join(meta.notes) or None,
        store.array_literal(decision.grants), store.rule_text(decision), meta.frame_type,
        store.integers_literal(meta.naxis),
    )


def kept_header(text: str, max_cards: int, notes: list[str]) -> str:
    """The header as stored: its first `max_cards` cards (ingest.max_header_cards), the cut noted."""
    cards = len(text) // CARD
    if cards <= max_cards:
        return text
    notes.append(f"header: {cards} cards, the first {max_cards} kept (ingest.max_header_cards)")
    return text[:max_cards * CARD]


def load_chunk(root: RootConfig, chunk: list[tuple[str, DiskEntry]], config: Config, rules: access.Rules) -> list:
    results = []
    for kind, entry in chunk:
        try:
            results.append((kind, entry, store.copy_line(load_row(root, entry, config, rules)), None))
            if config.ingest.previews:
                _prerender(root, entry, config)
        except Vanished:
            results.append(("gone", entry, None, None))
        except BadFile as exc:
            results.append((kind, entry, None, str(exc)))
        except Exception as exc:  # a bug must cost one file, never the run
            results.append((kind, entry, None, f"internal error reading the file: {type(exc).__name__}: {exc}"))
    return results


def _prerender(root: RootConfig, entry: DiskEntry, config: Config) -> None:
    """The file's previews, rendered now (ingest.previews) so that the first view is instant.
    A file that cannot be drawn is still archived: the API answers its preview with a 404."""
    from . import previewcache  # drawing's imports, only where previews are made at ingest
    cache = previewcache.PreviewCache(config.api.preview_cache_dir, config.api.preview_cache_bytes)
    try:
        previewcache.prerender(cache, os.path.join(root.path, entry.path), config.ingest.previews)
    except Exception:  # noqa: BLE001 - whatever astropy raises on odd data, the row stands
        pass
