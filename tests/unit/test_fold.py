from conveyor.core.states import JobState
from conveyor.ledger.fold import fold


def ev(k: str, ts: float, **kw: object) -> dict[str, object]:
    return {"k": k, "id": "j1", "ts": ts, "task": "t", **kw}


def test_events_out_of_order_fold_to_final_state() -> None:
    out = fold(
        [
            ev("running", 2.0, attempt=1, worker="w1", args=[1]),
            ev("queued", 1.0, args=[1], queue="high"),
            ev("succeeded", 3.0, attempt=1, result={"ok": True}),
        ]
    )
    row = out.jobs["j1"]
    assert row.state is JobState.SUCCEEDED
    assert row.info["queue"] == "high"
    assert row.started_at is not None and row.finished_at is not None
    assert row.result == {"ok": True} and row.has_result
    attempt = out.attempts[("j1", 1)]
    assert attempt.worker == "w1" and attempt.outcome == "succeeded"


def test_retry_then_second_attempt_records_both_attempts() -> None:
    out = fold(
        [
            ev("running", 1.0, attempt=1, worker="w1"),
            ev("retrying", 2.0, attempt=1, etype="IOError", emsg="flaky"),
            ev("running", 3.0, attempt=2, worker="w2"),
        ]
    )
    row = out.jobs["j1"]
    assert row.state is JobState.RUNNING and row.attempt == 2
    assert out.attempts[("j1", 1)].outcome == "retrying"
    assert out.attempts[("j1", 1)].error_type == "IOError"
    assert out.attempts[("j1", 2)].worker == "w2"


def test_progress_keeps_first_and_last_report() -> None:
    out = fold(
        [
            {"k": "progress", "id": "j1", "ts": 10.0, "current": 1, "total": 10},
            {"k": "progress", "id": "j1", "ts": 12.0, "current": 5, "total": 10, "step": "b"},
        ]
    )
    p = out.progress["j1"]
    assert (p.first_current, p.current, p.step) == (1.0, 5.0, "b")
    assert (p.at - p.first_at).total_seconds() == 2.0


def test_a_new_attempt_drops_progress_reported_before_it() -> None:
    # The worker died mid-run; the redelivery's rate must not count the first attempt's span.
    out = fold(
        [
            ev("running", 1.0, attempt=1),
            {"k": "progress", "id": "j1", "ts": 2.0, "current": 0, "total": 100},
            {"k": "progress", "id": "j1", "ts": 12.0, "current": 10, "total": 100},
            ev("running", 100.0, attempt=2),
            {"k": "progress", "id": "j1", "ts": 101.0, "current": 10, "total": 100},
            {"k": "progress", "id": "j1", "ts": 102.0, "current": 30, "total": 100},
        ]
    )
    p = out.progress["j1"]
    assert (p.first_current, p.current) == (10.0, 30.0)
    assert (p.at - p.first_at).total_seconds() == 1.0


def test_a_rerun_reopens_a_finished_job_in_the_same_batch() -> None:
    from conveyor.ledger.fold import fold

    events = [
        {"k": "running", "id": "j", "ts": 1, "attempt": 1},
        {"k": "succeeded", "id": "j", "ts": 2, "attempt": 1, "result": 3},
        {"k": "running", "id": "j", "ts": 3, "attempt": 2, "rerun": True},
        {"k": "succeeded", "id": "j", "ts": 4, "attempt": 2, "result": 7},
    ]
    out = fold(events)
    row = out.jobs["j"]
    assert (row.state.value, row.attempt, row.result) == ("succeeded", 2, 7)
    assert out.reruns == {"j": 2}
    assert sorted(out.attempts) == [("j", 1), ("j", 2)]
