"""The factory pack through its REST API and a real worker: batches end to end with proofs
checked by this file's own RFC 9162 verifier, a failure injected at each step and retried
without duplicates, anchoring retried with backoff, concurrent batches, forged tokens, the
CSV export, bad input refused with nothing enqueued."""

from __future__ import annotations

import csv
import hashlib
import io
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, text

from conveyor.testing.forgery import altered_token
from conveyor.testing.services import wait_for

BASE = "/api/v1/factory"


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def rfc9162_verify(token: str, proof: dict[str, Any]) -> bool:
    """RFC 9162 §2.1.3.2, written from the RFC here rather than imported from the pack."""
    r = sha(b"\x00" + token.encode())
    if r.hex() != proof["leaf_hash"] or proof["leaf_index"] >= proof["tree_size"]:
        return False
    fn, sn = proof["leaf_index"], proof["tree_size"] - 1
    for p in map(bytes.fromhex, proof["audit_path"]):
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = sha(b"\x01" + p + r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = sha(b"\x01" + r + p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r.hex() == proof["root"]


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 Merkle Tree Hash, recursively."""
    if not leaves:
        return sha(b"")
    if len(leaves) == 1:
        return sha(b"\x00" + leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return sha(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def create(client: Any, count: int, name: str = "Widget", **extra: Any) -> dict[str, Any]:
    body = {"product_count": count, "product_name": name, "category": "tools", **extra}
    r = client.post(f"{BASE}/batches", json=body)
    assert r.status_code == 202, r.text
    out: dict[str, Any] = r.json()
    assert out["batch_id"] and out["job_id"]
    return out


def until(client: Any, batch_id: str, *statuses: str, timeout: float = 90) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"{BASE}/batches/{batch_id}").json()
        return body if body["status"] in statuses else None

    return wait_for(check, timeout=timeout, message=f"batch {batch_id} to reach {statuses}")


def all_tokens(client: Any, batch_id: str) -> list[str]:
    r = client.get(f"{BASE}/batches/{batch_id}/products.csv")
    assert r.status_code == 200
    return [row["token"] for row in csv.DictReader(io.StringIO(r.text))]


def product_rows(ledger: Engine, batch_id: str) -> tuple[int, int]:
    with ledger.connect() as conn:
        row = conn.execute(
            text(
                "SELECT count(*), count(DISTINCT serial) FROM factory_products WHERE batch_id = :b"
            ),
            {"b": batch_id},
        ).one()
    return int(row[0]), int(row[1])


def chunk_rows(ledger: Engine, batch_id: str, first: int, last: int) -> int:
    with ledger.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM factory_products WHERE batch_id = :b"
                    " AND serial BETWEEN :f AND :l"
                ),
                {"b": batch_id, "f": first, "l": last},
            ).scalar_one()
        )


def job_count(ledger: Engine) -> int:
    with ledger.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM conveyor_jobs")).scalar_one())


def test_a_batch_end_to_end(client: Any, ledger: Engine) -> None:
    made = create(client, 1000, factory_id="plant-7", metadata={"line": 3})
    assert made["status"] in ("pending", "processing", "anchoring", "completed")
    done = until(client, made["batch_id"], "completed")
    assert done["products_written"] == 1000 and done["job_id"] == made["job_id"]
    assert done["anchor"]["backend"] == "local" and done["anchor"]["ref"]
    assert [s["state"] for s in done["timeline"]] == ["done", "done", "done"]
    assert done["factory_id"] == "plant-7" and done["metadata"] == {"line": 3}
    tokens = all_tokens(client, made["batch_id"])
    assert len(tokens) == 1000
    assert mth([t.encode() for t in tokens]).hex() == done["merkle_root"]
    for token in (tokens[0], tokens[511], tokens[-1]):
        v = client.get(f"{BASE}/verify/{token}").json()
        assert v["authentic"] is True, v
        assert v["batch"]["id"] == made["batch_id"]
        assert v["proof"]["root"] == done["merkle_root"]
        assert rfc9162_verify(token, v["proof"])
        assert v["anchor"]["ref"] == done["anchor"]["ref"]
    job_url = f"/api/v1/jobs/{made['job_id']}"
    job = wait_for(
        lambda: (j := client.get(job_url).json())["state"] == "succeeded" and j, timeout=30
    )
    assert job["task"] == "factory.process_batch"
    # Paged products agree with the CSV.
    page = client.get(f"{BASE}/batches/{made['batch_id']}/products", params={"limit": 3}).json()
    assert [p["token"] for p in page["items"]] == tokens[:3] and page["next_after"] == 3
    assert page["items"][0]["verification_url"].endswith(tokens[0])
    # A finished batch is not retried.
    assert client.post(f"{BASE}/batches/{made['batch_id']}/retry").status_code == 409


def test_csv_has_every_row_in_order(client: Any) -> None:
    made = create(client, 70_000, name='Tab\tand "quotes", comma')
    until(client, made["batch_id"], "completed")
    r = client.get(f"{BASE}/batches/{made['batch_id']}/products.csv")
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 70_000
    assert [int(row["serial"]) for row in rows[:3]] == [1, 2, 3]
    assert int(rows[-1]["serial"]) == 70_000
    assert rows[0]["name"] == 'Tab\tand "quotes", comma' and rows[0]["category"] == "tools"
    assert rows[5]["verification_url"].endswith(rows[5]["token"])
    assert len({row["token"] for row in rows}) == 70_000


def test_forged_and_garbage_tokens_are_not_authentic(client: Any) -> None:
    made = create(client, 10)
    until(client, made["batch_id"], "completed")
    token = all_tokens(client, made["batch_id"])[0]
    flipped = altered_token(token)
    for bad in (flipped, "nope", "x" * 5000, "dev.", "unknownkid." + token.split(".", 1)[1],
                "%00%ff", "dev...", "dev.a%2Fb", "dev.a/b", "a/b/c"):  # fmt: skip
        r = client.get(f"{BASE}/verify/{bad}")
        assert r.status_code == 200, (bad, r.text)
        assert r.json()["authentic"] is False and r.json()["reason"]


def test_bad_input_is_422_and_enqueues_nothing(client: Any, ledger: Engine) -> None:
    before = job_count(ledger)
    bad_bodies = [
        {"product_count": 0, "product_name": "W", "category": "c"},
        {"product_count": 10_000_001, "product_name": "W", "category": "c"},
        {"product_count": "many", "product_name": "W", "category": "c"},
        {"product_count": 5, "product_name": "", "category": "c"},
        {"product_count": 5, "category": "c"},
        {"product_count": 5, "product_name": "W", "category": "c", "metadata": [1]},
        {"product_count": 5, "product_name": "W", "category": "c", "metadata": {"x": "y" * 20_000}},
        {"product_count": 5, "product_name": "W", "category": "c", "colour": "red"},
        # PostgreSQL cannot store U+0000 (found by the schemathesis suite).
        {"product_count": 5, "product_name": "\x00", "category": "c"},
        {"product_count": 5, "product_name": "W", "category": "c", "metadata": {"\x00": None}},
    ]
    for body in bad_bodies:
        r = client.post(f"{BASE}/batches", json=body)
        assert r.status_code == 422, (body, r.text)
    assert client.get(f"{BASE}/batches/not-a-uuid").status_code == 422
    assert client.get(f"{BASE}/batches/{uuid.uuid4()}").status_code == 404
    assert client.post(f"{BASE}/batches/{uuid.uuid4()}/retry").status_code == 404
    assert client.get(f"{BASE}/batches/{uuid.uuid4()}/products.csv").status_code == 404
    assert client.get(f"{BASE}/batches", params={"status": "nope"}).status_code == 422
    assert client.get(f"{BASE}/batches", params={"cursor": "garbage!"}).status_code == 422
    assert client.get(f"{BASE}/batches", params={"factory_id": "\x00"}).status_code == 422
    assert job_count(ledger) == before


def test_concurrent_batches_and_listing(client: Any, ledger: Engine) -> None:
    factory = f"plant-{uuid.uuid4().hex[:6]}"
    made = [create(client, 3000 + i, factory_id=factory) for i in range(4)]
    for m in made:
        until(client, m["batch_id"], "completed")
    for i, m in enumerate(made):
        assert product_rows(ledger, m["batch_id"]) == (3000 + i, 3000 + i)
    # Keyset pages, newest first, filtered by factory.
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"factory_id": factory, "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get(f"{BASE}/batches", params=params).json()
        seen += [b["id"] for b in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [m["batch_id"] for m in reversed(made)]
    stats = client.get(f"{BASE}/batches/stats").json()
    assert stats["by_status"]["completed"]["batches"] >= 4
    completed = client.get(f"{BASE}/batches", params={"status": "completed", "factory_id": factory})
    assert len(completed.json()["items"]) == 4


@contextmanager
def failing(ledger: Engine, table: str, condition: str, name: str) -> Iterator[None]:
    """A trigger that makes PostgreSQL refuse writes to ``table`` for batches named ``name``:
    a real failure inside the step, for this test's batches only."""
    fn = f"factory_test_fail_{uuid.uuid4().hex[:8]}"
    with ledger.begin() as conn:
        conn.execute(
            text(
                f"CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                f" IF {condition} THEN RAISE EXCEPTION 'injected failure'; END IF;"
                " RETURN NEW; END $$"
            )
        )
        conn.execute(
            text(f"CREATE TRIGGER {fn} BEFORE INSERT OR UPDATE ON {table}"
                 f" FOR EACH ROW EXECUTE FUNCTION {fn}()")
        )  # fmt: skip
    try:
        yield
    finally:
        with ledger.begin() as conn:
            conn.execute(text(f"DROP TRIGGER {fn} ON {table}"))
            conn.execute(text(f"DROP FUNCTION {fn}()"))


def named(name: str, batch: str = "NEW.batch_id") -> str:
    return (
        f"EXISTS (SELECT 1 FROM factory_batches b WHERE b.id = {batch}"
        f" AND b.product_name = '{name}')"
    )


@pytest.mark.parametrize("step", ["products", "root"])
def test_a_failed_step_is_retried_without_duplicates(
    client: Any, ledger: Engine, step: str
) -> None:
    name = f"inject-{step}-{uuid.uuid4().hex[:6]}"
    count = 70_000  # three chunks of 32,768: the second one fails
    if step == "products":
        trap = failing(ledger, "factory_chunks", f"NEW.chunk_no = 1 AND {named(name)}", name)
    else:
        cond = (
            f"NEW.merkle_root IS NOT NULL AND OLD.merkle_root IS NULL AND {named(name, 'NEW.id')}"
        )
        trap = failing(ledger, "factory_batches", cond, name)
    with trap:
        made = create(client, count, name=name)
        failed = until(client, made["batch_id"], "failed")
        assert failed["failed_step"] == step and "injected failure" in failed["error"]
        written = product_rows(ledger, made["batch_id"])[0]
        if step == "products":
            # Chunk 1 (serials 32,769..65,536) is refused; chunks written beside it stay.
            assert 0 < written < count and chunk_rows(ledger, made["batch_id"], 32_769, 65_536) == 0
        else:
            assert written == count
        # The job ends failed (the ledger hears of it a moment after the batch row).
        job_url = f"/api/v1/jobs/{made['job_id']}"
        wait_for(lambda: client.get(job_url).json()["state"] == "failed", timeout=30)
    # Two retries at once: one starts a job, the other is told a job is already on it.
    with ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(lambda _: client.post(f"{BASE}/batches/{made['batch_id']}/retry"), range(2))
        )
    assert sorted(a.status_code for a in answers) == [202, 409], [a.text for a in answers]
    r = next(a for a in answers if a.status_code == 202)
    assert r.json()["job_id"] != made["job_id"]
    done = until(client, made["batch_id"], "completed")
    assert done["error"] is None and done["failed_step"] is None
    assert product_rows(ledger, made["batch_id"]) == (count, count)
    tokens = all_tokens(client, made["batch_id"])
    assert mth([t.encode() for t in tokens]).hex() == done["merkle_root"]
    v = client.get(f"{BASE}/verify/{tokens[40_000]}").json()
    assert v["authentic"] and rfc9162_verify(tokens[40_000], v["proof"])


def test_anchoring_is_retried_with_backoff_and_never_completes_early(
    client: Any, ledger: Engine
) -> None:
    name = f"inject-anchor-{uuid.uuid4().hex[:6]}"
    with failing(ledger, "factory_anchors", named(name), name):
        made = create(client, 500, name=name)

        def retrying() -> dict[str, Any] | None:
            job = client.get(f"/api/v1/jobs/{made['job_id']}").json()
            return job if job["attempt"] >= 2 else None

        wait_for(retrying, timeout=60, message="a second anchoring attempt")
        batch = client.get(f"{BASE}/batches/{made['batch_id']}").json()
        assert batch["status"] == "anchoring" and batch["failed_step"] == "anchor"
        assert "injected failure" in batch["error"] and batch["merkle_root"]
        assert batch["anchor"] is None
        # Neither a retry by hand while the job is live (two anchors for one root).
        assert client.post(f"{BASE}/batches/{made['batch_id']}/retry").status_code == 409
    done = until(client, made["batch_id"], "completed", timeout=120)
    assert done["job_id"] == made["job_id"] and done["error"] is None
    job_url = f"/api/v1/jobs/{made['job_id']}"
    job = wait_for(
        lambda: (j := client.get(job_url).json())["state"] == "succeeded" and j, timeout=30
    )
    assert job["attempt"] >= 2


def test_a_cancelled_batch_stops_and_a_retry_finishes_it(client: Any, ledger: Engine) -> None:
    count = 800_000
    made = create(client, count, name="Cancelled")

    def writing() -> bool:
        b = client.get(f"{BASE}/batches/{made['batch_id']}").json()
        return b["status"] == "processing" and 0 < b["products_written"] < count // 2

    wait_for(writing, timeout=60, interval=0.02, message="the batch to be writing")
    assert client.post(f"/api/v1/jobs/{made['job_id']}/cancel").status_code == 200
    stopped = until(client, made["batch_id"], "failed", "completed")
    assert stopped["status"] == "failed" and stopped["failed_step"] == "products"
    assert "JobCancelled" in stopped["error"]
    job_url = f"/api/v1/jobs/{made['job_id']}"
    wait_for(lambda: client.get(job_url).json()["state"] == "cancelled", timeout=30)
    assert product_rows(ledger, made["batch_id"])[0] < count
    # A retry resumes at the first unwritten chunk.
    assert client.post(f"{BASE}/batches/{made['batch_id']}/retry").status_code == 202
    done = until(client, made["batch_id"], "completed", timeout=120)
    assert product_rows(ledger, made["batch_id"]) == (count, count)
    assert done["products_written"] == count
