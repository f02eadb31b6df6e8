"""The assess pack (issue 14): an AI-infrastructure assessment as a parallel workflow — ten
analyzers in a chord, live weighted progress, partial results, cancel and retry (see
README.md beside this file and docs/assess.md)."""

from __future__ import annotations

from conveyor.packs import NavEntry, Pack

PACK = Pack(
    name="assess",
    title="Assess",
    tasks="conveyor.packs.assess.tasks:register",
    api="conveyor.packs.assess.api:router",
    cli="conveyor.packs.assess.cli:app",
    tables="conveyor.packs.assess.tables:metadata",
    web="conveyor.packs.assess.web:router",
    templates_dir="templates",
    nav=(NavEntry("Assessments", "assess_assessments", "assess-assessments"),),
    streaming=("/api/v1/assess/assessments/upload", "/assess/assessments/upload"),
)
