"""Strict JSON for the wire: UTF-8 only, no NaN or Infinity (which `json.loads` accepts), no
number overflowing to inf, no duplicate keys; compact and ASCII when writing."""

from __future__ import annotations

import json
import math

from .errors import ErrorCode, ProtocolError
from .images import BytesLike

_MAX_NUMBER_CHARS = 32  # JSON numbers longer than this are refused before parsing


def dumps(obj: object) -> bytes:
    """Compact JSON bytes."""
    # allow_nan=False: a NaN that slipped through would be refused by every receiver anyway.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def loads(frame: BytesLike, where: str) -> object:
    """Strict JSON: UTF-8, no NaN/Infinity, no overflow to inf, no duplicate keys."""
    try:
        return json.loads(
            bytes(frame).decode("utf-8"),
            parse_constant=_refuse_constant,
            parse_float=_parse_float,
            parse_int=_parse_int,
            object_pairs_hook=_unique_keys,
        )
    except ProtocolError as error:
        raise ProtocolError(ErrorCode.MALFORMED, f"{where}: {error.message}") from None
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError, JSONDecodeError, depth
        raise ProtocolError(ErrorCode.MALFORMED, f"{where} is not valid JSON: {error}") from None


def _refuse_constant(name: str) -> float:
    raise ProtocolError(ErrorCode.MALFORMED, f"{name} is not a valid number")


def _parse_float(text: str) -> float:
    # 1e999 parses to inf: as unwelcome as a literal Infinity.
    value = float(text) if len(text) <= _MAX_NUMBER_CHARS else math.inf
    if math.isinf(value):
        raise ProtocolError(ErrorCode.MALFORMED, f"number {text[:40]} is out of range")
    return value


def _parse_int(text: str) -> int:
    if len(text) > _MAX_NUMBER_CHARS:  # also spares int() a quadratic parse of huge numbers
        raise ProtocolError(ErrorCode.MALFORMED, f"number {text[:40]}... is out of range")
    return int(text)


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # Two parsers could disagree about which duplicate wins; refuse the ambiguity.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ProtocolError(ErrorCode.MALFORMED, "duplicate key in a JSON object")
    return obj
