"""A real HTTP server for tests of what Conveyor sends out (webhooks, anchors, providers).

It records every request and answers from a script: per path, a list of ``(status, body)``
answers used in turn (the last one repeats), ``(200, b"ok")`` when nothing is scripted. It
listens on 127.0.0.1, which Conveyor's egress guard refuses unless ``CONVEYOR_EGRESS_ALLOW``
lists it: tests allow :attr:`Receiver.allow_entry` explicitly, as an operator would.
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    sni: str | None = None


@dataclass
class Receiver:
    """Start with :meth:`start`, stop with :meth:`stop`; ``tls`` serves https."""

    tls: ssl.SSLContext | None = None
    received: list[Received] = field(default_factory=list)
    script: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict)
    server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self
        sni: dict[int, str | None] = {}

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                receiver.received.append(
                    Received(self.command, self.path, dict(self.headers), body,
                             sni.get(id(self.request)))
                )  # fmt: skip
                answers = receiver.script.get(self.path) or [(200, b"ok")]
                status, content = answers.pop(0) if len(answers) > 1 else answers[0]
                self.send_response(status)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.tls is not None:

            def remember(sock: Any, name: str | None, _ctx: Any) -> None:
                sni[id(sock)] = name

            self.tls.sni_callback = remember
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self.server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    @property
    def port(self) -> int:
        assert self.server is not None, "start the receiver first"
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def allow_entry(self) -> str:
        """This receiver as a ``CONVEYOR_EGRESS_ALLOW`` entry (this address and port only)."""
        return f"127.0.0.1:{self.port}"

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def reset(self) -> None:
        self.received.clear()
        self.script.clear()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
