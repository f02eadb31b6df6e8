"""The schedule form's reading (conveyor.web.schedule_form): arguments from the task's
signature, the chosen trigger only, wall times in the schedule's zone, refusals by field."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from conveyor.web.schedule_form import errors_by_field, read_schedule_form, wall_time
from conveyor.web.task_form import form_fields

SCHEMA = {
    "properties": {"x": {"type": "integer"}, "label": {"type": "string", "default": "a"}},
    "required": ["x"],
}
FIELDS = form_fields(SCHEMA)


def test_the_chosen_trigger_alone_is_passed_on_and_empty_fields_are_none() -> None:
    spec, errors = read_schedule_form(
        {"name": "n", "x": "3", "kind": "interval", "cron": "* * * * *", "every": "5m"}, FIELDS
    )
    assert errors == {}
    assert (spec["cron"], spec["every"], spec["at"]) == (None, "5m", None)
    assert spec["kwargs"] == {"x": 3} and spec["args"] == []
    # An edit clears what the form leaves empty.
    assert spec["jitter"] is None and spec["max_runs"] is None and spec["queue"] is None
    numeric, _ = read_schedule_form({"x": "1", "kind": "interval", "every": "90"}, FIELDS)
    assert numeric["every"] == 90.0


def test_wall_times_are_read_in_the_schedules_zone() -> None:
    spec, errors = read_schedule_form(
        {"x": "1", "kind": "at", "at": "2026-12-24T18:00", "timezone": "Europe/Berlin"}, FIELDS
    )
    assert errors == {}
    assert spec["at"] == datetime(2026, 12, 24, 18, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    offset = wall_time("2026-12-24T18:00+00:00", "Europe/Berlin")
    assert offset.utcoffset() is not None and offset.hour == 18
    with pytest.raises(ValueError, match="fix the timezone first"):
        wall_time("2026-12-24T18:00", "Mars/Olympus")


def test_each_problem_is_keyed_by_the_field_to_show_it_under() -> None:
    _, errors = read_schedule_form(
        {"x": "two", "kind": "cron", "cron": "", "max_runs": "many", "start_at": "soon"}, FIELDS
    )
    assert errors["x"] == "'two' is not a whole number"
    assert errors["cron"] == "required for a cron schedule"
    assert errors["max_runs"] == "'many' is not a whole number"
    assert "is not a time like" in errors["start_at"]
    _, unknown = read_schedule_form({"x": "1", "kind": "weekly"}, FIELDS)
    assert unknown["kind"].startswith("choose one of")


def test_refusals_from_the_service_land_on_the_field_they_name() -> None:
    problems = [
        {"loc": ["cron"], "msg": "the hour field '25' is not valid"},
        {"loc": ["kwargs", "x"], "msg": "Input should be a valid integer"},
        {"loc": ["x"], "msg": "required"},
        {"loc": ["trigger"], "msg": "give exactly one of cron, every or at"},
    ]
    assert errors_by_field(problems, ["cron", "x"]) == {
        "cron": "the hour field '25' is not valid",
        "x": "Input should be a valid integer; required",
        "": "give exactly one of cron, every or at",
    }


def test_more_positional_arguments_are_a_json_list() -> None:
    spec, errors = read_schedule_form(
        {"x": "1", "cron": "@daily", "positional_args": "[2, 3]"}, FIELDS
    )
    assert errors == {} and spec["args"] == [2, 3]
    _, errors = read_schedule_form({"x": "1", "positional_args": '{"a": 1}'}, FIELDS)
    assert errors["positional_args"] == "must be a JSON list, e.g. [1, 2]"
    _, errors = read_schedule_form({"x": "1", "positional_args": "[1,"}, FIELDS)
    assert errors["positional_args"].startswith("not valid JSON")
