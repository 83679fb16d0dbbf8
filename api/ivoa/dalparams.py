"""Request parameters as the IVOA protocols read them (DALI 1.1): names in any letter case,
each one possibly repeated, from the query string or a POSTed form; numbers, intervals and
positions as DALI writes them (-Inf and +Inf for open ends, never NaN).

Unknown parameters are ignored, as SCS and DALI require; every mistake in a known one is a
`UsageFault` naming it, which each protocol answers in its own error form.
"""

from __future__ import annotations

import math

import falcon

from ..params import unfit_character

MAX_VALUES = 100  # of one parameter: each is a condition OR-ed into the query


class UsageFault(ValueError):
    """A parameter the caller got wrong; str() names it and says what was wrong."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")


def collect(req: falcon.Request, max_body: int) -> dict[str, list[str]]:
    """Every parameter's values by upper-case name, the query string's and a POSTed form's."""
    found: dict[str, list[str]] = {}
    sources = [req.params]
    if req.method == "POST" and req.content_length:
        if req.content_length > max_body:
            raise UsageFault("body", f"at most {max_body} bytes (api.max_body_bytes)")
        if req.content_type is None or not req.content_type.startswith(falcon.MEDIA_URLENCODED):
            raise UsageFault("body", f"parameters are posted as {falcon.MEDIA_URLENCODED}")
        try:
            sources.append(req.get_media())
        except falcon.MediaMalformedError:
            raise UsageFault("body", "not a URL-encoded form") from None
    for source in sources:
        for name, value in source.items():
            found.setdefault(name.upper(), []).extend(value if isinstance(value, list) else [value])
    for name, values in found.items():
        if len(values) > MAX_VALUES:
            raise UsageFault(name, f"given {len(values)} times; at most {MAX_VALUES}")
        for value in values:
            if unfit_character(value):
                raise UsageFault(name, "contains a control character (or an unpaired surrogate)")
    return found


def texts(params: dict[str, list[str]], name: str) -> list[str]:
    """The values of `name`, each stripped; an empty one is a fault."""
    values = [value.strip() for value in params.get(name, [])]
    if "" in values:
        raise UsageFault(name, "is empty")
    return values


def single(params: dict[str, list[str]], name: str) -> str | None:
    """The one value of a parameter that means nothing repeated (MAXREC, RESPONSEFORMAT)."""
    values = texts(params, name)
    if len(values) > 1:
        raise UsageFault(name, "given more than once")
    return values[0] if values else None


def number(name: str, text: str, *, infinite: bool = False) -> float:
    """A decimal number; -Inf and +Inf only where `infinite` (an interval's open end)."""
    try:
        value = float(text)
    except ValueError:
        raise UsageFault(name, f"{text[:40]!r} is not a number") from None
    if math.isnan(value) or math.isinf(value) and not infinite:
        raise UsageFault(name, f"{text[:40]!r} is not a finite number")
    return value


def numbers(name: str, text: str, *, infinite: bool = False) -> list[float]:
    """Numbers separated by spaces, as DALI writes arrays."""
    return [number(name, item, infinite=infinite) for item in text.split()]


def interval(name: str, text: str) -> tuple[float, float]:
    """DALI's interval: `lo hi` (either end -Inf or +Inf: open), or one value (lo = hi)."""
    values = numbers(name, text, infinite=True)
    if len(values) == 1:
        values *= 2
    if len(values) != 2:
        raise UsageFault(name, f"{text[:40]!r}: expected one number or two (lo hi)")
    low, high = values
    if low > high:
        raise UsageFault(name, f"{text[:40]!r}: the lower end is above the upper")
    if low == high and math.isinf(low):
        raise UsageFault(name, f"{text[:40]!r}: an interval of one infinite value")
    return low, high


def longitude(name: str, value: float) -> float:
    if not 0 <= value <= 360:
        raise UsageFault(name, f"right ascension {value:g} is outside 0 to 360 degrees")
    return value


def latitude(name: str, value: float) -> float:
    if not -90 <= value <= 90:
        raise UsageFault(name, f"declination {value:g} is outside -90 to 90 degrees")
    return value


def maxrec(params: dict[str, list[str]], default: int, maximum: int) -> int:
    """Rows to return: MAXREC (0: the metadata only), else `default`; never above `maximum`."""
    text = single(params, "MAXREC")
    if text is None:
        return default
    if not text.isascii() or not text.isdigit():
        raise UsageFault("MAXREC", f"{text[:40]!r} is not a whole number of rows")
    return min(int(text), maximum) if len(text) <= 18 else maximum
