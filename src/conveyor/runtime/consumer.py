"""The worker's message consumer, so that poison messages become dead letters.

Every message is checked before Celery's handler sees it (``runtime.poison``): one it could
not run — undecodable, a content type that is not allowed (pickle is never accepted), a body or
a header of the wrong shape — is refused. Celery's own handlers for unknown tasks and decode
errors still run for what they catch, and anything else Celery raises while taking a message
in is caught here too instead of ending the worker. A refused message is rejected (never
redelivered, so it cannot loop) and recorded in the ledger as a `dead` job with the reason and
the message as it arrived, so it shows up among the dead letters instead of vanishing.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from celery import signals
from celery.worker.consumer import Consumer
from vine import promise

from conveyor.core.states import JobState
from conveyor.ledger.storable import storable_text
from conveyor.runtime import poison
from conveyor.runtime.context import runtime_of

log = logging.getLogger(__name__)


class ConveyorConsumer(Consumer):  # type: ignore[misc]
    def create_task_handler(self, promise: Any = promise) -> Callable[[Any], Any]:
        handle = super().create_task_handler(promise)
        connection_errors = tuple(self.connection_errors)

        def on_task_received(message: Any) -> Any:
            refused = poison.refusal(message)
            if refused is not None:
                return self._refuse(message, refused)
            try:
                return handle(message)
            except connection_errors:
                raise
            except Exception as exc:
                log.exception("the worker could not take message %s in", poison.message_id(message))
                return self._refuse(
                    message,
                    poison.Refusal("InvalidMessage", f"the worker could not take it in: {exc!r}"),
                )

        return on_task_received

    def on_decode_error(self, message: Any, exc: BaseException) -> None:
        super().on_decode_error(message, exc)
        self._dead_letter(
            message,
            poison.Refusal(
                "UndecodableMessage",
                f"message with content type {getattr(message, 'content_type', None)!r} was "
                f"refused and never deserialised: {exc}",
            ),
        )

    def on_unknown_message(self, body: Any, message: Any) -> None:
        super().on_unknown_message(body, message)
        self._dead_letter(message, poison.Refusal("InvalidMessage", "not a Celery task message"))

    def on_unknown_task(self, body: Any, message: Any, exc: BaseException) -> None:
        super().on_unknown_task(body, message, exc)
        name = poison.task_name(message)
        self._dead_letter(
            message,
            poison.Refusal("UnknownTask", f"no task named {name!r} is registered on this worker"),
        )

    def on_invalid_task(self, body: Any, message: Any, exc: BaseException) -> None:
        super().on_invalid_task(body, message, exc)
        self._dead_letter(message, poison.Refusal("InvalidMessage", f"malformed message: {exc}"))

    def _refuse(self, message: Any, refused: poison.Refusal) -> None:
        log.error(
            "refused message %s of task %r: %s; body %s",
            poison.message_id(message),
            poison.task_name(message),
            refused.reason,
            poison.preview(message),
        )
        self._dead_letter(message, refused)
        if not message.acknowledged:
            message.reject_log_error(log, self.connection_errors)
        signals.task_rejected.send(sender=self, message=message, exc=None)

    def _dead_letter(self, message: Any, refused: poison.Refusal) -> None:
        job_id = poison.message_id(message)
        reason = f"{refused.reason}; body {poison.preview(message)}"
        if job_id is None:
            job_id = str(uuid.uuid4())
        try:
            raw = poison.raw_message(message)
            delivery = message.delivery_info if isinstance(message.delivery_info, dict) else {}
            queue = delivery.get("routing_key")
            runtime_of(self.app).record(
                {
                    "k": JobState.DEAD.value,
                    "id": job_id,
                    "ts": time.time(),
                    "task": storable_text(poison.task_name(message))[:255],
                    "queue": storable_text(str(queue))[:255] if queue else None,
                    "etype": refused.error_type,
                    "emsg": reason[:10_000],
                    "skipped": True,
                    "raw": raw,
                },
                count="dead",
            )
        except Exception:  # Redis down: the message is logged above and by Celery
            log.exception("could not dead-letter refused message %s", job_id)
