"""Payouts sent on an EVM chain: ``approved → submitted → confirmed`` (or ``failed``).

A payout is a value transfer to the farmer's wallet whose calldata carries ``AGR1`` followed by
the proof's CIDv1 (ASCII), so the chain itself points at the evidence.

Never paying twice is the point of the three steps:

1. :func:`prepare` signs the transaction with the next nonce of the paying account and records
   the signed bytes, their hash and the nonce — committed **before** anything is sent;
2. :func:`broadcast` sends those recorded bytes; a node that already has them (a retry after a
   timeout whose send did arrive) is not an error;
3. :func:`confirm` waits for the receipt of the recorded hash and stores it.

:func:`pay` runs the three, and a retry of it after any failure re-sends the same bytes — the
same nonce, the same hash — so at most one transfer can ever be mined for a payout. A payout
whose recorded transaction the node has forgotten and whose nonce was used by another
transaction is marked ``failed`` for a person to look at; it is never re-signed automatically.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import Engine, select, update

from conveyor.errors import ConveyorError, ResourceNotFound
from conveyor.packs.agri.config import AgriSettings
from conveyor.packs.agri.tables import payouts
from conveyor.packs.kit import EgressClient, EgressPolicy

CALLDATA_MAGIC = b"AGR1"
WEI_PER_UNIT = Decimal(10) ** 18


class PayoutError(ConveyorError):
    """A payout could not be sent or confirmed (retry it; it never pays twice)."""


def calldata(proof_cid: str) -> bytes:
    """The transaction data of a payout: ``AGR1`` || the proof CID in ASCII."""
    return CALLDATA_MAGIC + proof_cid.encode("ascii")


def to_wei(amount: Decimal) -> int:
    """An amount in whole units (18 decimals) as wei."""
    return int((amount * WEI_PER_UNIT).to_integral_value())


@dataclass
class Chain:
    """A web3 connection and the key that pays (``w3`` is a ``web3.Web3``)."""

    w3: Any
    private_key: str
    receipt_timeout: float = 120.0

    @property
    def sender(self) -> str:
        address: str = self.w3.eth.account.from_key(self.private_key).address
        return address

    @classmethod
    def from_settings(cls, settings: AgriSettings, egress: EgressPolicy) -> Chain:
        """A chain on ``CONVEYOR_AGRI_ETH_RPC_URL``, every call sent through the egress guard."""
        if not settings.eth_rpc_url:
            raise PayoutError("payouts need CONVEYOR_AGRI_ETH_RPC_URL (a JSON-RPC endpoint)")
        from web3 import Web3

        from conveyor.packs.kit import GuardedRPCProvider

        client = EgressClient(dataclasses.replace(egress, timeout=30.0))
        w3 = Web3(GuardedRPCProvider(settings.eth_rpc_url, client))
        return cls(
            w3,
            settings.payout_private_key.get_secret_value(),
            receipt_timeout=settings.receipt_timeout,
        )


def _row(engine: Engine, payout_id: UUID) -> Any:
    with engine.connect() as conn:
        row = conn.execute(select(payouts).where(payouts.c.id == payout_id)).first()
    if row is None:
        raise ResourceNotFound(f"no payout with id {payout_id}")
    return row


def prepare(engine: Engine, chain: Chain, payout_id: UUID) -> str:
    """Sign the payout's transaction and record it (once); its hash."""
    with engine.begin() as conn:
        row = conn.execute(
            select(payouts).where(payouts.c.id == payout_id).with_for_update()
        ).first()
        if row is None:
            raise ResourceNotFound(f"no payout with id {payout_id}")
        if row.tx_hash:  # recorded by an earlier attempt: the same bytes are sent again
            return str(row.tx_hash)
        if row.status != "approved":
            raise PayoutError(f"payout {payout_id} is {row.status}, not approved")
        try:
            eth = chain.w3.eth
            account = eth.account.from_key(chain.private_key)
            tx: dict[str, Any] = {
                "from": account.address,
                "to": row.wallet,
                "value": int(row.amount_wei),
                "data": calldata(row.proof_cid),
                "nonce": eth.get_transaction_count(account.address, "pending"),
                "chainId": eth.chain_id,
            }
            tx["gas"] = eth.estimate_gas(tx)
            base_fee = eth.get_block("latest").get("baseFeePerGas")
            if base_fee is None:
                tx["gasPrice"] = eth.gas_price
            else:
                tip = eth.max_priority_fee
                tx.update(maxFeePerGas=2 * base_fee + tip, maxPriorityFeePerGas=tip)
            signed = account.sign_transaction(tx)
        except Exception as exc:  # web3 raises from many modules (RPC, signing, estimation)
            raise PayoutError(f"could not prepare payout {payout_id}: {exc}") from exc
        tx_hash = "0x" + bytes(signed.hash).hex()
        conn.execute(
            update(payouts)
            .where(payouts.c.id == payout_id)
            .values(
                status="submitted",
                sender=account.address,
                nonce=tx["nonce"],
                chain_id=tx["chainId"],
                raw_tx=bytes(signed.raw_transaction),
                tx_hash=tx_hash,
                submitted_at=datetime.now(UTC),
            )
        )
    return tx_hash


def broadcast(engine: Engine, chain: Chain, payout_id: UUID) -> None:
    """Send the recorded transaction; one the node already knows is fine."""
    row = _row(engine, payout_id)
    if not row.raw_tx:
        raise PayoutError(f"payout {payout_id} has no recorded transaction; prepare it first")
    with engine.begin() as conn:
        conn.execute(
            update(payouts).where(payouts.c.id == payout_id).values(attempts=payouts.c.attempts + 1)
        )
    if _known(chain, row.tx_hash):
        return
    try:
        chain.w3.eth.send_raw_transaction(bytes(row.raw_tx))
    except Exception as exc:
        if _known(chain, row.tx_hash):  # "already known": an earlier send did arrive
            return
        raise PayoutError(f"sending payout {payout_id} failed: {exc}") from exc


def _known(chain: Chain, tx_hash: str) -> bool:
    from web3.exceptions import TransactionNotFound

    try:
        chain.w3.eth.get_transaction(tx_hash)
    except TransactionNotFound:
        return False
    return True


def confirm(engine: Engine, chain: Chain, payout_id: UUID) -> dict[str, Any]:
    """Wait for the recorded transaction's receipt and store it; the payout's new state."""
    row = _row(engine, payout_id)
    if row.status == "confirmed":
        return {"status": "confirmed", "tx_hash": row.tx_hash}
    try:
        receipt = chain.w3.eth.wait_for_transaction_receipt(
            row.tx_hash, timeout=chain.receipt_timeout
        )
    except Exception as exc:
        raise PayoutError(f"no receipt yet for payout {payout_id} ({row.tx_hash}): {exc}") from exc
    ok = receipt["status"] == 1
    stored = {
        "status": int(receipt["status"]),
        "block_number": int(receipt["blockNumber"]),
        "block_hash": "0x" + bytes(receipt["blockHash"]).hex(),
        "gas_used": int(receipt["gasUsed"]),
        "transaction_index": int(receipt["transactionIndex"]),
    }
    with engine.begin() as conn:
        conn.execute(
            update(payouts)
            .where(payouts.c.id == payout_id)
            .values(
                status="confirmed" if ok else "failed",
                block_number=stored["block_number"],
                receipt=stored,
                confirmed_at=datetime.now(UTC) if ok else None,
                error=None if ok else "the payout transaction reverted",
            )
        )
    return {"status": "confirmed" if ok else "failed", "tx_hash": row.tx_hash}


def pay(engine: Engine, chain: Chain, payout_id: UUID) -> dict[str, Any]:
    """Prepare (once), broadcast and confirm a payout; safe to call again after any failure."""
    row = _row(engine, payout_id)
    if row.status in ("confirmed", "failed"):
        return {"status": row.status, "tx_hash": row.tx_hash}
    prepare(engine, chain, payout_id)
    broadcast(engine, chain, payout_id)
    return confirm(engine, chain, payout_id)
