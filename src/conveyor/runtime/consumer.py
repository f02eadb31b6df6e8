"""The worker's message consumer, so that poison messages become dead letters.

Celery acknowledges (or rejects) a message it cannot decode, whose content type is not
allowed (pickle is never accepted), whose body is malformed or whose task is not registered,
and logs it; the worker stays up. Conveyor also records such a message in the ledger as a
`dead` job with the reason, so it shows up in the dead-letter queue instead of vanishing.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from celery.worker.consumer import Consumer

from conveyor.core.states import JobState
from conveyor.runtime.context import runtime_of

log = logging.getLogger(__name__)


class ConveyorConsumer(Consumer):  # type: ignore[misc]
    def on_decode_error(self, message: Any, exc: BaseException) -> None:
        super().on_decode_error(message, exc)
        self._dead_letter(
            message,
            "UndecodableMessage",
            f"message with content type {message.content_type!r} was refused and never "
            f"deserialised: {exc}",
        )

    def on_unknown_task(self, body: Any, message: Any, exc: BaseException) -> None:
        super().on_unknown_task(body, message, exc)
        name = (message.headers or {}).get("task")
        self._dead_letter(
            message, "UnknownTask", f"no task named {name!r} is registered on this worker"
        )

    def on_invalid_task(self, body: Any, message: Any, exc: BaseException) -> None:
        super().on_invalid_task(body, message, exc)
        self._dead_letter(message, "InvalidMessage", f"malformed task message: {exc}")

    def _dead_letter(self, message: Any, error_type: str, reason: str) -> None:
        headers = message.headers if isinstance(message.headers, dict) else {}
        raw_id = str(headers.get("id") or "")
        try:
            job_id = str(uuid.UUID(raw_id))
        except ValueError:
            # Not an id the ledger can hold: keep the message's own id in the reason.
            job_id = str(uuid.uuid4())
            reason = f"{reason} (message id {raw_id[:100]!r})"
        task = str(headers.get("task") or "unknown")[:255]
        try:
            runtime_of(self.app).record(
                {
                    "k": JobState.DEAD.value,
                    "id": job_id,
                    "ts": time.time(),
                    "task": task,
                    "queue": (message.delivery_info or {}).get("routing_key"),
                    "etype": error_type,
                    "emsg": reason[:10_000],
                    "skipped": True,
                },
                count="dead",
            )
        except Exception:  # Redis down: the message is already logged by Celery
            log.exception("could not dead-letter poison message %s", raw_id)
