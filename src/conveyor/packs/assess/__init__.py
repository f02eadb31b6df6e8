"""The assess pack (issue 14): an AI-infrastructure assessment as a parallel workflow — ten
analyzers in a chord, live weighted progress, partial results, cancel and retry (see
README.md beside this file and docs/assess.md)."""

from __future__ import annotations

from conveyor.packs import Pack

PACK = Pack(
    name="assess",
    title="Assess",
    tasks="conveyor.packs.assess.tasks:register",
    api="conveyor.packs.assess.api:router",
    cli="conveyor.packs.assess.cli:app",
    tables="conveyor.packs.assess.tables:metadata",
    streaming=("/api/v1/assess/assessments/upload",),
)
