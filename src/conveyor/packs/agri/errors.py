"""The agri pack's errors, under Conveyor's one root.

ConveyorError
└── AgriError               root of what the agri pack raises on purpose
    ├── InvalidGeometry     a plot polygon that is not valid GeoJSON or not a usable plot (422)
    ├── InvalidPolicy       policy or plot fields out of range, unknown crop, bad wallet (422)
    ├── InvalidWeather      a daily weather series that cannot be used for indices (422)
    ├── AssessmentError     a damage assessment asked outside what the policy covers (422)
    ├── ProofError          a document that cannot be made canonical, or a malformed CID (422)
    └── ImportRejected      a plot file with errors, each numbered by row or feature (422)

Each is also :class:`~conveyor.errors.InputRejected`, so the API answers 422 with the message
without a route translating it.
"""

from __future__ import annotations

from conveyor.errors import ConveyorError, InputRejected


class AgriError(ConveyorError):
    """Root of every error the agri pack raises on purpose."""


class InvalidGeometry(AgriError, InputRejected):
    pass


class InvalidPolicy(AgriError, InputRejected):
    pass


class InvalidWeather(AgriError, InputRejected):
    pass


class AssessmentError(AgriError, InputRejected):
    pass


class ProofError(AgriError, InputRejected):
    pass


class ImportRejected(AgriError, InputRejected):
    """A plot file that cannot be imported; ``problems`` lists every error found, in order."""

    def __init__(self, problems: list[str]) -> None:
        shown = "; ".join(problems[:20])
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        super().__init__(f"{len(problems)} error(s): {shown}{more}")
        self.problems = problems
