"""The dashboard, driven like a browser would: real worker, real ledger, HTML and redirects."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from conveyor.testing.services import wait_for

pytestmark = pytest.mark.broker

XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = "<img src=x onerror=alert(1)>"


def submit(client: Any, task: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    r = client.post("/api/v1/jobs", json={"task": task, "args": list(args), "kwargs": kwargs})
    assert r.status_code == 202, r.text
    return r.json()


def until_state(client: Any, job_id: str, *states: str, timeout: float = 30) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        r = client.get(f"/api/v1/jobs/{job_id}")
        return r.json() if r.status_code == 200 and r.json()["state"] in states else None

    return wait_for(check, timeout=timeout, message=f"job {job_id} to reach {states}")


def page(client: Any, url: str, status: int = 200, **params: Any) -> str:
    r = client.get(url, params=params) if params else client.get(url)  # keep url's own query
    assert r.status_code == status, (url, r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("text/html")
    return str(r.text)


def row_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-job-id="([0-9a-f-]{36})"', html)


def form_action(html: str, button: str) -> str:
    """The URL the form around ``button`` posts to, as a browser would find it."""
    forms = re.findall(
        r'<form method="post" action="([^"]+)">\s*(?:<input type="hidden"[^>]*>\s*)*'
        r"<button[^>]*>([^<]+)</button>",
        html,
    )
    actions = [action for action, label in forms if label == button]
    assert len(actions) == 1, forms
    return actions[0].replace("&amp;", "&")


def needle() -> str:
    return f"needle-{uuid.uuid4().hex[:10]}"


def test_jobs_list_has_counts_filters_and_assets(client: Any) -> None:
    html = page(client, "/jobs")
    for state in ("scheduled", "queued", "running", "succeeded", "failed", "dead"):
        assert f'data-count="{state}"' in html
    assert 'name="state"' in html and 'name="q"' in html
    # No inline script or style: the Content-Security-Policy forbids them.
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html))
    assert " style=" not in html
    csp = client.get("/jobs").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    js = client.get("/static/conveyor.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "EventSource" in js.text
    css = client.get("/static/conveyor.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert client.get("/static/nope.js").status_code == 404


def test_list_filters_by_task_text_and_state(client: Any) -> None:
    tag = needle()
    echoes = [submit(client, "demo.echo", f"{tag}-{i}")["id"] for i in range(3)]
    failed = submit(client, "demo.fail", f"{tag} exploded")["id"]
    for job_id in echoes:
        until_state(client, job_id, "succeeded")
    until_state(client, failed, "failed")

    by_text = row_ids(page(client, "/jobs", q=tag))
    assert sorted(by_text) == sorted([*echoes, failed])  # args and error messages
    assert by_text == sorted(by_text, reverse=True)  # newest first

    by_task = row_ids(page(client, "/jobs", q=tag, task="demo.echo"))
    assert sorted(by_task) == sorted(echoes)

    html = page(client, "/jobs", q=tag, state="failed")
    assert row_ids(html) == [failed]
    assert 'value="failed" checked' in html  # the form shows the view's filters
    assert row_ids(page(client, "/jobs", q=tag, state=["failed", "succeeded"])) == by_text
    assert row_ids(page(client, "/jobs", q=tag, queue="no-such-queue")) == []

    bad = page(client, "/jobs", status=400, q=tag, state="exploded")
    assert "unknown state &#39;exploded&#39; ignored" in bad
    assert sorted(row_ids(bad)) == sorted(by_text)


@pytest.mark.parametrize("field", ["q", "task", "queue", "cursor", "limit", "state"])
def test_list_survives_hostile_parameters(client: Any, field: str) -> None:
    for value in ("\x00", "a\x00b", "%", "_\\", "é" * 300, XSS_SCRIPT, "9" * 40):
        r = client.get("/jobs", params={field: value})
        assert r.status_code in (200, 400), (field, value, r.text[:300])
        assert XSS_SCRIPT not in r.text


def test_list_paginates_with_an_older_link(client: Any) -> None:
    tag = needle()
    ids = [submit(client, "demo.echo", tag)["id"] for _ in range(5)]
    first = page(client, "/jobs", q=tag, limit=2)
    seen = row_ids(first)
    assert len(seen) == 2
    while True:
        older = re.search(r'rel="next" href="([^"]+)"', first)
        if older is None:
            break
        url = older.group(1).replace("&amp;", "&")
        assert "cursor=" in url and f"q={tag}" in url and "limit=2" in url
        first = page(client, url)
        assert "Newest" in first
        seen += row_ids(first)
    assert seen == sorted(ids, reverse=True)
    garbage = page(client, "/jobs", status=400, q=tag, cursor="garbage!!")
    assert "not valid any more" in garbage and len(row_ids(garbage)) == 5


def test_succeeded_job_page_shows_result_and_attempts(client: Any) -> None:
    job = submit(client, "demo.add", 2, 3)
    until_state(client, job["id"], "succeeded")
    html = page(client, f"/jobs/{job['id']}")
    assert job["id"] in html and "demo.add" in html
    assert '<span class="badge state-succeeded" data-field="state">succeeded</span>' in html
    assert re.search(r"<h2>Result.*?</h2>\s*<pre class=\"json\">5</pre>", html, re.S)
    assert re.search(r"<td class=\"mono\">testworker[^<]*@", html)  # the attempt's worker
    assert re.search(r"<td class=\"num\">1</td>", html)
    assert ">Retry</button>" in html and ">Cancel</button>" not in html
    assert "[\n  2,\n  3\n]" in html  # args as pretty JSON


def test_large_results_come_from_their_blob(client: Any) -> None:
    mid = submit(client, "demo.echo", "m" * 70_000)  # over the 64 KiB inline cap
    big = submit(client, "demo.echo", "b" * 150_000, XSS_SCRIPT)  # over the display cap too
    until_state(client, mid["id"], "succeeded")
    until_state(client, big["id"], "succeeded")
    html = page(client, f"/jobs/{mid['id']}")
    assert re.search(r'<span class="hint">70,0\d\d bytes</span>', html)
    assert "&#34;" + "m" * 50 in html and "not shown" not in html.split("<h2>Arguments")[0]
    html = page(client, f"/jobs/{big['id']}")
    assert "more bytes not shown" in html and "The full result as JSON" in html
    assert XSS_SCRIPT not in html


def test_failed_job_page_shows_error_and_traceback(client: Any) -> None:
    job = submit(client, "demo.fail", "disk on fire")
    until_state(client, job["id"], "failed")
    html = page(client, f"/jobs/{job['id']}")
    assert "RuntimeError" in html and "disk on fire" in html
    assert re.search(r'<pre class="traceback">[^<]*raise RuntimeError\(message\)', html)
    assert "<h2>Result" not in html


def test_job_data_is_escaped_everywhere(client: Any) -> None:
    tag = needle()
    job = submit(client, "demo.echo", XSS_SCRIPT, XSS_IMG, tag, note=XSS_IMG, **{XSS_SCRIPT: 1})
    failed = submit(client, "demo.fail", f"{tag} {XSS_SCRIPT}")
    until_state(client, job["id"], "succeeded")
    until_state(client, failed["id"], "failed")
    for html in (
        page(client, f"/jobs/{job['id']}"),
        page(client, f"/jobs/{failed['id']}"),
        page(client, "/jobs", q=tag),
    ):
        assert XSS_SCRIPT not in html and "<img" not in html and "alert(1)</script>" not in html
    detail = page(client, f"/jobs/{job['id']}")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail  # shown, as text
    assert "&lt;img src=x onerror=alert(1)&gt;" in detail
    # The page script reads values into textContent only.
    assert ".innerHTML" not in client.get("/static/conveyor.js").text


def test_running_job_shows_progress(client: Any) -> None:
    job = submit(client, "demo.crunch", steps=30, delay=0.1)

    def mid_run() -> dict[str, Any] | None:
        body = client.get("/live/jobs", params={"id": job["id"]}).json()["jobs"].get(job["id"])
        p = body and body["progress"]
        return body if body["state"] == "running" and p and 0 < p["percent"] < 100 else None

    live = wait_for(mid_run, timeout=30, message="progress mid-run")
    assert live["progress"]["count"].endswith(" / 30") and live["duration"] != "—"
    listing = page(client, "/jobs", task="demo.crunch", state="running")
    row = listing.split(f'data-job-id="{job["id"]}"', 1)[1].split("</tr>", 1)[0]
    assert 'max="100" value="' in row
    html = page(client, f"/jobs/{job['id']}")
    assert 'id="progress-bar"' in html and "crunching" in html
    assert f'data-events-url="http://testserver/live/jobs/{job["id"]}/events"' in html
    assert ">Cancel</button>" in html and ">Retry</button>" not in html
    until_state(client, job["id"], "succeeded")
    done = client.get("/live/jobs", params={"id": job["id"], "counts": "true"}).json()
    assert done["jobs"][job["id"]]["terminal"] is True
    assert done["counts"]["succeeded"] >= 1


def test_live_endpoint_ignores_unknown_and_malformed_ids(client: Any) -> None:
    body = client.get(
        "/live/jobs", params={"id": [str(uuid.uuid4()), "not-a-uuid", "'; drop table x;--"]}
    ).json()
    assert body == {"jobs": {}}


def test_cancel_button_stops_a_running_job(client: Any) -> None:
    job = submit(client, "demo.sleep", 30)
    until_state(client, job["id"], "running")
    action = form_action(page(client, f"/jobs/{job['id']}"), "Cancel")
    assert action == f"http://testserver/jobs/{job['id']}/cancel"
    r = client.post(action, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].endswith(f"/jobs/{job['id']}?notice=cancel_requested")
    html = page(client, r.headers["location"])
    assert "Cancel requested" in html
    done = until_state(client, job["id"], "cancelled", timeout=15)
    assert done["attempts"][0]["outcome"] == "cancelled"
    html = page(client, f"/jobs/{job['id']}")
    assert ">Cancel</button>" not in html and ">Retry</button>" in html
    again = client.post(f"/jobs/{job['id']}/cancel")  # idempotent on a cancelled job
    assert again.status_code == 200 and "notice=cancelled" in str(again.url)


def test_cancel_of_a_finished_job_is_a_clear_409(client: Any) -> None:
    job = submit(client, "demo.add", 1, 1)
    until_state(client, job["id"], "succeeded")
    r = client.post(f"/jobs/{job['id']}/cancel")
    assert r.status_code == 409
    assert "already ended as succeeded" in r.text and 'class="flash flash-error"' in r.text


def test_retry_button_creates_a_linked_job(client: Any) -> None:
    job = submit(client, "demo.fail", "once more")
    until_state(client, job["id"], "failed")
    action = form_action(page(client, f"/jobs/{job['id']}"), "Retry")
    r = client.post(action, follow_redirects=False)
    assert r.status_code == 303
    match = re.search(r"/jobs/([0-9a-f-]{36})\?notice=retried$", r.headers["location"])
    assert match is not None
    new_id = match.group(1)
    assert new_id != job["id"]
    html = page(client, r.headers["location"])
    assert "Retry submitted" in html
    assert f'href="http://testserver/jobs/{job["id"]}"' in html  # the "Retry of" link
    retried = until_state(client, new_id, "failed")
    assert retried["retry_of"] == job["id"] and retried["args"] == ["once more"]


def test_retry_of_a_running_job_is_refused(client: Any) -> None:
    job = submit(client, "demo.sleep", 30)
    until_state(client, job["id"], "running")
    r = client.post(f"/jobs/{job['id']}/retry")
    assert r.status_code == 409
    assert "only finished jobs can be retried" in r.text
    assert ">Cancel</button>" in r.text  # the page, with the error above it
    client.post(f"/api/v1/jobs/{job['id']}/cancel")
    until_state(client, job["id"], "cancelled")


def test_cross_site_form_posts_are_refused(client: Any) -> None:
    job = submit(client, "demo.sleep", 2)
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
        r = client.post(f"/jobs/{job['id']}/cancel", headers=headers)
        assert r.status_code == 403 and "Cross-site request refused" in r.text
    ok = client.post(
        f"/jobs/{job['id']}/cancel",
        headers={"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert ok.status_code == 303
    until_state(client, job["id"], "cancelled")


@pytest.mark.parametrize(
    "bad", [str(uuid.uuid4()), "not-a-uuid", "%3Cscript%3Ealert(1)%3C%2Fscript%3E", "1' or '1"]
)
def test_unknown_and_malformed_ids_are_404_pages(client: Any, bad: str) -> None:
    for method, suffix in (("GET", ""), ("POST", "/cancel"), ("POST", "/retry")):
        r = client.request(method, f"/jobs/{bad}{suffix}")
        assert r.status_code == 404, (method, suffix, r.text[:300])
        assert r.headers["content-type"].startswith("text/html")
        assert "Job not found" in r.text and "no job with id" in r.text
        assert "<script>alert" not in r.text


def test_other_paths_below_jobs(client: Any) -> None:
    job = submit(client, "demo.add", 5, 5)
    r = client.get(f"/jobs/{job['id']}/cancel", follow_redirects=False)  # a bookmarked action
    assert r.status_code == 303 and r.headers["location"].endswith(f"/jobs/{job['id']}")
    for path in (f"/jobs/{job['id']}/nope", "/jobs/a/b/c"):
        r = client.get(path)
        assert r.status_code == 404 and "Job not found" in r.text


def test_list_query_round_trips_through_its_url() -> None:
    from urllib.parse import parse_qs, urlsplit

    from conveyor.web.formatting import format_duration
    from conveyor.web.list_query import ListQuery

    query = ListQuery.parse(
        ["failed", "FAILED", "dead", ""], " demo.add ", "", "a&b=c", None, "500"
    )
    assert query.states == ("failed", "dead") and query.task == "demo.add" and query.queue is None
    assert query.limit == 200 and not query.problems
    params = parse_qs(urlsplit(query.query_string()).query)
    again = ListQuery.parse(
        params["state"], params["task"][0], None, params["q"][0], None, params["limit"][0]
    )
    assert again == query
    assert ListQuery.parse(None, None, None, None, None, None).query_string() == ""
    assert [format_duration(s) for s in (None, 0.25, 4.2, 185, 7300)] == [
        "—",
        "250 ms",
        "4.2 s",
        "3m 05s",
        "2h 01m",
    ]
