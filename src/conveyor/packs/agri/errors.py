"""The agri pack's errors, under Conveyor's one root.

ConveyorError
└── AgriError               root of what the agri pack raises on purpose
    ├── InvalidGeometry     a plot polygon that is not valid GeoJSON or not a usable plot (422)
    ├── InvalidPolicy       policy or plot fields out of range, unknown crop, bad wallet (422)
    ├── InvalidWeather      a daily weather series that cannot be used for indices (422)
    ├── AssessmentError     a damage assessment asked outside what the policy covers (422)
    ├── ProofError          a document that cannot be made canonical, or a malformed CID (422)
    ├── ImportRejected      a plot file with errors, each numbered by row or feature (422)
    ├── ProviderError       an outside service gave no usable answer (weather, satellite, S3, IPFS)
    │   └── ProviderRateLimited   still 429 after the retries Retry-After allowed
    ├── RasterError         a corrupt GeoTIFF, or one that does not cover the plot (422)
    └── ObjectNotFound      no object under that key in the object store (404)

Those marked (422) are also :class:`~conveyor.errors.InputRejected` and (404)
:class:`~conveyor.errors.ResourceNotFound`, so the API answers with the message without a route
translating it; a ProviderError is a failure of the outside service, recorded where it happened.
"""

from __future__ import annotations

from conveyor.errors import ConveyorError, InputRejected, ResourceNotFound


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


class ProviderError(AgriError):
    """An outside service (weather, satellite, object store, IPFS pinning) gave no usable
    answer: refused, unreachable, rate limited past the retries, or a garbage answer. The
    message names the provider and what was wrong, never the answer's body."""


class ProviderRateLimited(ProviderError):
    """The provider kept answering 429; ``retry_after`` is its last Retry-After in seconds."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RasterError(AgriError, InputRejected):
    """A raster that cannot be used for a plot: corrupt or not a GeoTIFF, missing bands, or
    not covering the plot's polygon (422)."""


class ObjectNotFound(AgriError, ResourceNotFound):
    """No object under that key in the object store (404)."""
