"""Request limits, enforced before anything parses a body.

A pure ASGI middleware, outside FastAPI's routing, so an oversized or hostile body costs at
most ``CONVEYOR_PAYLOAD_MAX_BYTES`` of memory and a few milliseconds, and never reaches a
JSON parser, a validator or the ledger:

- a ``Content-Length`` over the cap is refused at once, without reading the body;
- a body without one (``Transfer-Encoding: chunked``) is counted while it streams in and
  refused the moment it passes the cap;
- a JSON body nested deeper than ``CONVEYOR_JSON_MAX_DEPTH`` or holding more than
  ``CONVEYOR_JSON_MAX_ITEMS`` values is refused after a scan that runs at C speed (regex,
  ``bytes.translate``, ``itertools.accumulate``); Python's own parser would otherwise recurse
  into the depth and the validators walk every value.

All three answer 413 with the API's usual JSON error body. Bodies within the limits are handed
on unchanged (buffered once, up to the cap). Paths under ``streaming`` (file uploads) pass
untouched: those routes stream their bodies to disk and enforce their own cap.
"""

from __future__ import annotations

import operator
import re
from itertools import accumulate, repeat

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.api.errors import error_response
from conveyor.errors import PayloadTooLarge

BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Escapes first (left to right, so `\\` and `\"` pair up correctly), then whole strings: once
# no backslash is left a string is just "[^"]*", which a regex scans in linear time.
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b"[]{},")
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
# An opening bracket becomes 2 and a closing one 0; minus 1 each, their running sum is the depth.
_STEP = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_SCAN_CHUNK = 64 * 1024


def json_structure_problem(body: bytes, *, max_depth: int, max_items: int) -> str | None:
    """Why a JSON body is too deep or too big to parse, or None. Not a validator: a body that
    is not JSON at all passes and is refused later by the parser."""
    structure = _STRING.sub(b"", _ESCAPE.sub(b"", body)).translate(None, _NOT_STRUCTURE)
    values = structure.count(b",") + 1
    if values > max_items:
        return (
            f"the JSON body holds more than {max_items} values (CONVEYOR_JSON_MAX_ITEMS); "
            "pass large data by reference (a URL, a file id) instead"
        )
    brackets = structure.translate(None, b",")
    depth = 0
    for start in range(0, len(brackets), _SCAN_CHUNK):
        steps = brackets[start : start + _SCAN_CHUNK].translate(_STEP)
        levels = list(accumulate(map(operator.sub, steps, repeat(1)), initial=depth))
        if max(levels) > max_depth:
            return (
                f"the JSON body nests deeper than {max_depth} levels "
                "(CONVEYOR_JSON_MAX_DEPTH); pass flatter arguments"
            )
        depth = levels[-1]
    return None


def _is_json(content_type: str) -> bool:
    # FastAPI parses a body without a content type as JSON too.
    media = content_type.split(";", 1)[0].strip().lower()
    return not media or media == "application/json" or media.endswith("+json")


class RequestLimits:
    """Refuse bodies over ``max_body`` bytes, and JSON bodies too deep or with too many values,
    with 413 before the application sees them."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int,
        max_depth: int,
        max_items: int,
        streaming: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.streaming = streaming
        self.max_body = max_body
        self.max_depth = max_depth
        self.max_items = max_items

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.streaming and scope["path"].startswith(self.streaming)):
            # (routes under `streaming` read their large bodies to disk and cap them themselves)
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = _content_length(headers.get("content-length"))
        if declared is not None and declared > self.max_body:
            await self._refuse(
                f"the request body is {declared} bytes; the limit is {self.max_body} "
                "(CONVEYOR_PAYLOAD_MAX_BYTES)",
                scope,
                receive,
                send,
            )
            return
        streams = "transfer-encoding" in headers
        if declared == 0 or (
            declared is None and not streams and scope["method"] in BODYLESS_METHODS
        ):
            await self.app(scope, receive, send)  # no body: nothing to hold back
            return

        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await self._refuse(
                    f"the request body exceeds the limit of {self.max_body} bytes "
                    "(CONVEYOR_PAYLOAD_MAX_BYTES)",
                    scope,
                    receive,
                    send,
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and _is_json(headers.get("content-type", "")):
            problem = json_structure_problem(
                body, max_depth=self.max_depth, max_items=self.max_items
            )
            if problem is not None:
                await self._refuse(problem, scope, receive, send)
                return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later calls wait for the disconnect, as usual

        await self.app(scope, replay, send)

    async def _refuse(self, message: str, scope: Scope, receive: Receive, send: Send) -> None:
        await error_response(PayloadTooLarge(message))(scope, receive, send)


def _content_length(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        return None  # the server refuses malformed framing; count while streaming regardless
    return value if value >= 0 else None
