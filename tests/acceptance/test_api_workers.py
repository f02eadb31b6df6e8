"""`conveyor api --workers N` as a user runs it: every worker takes connections, and SIGTERM
stops them all."""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from typing import Any

import psutil

from conveyor.testing.services import start_api, wait_for


def test_api_workers_share_connections_and_stop_together(services: Any, artifacts: Path) -> None:
    api, base = start_api(services.env(), artifacts / "api-workers.log", workers=2)
    assert api.proc is not None
    proc = api.proc
    port = int(base.rsplit(":", 1)[1])
    held: list[socket.socket] = []
    workers: list[psutil.Process] = []
    try:
        supervisor = psutil.Process(proc.pid)

        def api_workers() -> list[psutil.Process]:
            # (multiprocessing's resource tracker is a child too)
            return [p for p in supervisor.children() if "spawn_main" in " ".join(p.cmdline())]

        workers = wait_for(
            lambda: len(kids := api_workers()) == 2 and kids,
            timeout=30,
            message="two worker processes",
        )

        def listening(w: psutil.Process) -> bool:
            return any(
                c.laddr.port == port and c.status == psutil.CONN_LISTEN
                for c in w.net_connections("tcp")
            )

        wait_for(
            lambda: all(listening(w) for w in workers),
            timeout=60,
            message="both workers listening on their own socket",
        )
        # Connections opened together: with one shared socket a single worker accepts them
        # all; with a socket per worker the kernel spreads them.
        for _ in range(24):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            held.append(s)
        for s in held:
            assert b"200" in s.recv(4096)

        def serving() -> list[int]:
            return [
                sum(1 for c in w.net_connections("tcp") if c.laddr.port == port and c.raddr)
                for w in workers
            ]

        counts = serving()
        assert sum(counts) == 24 and all(n > 0 for n in counts), counts
    finally:
        for s in held:
            s.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    wait_for(
        lambda: not any(psutil.pid_exists(w.pid) and w.status() != "zombie" for w in workers),
        timeout=20,
        message="every API worker gone after SIGTERM",
    )
    assert proc.returncode == 0
