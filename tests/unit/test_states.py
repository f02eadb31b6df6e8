from conveyor.core.states import TERMINAL_STATES, JobState, supersedes


def test_terminal_states_are_never_left() -> None:
    for old in TERMINAL_STATES:
        for new in JobState:
            assert not supersedes(new, 99, old, 1)


def test_later_phase_of_same_attempt_wins() -> None:
    assert supersedes(JobState.RUNNING, 1, JobState.QUEUED, 0)
    assert not supersedes(JobState.QUEUED, 0, JobState.RUNNING, 1)
    assert supersedes(JobState.RETRYING, 1, JobState.RUNNING, 1)


def test_next_attempt_supersedes_retrying() -> None:
    assert supersedes(JobState.RUNNING, 2, JobState.RETRYING, 1)
    assert not supersedes(JobState.RETRYING, 1, JobState.RUNNING, 2)


def test_terminal_event_always_applies_to_active_job() -> None:
    assert supersedes(JobState.SUCCEEDED, 1, JobState.RUNNING, 3)
    assert supersedes(JobState.CANCELLED, 0, JobState.QUEUED, 0)


def test_only_a_new_run_leaves_a_terminal_state_and_only_forward() -> None:
    assert supersedes(JobState.RUNNING, 2, JobState.SUCCEEDED, 1, rerun=True)
    assert not supersedes(JobState.RUNNING, 1, JobState.SUCCEEDED, 1, rerun=True)
    assert not supersedes(JobState.RUNNING, 2, JobState.SUCCEEDED, 1)
