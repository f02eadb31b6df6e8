"""Who may call the API: API keys, scopes, task/queue allowlists, and the production check.

Every ``/api/v1`` route declares what it needs as a dependency that carries a
:class:`Requirement` (``ReadJobs``, ``WriteJobs``, ``AdminDlq``, ``WholeRead``/``WholeWrite``, a
pack's :func:`require` with the tasks its data belongs to, or :data:`Public`), so OpenAPI shows
the security schemes, :func:`check_declared` refuses to start an app with a route that declares
nothing, and ``tests/integration/test_auth.py`` holds every route to its declaration.

A key limited to some tasks or queues (``--task``/``--queue``) is bound everywhere (see
docs/security.md, "Limited keys"): on the job routes it sees and acts on only the jobs whose task
and queue are both allowed (any other job is a 404, as if it did not exist, and lists leave it
out); a pack route needs every task it declares allowed (with that task's queue); a route about
the whole platform (workers, metrics, pausing a queue) needs a key without limits.

A request carries its key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Keys are
looked up by their visible key id and cached in-process for ``CONVEYOR_AUTH_CACHE_SECONDS``
(5 s by default), so a check costs a dictionary lookup and one SHA-256 rather than a PostgreSQL
round trip; the price is that a revoked key keeps working for up to that long in each API
process. ``last_used_at`` is written at most once a minute per key and process.

With ``CONVEYOR_AUTH=off`` (the default outside production) every dependency answers with
:data:`OPEN`, which holds every scope.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from conveyor.api.deps import Services
from conveyor.api.lookup_cache import LookupCache
from conveyor.config import MIN_SECRET_LENGTH, Settings, secret_key_problem
from conveyor.control import task_queue
from conveyor.errors import ConfigurationError, JobNotFound, NotAuthenticated, PermissionDenied
from conveyor.ledger import keys
from conveyor.ledger import repository as repo
from conveyor.ledger.keys import SCOPES, ApiKey, Scope

log = logging.getLogger(__name__)

TOUCH_INTERVAL = 60.0
"""Seconds between two writes of a key's ``last_used_at`` from one process."""
MAX_CACHED_KEYS = 10_000


def auth_required(settings: Settings) -> bool:
    """``CONVEYOR_AUTH`` if set; otherwise required in production and off elsewhere."""
    if settings.auth is not None:
        return settings.auth == "required"
    return settings.env == "production"


def check_deployment(settings: Settings) -> None:
    """Refuse setups that would expose the control plane: production without API keys, or
    key-protected APIs without a strong session secret."""
    production = settings.env == "production"
    required = auth_required(settings)
    if production and not required:
        raise ConfigurationError(
            "CONVEYOR_ENV=production with CONVEYOR_AUTH=off would leave the API and dashboard "
            "open to anyone who can reach them; unset CONVEYOR_AUTH (production requires API "
            "keys) and create keys with `conveyor keys create`"
        )
    if required:
        problem = secret_key_problem(settings.secret_key)
        if problem is not None:
            raise ConfigurationError(
                f"CONVEYOR_SECRET_KEY {problem}; it signs dashboard sessions when "
                f"CONVEYOR_AUTH=required. Set it to at least {MIN_SECRET_LENGTH} random "
                "characters, e.g. the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )


@dataclass(frozen=True)
class Principal:
    """Who is calling, and what they may do."""

    name: str
    key_id: str | None
    scopes: frozenset[str]
    allowed_tasks: frozenset[str] | None = None
    allowed_queues: frozenset[str] | None = None
    role: str | None = None
    """The dashboard user's role; None for an API key (and for :data:`OPEN`)."""

    @classmethod
    def of_user(cls, username: str, role: str, scopes: Iterable[str]) -> Principal:
        """A dashboard user: their role's scopes, on any task and queue."""
        return cls(name=username, key_id=None, scopes=frozenset(scopes), role=role)

    @property
    def logged_in(self) -> bool:
        """Whether someone in particular is behind this (a user or a key), not :data:`OPEN`."""
        return self.key_id is not None or self.role is not None

    @property
    def kind(self) -> str:
        """How messages name the principal: ``this key`` or ``this user (role viewer)``."""
        return f"this user (role {self.role})" if self.role is not None else "this key"

    @classmethod
    def of(cls, key: ApiKey) -> Principal:
        return cls(
            name=key.name,
            key_id=key.key_id,
            scopes=frozenset(key.scopes),
            allowed_tasks=frozenset(key.allowed_tasks) if key.allowed_tasks is not None else None,
            allowed_queues=(
                frozenset(key.allowed_queues) if key.allowed_queues is not None else None
            ),
        )

    @property
    def restricted(self) -> bool:
        """Whether the key is limited to some tasks or queues."""
        return self.allowed_tasks is not None or self.allowed_queues is not None

    def has(self, scope: Scope) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    def require(self, scope: Scope) -> None:
        if not self.has(scope):
            held = ", ".join(s for s in SCOPES if s in self.scopes) or "none"
            raise PermissionDenied(f"{self.kind} lacks the scope {scope!r} (it has: {held})")

    def check_job(self, task: str, queue: str, *, job_id: str | None = None) -> None:
        """Refuse a task or queue outside the key's allowlists."""
        subject = f"job {job_id} (task {task!r}, queue {queue!r})" if job_id else None
        if self.allowed_tasks is not None and task not in self.allowed_tasks:
            raise PermissionDenied(
                f"this key may not act on {subject or f'task {task!r}'}; it is limited to "
                f"tasks: {', '.join(sorted(self.allowed_tasks))}"
            )
        if self.allowed_queues is not None and queue not in self.allowed_queues:
            raise PermissionDenied(
                f"this key may not act on {subject or f'queue {queue!r}'}; it is limited to "
                f"queues: {', '.join(sorted(self.allowed_queues))}"
            )

    def sees(self, task: str, queue: str) -> bool:
        """Whether a job of ``task`` on ``queue`` is within the allowlists (always, unlimited)."""
        return (self.allowed_tasks is None or task in self.allowed_tasks) and (
            self.allowed_queues is None or queue in self.allowed_queues
        )

    def check_visible(self, row: Any, job_id: str) -> None:
        """A job outside the allowlists does not exist for this key: a 404, so its id, task
        and queue do not leak (a 403 would confirm the job is there)."""
        if not self.sees(row["task"], row["queue"]):
            raise JobNotFound(job_id)

    def limit(self, flt: repo.JobFilter) -> repo.JobFilter:
        """``flt`` narrowed to the jobs this key may see."""
        if not self.restricted:
            return flt
        return dataclasses.replace(
            flt,
            tasks_in=tuple(sorted(self.allowed_tasks)) if self.allowed_tasks is not None else None,
            queues_in=(
                tuple(sorted(self.allowed_queues)) if self.allowed_queues is not None else None
            ),
        )

    def require_whole(self) -> None:
        """Refuse a limited key on a route about every task (workers, metrics, queue pauses)."""
        if self.restricted:
            raise PermissionDenied(
                f"{self.kind} is limited to some tasks or queues, and this route concerns every "
                "task's jobs; use a key without --task/--queue limits"
            )

    def check_filter(self, task: str | None, queue: str | None) -> None:
        """A bulk action of a restricted key must select only tasks/queues it may act on."""
        if self.allowed_tasks is not None and task not in self.allowed_tasks:
            raise PermissionDenied(
                "this key is limited to tasks "
                f"{', '.join(sorted(self.allowed_tasks))}: give a `task` filter among them"
            )
        if self.allowed_queues is not None and queue not in self.allowed_queues:
            raise PermissionDenied(
                "this key is limited to queues "
                f"{', '.join(sorted(self.allowed_queues))}: give a `queue` filter among them"
            )


OPEN = Principal(name="anyone (CONVEYOR_AUTH=off)", key_id=None, scopes=frozenset(SCOPES))
"""The principal of every request while auth is off."""


class Authenticator:
    """Checks presented keys against the ledger, through a short-lived per-process cache."""

    def __init__(
        self,
        engine: Engine,
        *,
        required: bool,
        cache_seconds: float = 5.0,
        touch_interval: float = TOUCH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.required = required
        self.touch_interval = touch_interval
        self.clock = clock
        self._keys: LookupCache[str, ApiKey] = LookupCache(
            self._load, cache_seconds, clock=clock, max_entries=MAX_CACHED_KEYS
        )
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()

    # --- the key store, cached ---------------------------------------------------------------
    def _load(self, key_id: str) -> ApiKey | None:
        with self.engine.connect() as conn:
            return keys.get_key(conn, key_id)

    def cached(self, key_id: str) -> tuple[bool, ApiKey | None]:
        """(fresh, key) from the cache alone; ``fresh`` is False when it must be looked up."""
        return self._keys.cached(key_id)

    def lookup(self, key_id: str) -> ApiKey | None:
        """The key from the cache if fresh, else from PostgreSQL (unknown ids are cached too)."""
        return self._keys.get(key_id)

    def forget(self, key_id: str) -> None:
        """Drop a key from this process's cache (after revoking it here)."""
        self._keys.forget(key_id)

    # --- checks ------------------------------------------------------------------------------
    @staticmethod
    def principal_for(key: ApiKey | None, *, now: datetime | None = None) -> Principal:
        """The principal of a stored key, or NotAuthenticated if it cannot be used now."""
        if key is None:
            raise NotAuthenticated("invalid API key")
        status = key.status(now or datetime.now(UTC))
        if status == "revoked":
            raise NotAuthenticated(f"API key {key.prefix} was revoked; ask for a new one")
        if status == "expired":
            assert key.expires_at is not None
            raise NotAuthenticated(
                f"API key {key.prefix} expired at {key.expires_at.isoformat()}; ask for a new one"
            )
        return Principal.of(key)

    async def authenticate(self, presented: str) -> Principal:
        """The principal of a presented key; NotAuthenticated for anything unusable."""
        key_id = keys.key_id_of(presented.strip())
        if key_id is None:
            raise NotAuthenticated("malformed API key: expected cvk_<key id>_<secret>")
        fresh, key = self.cached(key_id)
        if not fresh:
            key = await run_in_threadpool(self.lookup, key_id)
        if key is None or not key.matches(presented.strip()):
            raise NotAuthenticated("invalid API key")
        principal = self.principal_for(key)
        if self._due_for_touch(key_id):
            await run_in_threadpool(self._touch, key_id)
        return principal

    def _due_for_touch(self, key_id: str) -> bool:
        now = self.clock()
        with self._lock:
            last = self._touched.get(key_id)
            if last is not None and now - last < self.touch_interval:
                return False
            if len(self._touched) >= MAX_CACHED_KEYS:
                self._touched.clear()
            self._touched[key_id] = now
            return True

    def _touch(self, key_id: str) -> None:
        try:
            with self.engine.begin() as conn:
                keys.mark_used(conn, key_id)
        except Exception as exc:  # bookkeeping must never fail the request it rides on
            log.warning("could not record use of API key %s: %s", key_id, exc)


def get_authenticator(request: Request) -> Authenticator:
    return request.app.state.authenticator  # type: ignore[no-any-return]


_bearer = HTTPBearer(
    auto_error=False, description="An API key: `Authorization: Bearer cvk_<key id>_<secret>`"
)
_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key: `X-API-Key: cvk_<id>_<secret>`"
)


@dataclass(frozen=True)
class Requirement:
    """What a route needs, carried by its auth dependency so it can be listed and tested.

    ``scope`` None: anyone, no key (:data:`Public`). ``tasks``: a pack route's tasks — the jobs
    it starts and the tasks its data belongs to; a limited key needs each of them (and its
    queue) allowed. ``whole``: the route concerns every task, so a limited key is refused.
    Job routes declare neither and filter job by job instead.
    """

    scope: Scope | None
    tasks: tuple[str, ...] = ()
    whole: bool = False

    def describe(self) -> str:
        if self.scope is None:
            return "public"
        if self.whole:
            return f"{self.scope}, no task/queue limits"
        if self.tasks:
            return f"{self.scope} and tasks {', '.join(self.tasks)}"
        return f"{self.scope}, jobs within the key's limits"


def _check_tasks(principal: Principal, request: Request, tasks: tuple[str, ...]) -> None:
    app = request.app.state.services.app
    for task in tasks:
        try:
            principal.check_job(task, task_queue(app, task))
        except PermissionDenied as exc:
            raise PermissionDenied(
                f"{exc} (this route reads or runs the jobs of tasks {', '.join(tasks)}; a limited "
                "key needs every one of them allowed)"
            ) from None


def require(scope: Scope, *tasks: str, whole: bool = False) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates the request, insists on ``scope`` and, for a key with
    task/queue limits, on the :class:`Requirement` made of ``tasks`` and ``whole``."""
    requirement = Requirement(scope, tuple(tasks), whole)

    async def dependency(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        api_key: Annotated[str | None, Depends(_api_key_header)],
    ) -> Principal:
        authenticator = get_authenticator(request)
        if not authenticator.required:
            return OPEN
        presented = bearer.credentials if bearer is not None else api_key
        if not presented:
            raise NotAuthenticated(
                "this endpoint needs an API key: send `Authorization: Bearer <key>` or "
                "`X-API-Key: <key>` (an operator creates one with `conveyor keys create`)"
            )
        principal = await authenticator.authenticate(presented)
        principal.require(scope)
        if principal.restricted:
            if whole:
                principal.require_whole()
            _check_tasks(principal, request, requirement.tasks)
        return principal

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    dependency.requirement = requirement  # type: ignore[attr-defined]
    return dependency


def public() -> None:
    """Declares a route open to anyone, without a key (see :data:`Public`)."""


public.requirement = Requirement(None)  # type: ignore[attr-defined]
Public = Depends(public)
"""``dependencies=[Public]``: the route is meant to be open (factory's token verification)."""

ReadJobs = Annotated[Principal, Depends(require("jobs:read"))]
"""Jobs, results, events, tasks, queues: a limited key sees only its jobs."""
WriteJobs = Annotated[Principal, Depends(require("jobs:write"))]
"""Submit, cancel, retry."""
AdminDlq = Annotated[Principal, Depends(require("dlq:admin"))]
"""Dead letters: list, replay, purge."""
WholeRead = Annotated[Principal, Depends(require("jobs:read", whole=True))]
"""Workers and metrics: about every task, so not for a limited key."""
WholeWrite = Annotated[Principal, Depends(require("jobs:write", whole=True))]
"""Pausing and resuming a queue: it holds every task's jobs, so not for a limited key."""


def requirements_of(route: Any) -> list[Requirement]:
    """The requirements a route's dependencies declare (empty: it declares none)."""
    found: list[Requirement] = []

    def walk(dependant: Any) -> Iterator[Any]:
        for dep in dependant.dependencies:
            yield dep.call
            yield from walk(dep)

    dependant = getattr(route, "dependant", None)
    if dependant is not None:
        for call in walk(dependant):
            req = getattr(call, "requirement", None)
            if isinstance(req, Requirement) and req not in found:
                found.append(req)
    return found


def every_route(app: FastAPI) -> Iterator[Any]:
    """Every route the app serves, routers included (recent FastAPI keeps included routers as
    one entry each in ``app.routes``)."""
    from fastapi.routing import iter_route_contexts

    return iter(iter_route_contexts(app.routes))


def pack_tasks(router: Any) -> list[str]:
    """Every task a pack's API routes declare, in order: what a limited key needs (as
    ``--task``) to use all of that pack's API (``conveyor keys create --pack``)."""
    from fastapi.routing import iter_route_contexts

    tasks: list[str] = []
    for route in iter_route_contexts(router.routes):
        for req in requirements_of(route):
            tasks.extend(t for t in req.tasks if t not in tasks)
    return tasks


def check_declared(app: FastAPI, prefix: str = "/api/v1") -> None:
    """Refuse to serve an API route under ``prefix`` that declares no :class:`Requirement`:
    a pack route added without one would otherwise be open to every key, limited or not."""
    for route in every_route(app):
        path = route.path or ""
        if path.startswith(prefix) and not requirements_of(route):
            raise ConfigurationError(
                f"the API route {path} declares no requirement: give it ReadJobs/WriteJobs or, "
                "in a pack, conveyor.packs.kit.require(scope, *tasks), or dependencies=[Public]"
            )


def authorize_job(principal: Principal, services: Services, job_id: str) -> None:
    """For a key limited to some tasks/queues, a job outside them is a 404 like an unknown
    one. Costs a ledger read only for limited keys."""
    if not principal.restricted:
        return
    with services.engine.connect() as conn:
        row = repo.get_job(conn, job_id)
    principal.check_visible(row, job_id)


def authorize_submit(
    principal: Principal, services: Services, task: str, queue: str | None
) -> None:
    """For a key limited to some tasks/queues, refuse a submission outside them."""
    if not principal.restricted:
        return
    principal.check_job(task, queue or task_queue(services.app, task))
