"""The factory pack: product batches with HMAC tokens, RFC 9162 Merkle roots and anchoring
(see README.md beside this file)."""

from __future__ import annotations

from conveyor.packs import Pack

PACK = Pack(
    name="factory",
    title="Factory",
    tasks="conveyor.packs.factory.tasks:register",
    api="conveyor.packs.factory.api:router",
    tables="conveyor.packs.factory.tables:metadata",
)
