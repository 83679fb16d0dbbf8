"""Read the header(s) of a FITS file without touching its pixel data.

We scan the 2880-byte header blocks ourselves and read the value forms nearly every card
uses (Cards); astropy reads any other card, and is imported only when one comes. That is
several times faster than opening the file as an HDU list, and it lets us say precisely
what is wrong with a broken file (no SIMPLE card, no END card, truncated data).
Tile-compressed images are the one case handed to astropy whole, because their image
header has to be rebuilt from the binary table that stores them.
"""

from __future__ import annotations

import errno
import gzip
import os
import re
import stat
import warnings
import zlib
from dataclasses import dataclass, field

from . import filekind

BLOCK = 2880
CARD = 80
# The most header one HDU may have: far beyond any real header (which has a few hundred
# cards, a few thousand with long histories), and a bound on what a file whose header never
# ends (a gzip bomb of blanks, say) costs to read.
MAX_HEADER_CARDS = 100_000
MAX_NAXIS = 999                       # the FITS standard's limit
# Bytes read from disk at a time: a usual header (up to 280 cards) in one read, not one per block.
READ_AHEAD = 8 * BLOCK
BITPIX_VALUES = (8, 16, 32, 64, -32, -64)
# What reading a damaged or vanishing file raises (zlib.error: a corrupt deflate stream).
_UNREADABLE = (OSError, EOFError, zlib.error)
_PRINTABLE = bytes(range(0x20, 0x7F))
_NOT_PRINTABLE = re.compile(rb"[^\x20-\x7e]")
_KEYWORD = re.compile(rb"[A-Z0-9_-]{1,8} *(= |$)")
# The value forms nearly every card uses (columns 11-80): a quoted string, T/F, an integer,
# a real. Anything else (complex values, odd spacing) goes to astropy's full parser.
_COMMENTARY = ("COMMENT ", "HISTORY ", "        ")  # text cards even when column 9 holds '='
# Each 80-column card in turn: its keyword when it has a value ("= " in columns 9-10), else "".
_VALUE_KEYWORDS = re.compile(r"(?:([^ ].{7})= |.{10}).{70}", re.DOTALL)
_VALUE_FORMS = r" *(?:'((?:[^']|'')*)'|([TF])|([+-]?\d+)|([+-]?(?:\d+\.?\d*|\.\d+)(?:[EeDd][+-]?\d+)?)) *"
_VALUE = re.compile(_VALUE_FORMS + r"(?:/ *(.*?) *)?$")  # and the comment, for card_fields
# The value alone, for Cards: a comment is skipped, not parsed (four times faster a card).
_VALUE_ONLY = re.compile(_VALUE_FORMS + r"(?:/.*)?$")
_MAGIC = {
    b"\xff\xd8\xff": "a JPEG image",
    b"\x89PNG": "a PNG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"PK\x03\x04": "a ZIP archive",
    b"BZh": "a bzip2 stream",
    b"\x1f\x9d": "a Unix-compressed (.Z) stream",
}


class BadFile(Exception):
    """The file cannot be archived; str(exc) is the reason shown to operators."""


class Vanished(Exception):
    """The file was deleted after it was listed: nothing to archive, nothing failed."""


class Cards:
    """One header's 80-column cards, indexed by keyword; a value is parsed when asked.

    Building an astropy Header parses every card; an archive needs a dozen values from
    headers of two hundred cards, so we index the card images and parse only those. The
    usual value forms are parsed here, ten times faster than astropy's Card; the rest by it.
    """

    def __init__(self, text: str):
        self.text = text
        self._values: dict = {}
        # One regex pass finds every card's keyword in C; the dict is built backwards so that
        # a keyword given twice keeps its first card, as astropy does.
        keys = _VALUE_KEYWORDS.findall(text)
        self._index: dict[str, int] = dict(zip(map(str.rstrip, reversed(keys)),
                                               range((len(keys) - 1) * CARD, -1, -CARD)))
        for text_card in _COMMENTARY:  # "" stands for every card with no value
            self._index.pop(text_card.rstrip(), None)

    def keys(self):
        return self._index.keys()

    def image(self, key: str) -> str:
        at = self._index[key]
        return self.text[at:at + CARD]

    def get(self, key: str, default=None):
        if key not in self._values:
            self._values[key] = self._parse(key)
        value = self._values[key]
        return default if value is None else value

    def _parse(self, key: str):
        at = self._index.get(key)
        if at is None:
            return None
        match = _VALUE_ONLY.match(self.text, at + 10, at + CARD)
        if match:
            return _value(match)
        try:
            return _astropy_card(self.text[at:at + CARD])[1]
        except Exception:  # astropy raises assorted errors for cards it cannot parse
            return None


def _value(match: re.Match):
    text, logical, integer, real = match.group(1, 2, 3, 4)
    if text is not None:
        return text.replace("''", "'").rstrip()
    if logical is not None:
        return logical == "T"
    if integer is not None:
        return int(integer)
    return float(real.replace("D", "E").replace("d", "e"))


def card_fields(image: str) -> tuple[str, object, str | None]:
    """One card's keyword, value and comment: the usual forms by the fast path Cards uses,
    the rest (HIERARCH, CONTINUE, complex values) by astropy. ValueError for a corrupt card."""
    keyword = image[:8].rstrip()
    if image[:8] in _COMMENTARY:
        return keyword, image[8:].rstrip(), None
    if image[8:10] == "= " and keyword != "HIERARCH":
        match = _VALUE.match(image, 10)
        if match:
            return keyword, _value(match), match.group(5) or None
    try:
        return _astropy_card(image)
    except Exception as exc:  # astropy raises assorted errors for cards it cannot parse
        raise ValueError(f"cannot read the card {image!r}") from exc


def _astropy_card(image: str) -> tuple[str, object, str | None]:
    """Keyword, value and comment of a card the fast path does not take, read by astropy:
    imported when first needed, a third of a second that usual headers never spend."""
    from astropy.io import fits
    card = fits.Card.fromstring(image)
    value = card.value
    return card.keyword, None if isinstance(value, fits.card.Undefined) else value, card.comment or None


@dataclass
class HeaderSet:
    """The primary header and, when the primary holds no data, the first extension's."""

    primary: Cards
    extension: Cards | None
    text: str
    notes: list[str] = field(default_factory=list)

    def get(self, key: str):
        """A keyword's value from the primary header, else from the extension."""
        value = self.primary.get(key)
        if value is None and self.extension is not None:
            value = self.extension.get(key)
        return value


def _describe_start(data: bytes) -> str:
    for magic, what in _MAGIC.items():
        if data.startswith(magic):
            return f"not a FITS file: it is {what}"
    first = data[:CARD]
    if _KEYWORD.match(first) and not _NOT_PRINTABLE.search(first):
        keyword = first[:8].decode().strip()
        return f"not a FITS file: no SIMPLE card (the first keyword is {keyword})"
    if not _NOT_PRINTABLE.search(data[:200].replace(b"\n", b" ").replace(b"\r", b" ").replace(b"\t", b" ")):
        text = " ".join(data[:40].decode("ascii").split())
        return f"not a FITS file: it is text ({text!r}...)"
    return "not a FITS file: binary data with no SIMPLE card"


def _read_header_bytes(stream, what: str) -> bytes | None:
    """Header blocks up to and including the END card; None at a clean end of file."""
    blocks = []
    while True:
        if len(blocks) * BLOCK >= MAX_HEADER_CARDS * CARD:
            raise BadFile(f"no END card in the first {MAX_HEADER_CARDS} cards of the {what} header "
                          "(the most the archive reads)")
        block = stream.read(BLOCK)
        if not block:
            if not blocks:
                return None
            raise BadFile(f"no END card in the {what} header: the file ends inside it")
        if not blocks and what == "primary" and not block.startswith(b"SIMPLE  ="):
            raise BadFile(_describe_start(block))
        if len(block) < BLOCK:
            raise BadFile(f"truncated: the {what} header stops {len(block)} bytes into a 2880-byte block")
        if block.translate(None, _PRINTABLE):
            # Real headers carry the odd corrupt card; a block of mostly binary bytes is data.
            cards = [block[i:i + CARD] for i in range(0, BLOCK, CARD)]
            good = sum(1 for c in cards if not _NOT_PRINTABLE.search(c))
            if good < len(cards) // 2:
                raise BadFile(f"no END card in the {what} header: it runs into binary data")
        blocks.append(block)
        at = block.find(b"END")  # the END card: "END" at a card's start, blanks after it
        while at >= 0:
            if at % CARD == 0 and not block[at + 3:at + CARD].strip():
                return b"".join(blocks)[: (len(blocks) - 1) * BLOCK + at + CARD]
            at = block.find(b"END", at + 1)


def printable(raw: bytes) -> str:
    """Header bytes as text, each non-printable byte replaced by '?' (card columns stay put)."""
    return _NOT_PRINTABLE.sub(b"?", raw).decode("ascii")


def _parse(raw: bytes, notes: list[str], what: str) -> Cards:
    if what == "primary" and (raw[CARD:CARD + 8] != b"BITPIX  " or raw[2 * CARD:2 * CARD + 8] != b"NAXIS   "):
        notes.append("primary header: BITPIX and NAXIS are not the second and third cards (not standard FITS)")
    if raw.translate(None, _PRINTABLE):
        notes.append(f"{what} header: non-printable characters replaced by '?'")
        return Cards(printable(raw))
    return Cards(raw.decode("ascii"))


def _count(header: Cards, key: str, default: int | None, allowed, rule: str) -> int:
    """A whole-number structural keyword, refused (BadFile) unless `allowed(value)`."""
    value = header.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadFile(f"unreadable header: {key} missing or not a whole number")
    if not allowed(value):
        raise BadFile(f"unreadable header: {key} = {value} ({rule})")
    return value


def _natural(header: Cards, key: str, default: int) -> int:
    return _count(header, key, default, lambda v: v >= 0, "must be 0 or more")


def data_size(header: Cards) -> int:
    """Bytes of data that follow a header, from BITPIX, NAXISn, PCOUNT and GCOUNT.

    Values no real file has (NAXIS = 10^11, a negative axis) are refused here, before they
    cost anything: the loop over the axes is bounded by the standard's 999.
    """
    naxis = _count(header, "NAXIS", 0, lambda v: 0 <= v <= MAX_NAXIS, f"the standard allows 0 to {MAX_NAXIS}")
    if naxis == 0:
        return 0
    bitpix = abs(_count(header, "BITPIX", None, BITPIX_VALUES.__contains__, "must be 8, 16, 32, 64, -32 or -64"))
    dims = [_natural(header, f"NAXIS{i}", 0) for i in range(1, naxis + 1)]
    if header.get("GROUPS") is True and dims and dims[0] == 0:
        dims = dims[1:]
    count = 1
    for d in dims:
        count *= d
    pcount = _natural(header, "PCOUNT", 0)
    gcount = _natural(header, "GCOUNT", 1)
    return bitpix * gcount * (pcount + count) // 8


def _compressed_image_header(handle) -> Cards:
    from astropy.io import fits  # slow to import; only tile-compressed images need it here
    handle.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(handle, lazy_load_hdus=True, memmap=False) as hdul:
            return Cards(printable(hdul[1].header.tostring().encode("ascii", "replace")))


def _open(root: str, path: str):
    """The file root/path, opened without following a link anywhere below the root and
    without blocking on a FIFO (filekind.open_below); raises BadFile unless it is a plain file."""
    try:
        fd = filekind.open_below(root, path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BadFile(filekind.SYMLINK) from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise Vanished() from None
        raise BadFile(f"cannot open: {exc.strerror}") from None
    st = os.fstat(fd)
    why = "is a directory, not a file" if stat.S_ISDIR(st.st_mode) else filekind.refusal(st)
    if why:
        os.close(fd)
        raise BadFile(why)
    return os.fdopen(fd, "rb", buffering=READ_AHEAD)


def _stream(handle):
    """A binary stream over the file's contents and the file's size (None when compressed)."""
    if handle.read(2) == b"\x1f\x8b":
        handle.seek(0)
        return gzip.GzipFile(fileobj=handle, mode="rb"), None
    handle.seek(0)
    return handle, os.fstat(handle.fileno()).st_size


def read_headers(root: str, path: str) -> HeaderSet:
    """Read the headers of the file `path` below `root`; raises BadFile with a specific reason."""
    notes: list[str] = []
    with _open(root, path) as handle:
        try:
            stream, size = _stream(handle)
            raw = _read_header_bytes(stream, "primary")
        except _UNREADABLE as exc:
            raise BadFile(f"cannot read: {exc}") from None
        if raw is None:
            raise BadFile("empty file")
        primary = _parse(raw, notes, "primary")
        header_end = -(-len(raw) // BLOCK) * BLOCK
        data = data_size(primary)
        if size is not None and size < header_end + data:
            raise BadFile(f"truncated: the header promises {data} bytes of data, "
                          f"the file holds {max(size - header_end, 0)}")
        padded_end = header_end + -(-data // BLOCK) * BLOCK
        if size is not None and size > padded_end and primary.get("EXTEND") is not True:
            stream.seek(padded_end)
            if stream.read(9) != b"XTENSION=":
                notes.append(f"{size - padded_end} bytes after the primary data are not a FITS extension")
            stream.seek(header_end)
        texts = [primary.text]
        extension = None
        if data == 0 and primary.get("EXTEND") is True:
            try:
                ext_raw = _read_header_bytes(stream, "first extension")
            except BadFile as exc:
                notes.append(str(exc))
                ext_raw = None
            except _UNREADABLE as exc:
                notes.append(f"first extension unreadable: {exc}")
                ext_raw = None
            if ext_raw is not None and ext_raw.startswith(b"XTENSION="):
                extension = _parse(ext_raw, notes, "first extension")
                texts.append(extension.text)
                if extension.get("ZIMAGE") is True:
                    try:
                        extension = _compressed_image_header(handle)
                    except Exception as exc:
                        notes.append(f"compressed image header unreadable: {exc}")
    return HeaderSet(primary, extension, "".join(texts), notes)
