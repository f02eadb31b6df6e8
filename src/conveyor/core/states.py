"""Job states and the order in which the ledger accepts them.

Events about a job arrive from several processes (the submitter, the worker, the API's cancel)
through an unordered path, so the ledger needs a rule that makes applying them commutative:
an event is applied only if its ``(attempt, rank)`` is greater than the job's current one, and
terminal states are left only by a new run: a new publish that reuses a finished job's id runs
again, as in Celery, as the job's next attempt (its ``running`` event is marked ``rerun``).
That rule lives here so the recorder and the tests share it.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DEAD = "dead"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def rank(self) -> int:
        return _RANK[self]


TERMINAL_STATES: frozenset[JobState] = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.DEAD}
)
ACTIVE_STATES: frozenset[JobState] = frozenset(set(JobState) - TERMINAL_STATES)

# Within one attempt: waiting < running < retrying (this attempt is over) < terminal.
_RANK: dict[JobState, int] = {
    JobState.SCHEDULED: 0,
    JobState.QUEUED: 1,
    JobState.RUNNING: 2,
    JobState.RETRYING: 3,
    JobState.SUCCEEDED: 4,
    JobState.FAILED: 4,
    JobState.CANCELLED: 4,
    JobState.DEAD: 4,
}


def supersedes(
    new: JobState, new_attempt: int, old: JobState, old_attempt: int, *, rerun: bool = False
) -> bool:
    """Whether an event ``new`` (of attempt ``new_attempt``) replaces the current state;
    ``rerun``: the event starts a new run of a finished job (a later attempt reopens it)."""
    if old.terminal:
        return rerun and new_attempt > old_attempt
    if new.terminal:
        return True
    return (new_attempt, new.rank) > (old_attempt, old.rank)
