"""Values PostgreSQL can store, made from values it cannot.

A message from the broker can carry anything JSON or an AMQP table can: NUL characters (which
``text`` and ``jsonb`` refuse), lone UTF-16 surrogates (which UTF-8 cannot encode), NaN and
infinities (which ``jsonb`` refuses), bytes, dates, deeply nested or huge values. The recorder
first writes events as they are (the fast path); only an event PostgreSQL refused goes through
``storable`` and is written again, so an odd value costs nothing until it shows up.
"""

from __future__ import annotations

import math
from typing import Any

MAX_DEPTH = 32


def storable_text(value: str) -> str:
    """``value`` with NUL written as ``\\x00`` and unencodable characters (lone surrogates)
    as backslash escapes; unchanged when it is already storable."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value.replace("\x00", "\\x00") if "\x00" in value else value


def storable(value: Any, depth: int = 0) -> Any:
    """A JSON value ``jsonb`` accepts, made from any value: strings made storable, bytes
    decoded (backslash escapes for what is not UTF-8), non-finite floats and other objects
    written as their ``repr``, nesting below ``MAX_DEPTH`` levels cut to a ``repr``."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return storable_text(bytes(value).decode("utf-8", "backslashreplace"))
    if depth >= MAX_DEPTH:
        return storable_text(repr(value)[:1000])
    if isinstance(value, dict):
        return {storable_text(str(k)): storable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [storable(v, depth + 1) for v in value]
    return storable_text(repr(value))
