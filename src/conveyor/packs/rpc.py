"""A web3 provider that speaks JSON-RPC over HTTP through Conveyor's egress guard.

web3's own ``HTTPProvider`` sends with ``requests`` wherever the URL points; this one sends
every call through :class:`~conveyor.packs.kit.EgressClient`, so an RPC URL is held to the
same rules as a webhook (no private, loopback or metadata address unless allowed, the address
checked is the one connected to, bounded answers). Needs web3 (the ``factory`` extra).

Shared by the packs that talk to a chain (the factory's ethereum anchor, the agri pack's
payouts); packs import it as ``conveyor.packs.kit.GuardedRPCProvider``, which loads web3 only
when the name is used.
"""

from __future__ import annotations

from typing import Any

from web3.providers.base import JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

from conveyor.packs.kit import EgressClient, EgressFailed


class GuardedRPCProvider(JSONBaseProvider):
    """JSON-RPC 2.0 over HTTP POST to ``url``, sent by ``client``."""

    def __init__(self, url: str, client: EgressClient, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.url = url
        self.client = client

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        answer = self.client.post(
            self.url,
            content=self.encode_rpc_request(method, params),
            headers={"Content-Type": "application/json"},
        )
        if not answer.is_success:  # the body may hold anything: the status line only
            raise EgressFailed(f"the RPC node answered {answer.status_line} to {method}")
        return self.decode_rpc_response(answer.content)

    def __str__(self) -> str:
        return f"RPC connection {self.url} (through the egress guard)"
