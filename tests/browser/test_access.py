"""Users, roles and CSRF tokens in Chromium: log in with a password (and, the second option,
an API key), see who is logged in, log out; an operator cancels; a viewer cannot; a form whose
CSRF token is missing or wrong is refused and changes nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor.testing.services import wait_for

if TYPE_CHECKING:
    # Only for the annotations: a conftest is not importable as a module at run time.
    from conftest import Dashboard


def shot(page: Any, dashboard: Dashboard, name: str) -> None:
    page.screenshot(path=str(dashboard.screenshots / f"{name}.png"), full_page=True)


def running_job(dashboard: Dashboard) -> str:
    job_id = dashboard.submit("demo.sleep", 20)
    wait_for(lambda: dashboard.job(job_id)["state"] == "running", timeout=30, message="running")
    return job_id


def stop(dashboard: Dashboard, job_id: str) -> None:
    with dashboard.api() as client:
        client.post(f"/api/v1/jobs/{job_id}/cancel")


def test_log_in_with_a_password_and_out(anonymous_page: Any, dashboard: Dashboard) -> None:
    page = anonymous_page
    shot(page, dashboard, "login")
    name = dashboard.users["operator"]
    page.fill("#login-password input[name=username]", name)
    page.fill("#login-password input[name=password]", "not the password")
    page.click("#login-password button[type=submit]")
    page.wait_for_selector(".flash-error")
    assert "wrong username or password" in page.locator(".flash-error").inner_text()
    shot(page, dashboard, "login-refused")

    page.fill("#login-password input[name=password]", dashboard.password)
    page.click("#login-password button[type=submit]")
    page.wait_for_url("**/jobs**")
    assert page.locator(".session-name").inner_text() == name
    assert page.locator(".session-role").inner_text().lower() == "operator"
    shot(page, dashboard, "logged-in-operator")
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["conveyor_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"

    page.click(".session button[type=submit]")
    page.wait_for_url("**/login**")
    page.goto(dashboard.url + "/jobs")
    assert "/login" in page.url


def test_log_in_with_an_api_key(anonymous_page: Any, dashboard: Dashboard) -> None:
    page = anonymous_page
    page.click("details.login-key summary")
    page.fill("#login-key textarea[name=key]", dashboard.keys["viewer"])
    page.click("#login-key button[type=submit]")
    page.wait_for_url("**/jobs**")
    assert page.locator(".session-role").inner_text().lower() == "api key"


def test_a_form_without_its_csrf_token_is_refused(operator_page: Any, dashboard: Dashboard) -> None:
    job_id = running_job(dashboard)
    page = operator_page
    page.goto(f"{dashboard.url}/jobs/{job_id}")
    form = "form[action$='/cancel']"
    # What a forged form would lack: the token. Drop it from the real form and submit.
    page.eval_on_selector(f"{form} input[name=csrf_token]", "input => input.remove()")
    page.click(f"{form} button")
    page.wait_for_load_state("load")
    assert "CSRF token missing or invalid" in page.locator("main").inner_text()
    shot(page, dashboard, "csrf-refused")
    # A wrong token fares no better.
    page.goto(f"{dashboard.url}/jobs/{job_id}")
    page.eval_on_selector(f"{form} input[name=csrf_token]", "input => { input.value = 'f00d'; }")
    page.click(f"{form} button")
    page.wait_for_load_state("load")
    assert "CSRF token missing or invalid" in page.locator("main").inner_text()
    job = dashboard.job(job_id)
    assert job["state"] == "running" and not job["cancel_requested"]
    stop(dashboard, job_id)


def test_an_operator_submits_but_cannot_shut_workers_down(
    operator_page: Any, dashboard: Dashboard
) -> None:
    page = operator_page
    page.goto(dashboard.url + "/workers")
    page.wait_for_selector("table.workers")
    assert page.locator("form[action$='/shutdown']").count() == 0
    page.goto(dashboard.url + "/tasks/demo.add")
    assert page.locator("form.submit-form").count() == 1  # operators submit jobs
    shot(page, dashboard, "workers-as-operator")
