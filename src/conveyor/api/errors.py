"""The one place where errors become HTTP responses, and the one shape they all take.

Every error the API answers — a Conveyor error, a request that does not fit the schema, an
unknown path — has the body :class:`ErrorBody` (``detail`` always a sentence, ``error`` its
kind), and every route documents it for the statuses in :data:`ERROR_RESPONSES`, so a client
generated from the OpenAPI document can read any of them. A refused value is never echoed
back: it may not even be representable in JSON (``NaN``, a lone surrogate).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from conveyor.errors import (
    ApiKeyNotFound,
    BrokerUnavailable,
    ConveyorError,
    IdempotencyConflict,
    InputRejected,
    InvalidArguments,
    InvalidSchedule,
    InvalidSubmission,
    InvalidTransition,
    JobNotFound,
    LedgerUnavailable,
    NotAuthenticated,
    PayloadTooLarge,
    PermissionDenied,
    QueueNotFound,
    ResourceConflict,
    ResourceNotFound,
    ScheduleExists,
    ScheduleNotFound,
    UnknownScope,
    UnknownTask,
    WorkflowNotFound,
)

log = logging.getLogger(__name__)


class Problem(BaseModel):
    loc: list[str | int] = Field(description="where: body, query or header, then the field path")
    msg: str


class ErrorBody(BaseModel):
    """What every error answer of the API carries."""

    detail: str = Field(description="what was wrong, and what to do about it")
    error: str = Field(description="the kind of error, e.g. UnknownTask, InvalidRequest, NotFound")
    problems: list[Problem] | None = Field(
        default=None, description="for 422: each field that was refused, and why"
    )
    job_id: str | None = Field(default=None, description="for 409 IdempotencyConflict: the job")


# The error statuses any route may answer (authentication, allowlists, validation, limits, an
# unreachable ledger), documented on every route with the one body they share.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": HTTPStatus(status).phrase}
    for status in (400, 401, 403, 404, 409, 413, 422, 503)
}

# What a client is told while PostgreSQL is down, whichever path noticed it. The driver's own
# message (host, port, server wording) goes to the log, not to the client.
LEDGER_DOWN = "the ledger (PostgreSQL) is unreachable; try again shortly"

_STATUS: list[tuple[type[ConveyorError], int]] = [
    (JobNotFound, 404),
    (WorkflowNotFound, 404),
    (QueueNotFound, 404),
    (NotAuthenticated, 401),
    (PermissionDenied, 403),
    (ApiKeyNotFound, 404),
    (UnknownScope, 422),
    (UnknownTask, 422),
    (InvalidArguments, 422),
    (InvalidSubmission, 422),
    (PayloadTooLarge, 413),
    (IdempotencyConflict, 409),
    (InvalidTransition, 409),
    (LedgerUnavailable, 503),
    (BrokerUnavailable, 503),
    (InputRejected, 422),
    (ResourceNotFound, 404),
    (ResourceConflict, 409),
    (InvalidSchedule, 422),
    (ScheduleNotFound, 404),
    (ScheduleExists, 409),
]


def status_for(exc: ConveyorError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 400


def headers_for(exc: ConveyorError) -> dict[str, str] | None:
    status = status_for(exc)
    if status == 401:
        return {"WWW-Authenticate": "Bearer"}
    return {"Retry-After": "5"} if status == 503 else None


def error_response(exc: ConveyorError) -> JSONResponse:
    """The plain answer to ``exc``, for code outside FastAPI's handlers (ASGI middleware)."""
    body = {"detail": str(exc), "error": type(exc).__name__}
    return JSONResponse(body, status_code=status_for(exc), headers=headers_for(exc))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ConveyorError)
    async def conveyor_error(request: Request, exc: ConveyorError) -> JSONResponse:
        detail = str(exc)
        if isinstance(exc, LedgerUnavailable):
            log.warning("%s %s: %s", request.method, request.url.path, exc)
            detail = LEDGER_DOWN
        body: dict[str, object] = {"detail": detail, "error": type(exc).__name__}
        if isinstance(exc, InvalidArguments | InvalidSubmission | InvalidSchedule):
            body["problems"] = [{"loc": list(p["loc"]), "msg": p["msg"]} for p in exc.problems]
        if isinstance(exc, IdempotencyConflict):
            body["job_id"] = exc.job_id
        return JSONResponse(body, status_code=status_for(exc), headers=headers_for(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"loc": [str(p) if not isinstance(p, int) else p for p in e["loc"]], "msg": e["msg"]}
            for e in exc.errors()
        ]
        detail = "; ".join(
            f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in problems
        )  # (never the refused input: it may not even be valid JSON, like NaN)
        body = {"detail": f"the request does not fit the API: {detail}", "error": "InvalidRequest"}
        return JSONResponse({**body, "problems": problems}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code in (204, 304):  # no body allowed
            return Response(status_code=exc.status_code, headers=exc.headers)
        try:
            kind = HTTPStatus(exc.status_code).phrase.title().replace(" ", "").replace("-", "")
        except ValueError:
            kind = "HTTPError"
        return JSONResponse(
            {"detail": str(exc.detail), "error": kind},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(OperationalError)
    async def ledger_down(request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("%s %s: PostgreSQL unreachable: %s", request.method, request.url.path, exc.orig)
        return JSONResponse(
            {"detail": LEDGER_DOWN, "error": "LedgerUnavailable"},
            status_code=503,
            headers={"Retry-After": "5"},
        )
