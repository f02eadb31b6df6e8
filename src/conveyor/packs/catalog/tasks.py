"""The catalog's Celery tasks: thin wrappers that decode ids and call the plain functions."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import psycopg
from celery import Celery, Task

import conveyor
from conveyor.packs import psycopg_url, settings_of
from conveyor.packs.catalog import importer, uploads

log = logging.getLogger(__name__)

IMPORT_TASK = "catalog.import_products"


def import_products(self: Task, import_id: str) -> dict[str, Any]:
    """Import the uploaded file of import ``import_id`` into the products, reporting progress
    (phase as the step); a cancel or a failure leaves the products as they were."""
    settings = settings_of(self.app)
    job_id = str(self.request.id) if self.request.id else None
    with psycopg.connect(psycopg_url(settings), application_name="conveyor-catalog") as conn:
        stored_as = importer.start(conn, import_id, job_id)
        path = uploads.path_of(settings, stored_as)
        try:
            summary = importer.run_import(conn, import_id, Path(path), _report)
        except BaseException as exc:
            conn.rollback()
            importer.end_failed(conn, import_id, exc)
            raise
        path.unlink(missing_ok=True)  # imported: the rows are in PostgreSQL now
        importer.analyze(conn)
    return {"import_id": import_id, **summary.as_dict()}


def _report(phase: str, current: int, total: int, message: str) -> None:
    conveyor.progress(current, total, step=phase, message=message)


def register(app: Celery) -> None:
    """Register the catalog's tasks on ``app``."""
    app.task(name=IMPORT_TASK, bind=True, max_retries=0, soft_time_limit=1800, time_limit=1900)(
        import_products
    )
