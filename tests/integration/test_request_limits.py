"""Request limits: oversized, endless and hostile JSON bodies are refused with 413 before
anything parses them, and nothing reaches the ledger."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from sqlalchemy import create_engine, text

from conveyor.api import create_app
from conveyor.api.limits import RequestLimits
from conveyor.config import Settings
from conveyor.embedded.process import free_port
from conveyor.testing.services import wait_for


@pytest.fixture(scope="module")
def ledger(settings: Settings) -> Iterator[Any]:
    engine = create_engine(settings.database_url or "")
    yield engine
    engine.dispose()


def count_jobs(ledger: Any) -> int:
    with ledger.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM conveyor_jobs")).scalar_one())


@pytest.fixture(scope="module")
def server(settings: Settings, runtime: Any) -> Iterator[str]:
    """The app behind a real uvicorn, for what only real HTTP framing shows (chunked bodies)."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    wait_for(lambda: srv.started, timeout=20, message="uvicorn to start")
    yield f"127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def raw_request(address: str, head: str, chunks: Iterator[bytes]) -> tuple[int, bytes, int]:
    """Send a request over a plain socket, stopping as soon as the server answers; return the
    status, the response and how many body bytes went out before the answer came."""
    host, port = address.split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        sock.setblocking(False)
        response = b""
        for chunk in chunks:
            with contextlib.suppress(BlockingIOError):
                response += sock.recv(65536)
            if response:
                break
            try:
                sock.sendall(chunk)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        sock.setblocking(True)
        deadline = time.monotonic() + 10
        while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"}"):
            part = sock.recv(65536)
            if not part or time.monotonic() > deadline:
                break
            response += part
    status = int(response.split(b" ", 2)[1])
    return status, response, sent


@pytest.mark.broker
def test_oversized_body_with_content_length_is_413(client: Any, settings: Any, ledger: Any) -> None:
    before = count_jobs(ledger)
    big = json.dumps({"task": "demo.echo", "args": ["x" * settings.payload_max_bytes]})
    r = client.post(
        "/api/v1/jobs", content=big.encode(), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413
    body = r.json()
    assert body["error"] == "PayloadTooLarge"
    assert f"the limit is {settings.payload_max_bytes}" in body["detail"]
    assert "CONVEYOR_PAYLOAD_MAX_BYTES" in body["detail"]
    assert count_jobs(ledger) == before


@pytest.mark.broker
def test_content_length_over_the_cap_is_refused_before_the_body(server: str, settings: Any) -> None:
    """The answer comes from the header alone: the client has sent no body byte yet."""
    declared = settings.payload_max_bytes * 50
    head = (
        "POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    )

    def slow_body() -> Iterator[bytes]:
        while True:
            time.sleep(0.05)
            yield b" " * 1024

    status, response, sent = raw_request(server, head, slow_body())
    assert status == 413 and b"CONVEYOR_PAYLOAD_MAX_BYTES" in response
    assert sent < settings.payload_max_bytes


@pytest.mark.broker
def test_chunked_body_over_the_cap_is_413_while_streaming(
    server: str, settings: Any, ledger: Any
) -> None:
    """No Content-Length: the body is counted as it arrives and refused once past the cap,
    long before the client has finished sending."""
    before = count_jobs(ledger)
    head = (
        "POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"x" * 16384

    def endless() -> Iterator[bytes]:
        prefix = b'{"task": "demo.echo", "args": ["'
        yield f"{len(prefix):x}\r\n".encode() + prefix + b"\r\n"
        for _ in range(settings.payload_max_bytes * 20 // len(piece)):
            yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"

    status, response, sent = raw_request(server, head, endless())
    assert status == 413, response[:500]
    assert b"exceeds the limit" in response and b"CONVEYOR_PAYLOAD_MAX_BYTES" in response
    # The kernel's socket buffers take a few MiB more; the middleware itself stops reading at
    # the cap (test_middleware_stops_reading_at_the_cap).
    assert sent < settings.payload_max_bytes * 10
    assert count_jobs(ledger) == before


@pytest.mark.broker
def test_chunked_body_within_the_cap_goes_through(server: str) -> None:
    body = json.dumps({"task": "demo.add", "args": [2, 3]}).encode()
    head = (
        "POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    chunks = [f"{len(body):x}\r\n".encode() + body + b"\r\n", b"0\r\n\r\n"]
    status, response, _ = raw_request(server, head, iter(chunks))
    assert status == 202, response[:500]


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.broker
def test_deep_nesting_is_refused(client: Any, ledger: Any) -> None:
    before = count_jobs(ledger)
    for depth in (65, 100_000):
        raw = b'{"task": "demo.echo", "args": [' + b"[" * depth + b"]" * depth + b"]}"
        r = client.post("/api/v1/jobs", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 413, (depth, r.text[:300])
        assert "nests deeper than 64 levels" in r.json()["detail"]
    r = client.post("/api/v1/jobs", json={"task": "demo.echo", "kwargs": {"x": nested(60)}})
    assert r.status_code == 202, r.text
    assert count_jobs(ledger) == before + 1


@pytest.mark.broker
def test_huge_arrays_are_refused(client: Any, ledger: Any) -> None:
    before = count_jobs(ledger)
    r = client.post("/api/v1/jobs", json={"task": "demo.echo", "args": [0] * 200_000})
    assert r.status_code == 413
    assert "more than 100000 values" in r.json()["detail"]
    assert count_jobs(ledger) == before


@pytest.mark.broker
def test_brackets_and_commas_inside_strings_do_not_count(client: Any) -> None:
    tricky = '[[[[{"a": 1, "b": [2, 3]}]]]] \\" ' * 200 + "\\\\"
    r = client.post("/api/v1/jobs", json={"task": "demo.echo", "args": [tricky, "x,y" * 1000]})
    assert r.status_code == 202, r.text
    assert r.json()["args"] == [tricky, "x,y" * 1000]


@pytest.mark.broker
def test_forms_and_reads_are_untouched(client: Any) -> None:
    assert client.get("/api/v1/jobs").status_code == 200
    r = client.post(
        "/login",
        content=b"key=x&next=/jobs",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert r.status_code == 303  # auth is off: straight on


# --- the middleware alone, as ASGI -----------------------------------------------------------


def run_asgi(
    middleware: RequestLimits, headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> tuple[list[dict[str, Any]], int, list[bytes]]:
    """Drive the middleware with ``chunks`` as the request body; return what it sent, how
    many chunks it read, and the body the inner app saw."""
    read = 0
    seen: list[bytes] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        if read < len(chunks):
            read += 1
            return {
                "type": "http.request",
                "body": chunks[read - 1],
                "more_body": read < len(chunks),
            }
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            seen.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    middleware.app = inner
    asyncio.run(middleware(scope, receive, send))  # type: ignore[arg-type]
    return sent, read, seen


def test_middleware_stops_reading_at_the_cap() -> None:
    limits = RequestLimits(None, max_body=10_000, max_depth=64, max_items=1000)  # type: ignore[arg-type]
    chunks = [b"a" * 4096] * 100
    sent, read, seen = run_asgi(limits, [(b"transfer-encoding", b"chunked")], chunks)
    assert sent[0]["status"] == 413 and seen == []
    assert read == 3  # 12 KiB read, then it stopped: the other 97 chunks were never pulled
    sent, read, seen = run_asgi(limits, [(b"content-type", b"text/plain")], [b"a" * 5000] * 2)
    assert sent[0]["status"] == 200 and seen == [b"a" * 10_000]
