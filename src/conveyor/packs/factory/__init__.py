"""The factory pack: product batches with HMAC tokens, RFC 9162 Merkle roots and anchoring
(see README.md beside this file)."""

from __future__ import annotations

from conveyor.packs import Pack

# Tables only so far: tasks, API, pages and CLI come with the next slice.
PACK = Pack(name="factory", title="Factory", tables="conveyor.packs.factory.tables:metadata")
