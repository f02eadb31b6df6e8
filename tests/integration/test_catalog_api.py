"""Catalog imports through the API and a real worker: upload, progress, summary, skipped rows,
refusals that enqueue nothing, cancel mid-import, retry, and the CLI's --wait."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor.packs import psycopg_url
from conveyor.packs.catalog.sample import write_sample
from conveyor.testing.services import ServiceSet, truncate, wait_for

API = "/api/v1/catalog"
TERMINAL = {"succeeded", "failed", "cancelled", "dead"}


@pytest.fixture()
def db(settings: Any) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(psycopg_url(settings), autocommit=True) as conn:
        truncate(conn, "catalog_products", "catalog_imports")
        yield conn


def upload(client: Any, path: Path, **params: str) -> Any:
    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                yield chunk

    return client.post(
        f"{API}/imports",
        params={"filename": path.name, **params},
        content=chunks(),
        headers={"Content-Type": "text/csv"},
    )


def finished_job(client: Any, job_id: str, timeout: float = 120) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        job: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}").json()
        return job if job["state"] in TERMINAL else None

    result: dict[str, Any] = wait_for(ended, timeout=timeout, interval=0.1, message="import")
    return result


def count_jobs(db: psycopg.Connection[Any]) -> int:
    row = db.execute(
        "SELECT count(*) FROM conveyor_jobs WHERE task = 'catalog.import_products'"
    ).fetchone()
    return int(row[0]) if row else 0


def test_upload_imports_with_a_summary_and_a_report_of_skipped_rows(
    client: Any, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = write_sample(tmp_path / "small dirty.csv", 3_000, dirty=True, bad_every=100)
    resp = upload(client, path)
    assert resp.status_code == 202, resp.text
    imp = resp.json()
    assert imp["filename"] == "small dirty.csv" and imp["size_bytes"] == path.stat().st_size
    assert imp["links"]["events"] == f"/api/v1/jobs/{imp['job_id']}/events"

    job = finished_job(client, imp["job_id"])
    assert job["state"] == "succeeded", job
    assert job["progress"]["step"] == "done" and job["progress"]["percent"] == 100.0
    done = client.get(imp["links"]["self"]).json()
    assert done["state"] == "succeeded"
    assert done["skipped"] == 30 and done["rows_total"] == 3_000
    assert done["inserted"] + done["updated"] + done["unchanged"] + done["skipped"] == 3_000
    assert done["finished_at"] > done["created_at"]
    result = client.get(f"/api/v1/jobs/{imp['job_id']}/result").json()["result"]
    assert result["inserted"] == done["inserted"]

    skipped = client.get(imp["links"]["errors"], params={"limit": 10}).json()
    assert len(skipped["items"]) == 10 and skipped["next_after"] == skipped["items"][-1]["row"]
    assert skipped["items"][0] == {
        "row": 101,
        "reason": "missing SKU",
        "excerpt": skipped["items"][0]["excerpt"],
    }
    report = client.get(imp["links"]["error_report"])
    assert report.headers["content-disposition"].endswith('-skipped-rows.csv"')
    rows = list(csv.reader(io.StringIO(report.text)))
    assert rows[0] == ["row", "reason", "excerpt"] and len(rows) == 31
    assert client.get(f"{API}/imports").json()["items"][0]["id"] == imp["id"]


def test_multipart_upload(client: Any, db: psycopg.Connection[Any], tmp_path: Path) -> None:
    path = write_sample(tmp_path / "form.csv", 500)
    with open(path, "rb") as f:
        resp = client.post(f"{API}/imports", files={"file": ("form.csv", f, "text/csv")})
    assert resp.status_code == 202, resp.text
    assert resp.json()["filename"] == "form.csv"
    assert finished_job(client, resp.json()["job_id"])["state"] == "succeeded"
    assert client.get(resp.json()["links"]["self"]).json()["inserted"] == 500


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "the file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00", "not a CSV file"),
        (b"sku,title\nA,b\n", "lacks the required column(s) name"),
    ],
)
def test_bad_files_are_refused_and_nothing_is_enqueued(
    client: Any, db: psycopg.Connection[Any], settings: Any, data: bytes, says: str
) -> None:
    before = count_jobs(db)
    resp = client.post(f"{API}/imports", content=data, headers={"Content-Type": "text/csv"})
    assert resp.status_code == 422
    assert says in resp.json()["detail"]
    assert count_jobs(db) == before
    assert db.execute("SELECT count(*) FROM catalog_imports").fetchone() == (0,)
    uploads = settings.files_dir / "catalog" / "uploads"
    assert not list(uploads.glob("*.csv")) and not list(uploads.glob("*.part"))


def test_cancel_mid_import_leaves_the_products_unchanged_and_retry_completes(
    client: Any, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    first = upload(client, write_sample(tmp_path / "first.csv", 100_000, seed=5)).json()
    assert finished_job(client, first["job_id"])["state"] == "succeeded"
    snapshot = db.execute(
        "SELECT md5(string_agg(sku || name || description || active, ',' ORDER BY id)) "
        "FROM catalog_products"
    ).fetchone()

    big = write_sample(tmp_path / "big.csv", 500_000, seed=6, dirty=True)
    imp = upload(client, big).json()
    job_id = imp["job_id"]

    def importing() -> bool:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        assert job["state"] not in TERMINAL, job
        return bool(job["progress"] and job["progress"]["step"] in ("parsing", "loading"))

    wait_for(importing, timeout=60, interval=0.05, message="the import to start parsing")
    resp = client.post(f"{API}/imports/{imp['id']}/cancel")
    assert resp.status_code == 200, resp.text
    assert finished_job(client, job_id)["state"] == "cancelled"
    after = db.execute(
        "SELECT md5(string_agg(sku || name || description || active, ',' ORDER BY id)) "
        "FROM catalog_products"
    ).fetchone()
    assert after == snapshot
    cancelled = client.get(imp["links"]["self"]).json()
    assert cancelled["state"] == "cancelled" and "unchanged" in cancelled["error"]
    assert client.post(f"{API}/imports/{first['id']}/retry").status_code == 409

    again = client.post(f"{API}/imports/{imp['id']}/retry")
    assert again.status_code == 202, again.text
    assert again.json()["job_id"] != job_id
    assert finished_job(client, again.json()["job_id"])["state"] == "succeeded"
    done = client.get(imp["links"]["self"]).json()
    assert done["state"] == "succeeded" and done["rows_total"] == 500_000


def test_cli_import_waits_with_progress_and_prints_the_summary(
    client: Any, services: ServiceSet, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = write_sample(tmp_path / "cli.csv", 20_000)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "catalog", "import", str(path), "--wait"],
        env=services.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["inserted"] == 20_000 and summary["skipped"] == 0
    assert "succeeded" in done.stderr and time.monotonic() - started < 120
    refused = subprocess.run(
        [sys.executable, "-m", "conveyor", "catalog", "import", "/dev/null"],
        env=services.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "empty" in refused.stderr
