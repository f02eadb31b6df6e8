"""Where a batch's Merkle root is committed, behind one small interface.

- ``local`` (the embedded default): an append-only, hash-chained log in PostgreSQL
  (``factory_anchors``). Entry ``n`` commits to entry ``n-1``'s hash, so editing, deleting or
  reordering an entry breaks every hash after it; :func:`verify_chain` finds that, and also a
  removed last entry, through the batches that name their entry.
- ``ethereum``: a zero-value transaction to the sender's own address whose calldata holds the
  root, sent through web3.py to any JSON-RPC endpoint; the receipt's chain id, transaction
  hash, block number and block time are the proof.
- ``http``: a POST to an anchoring service (the seed's "blockchain service").

Every backend raises :class:`AnchorError` on failure. Retrying with backoff is the caller's
job (the batch task); an anchor is safe to call again for the same batch and root. The ``http``
and ``ethereum`` backends send through Conveyor's egress guard (``CONVEYOR_EGRESS_ALLOW`` lists
an internal service or node), and never repeat an answer's body in their errors.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy import Connection, Engine, func, insert, select, text
from sqlalchemy.exc import SQLAlchemyError

from conveyor.packs.factory.config import FactorySettings
from conveyor.packs.factory.errors import AnchorError
from conveyor.packs.factory.tables import anchors, batches
from conveyor.packs.kit import EgressClient, EgressError, EgressPolicy

GENESIS = bytes(32)
ENTRY_DOMAIN = b"conveyor-factory-anchor-v1\x00"
CALLDATA_MAGIC = b"CVF1"
"""Ethereum calldata: ``CVF1`` || batch id (16 bytes) || Merkle root (32 bytes)."""


OnSubmit = Callable[[str], None]


@dataclass(frozen=True)
class AnchorReceipt:
    """What an anchor returns: enough to find and check the commitment later."""

    backend: str
    ref: str
    """local: the entry's seq; ethereum: the transaction hash (0x…); http: the service's id."""
    anchored_at: datetime
    chain_id: int | None = None
    block_number: int | None = None
    block_time: datetime | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


class Anchor(Protocol):
    """Commits a batch's Merkle root somewhere it cannot be quietly changed."""

    name: str

    def anchor(
        self,
        batch_id: UUID,
        root: bytes,
        *,
        submitted: str | None = None,
        on_submit: OnSubmit | None = None,
    ) -> AnchorReceipt:
        """Commit ``root`` for ``batch_id``; raise :class:`AnchorError` if that failed.

        An anchor that sends something it then waits for (a transaction) reports it through
        ``on_submit`` before waiting; given that reference back as ``submitted`` on a retry, it
        waits for the same commitment instead of making a second one.
        """
        ...


def build_anchor(settings: FactorySettings, engine: Engine, egress: EgressPolicy) -> Anchor:
    """The anchor ``CONVEYOR_FACTORY_ANCHOR`` names, configured from ``settings``; ``egress``
    is where it may send (``EgressPolicy.from_settings`` of Conveyor's settings)."""
    if settings.anchor == "local":
        return LocalAnchor(engine)
    if settings.anchor == "http":
        if not settings.anchor_url:
            raise AnchorError("CONVEYOR_FACTORY_ANCHOR=http needs CONVEYOR_FACTORY_ANCHOR_URL")
        token = settings.anchor_token.get_secret_value() if settings.anchor_token else None
        return HttpAnchor(settings.anchor_url, egress, token=token, timeout=settings.anchor_timeout)
    return EthereumAnchor.from_settings(settings, egress)


# --- local: a hash-chained log in PostgreSQL -------------------------------------------------


def entry_hash(seq: int, batch_id: UUID, root: bytes, prev_hash: bytes, created: datetime) -> bytes:
    """The hash an anchor-log entry is chained by."""
    micros = round(created.timestamp() * 1_000_000)
    return hashlib.sha256(
        ENTRY_DOMAIN
        + seq.to_bytes(8, "big")
        + batch_id.bytes
        + root
        + prev_hash
        + micros.to_bytes(8, "big", signed=True)
    ).digest()


class LocalAnchor:
    """Appends to ``factory_anchors``, one writer at a time (a table lock), gap-free seqs."""

    name = "local"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def anchor(
        self,
        batch_id: UUID,
        root: bytes,
        *,
        submitted: str | None = None,
        on_submit: OnSubmit | None = None,
    ) -> AnchorReceipt:
        # One transaction, idempotent per (batch, root): nothing to resume.
        try:
            with self.engine.begin() as conn:
                # Serialises appenders: each reads the head and writes the next entry.
                conn.execute(text("LOCK TABLE factory_anchors IN SHARE ROW EXCLUSIVE MODE"))
                done = conn.execute(
                    select(anchors)
                    .where(anchors.c.batch_id == batch_id, anchors.c.merkle_root == root)
                    .order_by(anchors.c.seq)
                    .limit(1)
                ).first()
                if done is not None:  # a retry after the entry was written: same receipt
                    return self._receipt(done.seq, done.entry_hash, done.created_at)
                head = conn.execute(
                    select(anchors.c.seq, anchors.c.entry_hash).order_by(anchors.c.seq.desc())
                ).first()
                seq, prev = (head.seq + 1, head.entry_hash) if head else (1, GENESIS)
                # PostgreSQL keeps microseconds, as datetime does: the time hashed is the
                # time stored.
                created = datetime.now(UTC)
                digest = entry_hash(seq, batch_id, root, prev, created)
                conn.execute(
                    insert(anchors).values(
                        seq=seq,
                        batch_id=batch_id,
                        merkle_root=root,
                        prev_hash=prev,
                        entry_hash=digest,
                        created_at=created,
                    )
                )
        except SQLAlchemyError as exc:
            raise AnchorError(f"could not append to the local anchor log: {exc}") from exc
        return self._receipt(seq, digest, created)

    def _receipt(self, seq: int, digest: bytes, created: datetime) -> AnchorReceipt:
        return AnchorReceipt(
            backend=self.name,
            ref=str(seq),
            anchored_at=created,
            details={"seq": seq, "entry_hash": digest.hex()},
        )


@dataclass
class ChainReport:
    """What :func:`verify_chain` found: ``ok`` only if ``problems`` is empty."""

    entries: int
    head: bytes
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_chain(bind: Engine | Connection) -> ChainReport:
    """Walk the local anchor log and report every entry that was edited, deleted or moved,
    and every batch whose local anchor entry is missing or differs from the batch."""
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return verify_chain(conn)
    conn = bind
    problems: list[str] = []
    expected_seq, prev = 1, GENESIS
    seen: dict[int, tuple[UUID, bytes, bytes]] = {}
    # One small row per batch ever anchored: read in one go.
    for row in conn.execute(select(anchors).order_by(anchors.c.seq)):
        if row.seq != expected_seq:
            problems.append(f"entry {expected_seq} is missing (next is {row.seq})")
        if row.prev_hash != prev:
            problems.append(f"entry {row.seq} does not follow the entry before it")
        digest = entry_hash(row.seq, row.batch_id, row.merkle_root, row.prev_hash, row.created_at)
        if digest != row.entry_hash:
            problems.append(f"entry {row.seq} was changed after it was written")
        seen[row.seq] = (row.batch_id, row.merkle_root, row.entry_hash)
        expected_seq, prev = row.seq + 1, row.entry_hash
    anchored = conn.execute(
        select(
            batches.c.id, batches.c.merkle_root, batches.c.anchor_ref, batches.c.anchor_details
        ).where(batches.c.anchor_backend == "local", batches.c.anchor_ref.is_not(None))
    )
    for b in anchored:
        entry = seen.get(int(b.anchor_ref))
        details = b.anchor_details or {}
        if entry is None:
            problems.append(f"batch {b.id}: its anchor entry {b.anchor_ref} is missing")
        elif entry != (b.id, b.merkle_root, bytes.fromhex(details.get("entry_hash", ""))):
            problems.append(f"batch {b.id}: anchor entry {b.anchor_ref} does not match it")
    count = conn.execute(select(func.count()).select_from(anchors)).scalar_one()
    return ChainReport(entries=count, head=prev, problems=problems)


# --- http: an anchoring service ----------------------------------------------------------------


class HttpAnchor:
    """POSTs ``{"batch_id", "merkle_root" (hex), "tree": "rfc9162-sha256"}`` as JSON to
    ``url`` and expects a 2xx JSON answer with ``tx_hash`` (or ``transaction_id`` or ``id``),
    and optionally ``chain_id``, ``block_number`` and ``block_time`` (ISO 8601)."""

    name = "http"

    def __init__(
        self, url: str, egress: EgressPolicy, *, token: str | None = None, timeout: float = 10.0
    ) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.egress = dataclasses.replace(egress, timeout=timeout)

    def anchor(
        self,
        batch_id: UUID,
        root: bytes,
        *,
        submitted: str | None = None,
        on_submit: OnSubmit | None = None,
    ) -> AnchorReceipt:
        # One request; the service is expected to answer a repeated batch id with its receipt.
        payload = {"batch_id": str(batch_id), "merkle_root": root.hex(), "tree": "rfc9162-sha256"}
        try:
            with EgressClient(self.egress) as client:
                # A retry of the same batch carries the same key, for services that dedupe.
                headers = {**self.headers, "Idempotency-Key": f"factory-batch-{batch_id}"}
                answer = client.post(self.url, json=payload, headers=headers)
        except EgressError as exc:
            raise AnchorError(f"anchoring service {self.url} unreachable: {exc}") from exc
        if not answer.is_success:  # its body may hold anything: the status line only
            raise AnchorError(f"anchoring service {self.url} answered {answer.status_line}")
        try:
            body = answer.json()
            ref = body.get("tx_hash") or body.get("transaction_id") or body.get("id")
            if not ref:
                raise ValueError("no tx_hash, transaction_id or id in the answer")
            block_time = body.get("block_time")
            return AnchorReceipt(
                backend=self.name,
                ref=str(ref),
                anchored_at=datetime.now(UTC),
                chain_id=int(body["chain_id"]) if body.get("chain_id") is not None else None,
                block_number=(
                    int(body["block_number"]) if body.get("block_number") is not None else None
                ),
                block_time=datetime.fromisoformat(block_time) if block_time else None,
                details=body,
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise AnchorError(f"anchoring service {self.url} answered unusably: {exc}") from exc


# --- ethereum: a transaction whose calldata holds the root ----------------------------------


class EthereumAnchor:
    """Sends ``CVF1 || batch id || root`` as the data of a zero-value transaction from the
    signing account to itself, waits for the receipt and reads the block's time."""

    name = "ethereum"

    def __init__(
        self, w3: Any, *, private_key: str | None = None, receipt_timeout: float = 120.0
    ) -> None:
        # `w3` is a web3.Web3; typed loosely so this module imports without web3 installed.
        self.w3 = w3
        self.private_key = private_key
        self.receipt_timeout = receipt_timeout

    @classmethod
    def from_settings(cls, settings: FactorySettings, egress: EgressPolicy) -> EthereumAnchor:
        """An anchor on ``CONVEYOR_FACTORY_ETH_RPC_URL`` (needs the ``factory`` extra), every
        RPC call sent through the egress guard."""
        if not settings.eth_rpc_url:
            raise AnchorError("CONVEYOR_FACTORY_ANCHOR=ethereum needs CONVEYOR_FACTORY_ETH_RPC_URL")
        try:
            from web3 import Web3

            from conveyor.packs.kit import GuardedRPCProvider
        except ImportError as exc:
            raise AnchorError(
                "the ethereum anchor needs web3: pip install 'conveyor[factory]'"
            ) from exc
        key = settings.eth_private_key.get_secret_value() if settings.eth_private_key else None
        client = EgressClient(dataclasses.replace(egress, timeout=30.0))
        w3 = Web3(GuardedRPCProvider(settings.eth_rpc_url, client))
        return cls(w3, private_key=key, receipt_timeout=settings.eth_receipt_timeout)

    def anchor(
        self,
        batch_id: UUID,
        root: bytes,
        *,
        submitted: str | None = None,
        on_submit: OnSubmit | None = None,
    ) -> AnchorReceipt:
        data = CALLDATA_MAGIC + batch_id.bytes + root
        try:
            eth = self.w3.eth
            tx_hash = self._known(submitted, data)
            if tx_hash is None:
                tx_hash = self._send(data)
                if on_submit is not None:
                    on_submit("0x" + bytes(tx_hash).hex())
            receipt = eth.wait_for_transaction_receipt(tx_hash, timeout=self.receipt_timeout)
            if receipt["status"] != 1:
                raise AnchorError(f"anchoring transaction {tx_hash.hex()} reverted")
            block = eth.get_block(receipt["blockNumber"])
            chain_id = eth.chain_id
        except AnchorError:
            raise
        except Exception as exc:  # web3 raises from many modules (RPC, timeouts, signing)
            raise AnchorError(f"ethereum anchoring failed: {type(exc).__name__}: {exc}") from exc
        ref = "0x" + bytes(tx_hash).hex()
        return AnchorReceipt(
            backend=self.name,
            ref=ref,
            anchored_at=datetime.now(UTC),
            chain_id=int(chain_id),
            block_number=int(receipt["blockNumber"]),
            block_time=datetime.fromtimestamp(int(block["timestamp"]), UTC),
            details={"gas_used": int(receipt["gasUsed"]), "calldata": "0x" + data.hex()},
        )

    def _known(self, submitted: str | None, data: bytes) -> Any:
        """The hash of the transaction sent by an earlier attempt, if the node still knows it
        and it carries this root; None means: send a new one."""
        if not submitted:
            return None
        from web3.exceptions import TransactionNotFound

        try:
            tx = self.w3.eth.get_transaction(submitted)
        except TransactionNotFound:  # dropped from the mempool: send again
            return None
        return tx["hash"] if bytes(tx["input"]) == data else None

    def _send(self, data: bytes) -> Any:
        eth = self.w3.eth
        if not self.private_key:
            sender = eth.accounts[0]
            return eth.send_transaction({"from": sender, "to": sender, "value": 0, "data": data})
        account = eth.account.from_key(self.private_key)
        tx: dict[str, Any] = {
            "from": account.address,
            "to": account.address,
            "value": 0,
            "data": data,
            "nonce": eth.get_transaction_count(account.address, "pending"),
            "chainId": eth.chain_id,
        }
        tx["gas"] = eth.estimate_gas(tx)
        base_fee = eth.get_block("latest").get("baseFeePerGas")
        if base_fee is None:  # a pre-London chain
            tx["gasPrice"] = eth.gas_price
        else:
            tip = eth.max_priority_fee
            tx.update(maxFeePerGas=2 * base_fee + tip, maxPriorityFeePerGas=tip)
        return eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
