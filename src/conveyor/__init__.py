"""Conveyor: a production job platform for any Celery app.

import conveyor
app = conveyor.create_celery("myapp")      # or conveyor.install(existing_app)

@app.task
def resize(image_id: int, width: int = 800) -> str:
    conveyor.progress(0, 3, step="download")
    ...
"""

from conveyor.config import Settings
from conveyor.core.limits import LimitSpec
from conveyor.core.retry import RetryPolicy
from conveyor.errors import (
    ConveyorError,
    IdempotencyConflict,
    InputRejected,
    InvalidArguments,
    JobCancelled,
    JobNotFound,
    ResourceConflict,
    ResourceNotFound,
    UnknownTask,
)
from conveyor.runtime.app import create_celery
from conveyor.runtime.install import install
from conveyor.runtime.progress import check_cancelled, progress

__all__ = [
    "ConveyorError",
    "IdempotencyConflict",
    "InputRejected",
    "InvalidArguments",
    "JobCancelled",
    "JobNotFound",
    "LimitSpec",
    "ResourceConflict",
    "ResourceNotFound",
    "RetryPolicy",
    "Settings",
    "UnknownTask",
    "check_cancelled",
    "create_celery",
    "install",
    "progress",
]
