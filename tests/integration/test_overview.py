"""The overview page and the pre-aggregated counts behind it: exact under every kind of write."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine, text

from conveyor.ledger import stats
from conveyor.testing.client import submit, until_state
from conveyor.testing.services import wait_for


def _snapshot(settings: Any) -> tuple[dict[str, int], dict[str, int]]:
    """Counts from the aggregate and from a full scan, in one snapshot."""
    engine = create_engine(settings.database_url)
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        aggregated = stats.counts_by_state(conn)
        scanned = dict.fromkeys(aggregated, 0)
        scanned.update(
            {
                s: int(n)
                for s, n in conn.execute(
                    text("SELECT state, count(*) FROM conveyor_jobs GROUP BY state")
                )
            }
        )
    engine.dispose()
    return aggregated, scanned


def _task_totals(settings: Any, task: str, *, hourly: bool = False) -> dict[str, float]:
    engine = create_engine(settings.database_url)
    since = datetime.now(UTC) - timedelta(hours=1)
    with engine.connect() as conn:
        figures = stats.totals(conn, since, hourly=hourly).get(task, {})
    engine.dispose()
    return figures


def test_counts_follow_jobs_through_workers_and_bulk_writes(client: Any, settings: Any) -> None:
    before = _task_totals(settings, "testing.doomed")
    ok = [submit(client, "testing.doomed", n)["id"] for n in range(5)]
    bad = submit(client, "testing.doomed", -1)["id"]
    for job_id in ok:
        until_state(client, job_id, "succeeded")
    until_state(client, bad, "dead")

    def grew() -> dict[str, float] | None:
        after = _task_totals(settings, "testing.doomed")
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in stats.EVENTS}
        wanted = {"submitted": 6, "succeeded": 5, "dead": 1, "retried": 1}
        return delta if all(delta[k] == n for k, n in wanted.items()) else None

    delta = wait_for(grew, timeout=10, message="the per-minute stats to count the jobs")
    assert delta["failed"] == 0 and delta["cancelled"] == 0
    aggregated, scanned = _snapshot(settings)
    assert aggregated == scanned

    # Many rows per statement: a batch insert, a bulk cancel, a bulk delete.
    engine = create_engine(settings.database_url)
    marker = f"bulk-{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO conveyor_jobs (id, task, state, queue) "
                "SELECT gen_random_uuid(), :task, 'queued', 'nowhere' FROM generate_series(1, 3000)"
            ),
            {"task": marker},
        )
    assert _snapshot(settings)[0] == _snapshot(settings)[1]
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE conveyor_jobs SET state = 'cancelled', finished_at = now() WHERE task = :t"
            ),
            {"t": marker},
        )
        conn.execute(
            text("DELETE FROM conveyor_jobs WHERE task = :t AND random() < 0.5"), {"t": marker}
        )
    engine.dispose()
    aggregated, scanned = _snapshot(settings)
    assert aggregated == scanned
    assert _task_totals(settings, marker)["cancelled"] == 3000
    assert _task_totals(settings, marker, hourly=True)["cancelled"] == 3000


def test_overview_page_shows_counts_charts_and_failures(client: Any) -> None:
    message = f"<script>alert('{uuid.uuid4().hex[:6]}')</script>"
    job = submit(client, "demo.fail", message)
    until_state(client, job["id"], "failed", "dead")
    submit_ok = submit(client, "demo.add", 1, 2)
    until_state(client, submit_ok["id"], "succeeded")

    for span in ("1h", "24h", "7d"):
        r = client.get(f"/?range={span}")
        assert r.status_code == 200, r.text
        body = r.text
        assert 'aria-label="Finished jobs"' in body and 'aria-label="Failure rate"' in body
        assert "demo.add" in body and "demo.fail" in body
        assert re.search(r'data-count="succeeded">[1-9]', body)
    # The newest failure is listed, its message escaped.
    page = client.get("/").text
    assert job["id"][-12:] in page
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    # Bars carry their figures for hovering.
    assert re.search(r"<title>[^<]*\d+ succeeded", page)

    bad = client.get("/?range=forever")
    assert bad.status_code == 400 and "Unknown range" in bad.text


def test_statistics_older_than_the_retention_are_pruned(settings: Any) -> None:
    engine = create_engine(settings.database_url)
    now = datetime.now(UTC)
    insert = (
        "INSERT INTO {table} ({unit}, event, task, queue, shard, n, run_seconds)"
        " VALUES (date_trunc('{unit}', :at), 'submitted', :task, 'q', 99, 1, 0)"
    )
    with engine.begin() as conn:
        conn.execute(
            text(insert.format(table="conveyor_job_stats", unit="minute")),
            [
                {"at": now - stats.MINUTE_RETENTION - timedelta(hours=1), "task": "old"},
                {"at": now - timedelta(days=1), "task": "recent"},
            ],
        )
        conn.execute(
            text(insert.format(table="conveyor_job_stats_hourly", unit="hour")),
            [
                {"at": now - stats.RETENTION - timedelta(hours=2), "task": "old"},
                {"at": now - timedelta(days=6), "task": "recent"},
            ],
        )
        assert stats.prune(conn, now) >= 2
        for table in ("conveyor_job_stats", "conveyor_job_stats_hourly"):
            left = conn.execute(text(f"SELECT task FROM {table} WHERE shard = 99")).scalars()
            assert list(left) == ["recent"], table
    engine.dispose()
