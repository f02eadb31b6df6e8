"""Property-based fuzzing of every documented operation: no input gets a 5xx, and every
answer is one the OpenAPI document promises (its status code, content type and body schema)."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.broker

EXAMPLES_PER_OPERATION = 30
PAGE_EXAMPLES = 10
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
FACTORY_BATCHES = "/api/v1/factory/batches"


def tame(case: Any) -> None:
    """A fuzzed batch that is valid is really made by the worker: keep it to 1,000 products,
    not up to ten million (the other fields stay fuzzed)."""
    if (
        case.method.upper() == "POST"
        and case.path == FACTORY_BATCHES
        and isinstance(case.body, dict)
    ):
        count = case.body.get("product_count")
        if isinstance(count, int) and not isinstance(count, bool) and count > 1000:
            case.body["product_count"] = 1000


def is_api(path: str) -> bool:
    return path.startswith("/api/") or path in ("/healthz", "/readyz", "/metrics")


def fuzz_operations(client: Any, wanted: Any, examples: int) -> int:
    """Fuzz every operation whose path ``wanted`` accepts; all their failures in one report."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if wanted(op.path)]
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Any) -> None:
            tame(case)
            case.call_and_validate(checks=CHECKS)

        try:
            fuzz()
        except BaseExceptionGroup as exc:  # report every operation's failure, not the first
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}"[:2000])
    # Fuzzing may have paused a real queue by chance; later tests need them all running.
    for queue in client.get("/api/v1/queues").json():
        client.post(f"/api/v1/queues/{queue['name']}/resume")
    assert not failures, "\n\n".join(failures)
    return len(operations)


def test_every_api_answer_is_documented_and_none_is_5xx(client: Any) -> None:
    assert fuzz_operations(client, is_api, EXAMPLES_PER_OPERATION) >= 15


def test_every_page_answer_is_documented_and_none_is_5xx(client: Any) -> None:
    # Fewer examples: a page's inputs are a few filters and form fields.
    assert fuzz_operations(client, lambda path: not is_api(path), PAGE_EXAMPLES) >= 10
