"""Strict readers for values decoded from JSON: exact types (a bool is not an int), finite
numbers, ranges, and no unknown keys. Each refusal is a ProtocolError naming the key."""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from typing import Any

from .errors import ErrorCode, ProtocolError

_MISSING = object()
# The largest int that a JSON reader in any language keeps exact.
BIG_INT = 2**53


def check_int(value: object, name: str, low: int, high: int, code: ErrorCode) -> int:
    """`value` as an int in [low, high]; bools and floats (even 3.0) are refused."""
    # bool is a subclass of int: `true` must not pass as 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(code, f"{name} must be an integer, not {_show(value)}")
    if not low <= value <= high:
        raise ProtocolError(code, f"{name} must be in [{low}, {high}], not {value}")
    return value


def check_float(
    value: object, name: str, low: float, high: float, code: ErrorCode, *, above_low: bool = False
) -> float:
    """`value` (an int or a float, not a bool) as a finite float in [low, high], or in
    (low, high] when `above_low`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError(code, f"{name} must be a number, not {_show(value)}")
    number = float(value)
    too_low = number <= low if above_low else number < low
    if not math.isfinite(number) or too_low or number > high:
        opening = "(" if above_low else "["
        raise ProtocolError(
            code, f"{name} must be a finite number in {opening}{low:g}, {high:g}], not {value!r}"
        )
    return number


def check_str(
    value: object,
    name: str,
    code: ErrorCode,
    *,
    max_len: int,
    pattern: re.Pattern[str] | None = None,
    choices: Collection[str] | None = None,
) -> str:
    """`value` as a str of at most `max_len` characters, matching `pattern` or one of
    `choices` when given."""
    if not isinstance(value, str):
        raise ProtocolError(code, f"{name} must be a string, not {_show(value)}")
    if len(value) > max_len:
        raise ProtocolError(code, f"{name} is longer than {max_len} characters")
    if choices is not None and value not in choices:
        raise ProtocolError(
            code, f"{name} must be one of {', '.join(sorted(choices))}, not {value!r}"
        )
    if pattern is not None and not pattern.fullmatch(value):
        raise ProtocolError(code, f"{name} {value!r} is not valid")
    return value


def check_bool(value: object, name: str, code: ErrorCode) -> bool:
    """`value` as a bool; 0 and 1 are refused."""
    if not isinstance(value, bool):
        raise ProtocolError(code, f"{name} must be true or false, not {_show(value)}")
    return value


def _show(value: object) -> str:
    """A short description of a wrong value for an error message (never a huge echo)."""
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


class Reader:
    """Reads the keys of one decoded JSON object; `done()` refuses the keys nobody asked for."""

    def __init__(self, obj: object, where: str, code: ErrorCode = ErrorCode.MALFORMED) -> None:
        if not isinstance(obj, dict):
            raise ProtocolError(code, f"{where} must be a JSON object, not {_show(obj)}")
        self._obj: dict[str, object] = obj
        self._where = where
        self.code = code
        self._seen: set[str] = set()

    @property
    def where(self) -> str:
        """The object's full name, e.g. `submit.content`."""
        return self._where or "message"

    def name(self, key: str) -> str:
        """The key's full name for error messages, e.g. `params.strength`."""
        return f"{self._where}.{key}" if self._where else key

    def has(self, key: str) -> bool:
        return key in self._obj

    def take(self, key: str, default: object = _MISSING) -> Any:
        """The raw value; a missing key is an error unless a default is given. Typed Any: the
        caller hands it to a constructor or a check_* function, which checks its type."""
        self._seen.add(key)
        if key in self._obj:
            return self._obj[key]
        if default is _MISSING:
            raise ProtocolError(self.code, f"{self.name(key)} is missing")
        return default

    def take_int(self, key: str, low: int, high: int) -> int:
        return check_int(self.take(key), self.name(key), low, high, self.code)

    def take_float(self, key: str, low: float, high: float, *, above_low: bool = False) -> float:
        return check_float(
            self.take(key), self.name(key), low, high, self.code, above_low=above_low
        )

    def take_str(self, key: str, *, max_len: int, pattern: re.Pattern[str] | None = None) -> str:
        return check_str(
            self.take(key), self.name(key), self.code, max_len=max_len, pattern=pattern
        )

    def take_list(self, key: str, *, max_len: int, min_len: int = 0) -> list[Any]:
        value = self.take(key)
        if not isinstance(value, list):
            raise ProtocolError(self.code, f"{self.name(key)} must be a list, not {_show(value)}")
        if not min_len <= len(value) <= max_len:
            raise ProtocolError(
                self.code,
                f"{self.name(key)} must hold {min_len} to {max_len} items, not {len(value)}",
            )
        return value

    def take_reader(self, key: str) -> Reader:
        """A Reader over a nested object."""
        return Reader(self.take(key), self.name(key), self.code)

    def done(self) -> None:
        """Refuse unknown keys: a typo or a newer client's field must not pass silently."""
        unknown = sorted(set(self._obj) - self._seen)
        if unknown:
            shown = ", ".join(repr(key[:40]) for key in unknown[:5])
            raise ProtocolError(self.code, f"unknown key(s) in {self.where}: {shown}")
