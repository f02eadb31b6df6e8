import pytest

from conveyor.core.retry import RetryPolicy
from conveyor.errors import ConfigurationError


def test_policy_maps_onto_celery_options() -> None:
    policy = RetryPolicy(max_attempts=4, backoff=2, backoff_max=30, retry_on=(IOError,))
    options = policy.task_options()
    assert options["autoretry_for"] == (IOError,)
    assert options["max_retries"] == 3 and options["max_attempts"] == 4
    assert options["retry_backoff"] == 2 and options["retry_backoff_max"] == 30
    assert options["retry_jitter"] is True


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(backoff=2, backoff_max=10)
    assert [policy.delay_bound(n) for n in range(1, 6)] == [2, 4, 8, 10, 10]


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"backoff": 0}, {"backoff": 10, "backoff_max": 5}]
)
def test_nonsense_policies_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(**kwargs)
