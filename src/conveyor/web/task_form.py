"""A submit form generated from a task's argument schema, and the parsing of what comes back.

Plain functions over the JSON schema that ``GET /api/v1/tasks`` publishes: numbers, text and
booleans get inputs of their own; anything else (lists, objects, unions, untyped) is a JSON
text box. Parsing never guesses: a number that does not parse or JSON that is not JSON is
reported against its field, and the task's signature still has the last word on submit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_SIMPLE = {"integer": "number", "number": "number", "string": "text", "boolean": "checkbox"}


@dataclass(frozen=True)
class FormField:
    name: str
    kind: str  # "number", "text", "checkbox" or "json"
    json_type: str | None  # the schema's type when it is a simple one
    required: bool
    default: Any
    has_default: bool
    description: str | None

    @property
    def initial(self) -> str:
        """The input's initial text: the default, as the field shows it."""
        if not self.has_default or self.default is None:
            return ""
        if self.kind == "json" or not isinstance(self.default, str):
            return json.dumps(self.default)
        return str(self.default)


def _simple_type(spec: dict[str, Any]) -> str | None:
    kind = spec.get("type")
    if isinstance(kind, str) and kind in _SIMPLE:
        return str(kind)
    # Optional[X] shows as anyOf [X, null]: still a simple input, empty means null.
    options = [o.get("type") for o in spec.get("anyOf", []) if isinstance(o, dict)]
    simple = [o for o in options if o in _SIMPLE]
    if len(simple) == 1 and set(options) <= {simple[0], "null"}:
        return str(simple[0])
    return None


def form_fields(schema: dict[str, Any]) -> list[FormField]:
    """The form's fields, in the signature's order."""
    required = set(schema.get("required", []))
    fields = []
    for name, spec in (schema.get("properties") or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        json_type = _simple_type(spec)
        fields.append(
            FormField(
                name=name,
                kind=_SIMPLE[json_type] if json_type else "json",
                json_type=json_type,
                required=name in required,
                default=spec.get("default"),
                has_default="default" in spec,
                description=spec.get("description"),
            )
        )
    return fields


def parse_form(fields: list[FormField], form: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Keyword arguments from the submitted form, and what was wrong with it (per field).

    An empty optional field is left out, so the task's own default applies.
    """
    kwargs: dict[str, Any] = {}
    problems: list[str] = []
    for field in fields:
        if field.kind == "checkbox":
            kwargs[field.name] = form.get(field.name) in ("on", "true", "1")
            continue
        raw = (form.get(field.name) or "").strip()
        if not raw:
            if field.required:
                problems.append(f"{field.name}: required")
            continue
        try:
            kwargs[field.name] = _parse(field, raw)
        except ValueError as exc:
            problems.append(f"{field.name}: {exc}")
    return kwargs, problems


def _parse(field: FormField, raw: str) -> Any:
    if field.json_type == "integer":
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a whole number") from None
    if field.json_type == "number":
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a number") from None
    if field.json_type == "string":
        return raw
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
