"""Typed reading of one YAML mapping, so every bad value is reported with its full key."""

from __future__ import annotations

from typing import Any


class ConfigError(Exception):
    """A configuration problem; the message names the file and the key."""


class Section:
    """A mapping from the YAML file plus the dotted key that leads to it.

    Each accessor pops the key it reads, so :meth:`done` can reject keys nobody asked for:
    a misspelt option is an error, never silently ignored.
    """

    def __init__(self, data: Any, key: str, source: str):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: {key or 'top level'}: must be a mapping")
        self._data = dict(data)
        self.key = key
        self.source = source

    def _name(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def fail(self, name: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self._name(name)}: {message}")

    def keys(self) -> list:
        return list(self._data)

    def has(self, name: str) -> bool:
        return name in self._data

    def raw(self, name: str, default: Any = None) -> Any:
        return self._data.pop(name, default)

    def section(self, name: str) -> "Section":
        return Section(self.raw(name), self._name(name), self.source)

    def sections(self, name: str) -> list["Section"]:
        items = self.raw(name, [])
        if not isinstance(items, list):
            raise self.fail(name, "must be a list")
        return [Section(item, f"{self._name(name)}[{i}]", self.source) for i, item in enumerate(items)]

    def string(self, name: str, default: str | None = None, required: bool = False) -> str | None:
        value = self.raw(name, default)
        if value is None:
            if required:
                raise self.fail(name, "is required")
            return None
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise self.fail(name, f"must be a string (got {value!r})")
        return str(value)

    def number(self, name: str, default: float, minimum: float = 0.0) -> float:
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(name, f"must be a number (got {value!r})")
        if value < minimum:
            raise self.fail(name, f"must be at least {minimum} (got {value!r})")
        return float(value)

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, f"must be a whole number (got {value!r})")
        if value < minimum:
            raise self.fail(name, f"must be at least {minimum} (got {value!r})")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise self.fail(name, f"must be true or false (got {value!r})")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.raw(name, default)
        if value not in choices:
            raise self.fail(name, f"must be one of {', '.join(choices)} (got {value!r})")
        return value

    def strings(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.raw(name, None)
        if value is None:
            return default
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(name, "must be a list of strings")
        return tuple(value)

    def done(self) -> None:
        """Reject whatever keys were not read."""
        if self._data:
            name = sorted(self._data, key=str)[0]
            raise self.fail(str(name), "unknown key")
