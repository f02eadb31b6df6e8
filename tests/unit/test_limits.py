import pytest

from conveyor.core.limits import LimitSpec, parse_rate
from conveyor.errors import ConfigurationError


@pytest.mark.parametrize(
    ("text", "per_second"), [("10/s", 10), ("120/m", 2), ("3600/h", 1), ("0.5/s", 0.5)]
)
def test_parse_rate(text: str, per_second: float) -> None:
    assert parse_rate(text) == per_second


@pytest.mark.parametrize("text", ["10", "0/s", "-1/s", "ten/s", "5/day", ""])
def test_bad_rates_are_refused_clearly(text: str) -> None:
    with pytest.raises(ConfigurationError, match="N/s, N/m or N/h"):
        parse_rate(text)


def test_key_value_reads_positional_or_keyword_argument() -> None:
    def charge(customer: str, amount: int) -> None: ...

    spec = LimitSpec.from_options({"rate": "1/s", "key": "customer", "concurrency": 2})
    assert spec is not None
    assert spec.key_value(charge, ("acme", 5), {}) == "acme"
    assert spec.key_value(charge, (), {"customer": "globex", "amount": 1}) == "globex"
    assert spec.key_value(charge, (1, 2, 3), {}) == "?"


def test_no_options_means_no_limits() -> None:
    assert LimitSpec.from_options({}) is None
    with pytest.raises(ConfigurationError):
        LimitSpec.from_options({"concurrency": 0})
