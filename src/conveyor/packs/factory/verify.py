"""Verify a product by its token: authentic or not, and if so the product, its batch, its
RFC 9162 inclusion proof and the batch's anchor, every hash in hex.

A proof is built from what the batch stored: the tokens of the product's block of
:data:`~steps.BLOCK_LEAVES` leaves (one index range scan) give the lower part of the audit
path, the batch's block roots (cached per batch) the upper part. The proof is checked with
:func:`merkle.verify_inclusion` before it is returned, so a product row changed after its
batch was anchored is reported as not authentic rather than with a proof that fails.

Anything that is not a genuine token of a stored product — garbage, a forged MAC, an unknown
key id, a token never issued — yields ``authentic=False`` with a reason, never an exception.
Malformed and forged tokens are refused by the MAC check alone, without a database query.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, Engine, select

from conveyor.packs.factory import merkle, tokens
from conveyor.packs.factory.batches import Batch, get_batch
from conveyor.packs.factory.errors import InvalidToken
from conveyor.packs.factory.steps import BLOCK_LEAVES, stored_block_roots
from conveyor.packs.factory.tables import products
from conveyor.packs.factory.tokens import Keyring


@dataclass(frozen=True)
class Proof:
    """An inclusion proof as RFC 9162 §2.1.3 names its parts; hashes in hex."""

    leaf_index: int
    tree_size: int
    leaf_hash: str
    audit_path: list[str]
    root: str

    def check(self) -> bool:
        """Verify this proof offline (RFC 9162 §2.1.3.2)."""
        return merkle.verify_inclusion(
            bytes.fromhex(self.leaf_hash),
            self.leaf_index,
            self.tree_size,
            [bytes.fromhex(p) for p in self.audit_path],
            bytes.fromhex(self.root),
        )


@dataclass(frozen=True)
class Verification:
    """The answer for one token. ``proof`` is None until the batch has a root, ``anchor``
    until the root is anchored."""

    authentic: bool
    reason: str | None = None
    product: dict[str, Any] | None = None
    batch: dict[str, Any] | None = None
    proof: Proof | None = None
    anchor: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (datetimes as ISO 8601)."""
        out: dict[str, Any] = jsonable(asdict(self))
        return out


def jsonable(value: Any) -> Any:
    """``value`` with datetimes as ISO 8601 and UUIDs as strings, nested anywhere."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value


def not_authentic(reason: str) -> Verification:
    return Verification(authentic=False, reason=reason)


class Verifier:
    """Verifies tokens against one database and keyring; keeps the upper tree levels of the
    ``cache_size`` most recently asked batches (about 256 KB per million products)."""

    def __init__(self, engine: Engine, keyring: Keyring, *, cache_size: int = 64) -> None:
        self.engine = engine
        self.keyring = keyring
        self.cache_size = cache_size
        self._levels: OrderedDict[tuple[UUID, bytes], list[list[bytes]]] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, token: object) -> Verification:
        """Authentic or not, with a reason; see the module docstring. Costs three indexed
        queries on one connection (product, batch, the product's block of tokens)."""
        if not isinstance(token, str):
            return not_authentic("malformed token")
        try:
            claims = tokens.check(self.keyring, token)
        except InvalidToken as exc:
            return not_authentic(str(exc))
        with self.engine.connect() as conn:
            row = conn.execute(
                select(
                    products.c.id,
                    products.c.batch_id,
                    products.c.serial,
                    products.c.name,
                    products.c.category,
                    products.c.verification_url,
                    products.c.leaf_index,
                ).where(products.c.token == token)
            ).first()
            # A genuine MAC for a product that was never written (or was deleted).
            if row is None or (row.batch_id, row.serial) != (claims.batch_id, claims.serial):
                return not_authentic("unknown token: no product carries it")
            batch = get_batch(conn, row.batch_id)
            proof = None
            if batch.merkle_root is not None:
                # On the same connection: one pool checkout per verification.
                proof = self.proof(conn, batch, row.leaf_index, token)
                if proof is None:
                    return not_authentic(
                        "the product differs from what its batch's Merkle root covers"
                    )
        product = {
            "id": row.id,
            "serial": row.serial,
            "name": row.name,
            "category": row.category,
            "verification_url": row.verification_url,
            "leaf_index": row.leaf_index,
        }
        summary = {
            "id": batch.id,
            "status": batch.status,
            "product_count": batch.product_count,
            "factory_id": batch.factory_id,
            "created_at": batch.created_at,
            "completed_at": batch.completed_at,
        }
        return Verification(
            authentic=True, product=product, batch=summary, proof=proof, anchor=_anchor(batch)
        )

    def proof(self, conn: Connection, batch: Batch, leaf_index: int, token: str) -> Proof | None:
        """The inclusion proof of ``token`` at ``leaf_index``, or None if the stored batch
        does not prove it."""
        assert batch.merkle_root is not None
        start = leaf_index - leaf_index % BLOCK_LEAVES
        block = conn.execute(
            select(products.c.token)
            .where(
                products.c.batch_id == batch.id,
                products.c.serial > start,
                products.c.serial <= start + BLOCK_LEAVES,
            )
            .order_by(products.c.serial)
        ).scalars()
        hashes = merkle.leaf_hashes(t.encode() for t in block)
        leaf = merkle.leaf_hash(token.encode())
        offset = leaf_index - start
        if offset >= len(hashes) or hashes[offset] != leaf:
            return None
        inner = merkle.inclusion_path(merkle.tree_levels(hashes), offset)
        outer = merkle.inclusion_path(self._upper_levels(conn, batch), leaf_index // BLOCK_LEAVES)
        path = inner + outer
        if not merkle.verify_inclusion(
            leaf, leaf_index, batch.product_count, path, batch.merkle_root
        ):
            return None
        return Proof(
            leaf_index=leaf_index,
            tree_size=batch.product_count,
            leaf_hash=leaf.hex(),
            audit_path=[p.hex() for p in path],
            root=batch.merkle_root.hex(),
        )

    def _upper_levels(self, conn: Connection, batch: Batch) -> list[list[bytes]]:
        assert batch.merkle_root is not None
        key = (batch.id, batch.merkle_root)
        with self._lock:
            levels = self._levels.get(key)
            if levels is not None:
                self._levels.move_to_end(key)
                return levels
        levels = merkle.tree_levels(stored_block_roots(conn, batch))
        with self._lock:
            self._levels[key] = levels
            while len(self._levels) > self.cache_size:
                self._levels.popitem(last=False)
        return levels


def _anchor(batch: Batch) -> dict[str, Any] | None:
    if batch.anchor_backend is None:
        return None
    return {
        "backend": batch.anchor_backend,
        "ref": batch.anchor_ref,
        "chain_id": batch.anchor_chain_id,
        "block_number": batch.anchor_block_number,
        "block_time": batch.anchor_block_time,
        "details": batch.anchor_details,
    }
