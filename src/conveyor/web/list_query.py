"""The jobs list's filters, carried in GET parameters so every view can be bookmarked.

Parsing is forgiving where the API is strict: a dashboard URL that someone edited by hand
shows the problem above the table instead of a JSON 422.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlencode

from conveyor.ledger import repository as repo
from conveyor.web.job_views import LIVE_MAX_IDS, STATES

DEFAULT_LIMIT = 50
MAX_TEXT = 200


def _clean(name: str, value: str | None, problems: list[str]) -> str | None:
    """Trimmed text, None when empty; NUL characters (which PostgreSQL refuses) are dropped."""
    if value and "\x00" in value:
        problems.append(f"NUL characters removed from the {name}")
        value = value.replace("\x00", "")
    return (value or "").strip() or None


@dataclass(frozen=True)
class ListQuery:
    """Filters and position of one view of the jobs list."""

    states: tuple[str, ...] = ()
    task: str | None = None
    queue: str | None = None
    q: str | None = None
    cursor: str | None = None
    limit: int = DEFAULT_LIMIT
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
    ) -> ListQuery:
        """Build a query from raw parameters; what cannot be used is dropped and reported."""
        problems: list[str] = []
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
            problems=tuple(problems),
        )

    def job_filter(self) -> repo.JobFilter:
        """The repository filter for this view."""
        return repo.JobFilter(states=self.states, task=self.task, queue=self.queue, text=self.q)

    @property
    def filtered(self) -> bool:
        """Whether any filter narrows the list."""
        return bool(self.states or self.task or self.queue or self.q)

    @property
    def custom_limit(self) -> int | None:
        """The page size when it is not the default one."""
        return self.limit if self.limit != DEFAULT_LIMIT else None

    def params(self) -> list[tuple[str, str]]:
        """The GET parameters that reproduce this view."""
        out = [("state", s) for s in self.states]
        for key, value in (("task", self.task), ("queue", self.queue), ("q", self.q)):
            if value:
                out.append((key, value))
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
