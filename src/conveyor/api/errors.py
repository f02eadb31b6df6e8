"""The one place where Conveyor errors become HTTP responses."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from conveyor.errors import (
    ApiKeyNotFound,
    BrokerUnavailable,
    ConveyorError,
    IdempotencyConflict,
    InputRejected,
    InvalidArguments,
    InvalidTransition,
    JobNotFound,
    LedgerUnavailable,
    NotAuthenticated,
    PayloadTooLarge,
    PermissionDenied,
    QueueNotFound,
    ResourceConflict,
    ResourceNotFound,
    UnknownScope,
    UnknownTask,
)

log = logging.getLogger(__name__)

# What a client is told while PostgreSQL is down, whichever path noticed it. The driver's own
# message (host, port, server wording) goes to the log, not to the client.
LEDGER_DOWN = "the ledger (PostgreSQL) is unreachable; try again shortly"

_STATUS: list[tuple[type[ConveyorError], int]] = [
    (JobNotFound, 404),
    (QueueNotFound, 404),
    (NotAuthenticated, 401),
    (PermissionDenied, 403),
    (ApiKeyNotFound, 404),
    (UnknownScope, 422),
    (UnknownTask, 422),
    (InvalidArguments, 422),
    (PayloadTooLarge, 413),
    (IdempotencyConflict, 409),
    (InvalidTransition, 409),
    (LedgerUnavailable, 503),
    (BrokerUnavailable, 503),
    (InputRejected, 422),
    (ResourceNotFound, 404),
    (ResourceConflict, 409),
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
        if isinstance(exc, InvalidArguments):
            body["problems"] = [{"loc": list(p["loc"]), "msg": p["msg"]} for p in exc.problems]
        if isinstance(exc, IdempotencyConflict):
            body["job_id"] = exc.job_id
        return JSONResponse(body, status_code=status_for(exc), headers=headers_for(exc))

    @app.exception_handler(OperationalError)
    async def ledger_down(request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("%s %s: PostgreSQL unreachable: %s", request.method, request.url.path, exc.orig)
        return JSONResponse(
            {"detail": LEDGER_DOWN, "error": "LedgerUnavailable"},
            status_code=503,
            headers={"Retry-After": "5"},
        )
