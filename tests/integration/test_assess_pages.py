"""The assess pack's dashboard pages without a browser: a real worker runs an uploaded
inventory to its report; garbage ids, formats, examples and uploads get clear answers."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from conveyor.packs.assess import report
from conveyor.testing.services import wait_for

EXAMPLES = Path(report.__file__).parent / "data" / "examples"
HTML = {"Accept": "text/html"}


def until_ended(client: Any, assessment_id: str) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"/api/v1/assess/assessments/{assessment_id}").json()
        return body if body["status"] not in ("created", "running") else None

    out: dict[str, Any] = wait_for(ended, timeout=120, interval=0.2, message="the assessment")
    return out


def test_upload_runs_to_a_report_with_every_download(client: Any) -> None:
    data = (EXAMPLES / "startup.yaml").read_bytes()
    r = client.post(
        "/assess/assessments/upload",
        params={"filename": "startup.yaml"},
        content=data,
        headers={"Accept": "application/json", "Content-Type": "application/yaml"},
    )
    assert r.status_code == 201, r.text
    assessment_id = r.json()["id"]
    assert r.json()["url"].endswith(f"/assess/assessments/{assessment_id}?notice=started")
    assert until_ended(client, assessment_id)["status"] == "completed"

    page = client.get(f"/assess/assessments/{assessment_id}", headers=HTML)
    assert page.status_code == 200 and 'id="open-report"' in page.text
    # The live parts: an ETag, and 304 while nothing changes.
    parts = client.get(f"/assess/live/assessments/{assessment_id}")
    assert parts.status_code == 200 and 'data-terminal="true"' in parts.text
    again = client.get(
        f"/assess/live/assessments/{assessment_id}",
        headers={"If-None-Match": parts.headers["ETag"]},
    )
    assert again.status_code == 304

    shown = client.get(f"/assess/assessments/{assessment_id}/report", headers=HTML)
    assert shown.status_code == 200 and shown.text.count('class="report-figure"') == 5
    base = f"/assess/assessments/{assessment_id}/report"
    pdf = client.get(f"{base}.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert pdf.headers["content-type"] == "application/pdf"
    assert "attachment" in pdf.headers["content-disposition"]
    html = client.get(f"{base}.html")
    assert html.status_code == 200 and html.text.startswith("<!doctype html>")
    doc = json.loads(client.get(f"{base}.json").text)
    assert doc["assessment"]["id"] == assessment_id and doc["synthesis"]["recommendations"]

    listing = client.get("/assess/assessments", headers=HTML)
    assert listing.status_code == 200 and assessment_id in listing.text
    assert 'data-terminal="true"' in listing.text or "running" in listing.text


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", "inventory"),
        (b"\x00\xff\xfe garbage", "inventory"),
        (b"organisation: {name: X}\ncompute: {instances: [{id: a}]}\n", "compute.instances[0]"),
        (b"[1, 2, 3]", "inventory"),
    ],
)
def test_a_refused_upload_names_what_is_wrong_and_stores_nothing(
    client: Any, body: bytes, expected: str
) -> None:
    before = client.get("/api/v1/assess/assessments").json()["items"]
    r = client.post(
        "/assess/assessments/upload",
        params={"filename": "x.yaml"},
        content=body,
        headers={"Accept": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert expected in r.json()["detail"]
    # Without script: back to the list, the reason in the page.
    r = client.post("/assess/assessments/upload", content=body, headers=HTML, follow_redirects=True)
    assert r.status_code == 200 and "flash-error" in r.text
    after = client.get("/api/v1/assess/assessments").json()["items"]
    assert [a["id"] for a in after] == [a["id"] for a in before]


def test_garbage_ids_formats_and_examples(client: Any) -> None:
    unknown = str(uuid.uuid4())
    for path in (
        "/assess/assessments/not-a-uuid",
        f"/assess/assessments/{unknown}",
        f"/assess/assessments/{unknown}/report",
        f"/assess/assessments/{unknown}/report.pdf",
        "/assess/live/assessments/%00",
    ):
        r = client.get(path, headers=HTML)
        assert r.status_code == 404, (path, r.status_code)
    r = client.post(
        "/assess/assessments/example",
        data={"example": "no-such-example"},
        headers=HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303 and "no-such-example" in r.headers["location"]
    assert client.get("/assess/assessments?status=bogus", headers=HTML).status_code == 200

    # Created but not started: no report yet, a refused cancel, a wrong format.
    inventory = (EXAMPLES / "startup.yaml").read_text()
    r = client.post(
        "/api/v1/assess/assessments/upload", params={"filename": "s.yaml"}, content=inventory
    )
    assert r.status_code == 201, r.text
    created = r.json()["id"]
    r = client.get(f"/assess/assessments/{created}/report", headers=HTML)
    assert r.status_code == 404 and "No report yet" in r.text
    assert client.get(f"/assess/assessments/{created}/report.exe").status_code == 404
    r = client.post(f"/assess/assessments/{created}/cancel", headers=HTML, follow_redirects=False)
    assert r.status_code == 303 and "error=" in r.headers["location"]
    page = client.get(f"/assess/assessments/{created}", headers=HTML)
    assert page.status_code == 200 and 'id="start-assessment"' in page.text
