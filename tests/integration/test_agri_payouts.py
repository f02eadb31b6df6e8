"""Payouts on a real EVM (eth-tester on py-evm): a drought assessment's payout is approved once,
sent to the farmer with the proof CID in the calldata, confirmed with its receipt stored — and
a retry after a send that timed out (before or after the node got it) never pays twice."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine

from conveyor.errors import ResourceNotFound
from conveyor.packs.agri import assessment, chain, pipeline, store
from conveyor.packs.agri.config import DEV_PAYOUT_KEY, AgriSettings
from conveyor.packs.agri.policies import plot_from, policy_from
from conveyor.packs.agri.proofs import cid_of
from conveyor.packs.agri.samples import drought_history, square
from conveyor.packs.kit import EgressPolicy

web3 = pytest.importorskip("web3")


@pytest.fixture
def node() -> Iterator[chain.Chain]:
    from web3 import EthereumTesterProvider, Web3

    yield chain.Chain(Web3(EthereumTesterProvider()), DEV_PAYOUT_KEY, receipt_timeout=10)


def farmer() -> str:
    return "0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8]


def drought_payout(ledger: Engine, wallet: str) -> uuid.UUID:
    """A policy, a plot in a drought, its assessment and the payout approved from it."""
    number = f"PAY-{uuid.uuid4().hex[:8]}"
    planting = date.today() - timedelta(days=60)
    policy = policy_from(
        {
            "policy_number": number,
            "farmer_wallet": wallet,
            "crop": "maize",
            "planting_date": planting,
            "sum_insured": "200.00",
            "deductible_pct": 10,
        }
    )
    store.create_policy(ledger, policy)
    (plot,) = store.create_plots(
        ledger,
        [plot_from({"name": "dry", "policy_number": number, "geometry": square(36.8, -1.3)})],
    )
    plot_id = uuid.UUID(plot["id"])
    end = date.today() - timedelta(days=1)
    store.store_weather(ledger, plot_id, drought_history(end), "test")
    row = assessment.assess(ledger, plot_id, end - timedelta(days=29), end)
    assert row["triggered"], row
    made = [
        p
        for p in pipeline.approve_payouts(ledger)
        if store.get_payout(ledger, p).plot_id == plot_id
    ]
    assert len(made) == 1
    return made[0]


def balance(node: chain.Chain, wallet: str) -> int:
    checksummed = node.w3.to_checksum_address(wallet)
    return int(node.w3.eth.get_balance(checksummed))


def test_payout_is_sent_once_with_the_proof_in_calldata(ledger: Engine, node: chain.Chain) -> None:
    wallet = farmer()
    payout_id = drought_payout(ledger, wallet)
    row = store.get_payout(ledger, payout_id)
    assert row.status == "approved" and row.amount == Decimal("180.00")  # 200 minus 10 %
    nonce = node.w3.eth.get_transaction_count(node.sender)

    result = chain.pay(ledger, node, payout_id)
    assert result["status"] == "confirmed"
    row = store.get_payout(ledger, payout_id)
    assert row.status == "confirmed" and row.receipt["status"] == 1 and row.block_number
    assert balance(node, wallet) == 180 * 10**18
    tx = node.w3.eth.get_transaction(row.tx_hash)
    assert bytes(tx["input"]) == b"AGR1" + row.proof_cid.encode()
    document = store.proof_document(ledger, row.proof_cid)
    assert cid_of(document) == row.proof_cid  # the chain points at a document that verifies

    # Again, and the schedule's pass: nothing new is approved or sent.
    assert chain.pay(ledger, node, payout_id)["tx_hash"] == row.tx_hash
    assert payout_id not in pipeline.approve_payouts(ledger)
    assert balance(node, wallet) == 180 * 10**18
    assert node.w3.eth.get_transaction_count(node.sender) == nonce + 1


@pytest.mark.parametrize("sent", [False, True], ids=["timeout-before-send", "timeout-after-send"])
def test_a_retry_after_a_send_timeout_never_pays_twice(
    ledger: Engine, node: chain.Chain, sent: bool
) -> None:
    wallet = farmer()
    payout_id = drought_payout(ledger, wallet)
    nonce = node.w3.eth.get_transaction_count(node.sender)
    # The attempt that "timed out": the transaction was recorded, then the worker lost the
    # answer — before the node had it, or after (it is mined, but nobody stored the receipt).
    tx_hash = chain.prepare(ledger, node, payout_id)
    if sent:
        chain.broadcast(ledger, node, payout_id)
    assert store.get_payout(ledger, payout_id).status == "submitted"

    # The retry: the same recorded bytes, so at most the one transfer.
    result = chain.pay(ledger, node, payout_id)
    assert result == {"status": "confirmed", "tx_hash": tx_hash}
    assert chain.prepare(ledger, node, payout_id) == tx_hash  # never re-signed
    assert balance(node, wallet) == 180 * 10**18
    assert node.w3.eth.get_transaction_count(node.sender) == nonce + 1


def test_unknown_and_unreachable_payouts_are_refused(ledger: Engine, node: chain.Chain) -> None:
    with pytest.raises(ResourceNotFound):
        chain.pay(ledger, node, uuid.uuid4())
    payout_id = drought_payout(ledger, farmer())
    # A node the egress guard refuses (loopback, not allowed): nothing is recorded or sent.
    settings = AgriSettings(eth_rpc_url="http://127.0.0.1:9/")
    unreachable = chain.Chain.from_settings(settings, EgressPolicy())
    with pytest.raises(chain.PayoutError, match="could not prepare"):
        chain.pay(ledger, unreachable, payout_id)
    assert store.get_payout(ledger, payout_id).status == "approved"
    assert store.get_payout(ledger, payout_id).tx_hash is None
    assert chain.pay(ledger, node, payout_id)["status"] == "confirmed"


def test_a_payout_over_json_rpc_through_the_egress_guard(ledger: Engine) -> None:
    """The local chain as a separate node (HTTP JSON-RPC), reached through the kit's
    GuardedRPCProvider with the peer allowed, as the worker and `make run` reach it."""
    from conveyor.egress import parse_allowlist
    from conveyor.packs.agri.localchain import ChainPeer

    peer = ChainPeer().start()
    try:
        policy = EgressPolicy(allow=parse_allowlist([peer.allow_entry]))
        remote = chain.Chain.from_settings(AgriSettings(eth_rpc_url=peer.url), policy)
        wallet = farmer()
        payout_id = drought_payout(ledger, wallet)
        assert chain.pay(ledger, remote, payout_id)["status"] == "confirmed"
        assert balance(chain.Chain(peer.w3, DEV_PAYOUT_KEY), wallet) == 180 * 10**18
        assert peer.requests > 0
    finally:
        peer.stop()
