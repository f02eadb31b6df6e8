"""The jobs list's filters, carried in GET parameters so every view can be bookmarked.

Parsing is forgiving where the API is strict: a dashboard URL that someone edited by hand
shows the problem above the table instead of a JSON 422.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from conveyor.ledger import repository as repo
from conveyor.web.job_views import LIVE_MAX_IDS, STATES

DEFAULT_LIMIT = 50
MAX_TEXT = 200
WITHIN: dict[str, tuple[str, timedelta]] = {
    "15m": ("last 15 minutes", timedelta(minutes=15)),
    "1h": ("last hour", timedelta(hours=1)),
    "24h": ("last 24 hours", timedelta(hours=24)),
    "7d": ("last 7 days", timedelta(days=7)),
}
"""Relative time filters: a bookmarked "last hour" stays the last hour."""


def _clean(name: str, value: str | None, problems: list[str]) -> str | None:
    """Trimmed text, None when empty; NUL characters (which PostgreSQL refuses) are dropped."""
    if value and "\x00" in value:
        problems.append(f"NUL characters removed from the {name}")
        value = value.replace("\x00", "")
    return (value or "").strip() or None


def _moment(name: str, value: str | None, problems: list[str]) -> datetime | None:
    """An ISO 8601 date or date and time (UTC unless it says otherwise), or None."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        problems.append(f"{name} {text[:40]!r} is not a date like 2026-11-30 or 2026-11-30T14:05")
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _workflow(value: str | None, problems: list[str]) -> str | None:
    """A workflow's id in canonical form, or None (a malformed one is reported and dropped)."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        return str(uuid.UUID(text))
    except ValueError:
        problems.append(f"{text[:40]!r} is not a workflow id; the workflow filter was dropped")
        return None


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S").removesuffix(":00")


@dataclass(frozen=True)
class ListQuery:
    """Filters and position of one view of the jobs list."""

    states: tuple[str, ...] = ()
    task: str | None = None
    queue: str | None = None
    q: str | None = None
    cursor: str | None = None
    limit: int = DEFAULT_LIMIT
    within: str | None = None
    after: datetime | None = None
    before: datetime | None = None
    schedule: str | None = None  # the id of the schedule that fired the jobs
    workflow: str | None = None  # the id of the workflow the jobs are nodes of
    problems: tuple[str, ...] = ()

    @classmethod
    def parse(
        cls,
        states: Sequence[str] | None,
        task: str | None,
        queue: str | None,
        q: str | None,
        cursor: str | None,
        limit: str | None,
        *,
        within: str | None = None,
        after: str | None = None,
        before: str | None = None,
        schedule: str | None = None,
        workflow: str | None = None,
    ) -> ListQuery:
        """Build a query from raw parameters; what cannot be used is dropped and reported."""
        problems: list[str] = []
        schedule_id = (schedule or "").strip() or None
        if schedule_id is not None:
            try:
                schedule_id = str(uuid.UUID(schedule_id))
            except ValueError:
                problems.append(f"schedule {schedule_id[:40]!r} is not a schedule id; ignored")
                schedule_id = None
        span = (within or "").strip() or None
        if span is not None and span not in WITHIN:
            problems.append(f"unknown time range {span[:20]!r} ignored; use {', '.join(WITHIN)}")
            span = None
        start, end = _moment("from", after, problems), _moment("until", before, problems)
        if start is not None and end is not None and start >= end:
            problems.append("'from' is not before 'until': the time filter was dropped")
            start = end = None
        good_states: list[str] = []
        for state in states or ():
            state = state.strip().lower()
            if not state:
                continue
            if state in STATES:
                if state not in good_states:
                    good_states.append(state)
            else:
                problems.append(f"unknown state {state!r} ignored; states are {', '.join(STATES)}")
        text = _clean("search text", q, problems)
        if text is not None and len(text) > MAX_TEXT:
            problems.append(f"search text cut to {MAX_TEXT} characters")
            text = text[:MAX_TEXT]
        size = DEFAULT_LIMIT
        if limit:
            try:
                size = min(max(int(limit), 1), LIVE_MAX_IDS)
            except ValueError:
                problems.append(f"page size {limit!r} is not a number; showing {DEFAULT_LIMIT}")
        workflow_id = _workflow(workflow, problems)
        clean_cursor = (cursor or "").strip() or None
        if clean_cursor is not None:
            try:
                uuid.UUID(repo.decode_cursor(clean_cursor)[1])
            except ValueError:
                problems.append("that page link is not valid any more; showing the newest jobs")
                clean_cursor = None
        return cls(
            states=tuple(good_states),
            task=_clean("task", task, problems),
            queue=_clean("queue", queue, problems),
            q=text,
            cursor=clean_cursor,
            limit=size,
            within=span,
            after=start,
            before=end,
            schedule=schedule_id,
            workflow=workflow_id,
            problems=tuple(problems),
        )

    def job_filter(self, now: datetime | None = None) -> repo.JobFilter:
        """The repository filter for this view (a relative range counts back from ``now``)."""
        after = self.after
        if self.within is not None:
            since = (now or datetime.now(UTC)) - WITHIN[self.within][1]
            after = max(after, since) if after is not None else since
        return repo.JobFilter(
            states=self.states,
            task=self.task,
            queue=self.queue,
            text=self.q,
            created_after=after,
            created_before=self.before,
            schedule_id=self.schedule,
            workflow_id=self.workflow,
        )

    @property
    def timed(self) -> bool:
        """Whether a time filter narrows the list."""
        return bool(self.within or self.after or self.before)

    @property
    def filtered(self) -> bool:
        """Whether any filter narrows the list."""
        return bool(
            self.states
            or self.task
            or self.queue
            or self.q
            or self.timed
            or self.schedule
            or self.workflow
        )

    def filter_params(self) -> list[tuple[str, str]]:
        """The GET parameters of the filters alone (no page position or size)."""
        out = [("state", s) for s in self.states]
        for key, value in (
            ("task", self.task),
            ("queue", self.queue),
            ("q", self.q),
            ("within", self.within),
            ("after", _stamp(self.after) if self.after else None),
            ("before", _stamp(self.before) if self.before else None),
            ("schedule", self.schedule),
            ("workflow", self.workflow),
        ):
            if value:
                out.append((key, value))
        return out

    @property
    def custom_limit(self) -> int | None:
        """The page size when it is not the default one."""
        return self.limit if self.limit != DEFAULT_LIMIT else None

    def params(self) -> list[tuple[str, str]]:
        """The GET parameters that reproduce this view."""
        out = self.filter_params()
        if self.limit != DEFAULT_LIMIT:
            out.append(("limit", str(self.limit)))
        if self.cursor:
            out.append(("cursor", self.cursor))
        return out

    def query_string(self) -> str:
        """``?…`` for this view, or an empty string when it is the default one."""
        params = self.params()
        return "?" + urlencode(params) if params else ""

    def at(self, cursor: str | None) -> ListQuery:
        """The same filters at another page (None: the newest)."""
        return replace(self, cursor=cursor, problems=())

    def only_state(self, state: str) -> ListQuery:
        """The same filters narrowed to one state, from the first page."""
        return replace(self, states=(state,), cursor=None, problems=())

    def without_schedule(self) -> ListQuery:
        """The same filters with the jobs of every schedule, from the first page."""
        return replace(self, schedule=None, cursor=None, problems=())

    def without_workflow(self) -> ListQuery:
        """The same filters with the jobs of every workflow, from the first page."""
        return replace(self, workflow=None, cursor=None, problems=())
