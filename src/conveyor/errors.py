"""Conveyor's exception tree.

ConveyorError                 root of everything Conveyor raises on purpose
├── ConfigurationError        settings that cannot work (bad URL, unsafe production setup)
├── EmbeddedServiceError      an embedded PostgreSQL or Redis failed to start or stop
├── LedgerError               PostgreSQL could not be read or written
│   ├── LedgerUnavailable     PostgreSQL is unreachable right now (API answers 503)
│   └── LedgerNotMigrated     the database lacks the ledger's schema: run `conveyor migrate`
├── BrokerUnavailable         the broker is unreachable right now
├── SubmitError               a submission was refused; nothing was enqueued
│   ├── UnknownTask           no task of that name is registered
│   ├── InvalidArguments      the arguments do not fit the task's signature
│   ├── InvalidSubmission     an option is refused: queue, priority, delay, Idempotency-Key
│   ├── PayloadTooLarge       the encoded payload exceeds the cap
│   └── IdempotencyConflict   the key was used before with a different payload
├── JobNotFound               no job with that id is in the ledger
├── WorkflowNotFound          no workflow with that id is in the ledger
├── QueueNotFound             no queue of that name is known to the app or the settings
├── InvalidTransition         the job's state does not allow the action
├── JobCancelled              raised inside a running task whose cancel was requested
├── AuthError                 a request's credentials were refused
│   ├── NotAuthenticated      no API key, or one that is malformed, unknown, revoked or expired
│   └── PermissionDenied      the key lacks a scope, or the job is outside its allowlists
├── ApiKeyError               an API key cannot be created or changed as asked
│   ├── UnknownScope          a scope name Conveyor does not know
│   └── ApiKeyNotFound        no API key with that id
├── EgressError               an outgoing HTTP request (webhook, anchor, provider) did not go well
│   ├── EgressRefused         the guard refused the destination; nothing was sent
│   └── EgressFailed          sent or tried, but no usable answer (connect error, timeout, size)
├── UserError                 a dashboard user cannot be created or changed as asked
│   ├── UnknownRole           a role name Conveyor does not know
│   ├── WeakPassword          a password too short (or too long) to accept
│   ├── UserExists            the username is taken (usernames ignore case)
│   └── UserNotFound          no user with that name
├── PackError                 a pack refused a request (packs raise these, the API maps them)
│   ├── InputRejected         the input cannot be used as sent (422): a file that is not a CSV
│   ├── ResourceNotFound      no such product, import, webhook... (404)
│   └── ResourceConflict      the change collides with what exists, e.g. a duplicate SKU (409)
└── ScheduleError             a schedule cannot be created, changed or found as asked
    ├── InvalidSchedule       a field is refused: cron (field named), timezone, interval... (422)
    ├── ScheduleNotFound      no schedule with that id or name (404)
    └── ScheduleExists        the name is taken (409)
"""

from __future__ import annotations

from typing import Any


class ConveyorError(Exception):
    """Root of every error Conveyor raises on purpose."""


class ConfigurationError(ConveyorError):
    pass


class EmbeddedServiceError(ConveyorError):
    pass


class LedgerError(ConveyorError):
    pass


class LedgerUnavailable(LedgerError):
    pass


class LedgerNotMigrated(LedgerError):
    pass


class BrokerUnavailable(ConveyorError):
    pass


class SubmitError(ConveyorError):
    pass


class UnknownTask(SubmitError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown task {name!r}: it is not registered with the Celery app")
        self.name = name


class InvalidArguments(SubmitError):
    def __init__(self, task: str, problems: list[dict[str, Any]]) -> None:
        detail = "; ".join(
            f"{'.'.join(map(str, p['loc'])) or 'arguments'}: {p['msg']}" for p in problems
        )
        super().__init__(f"arguments do not match task {task!r}: {detail}")
        self.task = task
        self.problems = problems


class InvalidSubmission(SubmitError):
    """A submission's option (not its arguments) is refused."""

    def __init__(self, field: str, msg: str) -> None:
        super().__init__(f"{field}: {msg}")
        self.problems: list[dict[str, Any]] = [{"loc": (field,), "msg": msg}]


class PayloadTooLarge(SubmitError):
    pass


class IdempotencyConflict(SubmitError):
    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was already used for job {job_id} with a different payload; "
            "use a new key for a different submission"
        )
        self.key = key
        self.job_id = job_id


class JobNotFound(ConveyorError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r} in the ledger")
        self.job_id = job_id


class WorkflowNotFound(ConveyorError):
    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"no workflow with id {workflow_id!r} in the ledger")
        self.workflow_id = workflow_id


class QueueNotFound(ConveyorError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"no queue named {name!r}; known queues: {', '.join(known)}")


class InvalidTransition(ConveyorError):
    pass


class JobCancelled(ConveyorError):
    """Raised inside a task at a progress()/check point once its cancel was requested."""


class AuthError(ConveyorError):
    """A request's credentials were refused."""


class NotAuthenticated(AuthError):
    """No API key or session, or one that is malformed, unknown, revoked or expired (401)."""


class LoginThrottled(NotAuthenticated):
    """Too many failed logins for a username from this address (or, past the per-user
    ceiling, from anywhere): refused before the password is checked (429)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermissionDenied(AuthError):
    """The key is valid but may not do this: a missing scope or a task/queue allowlist (403)."""


class ApiKeyError(ConveyorError):
    pass


class UnknownScope(ApiKeyError):
    def __init__(self, scope: str, known: tuple[str, ...]) -> None:
        super().__init__(f"unknown scope {scope!r}; known scopes: {', '.join(known)}")
        self.scope = scope


class ApiKeyNotFound(ApiKeyError):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"no API key with id {key_id!r}; `conveyor keys list` shows them")
        self.key_id = key_id


class EgressError(ConveyorError):
    """An outgoing HTTP request did not go well (see :mod:`conveyor.egress`)."""


class EgressRefused(EgressError):
    """The destination is not one Conveyor may send to (a private, loopback, link-local,
    metadata... address, a URL with credentials); nothing was sent. The message says why."""


class EgressFailed(EgressError):
    """The request was tried but brought no usable answer: the connection failed, it timed
    out, or the answer was larger than allowed. The message never carries the answer's body."""


class UserError(ConveyorError):
    pass


class UnknownRole(UserError):
    def __init__(self, role: str, known: tuple[str, ...]) -> None:
        super().__init__(f"unknown role {role!r}; known roles: {', '.join(known)}")
        self.role = role


class WeakPassword(UserError):
    pass


class UserExists(UserError):
    def __init__(self, username: str) -> None:
        super().__init__(
            f"a user named {username!r} already exists (usernames ignore case); "
            "`conveyor users list` shows them"
        )
        self.username = username


class UserNotFound(UserError):
    def __init__(self, username: str) -> None:
        super().__init__(f"no user named {username!r}; `conveyor users list` shows them")
        self.username = username


class PackError(ConveyorError):
    """A pack refused a request; the subclass says how (the API maps each to a status)."""


class InputRejected(PackError):
    """The input cannot be used as sent (422); the message says what is wrong with it."""


class ResourceNotFound(PackError):
    """No such resource (404)."""


class ResourceConflict(PackError):
    """The change collides with what exists (409), e.g. a duplicate SKU."""


class ScheduleError(ConveyorError):
    """A schedule cannot be created, changed or found as asked; the subclass says how."""


class InvalidSchedule(ScheduleError):
    """A schedule's field is refused (422): bad cron (the field named), unknown timezone, an
    interval of zero, an end before the start..."""

    def __init__(self, field: str, msg: str) -> None:
        super().__init__(f"{field}: {msg}")
        self.field = field
        self.problems: list[dict[str, Any]] = [{"loc": (field,), "msg": msg}]


class ScheduleNotFound(ScheduleError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"no schedule with id or name {ref!r}")
        self.ref = ref


class ScheduleExists(ScheduleError):
    def __init__(self, name: str) -> None:
        super().__init__(f"a schedule named {name!r} exists already; pick another name")
        self.name = name
