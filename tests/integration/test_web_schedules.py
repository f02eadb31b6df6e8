"""The schedules pages against the real ledger and a real worker: the list and a schedule's
page render what the service knows; the form (generated from the task's signature) creates,
previews and edits, and comes back with each refusal next to its field, storing nothing;
pause with a note, resume, trigger now, backfill, delete through the web; the jobs list
filtered by schedule and the job page's link back; roles on every action."""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import text

from conveyor.api import create_app
from conveyor.ledger import users
from conveyor.testing.client import new_schedule, schedule_count
from conveyor.testing.dashboard import carry_csrf, log_in
from conveyor.testing.services import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.usefixtures("fresh_schedules")]

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}
API = "/api/v1/schedules"


def create(client: Any, **body: Any) -> dict[str, Any]:
    return new_schedule(client, **{"task": "demo.add", "args": [1, 2], **body})


def form(name: str, **fields: str) -> dict[str, str]:
    """The create form as a browser posts it for demo.add, every field present."""
    base = {
        "task": "demo.add",
        "name": name,
        "x": "40",
        "y": "2",
        "kind": "cron",
        "cron": "*/10 * * * *",
        "every": "",
        "at": "",
        "timezone": "Europe/Berlin",
        "overlap": "skip",
        "catchup_window": "",
        "catchup_max": "",
        "jitter": "",
        "start_at": "",
        "end_at": "",
        "max_runs": "",
        "queue": "",
        "priority": "",
        "op": "save",
    }
    return {**base, **fields}


def field_error(page: str, name: str) -> str:
    found = re.search(rf'data-error-for="{name}">([^<]*)<', page)
    assert found is not None, f"no error shown for {name}"
    return found.group(1)


def test_list_and_page_show_trigger_next_fire_runs_and_badges(client: Any) -> None:
    s = create(client, cron="0 2 * * 0", timezone="Europe/Berlin")
    listing = client.get("/schedules")
    assert listing.status_code == 200
    row = listing.text.split(f'data-schedule="{s["name"]}"', 1)[1].split("</tr>", 1)[0]
    assert "at 02:00, only on Sunday (Europe/Berlin)" in row
    nxt = row.split('data-field="next">', 1)[1].split("</td>", 1)[0]
    assert re.search(r"in [^·]+ · (\S+ )?0[01]:00 UTC · (\S+ )?02:00 Europe/Berlin<", nxt), nxt
    assert 'title="created at runtime">user<' in row and "never ran" in row

    page = client.get(f"/schedules/{s['id']}")
    assert page.status_code == 200 and s["name"] in page.text
    fires = page.text.split('id="next-fires"', 1)[1].split("</section>", 1)[0]
    assert fires.count("<li>") == 5 and fires.count("02:00 Europe/Berlin") == 5
    assert "No runs yet." in page.text
    # By name too, as the API and CLI accept.
    assert client.get(f"/schedules/{s['name']}").status_code == 200
    assert client.get("/schedules/no-such-schedule").status_code == 404
    assert "Schedules" in client.get("/jobs").text  # in the sidebar

    once = create(client, at=(datetime.now(UTC) + timedelta(days=2)).isoformat())
    one_off = client.get(f"/schedules/{once['id']}").text
    assert "once, " in one_off and 'id="backfill"' not in one_off
    assert one_off.split('id="next-fires"', 1)[1].split("</section>", 1)[0].count("<li>") == 1


def test_the_form_is_generated_from_the_task_and_creates_the_schedule(
    client: Any, ledger: Any
) -> None:
    chooser = client.get("/schedules/new")
    assert chooser.status_code == 200 and "<option>demo.crunch</option>" in chooser.text
    crunch = client.get("/schedules/new", params={"task": "demo.crunch"}).text
    assert 'name="steps"' in crunch and 'value="20"' in crunch and 'name="delay"' in crunch

    name = f"web-{uuid.uuid4().hex[:8]}"
    preview = client.post("/schedules/new", data=form(name, op="preview"), headers=SAME_ORIGIN)
    assert preview.status_code == 200, preview.text
    shown = preview.text.split('id="preview"', 1)[1].split("</section>", 1)[0]
    assert shown.count("<li>") == 5 and "Europe/Berlin" in shown
    with ledger.connect() as conn:
        stored = conn.execute(
            text("SELECT count(*) FROM conveyor_schedules WHERE name = :n"), {"n": name}
        ).scalar_one()
    assert stored == 0  # a preview stores nothing

    done = client.post(
        "/schedules/new", data=form(name), headers=SAME_ORIGIN, follow_redirects=False
    )
    assert done.status_code == 303, done.text
    s = client.get(f"{API}/{name}").json()
    assert done.headers["location"].endswith(f"/schedules/{s['id']}?notice=created")
    assert (s["task"], s["kwargs"], s["cron"], s["timezone"]) == (
        "demo.add",
        {"x": 40, "y": 2},
        "*/10 * * * *",
        "Europe/Berlin",
    )
    assert "Created" in client.get(done.headers["location"]).text

    # The live preview the page's script asks for: a fragment, nothing stored.
    live = client.post(
        "/schedules/preview", data=form("", kind="interval", every="90s"), headers=SAME_ORIGIN
    )
    assert live.status_code == 200 and live.text.count("<li>") == 5
    bad = client.post("/schedules/preview", data=form("", cron="61 * * * *"), headers=SAME_ORIGIN)
    assert "minute field" in bad.text and "<li>" not in bad.text


def test_every_refusal_is_shown_next_to_its_field_and_nothing_is_stored(
    client: Any, ledger: Any
) -> None:
    before = schedule_count(ledger)
    cases = {
        "cron": (form("bad-cron", cron="0 25 * * *"), "hour field"),
        "timezone": (form("bad-tz", timezone="Mars/Olympus"), "unknown timezone"),
        "every": (form("bad-every", kind="interval", every="0"), "more than 0"),
        "end_at": (
            form("bad-end", start_at="2031-01-02T00:00", end_at="2031-01-01T00:00"),
            "after start_at",
        ),
        "x": (form("bad-arg", x="two"), "not a whole number"),
        "at": (form("bad-at", kind="at", at=""), "required"),
    }
    for field, (data, reason) in cases.items():
        r = client.post("/schedules/new", data=data, headers=SAME_ORIGIN)
        assert r.status_code == 422, (field, r.status_code)
        assert reason in field_error(r.text, field), (field, field_error(r.text, field))
        assert f'value="{data["name"]}"' in r.text  # what was typed comes back
    # An argument the task's signature refuses (the service's check, not the form's).
    r = client.post("/schedules/new", data=form("bad-sig", x="1.5"), headers=SAME_ORIGIN)
    assert r.status_code == 422 and "not a whole number" in r.text
    assert schedule_count(ledger) == before


def test_edit_pause_resume_trigger_backfill_delete_through_the_web(
    client: Any, ledger: Any
) -> None:
    s = create(client, cron="*/5 * * * *", kwargs={}, args=[20, 22])
    page = f"/schedules/{s['id']}"
    edit = client.get(f"{page}/edit")
    assert edit.status_code == 200 and 'value="*/5 * * * *"' in edit.text

    saved = client.post(
        f"{page}/edit",
        data=form(s["name"], kind="interval", every="15m", timezone="UTC", x="20", y="22"),
        headers=SAME_ORIGIN,
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    now = client.get(f"{API}/{s['id']}").json()
    assert (now["trigger_kind"], now["every"], now["kwargs"]) == (
        "interval",
        900.0,
        {"x": 20, "y": 22},
    )
    assert "every 15 minutes" in client.get(page).text

    paused = client.post(
        f"{page}/pause",
        data={"note": "supplier down <b>today</b>"},
        headers=SAME_ORIGIN,
        follow_redirects=False,
    )
    assert paused.status_code == 303
    listing = client.get("/schedules").text
    row = listing.split(f'data-schedule="{s["name"]}"', 1)[1].split("</tr>", 1)[0]
    assert 'data-badge="paused"' in row and "supplier down &lt;b&gt;today&lt;/b&gt;" in row
    assert "paused" in row.split('data-field="next">', 1)[1]
    assert client.get(f"{API}/{s['id']}").json()["paused_note"] == "supplier down <b>today</b>"

    assert client.post(f"{page}/resume", headers=SAME_ORIGIN).status_code == 200
    assert not client.get(f"{API}/{s['id']}").json()["paused"]

    triggered = client.post(f"{page}/trigger", headers=SAME_ORIGIN, follow_redirects=False)
    assert triggered.status_code == 303
    runs = client.get(f"{API}/{s['id']}/runs").json()
    assert len(runs) == 1 and runs[0]["job_id"]
    job_id = runs[0]["job_id"]
    wait_for(
        lambda: client.get(f"/api/v1/jobs/{job_id}").json()["state"] == "succeeded",
        timeout=30,
        message="the triggered run",
    )
    shown = client.get(page).text.split('id="runs"', 1)[1]
    assert f'data-job-id="{job_id}"' in shown and "state-succeeded" in shown

    # The jobs list filtered by the schedule, labelled with its name; the job links back.
    jobs = client.get("/jobs", params={"schedule": s["id"]}).text
    assert 'id="schedule-filter"' in jobs and s["name"] in jobs and job_id in jobs
    # The filter form and the bulk actions ("all matching") keep to the schedule's jobs.
    assert jobs.count(f'name="schedule" value="{s["id"]}"') == 2
    job = client.get(f"/jobs/{job_id}").text
    assert f'/schedules/{s["id"]}" id="job-schedule">{s["name"]}<' in job
    assert "not a schedule id" in client.get("/jobs", params={"schedule": "x"}).text

    start = (datetime.now(UTC) - timedelta(minutes=46)).strftime("%Y-%m-%dT%H:%M")
    end = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")
    backfilled = client.post(
        f"{page}/backfill",
        data={"start": start, "end": end},
        headers=SAME_ORIGIN,
        follow_redirects=False,
    )
    assert backfilled.status_code == 303, backfilled.text
    assert len(client.get(f"{API}/{s['id']}/runs").json()) in (4, 5)  # 15-min fires in 45 min
    wrong = client.post(f"{page}/backfill", data={"start": end, "end": start}, headers=SAME_ORIGIN)
    assert wrong.status_code == 422 and "must be after start" in wrong.text

    deleted = client.post(f"{page}/delete", headers=SAME_ORIGIN, follow_redirects=False)
    assert deleted.status_code == 303 and "/schedules?notice=deleted" in deleted.headers["location"]
    assert client.get(f"{API}/{s['id']}").status_code == 404
    assert "a deleted schedule" in client.get(f"/jobs/{job_id}").text


def test_actions_need_a_session_that_may_submit_jobs(
    client: Any, settings: Any, ledger: Any
) -> None:
    s = create(client, cron="*/5 * * * *")
    viewer = f"viewer-{uuid.uuid4().hex[:8]}"
    operator = f"operator-{uuid.uuid4().hex[:8]}"
    with ledger.begin() as conn:
        users.create_user(conn, viewer, "schedule pages password", "viewer")
        users.create_user(conn, operator, "schedule pages password", "operator")
    secret = SecretStr(secrets.token_urlsafe(48))
    app = create_app(
        settings.model_copy(
            update={"auth": "required", "secret_key": secret, "auth_cache_seconds": 0.0}
        )
    )
    with TestClient(app) as as_viewer, TestClient(app) as as_operator:
        assert log_in(as_viewer, viewer, "schedule pages password").status_code == 303
        assert log_in(as_operator, operator, "schedule pages password").status_code == 303
        carry_csrf(as_viewer, "/schedules")
        carry_csrf(as_operator, "/schedules/new?task=demo.add")
        page = as_viewer.get(f"/schedules/{s['id']}")
        assert page.status_code == 200 and "Trigger now" not in page.text
        assert "New schedule" not in as_viewer.get("/schedules").text
        for action in ("pause", "resume", "trigger", "delete", "reset"):
            r = as_viewer.post(f"/schedules/{s['id']}/{action}", headers=SAME_ORIGIN)
            assert r.status_code == 403, action
        refused = as_viewer.post("/schedules/new", data=form("viewer-made"), headers=SAME_ORIGIN)
        assert refused.status_code == 403
        assert "Trigger now" in as_operator.get(f"/schedules/{s['id']}").text
        paused = as_operator.post(
            f"/schedules/{s['id']}/pause", headers=SAME_ORIGIN, follow_redirects=False
        )
        assert paused.status_code == 303
        # From another site, even the operator's session is refused.
        cross = as_operator.post(
            f"/schedules/{s['id']}/resume", headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert cross.status_code == 403
    assert client.get(f"{API}/{s['id']}").json()["paused"]


def test_code_schedules_show_overrides_reset_to_code_and_retirement(client: Any) -> None:
    from conveyor.runtime.code_schedules import code_schedules

    services = client.app.state.services
    declared = code_schedules(services.app)
    name = "web-code-schedule"
    entry = {"task": "demo.add", "args": [1, 2], "every": 3600}
    services.schedules.import_code({**declared, name: entry})
    s = client.get(f"{API}/{name}").json()
    try:
        assert s["source"] == "code" and s["overridden"] == []
        page = f"/schedules/{s['id']}"
        assert "Reset to code" not in client.get(page).text
        # Its positional arguments fill the signature's fields in the edit form.
        shown = client.get(f"{page}/edit").text
        assert re.search(r'name="x"[^>]*value="1"', shown) and re.search(
            r'name="y"[^>]*value="2"', shown
        )
        edited = client.post(
            f"{page}/edit",
            data={
                **form(name, kind="interval", every="2h", timezone="UTC"),
                "x": "",
                "y": "",
            },
            headers=SAME_ORIGIN,
        )
        # The code's arguments are positional: the form (keyword arguments from the signature)
        # asks for x and y rather than silently dropping them.
        assert edited.status_code == 422 and "required" in field_error(edited.text, "x")
        saved = client.post(
            f"{page}/edit",
            data=form(name, kind="interval", every="2h", timezone="UTC", x="1", y="2"),
            headers=SAME_ORIGIN,
            follow_redirects=False,
        )
        assert saved.status_code == 303, saved.text
        shown = client.get(page).text
        assert 'data-badge="overridden"' in shown and 'id="reset"' in shown
        assert client.get(f"{API}/{name}").json()["every"] == 7200.0

        reset = client.post(f"{page}/reset", headers=SAME_ORIGIN, follow_redirects=False)
        assert reset.status_code == 303
        back = client.get(f"{API}/{name}").json()
        assert back["every"] == 3600.0 and back["overridden"] == []
        assert "Reset to the code" in client.get(reset.headers["location"]).text

        services.schedules.import_code(declared)  # gone from the code: retired, kept
        row = client.get("/schedules").text.split(f'data-schedule="{name}"', 1)[1]
        assert 'data-badge="retired"' in row.split("</tr>", 1)[0]
        assert "Trigger now" not in client.get(page).text
    finally:
        services.schedules.delete(s["id"])


def test_a_task_taking_any_positional_arguments_keeps_them_through_an_edit(
    client: Any,
) -> None:
    s = create(client, task="demo.echo", args=["a", 2], kwargs={}, every="1h")
    page = f"/schedules/{s['id']}"
    shown = client.get(f"{page}/edit").text
    assert 'name="positional_args" class="mono" value="[&#34;a&#34;, 2]"' in shown
    data = {
        **form(s["name"], task="demo.echo", kind="interval", every="2h"),
        "positional_args": '["a", 2]',
    }
    saved = client.post(f"{page}/edit", data=data, headers=SAME_ORIGIN, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    after = client.get(f"{API}/{s['id']}").json()
    assert (after["args"], after["every"]) == (["a", 2], 7200.0)
