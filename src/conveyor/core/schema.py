"""Argument schemas derived from a task function's typed signature.

The API validates a submission against the task's signature before anything is enqueued, and
publishes the same JSON schema on ``GET /tasks`` so clients (and the dashboard's submit form)
know what to send.

Validation is strict (pydantic's strict mode): the values must already be of the declared
types, because the task receives the submitted values themselves, not a coerced copy. ``"5"``
for an ``int`` or ``true`` for an ``int`` is refused rather than accepted and then failing in
the worker with a TypeError; an ``int`` for a ``float`` is fine (Python accepts it too).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from conveyor.errors import InvalidArguments

_SKIP_KINDS = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


class TaskSignature:
    """A task's parameters as a pydantic model, plus binding of positional args to names."""

    def __init__(self, name: str, fn: Callable[..., Any], *, bound: bool = False) -> None:
        self.name = name
        sig = inspect.signature(fn)
        params = list(sig.parameters.values())
        if bound and params:
            params = params[1:]  # `self` of a bind=True task
        self._signature = sig.replace(parameters=params)
        self.accepts_var_args = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
        self.accepts_var_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        try:
            hints = get_type_hints(fn)
        except Exception:  # unresolvable annotations: fall back to accepting any JSON value
            hints = {}
        fields: dict[str, Any] = {}
        for p in params:
            if p.kind in _SKIP_KINDS:
                continue
            annotation = hints.get(p.name, Any)
            default = ... if p.default is inspect.Parameter.empty else p.default
            fields[p.name] = (annotation, default)
        extra: Literal["allow", "forbid"] = "allow" if self.accepts_var_kwargs else "forbid"
        self.model: type[BaseModel] = create_model(
            f"{name.replace('.', '_')}_arguments",
            __config__=ConfigDict(extra=extra, arbitrary_types_allowed=True, strict=True),
            **fields,
        )

    def json_schema(self) -> dict[str, Any]:
        try:
            schema = self.model.model_json_schema()
        except Exception:  # a type pydantic cannot describe; the API still validates binding
            schema = {"type": "object"}
        schema["title"] = self.name
        return schema

    def validate(self, args: list[Any], kwargs: dict[str, Any], *, injected: int = 0) -> None:
        """Raise InvalidArguments if ``args``/``kwargs`` cannot call the task.

        ``injected``: that many leading positional arguments are only known at run time (a
        workflow step's dependencies' results, put before ``args``); that the task takes them
        is checked, not what they will be."""
        try:
            bound = self._signature.bind(*([None] * injected), *args, **kwargs)
        except TypeError as exc:
            raise InvalidArguments(self.name, [{"loc": (), "msg": str(exc)}]) from None
        values = {
            k: v
            for k, v in bound.arguments.items()
            if self._signature.parameters[k].kind not in _SKIP_KINDS
        }
        var_kwargs = next(
            (
                k
                for k, p in self._signature.parameters.items()
                if p.kind is inspect.Parameter.VAR_KEYWORD
            ),
            None,
        )
        if var_kwargs is not None and var_kwargs in bound.arguments:
            values.update(bound.arguments[var_kwargs])
        later = set(list(bound.arguments)[:injected])
        try:
            self.model.model_validate(values)
        except ValidationError as exc:
            problems = [
                {"loc": e["loc"], "msg": e["msg"]}
                for e in exc.errors()
                if not (e["loc"] and e["loc"][0] in later)
            ]
            if problems:
                raise InvalidArguments(self.name, problems) from None
