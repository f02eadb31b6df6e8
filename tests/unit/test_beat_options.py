"""``conveyor beat --submitters``: ``auto`` (the default), 0 or a fixed number up to 16; anything
else is refused before the scheduler starts."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from conveyor.cli.main import _submitters, cli


@pytest.mark.parametrize("value", ["auto", "0", "2", "16"])
def test_accepted(value: str) -> None:
    assert _submitters(value) == value


@pytest.mark.parametrize("value", ["17", "-1", "two", "", "Auto", "1.5"])
def test_refused(value: str) -> None:
    with pytest.raises(typer.BadParameter, match="not 'auto' or a whole number from 0 to 16"):
        _submitters(value)


def test_refused_on_the_command_line() -> None:
    result = CliRunner().invoke(cli, ["beat", "--submitters", "17"])
    assert result.exit_code == 2
    assert "'17' is not 'auto'" in result.output


@pytest.mark.parametrize("value", ["-1", "many", "1.5"])
def test_stage_threshold_refused_on_the_command_line(value: str) -> None:
    result = CliRunner().invoke(cli, ["beat", "--stage-threshold", value])
    assert result.exit_code == 2
    assert "--stage-threshold" in result.output
