"""The batch pipeline on real PostgreSQL: products, root, anchor; resuming after a crash or a
failure never duplicates a product; verification by token with offline-checked proofs."""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, text

from conveyor.ledger.db import make_engine
from conveyor.packs.factory import steps, tokens
from conveyor.packs.factory.anchors import AnchorReceipt, LocalAnchor, OnSubmit, verify_chain
from conveyor.packs.factory.batches import BatchSpec, create_batch, get_batch
from conveyor.packs.factory.config import FactorySettings
from conveyor.packs.factory.errors import AnchorError, BatchStateError, FactoryError
from conveyor.packs.factory.tokens import Keyring
from conveyor.packs.factory.verify import Verifier
from conveyor.testing.forgery import altered_token

KEY = "Zx7-q2LmA9vR4tYp0WsK3jHnB6cE1uFd"
SETTINGS = FactorySettings(
    token_keys={"k1": SecretStr(KEY)},
    token_kid="k1",
    chunk_size=256,
    verify_base_url="https://verify.example/p",
)
RING = Keyring.from_settings(SETTINGS, "test")


@pytest.fixture(scope="module")
def engine(settings: Any) -> Iterator[Engine]:
    eng = make_engine(settings.database_url)
    yield eng
    eng.dispose()


def offline_root(tokens_in_order: list[str]) -> bytes:
    """RFC 9162 MTH straight from the definition, independent of the pack's merkle module."""

    def mth(d: list[bytes]) -> bytes:
        if len(d) == 1:
            return hashlib.sha256(b"\x00" + d[0]).digest()
        k = 1
        while k * 2 < len(d):
            k *= 2
        return hashlib.sha256(b"\x01" + mth(d[:k]) + mth(d[k:])).digest()

    return mth([t.encode() for t in tokens_in_order])


def offline_verify(proof: dict[str, Any]) -> bool:
    """RFC 9162 §2.1.3.2 written again here, over the hex proof an API would return."""
    fn, sn = proof["leaf_index"], proof["tree_size"] - 1
    if fn > sn:
        return False
    r = bytes.fromhex(proof["leaf_hash"])
    for p in map(bytes.fromhex, proof["audit_path"]):
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r.hex() == proof["root"]


def stored_tokens(engine: Engine, batch_id: uuid.UUID) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text("SELECT token FROM factory_products WHERE batch_id = :b ORDER BY serial"),
                {"b": batch_id},
            ).scalars()
        )


def new_batch(engine: Engine, n: int, name: str = "Widget", **kw: Any) -> uuid.UUID:
    spec = BatchSpec(product_count=n, product_name=name, category="tools", **kw)
    return create_batch(engine, spec, SETTINGS)


class FlakyAnchor:
    """An anchor whose service is down for the first ``failures`` calls."""

    name = "flaky"

    def __init__(self, inner: LocalAnchor, failures: int) -> None:
        self.inner, self.failures = inner, failures

    def anchor(
        self,
        batch_id: uuid.UUID,
        root: bytes,
        *,
        submitted: str | None = None,
        on_submit: OnSubmit | None = None,
    ) -> AnchorReceipt:
        if self.failures:
            self.failures -= 1
            raise AnchorError("anchoring service unavailable (test)")
        return self.inner.anchor(batch_id, root)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_batch_runs_end_to_end(engine: Engine, workers: int) -> None:
    batch_id = new_batch(engine, 1000, factory_id="plant-7", metadata={"line": 3})
    reports: list[tuple[float, float | None, str | None]] = []

    def progress(current: float, total: float | None = None, *, step: str | None = None) -> None:
        reports.append((current, total, step))

    batch = steps.run_batch(
        engine, batch_id, RING, LocalAnchor(engine), workers=workers, progress=progress
    )
    assert batch.status == "completed" and batch.products_written == 1000
    assert (batch.factory_id, batch.metadata) == ("plant-7", {"line": 3})
    assert batch.anchor_backend == "local" and batch.anchor_ref is not None
    toks = stored_tokens(engine, batch_id)
    assert len(toks) == len(set(toks)) == 1000
    assert toks == [tokens.sign(RING, batch_id, s) for s in range(1, 1001)]
    assert batch.merkle_root == offline_root(toks) == steps.recompute_root(engine, batch_id)
    product_steps = [c for c, _, s in reports if s == "products"]
    assert product_steps == sorted(product_steps) and product_steps[-1] == 1000
    assert [s for _, _, s in reports][-1] == "anchor"
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT * FROM factory_products WHERE batch_id = :b AND serial = 1000"),
            {"b": batch_id},
        ).one()
    assert row.leaf_index == 999 and row.name == "Widget" and row.category == "tools"
    assert row.verification_url == "https://verify.example/p/" + row.token
    assert verify_chain(engine).ok


def test_a_process_with_threads_starts_its_writers_with_forkserver(engine: Engine) -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        assert steps.start_method() == "forkserver"
        batch_id = new_batch(engine, 600)
        batch = steps.run_batch(engine, batch_id, RING, LocalAnchor(engine), workers=2)
    finally:
        stop.set()
        other.join()
    assert batch.status == "completed" and steps.product_count(engine, batch_id) == 600
    assert batch.merkle_root == offline_root(stored_tokens(engine, batch_id))


class Cancelled(Exception):
    pass


def test_a_cancel_between_chunks_fails_the_step_and_a_retry_finishes_it(engine: Engine) -> None:
    batch_id = new_batch(engine, 1000)
    seen: list[float] = []

    def cancel_after_first_chunk(
        current: float, total: float | None = None, *, step: str | None = None
    ) -> None:
        seen.append(current)
        if current >= 256:
            raise Cancelled("cancel requested")

    # One writer, so the cancel lands between chunks; a pool lets the chunks already handed
    # to its processes finish (each commits whole), and cancels the rest.
    with pytest.raises(Cancelled):
        steps.run_batch(
            engine,
            batch_id,
            RING,
            LocalAnchor(engine),
            workers=1,
            progress=cancel_after_first_chunk,
        )
    batch = get_batch(engine, batch_id)
    assert (batch.status, batch.failed_step) == ("failed", "products")
    assert "Cancelled: cancel requested" in (batch.error or "")
    assert steps.product_count(engine, batch_id) == 256
    batch = steps.run_batch(engine, batch_id, RING, LocalAnchor(engine))
    assert batch.status == "completed"
    toks = stored_tokens(engine, batch_id)
    assert len(toks) == len(set(toks)) == 1000
    assert batch.merkle_root == offline_root(toks)


def test_resume_after_a_crash_writes_only_missing_chunks(engine: Engine) -> None:
    batch_id = new_batch(engine, 1000)
    batch = get_batch(engine, batch_id)
    jobs = steps.pending_chunks(engine, batch, RING)
    assert [j.count for j in jobs] == [256, 256, 256, 232]
    conn = psycopg.connect(steps.conninfo(engine))
    # A crash mid-batch: chunks 0 and 2 committed, and chunk 1 died mid-COPY (rolled back).
    assert steps.write_chunk(conn, jobs[0]) == 256
    assert steps.write_chunk(conn, jobs[2]) == 256
    with (
        pytest.raises(ZeroDivisionError),
        conn.transaction(),
        conn.cursor().copy(steps.COPY_PRODUCTS) as copy,
    ):
        copy.write(steps.chunk_rows(jobs[1])[0][:5000])
        raise ZeroDivisionError  # the process died before COMMIT
    assert steps.write_chunk(conn, jobs[0]) == 0  # a second writer of a done chunk: nothing
    conn.close()
    assert steps.product_count(engine, batch_id) == 512
    written = steps.write_products(engine, batch_id, RING, workers=2)
    assert written == 488
    done = steps.run_batch(engine, batch_id, RING, LocalAnchor(engine))
    assert done.status == "completed"
    toks = stored_tokens(engine, batch_id)
    assert len(toks) == len(set(toks)) == 1000
    assert done.merkle_root == offline_root(toks)


def test_a_duplicate_chunk_is_refused_by_the_database(engine: Engine) -> None:
    batch_id = new_batch(engine, 300)
    job = steps.pending_chunks(engine, get_batch(engine, batch_id), RING)[0]
    with psycopg.connect(steps.conninfo(engine)) as conn:
        steps.write_chunk(conn, job)
        with (
            pytest.raises(psycopg.errors.UniqueViolation),
            conn.transaction(),
            conn.cursor().copy(steps.COPY_PRODUCTS) as copy,
        ):
            copy.write(steps.chunk_rows(job)[0])
    assert steps.product_count(engine, batch_id) == 256


def test_anchoring_failure_leaves_the_batch_anchoring_and_a_retry_completes_it(
    engine: Engine,
) -> None:
    batch_id = new_batch(engine, 10)
    flaky = FlakyAnchor(LocalAnchor(engine), failures=2)
    for _ in range(2):
        with pytest.raises(AnchorError):
            steps.run_batch(engine, batch_id, RING, flaky)
        batch = get_batch(engine, batch_id)
        assert batch.status == "anchoring" and batch.failed_step == "anchor"
        assert "unavailable" in (batch.error or "")
    batch = steps.run_batch(engine, batch_id, RING, flaky)
    assert batch.status == "completed" and batch.error is None
    assert steps.product_count(engine, batch_id) == 10
    assert steps.anchor_batch(engine, batch_id, flaky) is None  # already completed


def test_a_failed_step_is_recorded_and_a_retry_resumes_it(engine: Engine) -> None:
    batch_id = new_batch(engine, 600)
    wrong_ring = Keyring(keys={"other": b"x" * 32}, current="other")
    with pytest.raises(FactoryError, match="no longer in"):
        steps.run_batch(engine, batch_id, wrong_ring, LocalAnchor(engine))
    batch = get_batch(engine, batch_id)
    assert (batch.status, batch.failed_step) == ("failed", "products")
    batch = steps.run_batch(engine, batch_id, RING, LocalAnchor(engine))
    assert batch.status == "completed" and batch.failed_step is None
    assert steps.product_count(engine, batch_id) == 600


def test_steps_out_of_order_are_refused(engine: Engine) -> None:
    batch_id = new_batch(engine, 5)
    with pytest.raises(BatchStateError):
        steps.compute_root(engine, batch_id)
    with pytest.raises(BatchStateError):
        steps.anchor_batch(engine, batch_id, LocalAnchor(engine))
    steps.run_batch(engine, batch_id, RING, LocalAnchor(engine))
    with pytest.raises(BatchStateError):
        steps.write_products(engine, batch_id, RING)


def test_names_with_copy_special_characters_are_stored_verbatim(engine: Engine) -> None:
    name = "Tab\there\\back\nnew\rline ünï"
    batch_id = new_batch(engine, 3, name=name)
    steps.run_batch(engine, batch_id, RING, LocalAnchor(engine))
    with engine.connect() as conn:
        names = conn.execute(
            text("SELECT DISTINCT name FROM factory_products WHERE batch_id = :b"),
            {"b": batch_id},
        ).scalars()
        assert list(names) == [name]


def test_create_batch_refuses_bad_counts(engine: Engine) -> None:
    with pytest.raises(FactoryError, match="product_count"):
        new_batch(engine, 0)


# --- verification ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def verified_batch(engine: Engine) -> uuid.UUID:
    # 700 products in chunks of 256: a ragged last chunk and a ragged last block.
    batch_id = new_batch(engine, 700)
    steps.run_batch(engine, batch_id, RING, LocalAnchor(engine), workers=2)
    return batch_id


def test_every_token_of_a_batch_verifies_with_an_offline_proof(
    engine: Engine, verified_batch: uuid.UUID
) -> None:
    verifier = Verifier(engine, RING)
    toks = stored_tokens(engine, verified_batch)
    root = offline_root(toks).hex()
    for serial in [1, 2, 255, 256, 257, 512, 513, 640, 699, 700]:
        result = verifier.verify(toks[serial - 1]).as_dict()
        assert result["authentic"] is True, result
        assert result["product"]["serial"] == serial
        assert result["batch"]["id"] == str(verified_batch)
        proof = result["proof"]
        assert proof["tree_size"] == 700 and proof["leaf_index"] == serial - 1
        assert proof["root"] == root
        assert offline_verify(proof)
        assert result["anchor"]["backend"] == "local"


def test_the_readme_offline_verifier_accepts_real_proofs_and_refuses_altered_ones(
    engine: Engine, verified_batch: uuid.UUID
) -> None:
    readme = (Path(steps.__file__).parent / "README.md").read_text()
    code = next(
        block.split("```")[0]
        for block in readme.split("```python")[1:]
        if "def verify(token: str, proof: dict)" in block
    )
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    readme_verify = namespace["verify"]
    verifier = Verifier(engine, RING)
    for token in stored_tokens(engine, verified_batch)[::97]:
        proof = verifier.verify(token).as_dict()["proof"]
        assert readme_verify(token, proof)
        assert not readme_verify(token, {**proof, "leaf_index": proof["leaf_index"] ^ 1})
        assert not readme_verify(altered_token(token), proof)


def test_forged_unknown_and_garbage_tokens_are_not_authentic(
    engine: Engine, verified_batch: uuid.UUID
) -> None:
    verifier = Verifier(engine, RING)
    token = stored_tokens(engine, verified_batch)[0]
    kid, payload = token.split(".")
    forged = f"{kid}.{payload[:-5]}{'B' if payload[-5] == 'A' else 'A'}{payload[-4:]}"
    other_key = Keyring(keys={"k1": b"an attacker's guess at the key!!"}, current="k1")
    cases = {
        forged: "signature does not match",
        tokens.sign(other_key, verified_batch, 1): "signature does not match",
        tokens.sign(RING, verified_batch, 701): "unknown token",  # never issued
        tokens.sign(RING, uuid.uuid4(), 1): "unknown token",
        "k9." + payload: "unknown key id",
        "": "malformed",
        "not a token": "malformed",
        "k1." + "=" * 54: "malformed",
        "k1.\x00" + payload[1:]: "malformed",
        "💥" * 1000: "malformed",
    }
    for candidate, reason in cases.items():
        result = verifier.verify(candidate)
        assert not result.authentic and reason in (result.reason or ""), (candidate, result)
    assert verifier.verify(None).reason == "malformed token"
    assert verifier.verify(12345).reason == "malformed token"


def test_a_product_row_planted_without_the_key_is_not_authentic(
    engine: Engine, verified_batch: uuid.UUID
) -> None:
    fake = "k1." + "A" * 54
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO factory_products (batch_id, serial, token, verification_url, name,"
                " category, leaf_index) VALUES (:b, 100000, :t, 'x', 'n', 'c', 99999)"
            ),
            {"b": verified_batch, "t": fake},
        )
    result = Verifier(engine, RING).verify(fake)
    assert not result.authentic and result.reason == "signature does not match"


def test_a_token_changed_after_anchoring_has_no_valid_proof(engine: Engine) -> None:
    batch_id = new_batch(engine, 20)
    steps.run_batch(engine, batch_id, RING, LocalAnchor(engine))
    # Re-signed with a second key after the root was anchored: a genuine MAC, but not the
    # leaf the anchored root covers.
    ring2 = Keyring(keys={**RING.keys, "k2": os.urandom(32).hex().encode()}, current="k2")
    resigned = tokens.sign(ring2, batch_id, 7)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE factory_products SET token = :t WHERE batch_id = :b AND serial = 7"),
            {"t": resigned, "b": batch_id},
        )
    result = Verifier(engine, ring2).verify(resigned)
    assert not result.authentic and "Merkle root" in (result.reason or "")


def test_a_product_of_a_batch_not_yet_rooted_is_authentic_without_proof(engine: Engine) -> None:
    batch_id = new_batch(engine, 4)
    steps.write_products(engine, batch_id, RING)
    result = Verifier(engine, RING).verify(tokens.sign(RING, batch_id, 2))
    assert result.authentic and result.proof is None and result.anchor is None
    assert result.batch is not None and result.batch["status"] == "processing"
