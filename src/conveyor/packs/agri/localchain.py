"""A local EVM chain over HTTP JSON-RPC: eth-tester (py-evm) behind a small server, so separate
processes — the worker paying, the API and the pages showing transactions, tests checking
balances — share one chain, as they would share a real node. ``make run`` and the flow tests
start it; production points ``CONVEYOR_AGRI_ETH_RPC_URL`` at any node.

Each request goes through web3's own eth-tester request function (with its formatting
middleware), so answers have the node shapes web3's HTTP provider expects: camelCase fields,
``0x`` hex for hashes and data. Transactions are mined as they arrive (eth-tester's auto-mine).
Needs ``web3[tester]`` (a dev dependency).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from conveyor.packs.agri.peers import LoopbackPeer


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass
class ChainPeer(LoopbackPeer):
    """eth-tester served as JSON-RPC 2.0 on 127.0.0.1 (one request or a batch per POST)."""

    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    w3: Any = field(default=None, repr=False)
    _call: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from web3 import EthereumTesterProvider, Web3

        self.w3 = Web3(EthereumTesterProvider())
        self._call = self.w3.provider.request_func(self.w3, self.w3.middleware_onion)

    def _one(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "invalid"}}
        rid = request.get("id")
        try:
            with self.lock:  # py-evm is not thread-safe
                answer = self._call(request["method"], request.get("params") or [])
        except Exception as exc:  # the node's error, as a JSON-RPC error
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32000, "message": str(exc)}}
        answer = dict(answer)
        answer["id"] = rid
        return _plain(answer)  # type: ignore[no-any-return]

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[
        int, dict[str, str], bytes
    ]:  # fmt: skip
        self.requests += 1
        if method != "POST":
            return 405, {"Allow": "POST"}, b""
        try:
            request = json.loads(body)
        except ValueError:
            error = {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse"}}
            return 200, {"Content-Type": "application/json"}, json.dumps(error).encode()
        answer = (
            [self._one(r) for r in request] if isinstance(request, list) else self._one(request)
        )
        return 200, {"Content-Type": "application/json"}, json.dumps(answer).encode()
