"""Reading a JSON or YAML document a user gives us (a file, an upload), safely.

One reader for every place that takes a document — workflow specs (`conveyor workflows run`),
the assess pack's inventories, plot imports — so each refuses hostile input the same way:
a size cap, text only (UTF-8, no NUL bytes), safe YAML without aliases (an alias can expand a
small file into gigabytes), no NaN or infinity, a nesting cap, and a mapping at the top.
Every refusal is a :class:`DocumentError` with the path of the problem (empty for the whole
document) and a message that says what was wrong; nothing else is raised, whatever the bytes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

import yaml

from conveyor.errors import ConveyorError

__all__ = ["DocumentError", "check_json_depth", "parse_document", "path_of"]


class DocumentError(ConveyorError):
    """A document that cannot be read: ``path`` names where ("" for the whole document)."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def path_of(loc: Iterable[str | int]) -> str:
    """``("compute", "instances", 3, "gpu")`` → ``compute.instances[3].gpu``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_document(
    data: bytes | str,
    filename: str | None = None,
    *,
    max_bytes: int,
    max_depth: int = 32,
    what: str = "document",
) -> dict[str, Any]:
    """The mapping in ``data``, JSON or YAML.

    The format is taken from ``filename``'s extension (``.json``, ``.yaml``/``.yml``), else
    sniffed (text starting with ``{`` is JSON). ``what`` names the document in messages
    ("the inventory", "the spec").
    """
    size = len(data.encode() if isinstance(data, str) else data)
    if size > max_bytes:
        raise DocumentError(f"the file is {size} bytes; at most {max_bytes} are accepted")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DocumentError(
                f"not UTF-8 text (byte {exc.start}); send {what} as JSON or YAML"
            ) from None
    else:
        text = data
    if "\x00" in text:
        raise DocumentError("binary content (NUL bytes); send JSON or YAML")
    if not text.strip():
        raise DocumentError(f"{what} is empty")
    suffix = filename.lower().rsplit(".", 1)[-1] if filename and "." in filename else ""
    as_json = suffix == "json" or (suffix not in ("yaml", "yml") and text.lstrip()[:1] == "{")
    try:
        if as_json:
            check_json_depth(text, max_depth)
        document = _parse_json(text) if as_json else _parse_yaml(text)
    except RecursionError:
        raise DocumentError(f"nested deeper than {max_depth} levels") from None
    if _depth(document, max_depth) > max_depth:
        raise DocumentError(f"nested deeper than {max_depth} levels")
    if not isinstance(document, dict):
        kind = type(document).__name__ if document is not None else "nothing"
        raise DocumentError(f"expected a mapping at the top, got {kind}")
    return document


_STRING = re.compile(r'"(?:\\.|[^"\\])*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def check_json_depth(text: str, limit: int) -> None:
    """Refuse JSON nested deeper than ``limit`` *before* parsing it: the json module's C
    parser recurses per level, and a hundred thousand ``[`` can overflow the C stack (a crash
    of the whole process, not a RecursionError) where the thread's stack is small."""
    if text.count("[") + text.count("{") <= limit:
        return
    depth = 0
    for bracket in _BRACKETS.findall(_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            if depth > limit:
                raise DocumentError(f"nested deeper than {limit} levels")
        else:
            depth -= 1


def _parse_json(text: str) -> Any:
    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a number we accept")

    try:
        return json.loads(text, parse_constant=refuse_constant)
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise DocumentError(f"not valid JSON: {exc}") from None


class _Loader(yaml.SafeLoader):
    """Safe YAML without aliases: an alias can expand a small file into gigabytes."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.YAMLError(f"aliases are not accepted (line {event.start_mark.line + 1})")
        return super().compose_node(parent, index)


def _parse_yaml(text: str) -> Any:
    try:
        document = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: e.g. an out-of-range timestamp
        raise DocumentError(f"not valid YAML: {exc}") from None
    _refuse_non_finite(document)
    return document


def _refuse_non_finite(node: Any, loc: tuple[str | int, ...] = ()) -> None:
    if isinstance(node, float) and not math.isfinite(node):
        raise DocumentError("NaN and infinity are not accepted", path_of(loc))
    if isinstance(node, dict):
        for key, value in node.items():
            _refuse_non_finite(value, (*loc, str(key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _refuse_non_finite(value, (*loc, i))


def _depth(node: Any, limit: int) -> int:
    depth, level = 0, [node]
    while level:
        depth += 1
        if depth > limit:
            return depth
        nxt: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                nxt.extend(item.values())
            elif isinstance(item, list):
                nxt.extend(item)
        level = nxt
    return depth - 1
