"""Anchors: the local hash-chained log (and tampering with it by SQL), a real HTTP anchoring
service in a thread, and a real in-process Ethereum chain (eth-tester on py-evm)."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import Engine, insert, text

from conveyor.egress import EgressPolicy, parse_allowlist
from conveyor.ledger.db import make_engine
from conveyor.packs.factory.anchors import (
    CALLDATA_MAGIC,
    Anchor,
    EthereumAnchor,
    HttpAnchor,
    LocalAnchor,
    build_anchor,
    verify_chain,
)
from conveyor.packs.factory.config import FactorySettings
from conveyor.packs.factory.errors import AnchorError
from conveyor.packs.factory.tables import batches


@pytest.fixture(scope="module")
def engine(settings: Any) -> Iterator[Engine]:
    eng = make_engine(settings.database_url)
    yield eng
    eng.dispose()


def _batch_row(engine: Engine, batch_id: uuid.UUID, root: bytes, seq: str, entry: str) -> None:
    """A batch that names its local anchor entry, as the anchor step leaves it."""
    with engine.begin() as conn:
        conn.execute(
            insert(batches).values(
                id=batch_id,
                status="completed",
                product_count=1,
                product_name="p",
                category="c",
                token_kid="k1",
                verify_base_url="http://x/",
                chunk_size=256,
                merkle_root=root,
                anchor_backend="local",
                anchor_ref=seq,
                anchor_details={"seq": int(seq), "entry_hash": entry},
            )
        )


def test_local_log_chains_entries_and_is_idempotent_per_batch(engine: Engine) -> None:
    anchor = LocalAnchor(engine)
    before = verify_chain(engine)
    assert before.ok, before.problems
    receipts = [anchor.anchor(uuid.uuid4(), os.urandom(32)) for _ in range(3)]
    seqs = [int(r.ref) for r in receipts]
    assert seqs == list(range(before.entries + 1, before.entries + 4))
    batch_id, root = uuid.uuid4(), os.urandom(32)
    first = anchor.anchor(batch_id, root)
    assert anchor.anchor(batch_id, root) == first  # a retried step appends nothing
    after = verify_chain(engine)
    assert after.ok, after.problems
    assert after.entries == before.entries + 4
    assert after.head.hex() == first.details["entry_hash"]


def test_the_log_refuses_update_delete_and_truncate(engine: Engine) -> None:
    LocalAnchor(engine).anchor(uuid.uuid4(), os.urandom(32))
    for sql in (
        "UPDATE factory_anchors SET merkle_root = 'x'",
        "DELETE FROM factory_anchors",
        "TRUNCATE factory_anchors",
    ):
        with engine.connect() as conn, pytest.raises(Exception, match="append-only"):
            conn.execute(text(sql))


TAMPERING = {
    "edited root": [
        "UPDATE factory_anchors SET merkle_root = sha256(merkle_root) WHERE seq = :mid"
    ],
    "edited time": [
        "UPDATE factory_anchors SET created_at = created_at + interval '1 second' WHERE seq = :mid"
    ],
    "deleted middle entry": ["DELETE FROM factory_anchors WHERE seq = :mid"],
    "deleted last entry": ["DELETE FROM factory_anchors WHERE seq = :last"],
    "reordered entries": [
        # Swap two entries' positions, keeping each entry's own hashes.
        "UPDATE factory_anchors SET seq = -seq WHERE seq IN (:mid, :mid + 1)",
        "UPDATE factory_anchors SET seq = CASE WHEN seq = -:mid THEN :mid + 1 ELSE :mid END"
        " WHERE seq < 0",
    ],
    "rewritten entry with its own hash recomputed": [
        "UPDATE factory_anchors SET merkle_root = sha256(merkle_root),"
        " entry_hash = sha256(entry_hash) WHERE seq = :mid"
    ],
}


DETECTED_AS = {
    "edited root": "was changed",
    "edited time": "was changed",
    "deleted middle entry": "is missing",
    "deleted last entry": "its anchor entry",
    "reordered entries": "does not follow",
    "rewritten entry with its own hash recomputed": "does not follow",
}


@pytest.mark.parametrize("how", list(TAMPERING))
def test_verify_chain_detects_tampering_by_sql(engine: Engine, how: str) -> None:
    anchor = LocalAnchor(engine)
    for _ in range(3):
        anchor.anchor(uuid.uuid4(), os.urandom(32))
    batch_id, root = uuid.uuid4(), os.urandom(32)
    last = anchor.anchor(batch_id, root)
    _batch_row(engine, batch_id, root, last.ref, str(last.details["entry_hash"]))
    assert verify_chain(engine).ok
    # Inside a transaction that is rolled back, so the other tests keep a sound log; the
    # trigger is switched off the way a table owner bent on editing would do it.
    with engine.connect() as conn:
        conn.execute(text("ALTER TABLE factory_anchors DISABLE TRIGGER USER"))
        params = {"last": int(last.ref), "mid": int(last.ref) - 2}
        for sql in TAMPERING[how]:
            conn.execute(text(sql), params)
        report = verify_chain(conn)
        conn.rollback()
    assert not report.ok, how
    assert any(DETECTED_AS[how] in p for p in report.problems), report.problems
    assert verify_chain(engine).ok


# --- http ------------------------------------------------------------------------------------


class _JsonHandler(BaseHTTPRequestHandler):
    def reply(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Service(_JsonHandler):
    received: list[dict[str, Any]] = []
    answer: tuple[int, dict[str, Any]] = (200, {})

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        body["authorization"] = self.headers.get("Authorization")
        body["idempotency_key"] = self.headers.get("Idempotency-Key")
        type(self).received.append(body)
        status, payload = type(self).answer
        self.reply(status, json.dumps(payload).encode())


@pytest.fixture()
def service() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Service)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Service.received = []
    yield f"http://127.0.0.1:{server.server_address[1]}/anchor"
    server.shutdown()
    server.server_close()


def allowing(url: str) -> EgressPolicy:
    """An egress policy that allows the local server at ``url`` (its address and port)."""
    netloc = url.split("/")[2]
    return EgressPolicy(allow=parse_allowlist([netloc]))


def test_http_anchor_posts_the_root_and_reads_the_receipt(service: str) -> None:
    _Service.answer = (
        201,
        {
            "tx_hash": "0xabc",
            "chain_id": 137,
            "block_number": 42,
            "block_time": "2026-02-18T10:02:00+00:00",
        },
    )
    batch_id, root = uuid.uuid4(), os.urandom(32)
    receipt = HttpAnchor(service, allowing(service), token="s3cret").anchor(batch_id, root)
    assert _Service.received == [
        {
            "batch_id": str(batch_id),
            "merkle_root": root.hex(),
            "tree": "rfc9162-sha256",
            "authorization": "Bearer s3cret",
            "idempotency_key": f"factory-batch-{batch_id}",
        }
    ]
    assert (receipt.backend, receipt.ref, receipt.chain_id, receipt.block_number) == (
        "http",
        "0xabc",
        137,
        42,
    )
    assert receipt.block_time is not None and receipt.block_time.year == 2026


@pytest.mark.parametrize(
    "answer",
    [
        (500, {"error": "INTERNAL-ONLY secret=hunter2"}),
        (200, {"nothing": "useful"}),
        (200, {"id": "x", "block_number": "n"}),
    ],
)
def test_http_anchor_failures_are_anchor_errors(
    service: str, answer: tuple[int, dict[str, Any]]
) -> None:
    _Service.answer = answer
    with pytest.raises(AnchorError, match="anchoring service") as failed:
        HttpAnchor(service, allowing(service)).anchor(uuid.uuid4(), os.urandom(32))
    assert "hunter2" not in str(failed.value)  # a status line, never the answer's body


def test_http_anchor_unreachable_is_an_anchor_error() -> None:
    url = "http://127.0.0.1:9/anchor"
    with pytest.raises(AnchorError, match="unreachable"):
        HttpAnchor(url, allowing(url), timeout=2).anchor(uuid.uuid4(), os.urandom(32))


def test_http_anchor_sends_only_where_the_egress_guard_allows(service: str) -> None:
    with pytest.raises(AnchorError, match=r"127\.0\.0\.1 is a loopback address"):
        HttpAnchor(service, EgressPolicy()).anchor(uuid.uuid4(), os.urandom(32))
    assert _Service.received == []


# --- ethereum --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def w3() -> Any:
    web3 = pytest.importorskip("web3")
    return web3.Web3(web3.EthereumTesterProvider())


def _check_on_chain(w3: Any, receipt: Any, batch_id: uuid.UUID, root: bytes) -> None:
    tx = w3.eth.get_transaction(receipt.ref)
    assert bytes(tx["input"]) == CALLDATA_MAGIC + batch_id.bytes + root
    assert tx["value"] == 0 and tx["to"] == tx["from"]
    assert receipt.chain_id == w3.eth.chain_id
    block = w3.eth.get_block(receipt.block_number)
    assert int(block["timestamp"]) == int(receipt.block_time.timestamp())
    assert receipt.ref in ["0x" + bytes(h).hex() for h in block["transactions"]]


def test_ethereum_anchor_with_an_unlocked_account(w3: Any) -> None:
    batch_id, root = uuid.uuid4(), os.urandom(32)
    receipt = EthereumAnchor(w3).anchor(batch_id, root)
    assert receipt.backend == "ethereum" and receipt.ref.startswith("0x")
    _check_on_chain(w3, receipt, batch_id, root)


def test_ethereum_anchor_signs_with_a_private_key(w3: Any) -> None:
    account = w3.eth.account.create()
    funding = w3.eth.send_transaction(
        {"from": w3.eth.accounts[0], "to": account.address, "value": 10**18}
    )
    w3.eth.wait_for_transaction_receipt(funding)
    batch_id, root = uuid.uuid4(), os.urandom(32)
    receipt = EthereumAnchor(w3, private_key=account.key.hex()).anchor(batch_id, root)
    _check_on_chain(w3, receipt, batch_id, root)
    assert w3.eth.get_transaction(receipt.ref)["from"] == account.address


def test_ethereum_anchor_without_funds_is_an_anchor_error(w3: Any) -> None:
    broke = w3.eth.account.create()
    with pytest.raises(AnchorError, match="ethereum anchoring failed"):
        EthereumAnchor(w3, private_key=broke.key.hex()).anchor(uuid.uuid4(), os.urandom(32))


def test_build_anchor_follows_the_settings(engine: Engine, service: str) -> None:
    assert isinstance(build_anchor(FactorySettings(), engine, EgressPolicy()), LocalAnchor)
    egress = allowing(service)
    http = build_anchor(FactorySettings(anchor="http", anchor_url=service), engine, egress)
    assert isinstance(http, HttpAnchor) and http.url == service
    eth = build_anchor(
        FactorySettings(anchor="ethereum", eth_rpc_url="http://127.0.0.1:9/rpc"), engine, egress
    )
    assert isinstance(eth, EthereumAnchor)
    with pytest.raises(AnchorError, match="ANCHOR_URL"):
        build_anchor(FactorySettings(anchor="http"), engine, egress)
    with pytest.raises(AnchorError, match="ETH_RPC_URL"):
        build_anchor(FactorySettings(anchor="ethereum"), engine, egress)
    # A node that is not there fails as an AnchorError too, not as a web3 exception.
    with pytest.raises(AnchorError, match="ethereum anchoring failed"):
        eth.anchor(uuid.uuid4(), os.urandom(32))


def test_a_retry_waits_for_the_transaction_already_sent(engine: Engine, w3: Any) -> None:
    """A receipt that did not come in time: the batch stays anchoring with the transaction's
    hash, and the retry waits for that transaction instead of sending a second one."""
    from conveyor.packs.factory import steps
    from conveyor.packs.factory.batches import get_batch

    batch_id, root = uuid.uuid4(), os.urandom(32)
    _batch_row(engine, batch_id, root, "0", "")
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE factory_batches SET status = 'anchoring', anchor_backend = NULL,"
                " anchor_ref = NULL, anchor_details = NULL WHERE id = :b"
            ),
            {"b": batch_id},
        )
    tester = w3.provider.ethereum_tester
    sender = w3.eth.accounts[0]
    nonce = w3.eth.get_transaction_count(sender)
    tester.disable_auto_mine_transactions()
    try:
        with pytest.raises(AnchorError, match="ethereum anchoring failed"):
            steps.anchor_batch(engine, batch_id, EthereumAnchor(w3, receipt_timeout=0.3))
        batch = get_batch(engine, batch_id)
        assert batch.status == "anchoring" and batch.failed_step == "anchor"
        sent = (batch.anchor_details or {})["submitted"]
    finally:
        tester.enable_auto_mine_transactions()  # mines the pending transaction
    steps.anchor_batch(engine, batch_id, EthereumAnchor(w3))
    batch = get_batch(engine, batch_id)
    assert batch.status == "completed" and batch.anchor_ref == sent
    assert w3.eth.get_transaction_count(sender) == nonce + 1  # one transaction, not two
    assert bytes(w3.eth.get_transaction(sent)["input"]) == CALLDATA_MAGIC + batch_id.bytes + root


# --- one contract, every backend (as saq holds its queues to one suite) --------------------


@pytest.fixture(params=["local", "http", "ethereum"])
def any_anchor(request: pytest.FixtureRequest, engine: Engine) -> Anchor:
    if request.param == "local":
        return LocalAnchor(engine)
    if request.param == "http":
        url = request.getfixturevalue("service")
        _Service.answer = (200, {"tx_hash": "0x" + os.urandom(32).hex()})
        return HttpAnchor(url, allowing(url))
    return EthereumAnchor(request.getfixturevalue("w3"))


def test_every_anchor_keeps_the_contract(any_anchor: Anchor) -> None:
    batch_id, root = uuid.uuid4(), os.urandom(32)
    submitted: list[str] = []
    receipt = any_anchor.anchor(batch_id, root, on_submit=submitted.append)
    assert receipt.backend == any_anchor.name
    assert receipt.ref and receipt.anchored_at.tzinfo is not None
    assert submitted in ([], [receipt.ref])  # only what is sent and then waited for
    # Asked again (a retry), it answers without an error.
    again = any_anchor.anchor(batch_id, root, submitted=submitted[0] if submitted else None)
    assert again.backend == receipt.backend
    if submitted:  # the retry waited for the same transaction
        assert again.ref == receipt.ref


def test_a_batch_anchored_on_chain_verifies_offline_against_the_transaction(
    engine: Engine, w3: Any
) -> None:
    """End to end: products, root, an Ethereum anchor; then a token's proof leads to the root
    that the transaction's calldata holds."""
    from pydantic import SecretStr

    from conveyor.packs.factory import steps
    from conveyor.packs.factory.batches import BatchSpec, create_batch
    from conveyor.packs.factory.tokens import Keyring, sign
    from conveyor.packs.factory.verify import Verifier

    settings = FactorySettings(
        token_keys={"k1": SecretStr("Zx7-q2LmA9vR4tYp0WsK3jHnB6cE1uFd")},
        token_kid="k1",
        chunk_size=256,
    )
    ring = Keyring.from_settings(settings, "test")
    batch_id = create_batch(engine, BatchSpec(300, "Widget", "tools"), settings)
    batch = steps.run_batch(engine, batch_id, ring, EthereumAnchor(w3))
    assert batch.status == "completed" and batch.anchor_backend == "ethereum"
    result = Verifier(engine, ring).verify(sign(ring, batch_id, 123)).as_dict()
    assert result["authentic"] and result["anchor"]["chain_id"] == w3.eth.chain_id
    calldata = bytes(w3.eth.get_transaction(result["anchor"]["ref"])["input"])
    assert calldata == CALLDATA_MAGIC + batch_id.bytes + bytes.fromhex(result["proof"]["root"])
    assert (
        result["anchor"]["block_number"]
        == w3.eth.get_transaction(result["anchor"]["ref"])["blockNumber"]
    )


# --- ethereum over HTTP JSON-RPC, through the egress guard ----------------------------------


@pytest.fixture()
def rpc_node(w3: Any) -> Iterator[tuple[str, list[str]]]:
    """A real JSON-RPC node over HTTP, answering from the module's eth-tester chain: (its URL,
    the methods it was asked for)."""
    from web3._utils.encoding import FriendlyJsonSerde, Web3JsonEncoder

    asked: list[str] = []
    # The provider's request function with the chain's middleware: JSON-RPC (hex) in and out.
    handle = w3.provider.request_func(w3, w3.middleware_onion)

    class Node(_JsonHandler):
        def do_POST(self) -> None:
            call = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            asked.append(call["method"])
            answer = dict(handle(call["method"], call["params"]))
            answer.update(jsonrpc="2.0", id=call["id"])
            self.reply(200, FriendlyJsonSerde().json_encode(answer, Web3JsonEncoder).encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Node)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/rpc", asked
    server.shutdown()
    server.server_close()


def test_the_ethereum_anchor_calls_its_node_through_the_egress_guard(
    engine: Engine, w3: Any, rpc_node: tuple[str, list[str]]
) -> None:
    url, asked = rpc_node
    settings = FactorySettings(anchor="ethereum", eth_rpc_url=url)
    refused = build_anchor(settings, engine, EgressPolicy())
    with pytest.raises(AnchorError, match=r"127\.0\.0\.1 is a loopback address"):
        refused.anchor(uuid.uuid4(), os.urandom(32))
    assert asked == []  # nothing reached the node
    anchor = build_anchor(settings, engine, allowing(url))
    batch_id, root = uuid.uuid4(), os.urandom(32)
    receipt = anchor.anchor(batch_id, root)
    _check_on_chain(w3, receipt, batch_id, root)
    assert "eth_sendTransaction" in asked
