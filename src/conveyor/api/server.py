"""How ``conveyor api`` serves: uvicorn, with Nagle's algorithm off on every connection.

uvicorn's supervisor (``--workers N``) binds the listening socket itself, without naming TCP as
its protocol; asyncio then skips ``TCP_NODELAY`` on the sockets it accepts, and a keep-alive
client waits for its delayed ACK (~40 ms) on every response after the first (uvicorn issue
#3149). Setting the option per connection is cheap and right for one worker as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

try:  # the C parser when it is installed, as uvicorn's "auto" would choose
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover - httptools is a dependency
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base  # type: ignore[assignment]


class HttpProtocol(_Base):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock: Any = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
