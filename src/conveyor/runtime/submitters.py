"""Submitter processes: the scheduler's large bursts submitted by several processes at once.

A fire's job costs the scheduler little to plan but a lot to submit — mostly Celery's publish,
100 to 150 µs a message, all of it holding the GIL. ``conveyor beat --submitters N`` starts N
processes (spawned, each with its own app, ledger engine and intake) that take the planned
fires in chunks and submit them through the same path as the scheduler itself
(``ScheduleService.prepare_fire`` and the intake: job row, outbox row, publish), answering each
chunk with its jobs' ids. The leader keeps everything else: planning, the overlap policies, the
fenced record of the fires.

A submitter whose parent dies (even ``kill -9``) sees its pipe close and exits. If a submitter
fails, the scheduler submits the rest itself and stops using the pool (with ``--submitters auto``
it starts a fresh one before the next burst).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from multiprocessing.connection import Connection, wait
from typing import Any

from conveyor.config import Settings

log = logging.getLogger(__name__)

# What a submitter needs of a schedule's row to submit its fire.
ROW_FIELDS = ("id", "name", "task", "args", "kwargs", "queue", "priority", "jitter")
Outcome = tuple[str | None, str | None]  # (job id, error)
IN_FLIGHT = 2  # chunks sent to a submitter and not answered yet


class Submitters:
    """A pool of ``n`` submitter processes."""

    def __init__(self, settings: Settings, n: int) -> None:
        ctx = multiprocessing.get_context("spawn")  # no threads or sockets inherited
        self._procs: list[Any] = []
        self.conns: list[Connection] = []
        self._starting: set[Connection] = set()  # not said "ready" yet
        for i in range(n):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(
                target=_serve, args=(theirs, settings), name=f"conveyor-submitter-{i}"
            )
            proc.daemon = True
            proc.start()
            theirs.close()
            self._procs.append(proc)
            self.conns.append(mine)
            self._starting.add(mine)

    def ready(self) -> bool:
        """Whether every submitter has finished starting (never waits). OSError/EOFError if
        one died on the way."""
        if not self._starting:
            return True
        for conn in list(self._starting):
            if conn.poll():
                conn.recv()  # its "ready"
                self._starting.discard(conn)
        if not self._starting:
            log.info("%d submitter process(es) ready", len(self.conns))
        return not self._starting

    def submit(self, fires: Sequence[tuple[dict[str, Any], datetime]], chunk: int) -> list[Outcome]:
        """Submit ``fires`` (row, fire time) across the pool; an outcome per fire, in order.
        OSError/EOFError if a submitter is gone."""
        chunks: deque[tuple[int, list[Any]]] = deque(
            (
                start,
                [
                    ({k: row[k] for k in ROW_FIELDS}, fire)
                    for row, fire in fires[start : start + chunk]
                ],
            )
            for start in range(0, len(fires), chunk)
        )
        for conn in list(self._starting):  # wait for start-up
            conn.recv()
            self._starting.discard(conn)
        outcomes: list[Outcome] = [(None, "not submitted")] * len(fires)
        waiting: dict[Connection, deque[int]] = {conn: deque() for conn in self.conns}
        while chunks or any(waiting.values()):
            for conn in self.conns:
                while chunks and len(waiting[conn]) < IN_FLIGHT:
                    start, items = chunks.popleft()
                    conn.send(items)
                    waiting[conn].append(start)
            for ready in wait([c for c, w in waiting.items() if w]):
                assert isinstance(ready, Connection)
                answer: list[Outcome] = ready.recv()
                start = waiting[ready].popleft()
                outcomes[start : start + len(answer)] = answer
        return outcomes

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(None)
            conn.close()
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()


def _serve(conn: Connection, settings: Settings) -> None:
    """A submitter's life: chunks of fires in, their jobs' ids out, until told to stop or its
    parent is gone."""
    from conveyor.cli.common import celery_app
    from conveyor.control import Control
    from conveyor.errors import ConveyorError
    from conveyor.ledger.db import make_engine
    from conveyor.schedules import ScheduleService, fire_job

    app = celery_app(settings)
    app.finalize()
    engine = make_engine(settings.database_url or "", pool_size=2)
    control = Control(app, engine)
    service = ScheduleService(control, engine)
    try:
        with contextlib.suppress(OSError):  # (if the scheduler is gone, recv says so)
            conn.send("ready")
        while True:
            try:
                items = conn.recv()
            except (EOFError, OSError):
                break  # the scheduler is gone
            if items is None:
                break
            pending: list[Any] = []
            for row, fire in items:
                try:
                    pending.append(control.intake.submit(service.prepare_fire(row, fire)))
                except ConveyorError as exc:
                    pending.append(str(exc))
            answer: list[Outcome] = [
                (None, item) if isinstance(item, str) else fire_job(item) for item in pending
            ]
            conn.send(answer)
    finally:
        control.close()
        engine.dispose()
