"""The factory pack: product batches with HMAC tokens, RFC 9162 Merkle roots and anchoring
(see README.md beside this file)."""

from __future__ import annotations

from conveyor.packs import NavEntry, Pack

PACK = Pack(
    name="factory",
    title="Factory",
    tasks="conveyor.packs.factory.tasks:register",
    api="conveyor.packs.factory.api:router",
    cli="conveyor.packs.factory.cli:app",
    web="conveyor.packs.factory.web:router",
    public_web="conveyor.packs.factory.web_verify:router",
    templates_dir="templates",
    nav=(
        NavEntry("Batches", "factory_batches", "factory-batches"),
        NavEntry("Verify", "factory_verify_form", "factory-verify"),
    ),
    tables="conveyor.packs.factory.tables:metadata",
)
