"""How ``conveyor api`` serves: uvicorn, Nagle off, and one listening socket per process.

Two things uvicorn's own ``--workers N`` gets wrong for a busy API on a small machine:

- its supervisor binds the listening socket without naming TCP as the protocol; asyncio then
  skips ``TCP_NODELAY`` on accepted sockets, and a keep-alive client waits for its delayed ACK
  (~40 ms) on every response after the first (uvicorn issue #3149). :class:`HttpProtocol` sets
  the option on every connection;
- all workers accept from one shared socket, and a worker that wakes first takes a whole burst
  of new connections (asyncio accepts up to 100 per wake-up): clients that connect together all
  land on one process while the others idle. Here every process binds its own socket with
  ``SO_REUSEPORT``, and the kernel spreads connections over them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
import socket
import time
from typing import Any

import uvicorn
import uvicorn.config

from conveyor.logs import LogFormat, configure_logging

try:  # the C parser when it is installed, as uvicorn's "auto" would choose
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover - httptools is a dependency
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base  # type: ignore[assignment]

log = logging.getLogger(__name__)

APP = "conveyor.api:create_app"
RESTART_BACKOFF = 1.0


class HttpProtocol(_Base):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock: Any = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


def _config(log_format: LogFormat) -> uvicorn.Config:
    return uvicorn.Config(
        APP,
        factory=True,
        http=HttpProtocol,
        log_level="warning",
        # Forwarded headers are the app's call (api/transport.py, CONVEYOR_TRUSTED_PROXIES):
        # uvicorn's own rule would believe them from 127.0.0.1 whatever the setting says.
        proxy_headers=False,
        # JSON: no handlers of uvicorn's own, so its records reach the root logger's.
        log_config=None if log_format == "json" else uvicorn.config.LOGGING_CONFIG,
        timeout_graceful_shutdown=5,
    )


def _bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _serve_one(
    host: str, port: int, reuse_port: bool, log_format: LogFormat, log_level: str
) -> None:
    # Here, not in serve(): with several workers this runs in a fresh (spawned) interpreter.
    configure_logging(log_format, log_level)
    sock = _bind(host, port, reuse_port=reuse_port)
    sock.listen(2048)
    log.info("serving the API and dashboard on http://%s:%d/", host, port)
    uvicorn.Server(_config(log_format)).run(sockets=[sock])


def _accepting(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def serve(
    host: str,
    port: int,
    workers: int = 1,
    *,
    log_format: LogFormat = "text",
    log_level: str = "INFO",
) -> None:
    """Serve the API on ``host:port`` with ``workers`` processes, logging in ``log_format``;
    returns on SIGINT/SIGTERM."""
    if workers <= 1:
        _serve_one(host, port, False, log_format, log_level)
        return
    # Hold the port (and fail here, clearly, if it is taken) until the workers bind it; bound
    # but not listening, so the kernel never hands this socket a connection.
    guard = _bind(host, port, reuse_port=True)
    ctx = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> multiprocessing.process.BaseProcess:
        proc = ctx.Process(
            target=_serve_one,
            args=(host, port, True, log_format, log_level),
            name="conveyor-api",
        )
        proc.start()
        return proc

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    procs = [start() for _ in range(workers)]
    try:
        deadline = time.monotonic() + 60
        while not stopping and not _accepting(host, port) and time.monotonic() < deadline:
            time.sleep(0.1)
        guard.close()
        while not stopping:
            for i, proc in enumerate(procs):
                if not proc.is_alive() and not stopping:
                    time.sleep(RESTART_BACKOFF)  # a worker that dies at once must not spin
                    procs[i] = start()
            time.sleep(0.2)
    finally:
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                proc.terminate()
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
