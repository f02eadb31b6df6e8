"""The dashboard's submit form, derived from real task schemas."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.core.schema import TaskSignature
from conveyor.errors import InvalidArguments
from conveyor.web.task_form import form_fields, parse_form


def task(
    a: int,
    scale: float = 1.5,
    label: str = "x",
    loud: bool = False,
    tags: list[str] | None = None,
    note: str | None = None,
) -> None:
    """A task with one of every kind of parameter."""


def fields() -> Any:
    return {f.name: f for f in form_fields(TaskSignature("t.task", task).json_schema())}


def test_each_parameter_gets_the_right_input() -> None:
    f = fields()
    assert list(f) == ["a", "scale", "label", "loud", "tags", "note"]
    assert (f["a"].kind, f["a"].required) == ("number", True)
    assert (f["scale"].kind, f["scale"].initial) == ("number", "1.5")
    assert (f["label"].kind, f["label"].initial) == ("text", "x")
    assert f["loud"].kind == "checkbox"
    assert f["tags"].kind == "json"
    assert (f["note"].kind, f["note"].required) == ("text", False)  # Optional[str] stays text


def test_parse_values_and_report_problems_per_field() -> None:
    f = list(fields().values())
    kwargs, problems = parse_form(
        f, {"a": "3", "scale": "", "label": "<b>", "loud": "on", "tags": '["p", "q"]'}
    )
    assert problems == []
    assert kwargs == {"a": 3, "label": "<b>", "loud": True, "tags": ["p", "q"]}
    TaskSignature("t.task", task).validate([], kwargs)  # what the form gives, the task takes

    kwargs, problems = parse_form(f, {"a": "three", "tags": "[1,", "scale": "1e"})
    assert "a: 'three' is not a whole number" in problems
    assert any(p.startswith("tags: not valid JSON") for p in problems)
    assert "scale: '1e' is not a number" in problems
    _, problems = parse_form(f, {})
    assert problems == ["a: required"]


def test_what_the_form_accepts_is_what_the_task_gets() -> None:
    # The form converts each field by its declared type; the signature then checks strictly,
    # so a JSON field's inner values are not coerced either ("5" stays a string, refused).
    def weigh(weights: dict[str, int], factor: float = 1.0) -> None: ...

    signature = TaskSignature("t.weigh", weigh)
    f = form_fields(signature.json_schema())
    kwargs, problems = parse_form(f, {"weights": '{"a": 1}', "factor": "2"})
    assert problems == [] and kwargs == {"weights": {"a": 1}, "factor": 2.0}
    signature.validate([], kwargs)
    kwargs, problems = parse_form(f, {"weights": '{"a": "5"}'})
    assert problems == []
    with pytest.raises(InvalidArguments) as info:
        signature.validate([], kwargs)
    assert "weights.a: Input should be a valid integer" in str(info.value)
