"""The one place where Conveyor errors become HTTP responses."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from conveyor.errors import (
    BrokerUnavailable,
    ConveyorError,
    IdempotencyConflict,
    InvalidArguments,
    InvalidTransition,
    JobNotFound,
    LedgerUnavailable,
    PayloadTooLarge,
    UnknownTask,
)

_STATUS: list[tuple[type[ConveyorError], int]] = [
    (JobNotFound, 404),
    (UnknownTask, 422),
    (InvalidArguments, 422),
    (PayloadTooLarge, 413),
    (IdempotencyConflict, 409),
    (InvalidTransition, 409),
    (LedgerUnavailable, 503),
    (BrokerUnavailable, 503),
]


def status_for(exc: ConveyorError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 400


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ConveyorError)
    async def conveyor_error(request: Request, exc: ConveyorError) -> JSONResponse:
        body: dict[str, object] = {"detail": str(exc), "error": type(exc).__name__}
        if isinstance(exc, InvalidArguments):
            body["problems"] = [{"loc": list(p["loc"]), "msg": p["msg"]} for p in exc.problems]
        if isinstance(exc, IdempotencyConflict):
            body["job_id"] = exc.job_id
        headers = {"Retry-After": "5"} if status_for(exc) == 503 else None
        return JSONResponse(body, status_code=status_for(exc), headers=headers)

    @app.exception_handler(OperationalError)
    async def ledger_down(request: Request, exc: OperationalError) -> JSONResponse:
        return JSONResponse(
            {
                "detail": "the ledger (PostgreSQL) is unreachable; try again shortly",
                "error": "LedgerUnavailable",
            },
            status_code=503,
            headers={"Retry-After": "5"},
        )
