"""The assess pack's errors, under Conveyor's one root.

ConveyorError
└── PackError
    └── AssessError        root of what the assess pack raises on purpose
        └── InventoryError an inventory cannot be used as sent (422); ``.issues`` names each
                           problem by its path, e.g. ``compute.instances[3].gpu.count``
"""

from __future__ import annotations

from typing import TypedDict

from conveyor.errors import InputRejected, PackError


class AssessError(PackError):
    """Root of every error the assess pack raises on purpose."""


class Issue(TypedDict):
    """One problem found in an inventory: where (a dotted path with [index]) and what."""

    path: str
    message: str


class InventoryError(AssessError, InputRejected):
    """The inventory is refused; ``issues`` lists every problem found, path by path."""

    def __init__(self, issues: list[Issue]) -> None:
        shown = "; ".join(f"{i['path'] or '(document)'}: {i['message']}" for i in issues[:5])
        more = f" (and {len(issues) - 5} more)" if len(issues) > 5 else ""
        super().__init__(f"the inventory is invalid: {shown}{more}")
        self.issues = issues
