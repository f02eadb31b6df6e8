"""Starting an assessment while the broker is down: a 503 saying so, and nothing is started —
the assessment stays `created`, no job and no analyzer row exist — so the same start succeeds
once the broker is back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conveyor.testing.services import wait_for

BASE = "/api/v1/assess"


@pytest.fixture(scope="module")
def stack(open_stack: Callable[..., Any]) -> Iterator[Any]:
    with open_stack("assess-broker", own_broker=True) as s:
        s.start_worker("w", "-c", "2")
        yield s


def test_start_with_the_broker_down_is_503_and_starts_nothing(stack: Any) -> None:
    body = {"example": "startup", "analyzers": ["cto"]}
    r = stack.http.post(f"{BASE}/examples/startup/assessments", json=body)
    assert r.status_code == 201, r.text
    assessment_id = r.json()["id"]
    assert stack.broker is not None
    stack.broker.stop()
    try:
        r = stack.http.post(f"{BASE}/assessments/{assessment_id}/start")
        assert r.status_code == 503, r.text
        assert "nothing was started" in r.json()["detail"]
        after = stack.http.get(f"{BASE}/assessments/{assessment_id}").json()
        assert after["status"] == "created" and after["workflow_id"] is None
        rows = stack.sql(
            "SELECT count(*) FROM assess_results WHERE assessment_id = :id", id=assessment_id
        )
        assert rows[0][0] == 0
    finally:
        stack.broker.start()
    r = stack.http.post(f"{BASE}/assessments/{assessment_id}/start")
    assert r.status_code == 202, r.text

    def ended() -> dict[str, Any] | None:
        s = stack.http.get(f"{BASE}/assessments/{assessment_id}").json()
        return s if s["status"] not in ("created", "running") else None

    done = wait_for(ended, timeout=120, message="the assessment to end")
    assert done["status"] == "completed", done
    assert done["run"] == 1
