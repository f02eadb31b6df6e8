"""The factory pack's errors, under Conveyor's one root.

ConveyorError
└── FactoryError          root of what the factory pack raises on purpose
    ├── BatchNotFound     no batch with that id
    ├── BatchStateError   the batch's status does not allow the step asked for
    ├── InvalidToken      a product token that is malformed, forged or signed with an unknown key
    └── AnchorError       a Merkle root could not be anchored (or the anchor log is broken);
                          the batch stays ``anchoring`` and the step may be retried
"""

from __future__ import annotations

from uuid import UUID

from conveyor.errors import ConveyorError, ResourceConflict, ResourceNotFound


class FactoryError(ConveyorError):
    """Root of every error the factory pack raises on purpose."""


# Also the pack errors the API maps to HTTP (404, 409), so no route translates them by hand.
class BatchNotFound(FactoryError, ResourceNotFound):
    def __init__(self, batch_id: UUID) -> None:
        super().__init__(f"no factory batch with id {batch_id}")
        self.batch_id = batch_id


class BatchStateError(FactoryError, ResourceConflict):
    pass


class InvalidToken(FactoryError):
    """The message is the reason, safe to show to whoever presented the token."""


class AnchorError(FactoryError):
    pass
