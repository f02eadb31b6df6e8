"""API keys, scopes and allowlists on every /api/v1 route; the dashboard's login; production's
refusal to start open. Against the real ledger, with an auth-enabled app beside the open one."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery import Celery
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import text

from conveyor.api import create_app
from conveyor.api.auth import every_route, requirements_of
from conveyor.config import Settings
from conveyor.embedded.process import free_port
from conveyor.errors import ConfigurationError
from conveyor.ledger import keys
from conveyor.testing.dashboard import csrf_token
from conveyor.testing.services import TEST_APP

SECRET = SecretStr(secrets.token_urlsafe(48))
ADMIN_SCOPES = ("admin",)


def _app_routes() -> list[tuple[str, str, Any]]:
    """(method, path, route) of every route create_app mounts (dashboard, packs, docs and all),
    read from an app built with a Celery app of its own and URLs it never connects to; a route
    added later shows up here without anyone listing it."""
    routes_only = Settings(
        database_url="postgresql://routes-only.invalid/none",
        redis_url="redis://routes-only.invalid:6379/0",
        env="test",
        app=TEST_APP,
    )
    # Not the current app: publishes later in this process must not be recorded through it.
    app = create_app(routes_only, celery_app=Celery("routes-only", set_as_current=False))
    found = [
        (method, route.path, route)
        for route in every_route(app)
        for method in route.methods or {"*"}
        if method != "HEAD"
    ]
    return sorted(found, key=lambda r: (r[1], r[0]))


def _api_routes() -> list[tuple[str, str]]:
    """(method, path) of every API operation: /api/v1 and /metrics."""
    return sorted(
        (method, path)
        for method, path, _ in APP_ROUTES
        if path.startswith("/api/v1") or path == "/metrics"
    )


APP_ROUTES = _app_routes()
REQUIREMENTS = {(m, p): requirements_of(route) for m, p, route in APP_ROUTES}
API_ROUTES = _api_routes()

# The scope each operation needs. A new route fails test_every_api_route_is_listed until it is
# added here, and then test_every_api_route_demands_its_scope holds it to that scope.
EXPECTED_SCOPE: dict[tuple[str, str], str | None] = {
    ("GET", "/api/v1/jobs"): "jobs:read",
    ("GET", "/api/v1/jobs/{job_id}"): "jobs:read",
    ("GET", "/api/v1/jobs/{job_id}/result"): "jobs:read",
    ("GET", "/api/v1/jobs/{job_id}/events"): "jobs:read",
    ("GET", "/api/v1/tasks"): "jobs:read",
    ("GET", "/api/v1/workers"): "jobs:read",
    ("GET", "/api/v1/queues"): "jobs:read",
    ("POST", "/api/v1/jobs"): "jobs:write",
    ("POST", "/api/v1/jobs/{job_id}/cancel"): "jobs:write",
    ("POST", "/api/v1/jobs/{job_id}/retry"): "jobs:write",
    ("POST", "/api/v1/jobs/{job_id}/run-now"): "jobs:write",
    ("POST", "/api/v1/queues/{name}/pause"): "jobs:write",
    ("POST", "/api/v1/queues/{name}/resume"): "jobs:write",
    ("GET", "/api/v1/workflows"): "jobs:read",
    ("GET", "/api/v1/workflows/{workflow_id}"): "jobs:read",
    ("POST", "/api/v1/workflows"): "jobs:write",
    ("POST", "/api/v1/workflows/{workflow_id}/cancel"): "jobs:write",
    ("POST", "/api/v1/workflows/{workflow_id}/retry"): "jobs:write",
    ("GET", "/api/v1/dlq"): "dlq:admin",
    ("POST", "/api/v1/dlq/{job_id}/replay"): "dlq:admin",
    ("POST", "/api/v1/dlq/replay"): "dlq:admin",
    ("POST", "/api/v1/dlq/purge"): "dlq:admin",
    ("DELETE", "/api/v1/dlq/{job_id}"): "dlq:admin",
    # Schedules: reading (and previewing) is jobs:read, changing or firing one jobs:write.
    ("GET", "/api/v1/schedules"): "jobs:read",
    ("GET", "/api/v1/schedules/{ref}"): "jobs:read",
    ("GET", "/api/v1/schedules/{ref}/next"): "jobs:read",
    ("GET", "/api/v1/schedules/{ref}/runs"): "jobs:read",
    ("POST", "/api/v1/schedules/preview"): "jobs:read",
    ("POST", "/api/v1/schedules"): "jobs:write",
    ("PATCH", "/api/v1/schedules/{ref}"): "jobs:write",
    ("DELETE", "/api/v1/schedules/{ref}"): "jobs:write",
    ("POST", "/api/v1/schedules/{ref}/pause"): "jobs:write",
    ("POST", "/api/v1/schedules/{ref}/resume"): "jobs:write",
    ("POST", "/api/v1/schedules/{ref}/reset"): "jobs:write",
    ("POST", "/api/v1/schedules/{ref}/trigger"): "jobs:write",
    ("POST", "/api/v1/schedules/{ref}/backfill"): "jobs:write",
    # The catalog pack: reading is jobs:read, changing anything jobs:write.
    ("GET", "/api/v1/catalog/imports"): "jobs:read",
    ("GET", "/api/v1/catalog/imports/{import_id}"): "jobs:read",
    ("GET", "/api/v1/catalog/imports/{import_id}/errors"): "jobs:read",
    ("GET", "/api/v1/catalog/imports/{import_id}/errors.csv"): "jobs:read",
    ("POST", "/api/v1/catalog/imports"): "jobs:write",
    ("POST", "/api/v1/catalog/imports/{import_id}/cancel"): "jobs:write",
    ("POST", "/api/v1/catalog/imports/{import_id}/retry"): "jobs:write",
    ("GET", "/api/v1/catalog/products"): "jobs:read",
    ("GET", "/api/v1/catalog/products/{product_id}"): "jobs:read",
    ("POST", "/api/v1/catalog/products"): "jobs:write",
    ("PATCH", "/api/v1/catalog/products/{product_id}"): "jobs:write",
    ("DELETE", "/api/v1/catalog/products/{product_id}"): "jobs:write",
    ("DELETE", "/api/v1/catalog/products"): "jobs:write",
    ("GET", "/api/v1/catalog/webhooks"): "jobs:read",
    ("GET", "/api/v1/catalog/webhooks/{webhook_id}"): "jobs:read",
    ("GET", "/api/v1/catalog/webhooks/{webhook_id}/deliveries"): "jobs:read",
    ("POST", "/api/v1/catalog/webhooks"): "jobs:write",
    ("PATCH", "/api/v1/catalog/webhooks/{webhook_id}"): "jobs:write",
    ("DELETE", "/api/v1/catalog/webhooks/{webhook_id}"): "jobs:write",
    ("POST", "/api/v1/catalog/webhooks/{webhook_id}/test"): "jobs:write",
    # The factory pack: the same rule, except verifying a token, which is public (PUBLIC).
    ("GET", "/api/v1/factory/batches"): "jobs:read",
    ("GET", "/api/v1/factory/batches/stats"): "jobs:read",
    ("GET", "/api/v1/factory/batches/{batch_id}"): "jobs:read",
    ("GET", "/api/v1/factory/batches/{batch_id}/products"): "jobs:read",
    ("GET", "/api/v1/factory/batches/{batch_id}/products.csv"): "jobs:read",
    ("POST", "/api/v1/factory/batches"): "jobs:write",
    ("POST", "/api/v1/factory/batches/{batch_id}/retry"): "jobs:write",
    ("GET", "/api/v1/factory/verify/{token:path}"): None,
    # The assess pack: reading needs jobs:read, everything that creates or runs jobs:write.
    ("GET", "/api/v1/assess/examples"): "jobs:read",
    ("POST", "/api/v1/assess/examples/{example}/assessments"): "jobs:write",
    ("GET", "/api/v1/assess/assessments"): "jobs:read",
    ("POST", "/api/v1/assess/assessments"): "jobs:write",
    ("POST", "/api/v1/assess/assessments/upload"): "jobs:write",
    ("GET", "/api/v1/assess/assessments/{assessment_id}"): "jobs:read",
    ("GET", "/api/v1/assess/assessments/{assessment_id}/events"): "jobs:read",
    ("GET", "/api/v1/assess/assessments/{assessment_id}/result"): "jobs:read",
    ("GET", "/api/v1/assess/assessments/{assessment_id}/report"): "jobs:read",
    ("POST", "/api/v1/assess/assessments/{assessment_id}/start"): "jobs:write",
    ("POST", "/api/v1/assess/assessments/{assessment_id}/cancel"): "jobs:write",
    ("POST", "/api/v1/assess/assessments/{assessment_id}/retry"): "jobs:write",
    # The agri pack: the same rule, except reading and verifying proofs (PUBLIC): anyone
    # holding a CID from a payout transaction must be able to check it.
    ("POST", "/api/v1/agri/policies"): "jobs:write",
    ("GET", "/api/v1/agri/policies"): "jobs:read",
    ("GET", "/api/v1/agri/policies/{policy_id}"): "jobs:read",
    ("DELETE", "/api/v1/agri/policies/{policy_id}"): "jobs:write",
    ("POST", "/api/v1/agri/plots"): "jobs:write",
    ("GET", "/api/v1/agri/plots"): "jobs:read",
    ("GET", "/api/v1/agri/plots/{plot_id}"): "jobs:read",
    ("PUT", "/api/v1/agri/plots/{plot_id}"): "jobs:write",
    ("DELETE", "/api/v1/agri/plots/{plot_id}"): "jobs:write",
    ("GET", "/api/v1/agri/plots/{plot_id}/weather"): "jobs:read",
    ("GET", "/api/v1/agri/plots/{plot_id}/indices"): "jobs:read",
    ("GET", "/api/v1/agri/plots/{plot_id}/ndvi"): "jobs:read",
    ("GET", "/api/v1/agri/images"): "jobs:read",
    ("POST", "/api/v1/agri/assessments"): "jobs:write",
    ("GET", "/api/v1/agri/assessments"): "jobs:read",
    ("GET", "/api/v1/agri/assessments/{assessment_id}"): "jobs:read",
    ("GET", "/api/v1/agri/payouts"): "jobs:read",
    ("GET", "/api/v1/agri/payouts/{payout_id}"): "jobs:read",
    ("POST", "/api/v1/agri/payouts/{payout_id}/submit"): "jobs:write",
    ("GET", "/api/v1/agri/proofs/{cid}"): None,
    ("POST", "/api/v1/agri/proofs/verify"): None,
    ("GET", "/metrics"): "jobs:read",
}

# Routes anyone may call without a key: what a consumer scanning a product label calls.
PUBLIC = {
    ("GET", "/api/v1/factory/verify/{token:path}"),
    ("GET", "/api/v1/agri/proofs/{cid}"),
    ("POST", "/api/v1/agri/proofs/verify"),
}


def auth_settings(settings: Settings, **update: Any) -> Settings:
    return settings.model_copy(
        update={"auth": "required", "secret_key": SECRET, "auth_cache_seconds": 0.0, **update}
    )


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[TestClient]:
    """The app with CONVEYOR_AUTH=required and no key cache, so revocations show at once."""
    with TestClient(create_app(auth_settings(settings))) as c:
        yield c


def make_key(ledger: Any, *scopes: str, name: str = "test", **options: Any) -> str:
    with ledger.begin() as conn:
        return keys.create_key(conn, name, scopes, **options).secret


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def zero_scope_key(ledger: Any) -> str:
    """A key holding no scope at all; create_key refuses those, so it is written by hand."""
    key_id = "zs" + secrets.token_hex(3)
    key = f"cvk_{key_id}_{secrets.token_urlsafe(30)}"
    with ledger.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO conveyor_api_keys (key_id, name, secret_hash, scopes) "
                "VALUES (:k, 'no scopes', :h, '{}')"
            ),
            {"k": key_id, "h": keys.hash_key(key)},
        )
    return key


def call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> Any:
    url = path.replace("{job_id}", str(uuid.uuid4())).replace("{workflow_id}", str(uuid.uuid4()))
    body = {} if method in ("POST", "PUT", "PATCH") else None
    return client.request(method, url, json=body, headers=headers)


def count_jobs(ledger: Any) -> int:
    with ledger.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM conveyor_jobs")).scalar_one())


# --- authentication ------------------------------------------------------------------------


def test_no_key_is_401_with_a_bearer_challenge(api: TestClient) -> None:
    r = api.get("/api/v1/jobs")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert "needs an API key" in r.json()["detail"]
    assert r.json()["error"] == "NotAuthenticated"


def test_bad_keys_are_401(api: TestClient, ledger: Any) -> None:
    good = make_key(ledger, "jobs:read")
    key_id = keys.key_id_of(good)
    wrong_secret = f"cvk_{key_id}_{'x' * 40}"
    unknown = f"cvk_zzzzzzzz_{'y' * 40}"
    for presented, message in [
        ("nonsense", "malformed API key"),
        (unknown, "invalid API key"),
        (wrong_secret, "invalid API key"),
        (good + "x", "invalid API key"),
    ]:
        r = api.get("/api/v1/jobs", headers=bearer(presented))
        assert r.status_code == 401, presented
        assert message in r.json()["detail"]
        assert r.headers["www-authenticate"] == "Bearer"
    assert (
        api.get("/api/v1/jobs", headers={"Authorization": "Basic Zm9vOmJhcg=="}).status_code == 401
    )


def test_both_headers_carry_a_key(api: TestClient, ledger: Any) -> None:
    key = make_key(ledger, "jobs:read")
    assert api.get("/api/v1/jobs", headers=bearer(key)).status_code == 200
    assert api.get("/api/v1/jobs", headers={"X-API-Key": key}).status_code == 200


def test_revoked_key_is_401(api: TestClient, ledger: Any) -> None:
    key = make_key(ledger, "jobs:read")
    assert api.get("/api/v1/jobs", headers=bearer(key)).status_code == 200
    with ledger.begin() as conn:
        keys.revoke_key(conn, keys.key_id_of(key) or "")
    r = api.get("/api/v1/jobs", headers=bearer(key))
    assert r.status_code == 401 and "was revoked" in r.json()["detail"]


def test_expired_key_is_401(api: TestClient, ledger: Any) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    key = make_key(ledger, "jobs:read", expires_at=past)
    r = api.get("/api/v1/jobs", headers=bearer(key))
    assert r.status_code == 401 and "expired at" in r.json()["detail"]
    later = make_key(ledger, "jobs:read", expires_at=datetime.now(UTC) + timedelta(days=1))
    assert api.get("/api/v1/jobs", headers=bearer(later)).status_code == 200


def test_revocation_waits_for_the_key_cache(settings: Settings, ledger: Any) -> None:
    """Keys are cached per process for CONVEYOR_AUTH_CACHE_SECONDS: a revoked key keeps working
    until its entry is stale, then stops."""
    app = create_app(auth_settings(settings, auth_cache_seconds=0.5))
    with TestClient(app) as c:
        key = make_key(ledger, "jobs:read")
        assert c.get("/api/v1/tasks", headers=bearer(key)).status_code == 200
        with ledger.begin() as conn:
            keys.revoke_key(conn, keys.key_id_of(key) or "")
        assert c.get("/api/v1/tasks", headers=bearer(key)).status_code == 200  # cached
        time.sleep(0.6)
        assert c.get("/api/v1/tasks", headers=bearer(key)).status_code == 401


def test_health_stays_open(api: TestClient) -> None:
    assert api.get("/healthz").status_code == 200
    assert api.get("/readyz").status_code in (200, 503)  # open; its answer is about services


# --- scopes on every route -----------------------------------------------------------------


def test_every_api_route_is_listed() -> None:
    assert set(API_ROUTES) == set(EXPECTED_SCOPE), (
        "an /api/v1 route was added or removed: list it in EXPECTED_SCOPE with the scope it needs"
    )


@pytest.mark.parametrize(("method", "path"), API_ROUTES, ids=[f"{m} {p}" for m, p in API_ROUTES])
def test_every_api_route_demands_its_scope(
    api: TestClient, ledger: Any, method: str, path: str
) -> None:
    scope = EXPECTED_SCOPE.get((method, path))
    if (method, path) in PUBLIC:  # answered without a key (a placeholder id may be a 404/422)
        assert call(api, method, path, {}).status_code not in (401, 403)
        return
    assert call(api, method, path, {}).status_code == 401
    r = call(api, method, path, bearer(zero_scope_key(ledger)))
    assert r.status_code == 403, r.text
    assert "this key lacks the scope" in r.json()["detail"]
    if scope is not None:
        assert f"this key lacks the scope '{scope}'" in r.json()["detail"]
        others = [s for s in keys.SCOPES if s not in (scope, "admin")]
        r = call(api, method, path, bearer(make_key(ledger, *others)))
        assert r.status_code == 403 and f"'{scope}'" in r.json()["detail"], r.text


def test_openapi_shows_the_security_schemes(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    assert {"HTTPBearer", "APIKeyHeader"} <= set(spec["components"]["securitySchemes"])
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            # OpenAPI writes a `{token:path}` parameter as `{token}`.
            route_path = path.replace("{token}", "{token:path}")
            if (method.upper(), route_path) in PUBLIC:  # documented as open: no key asked for
                assert not op.get("security"), (method, path)
            elif path.startswith("/api/v1") or path == "/metrics":
                assert {"HTTPBearer": []} in op.get("security", []), (method, path)
            else:
                assert not op.get("security"), (method, path)


def test_scopes_grant_what_they_say(api: TestClient, ledger: Any) -> None:
    reader = bearer(make_key(ledger, "jobs:read"))
    assert api.get("/api/v1/jobs", headers=reader).status_code == 200
    assert api.get("/api/v1/queues", headers=reader).status_code == 200
    r = api.post("/api/v1/jobs", json={"task": "demo.noop"}, headers=reader)
    assert r.status_code == 403 and "'jobs:write'" in r.json()["detail"]
    r = api.get("/api/v1/dlq", headers=reader)
    assert r.status_code == 403 and "'dlq:admin'" in r.json()["detail"]
    dlq = bearer(make_key(ledger, "dlq:admin"))
    assert api.get("/api/v1/dlq", headers=dlq).status_code == 200
    assert api.get("/api/v1/jobs", headers=dlq).status_code == 403
    admin = bearer(make_key(ledger, *ADMIN_SCOPES))
    for url in ("/api/v1/jobs", "/api/v1/dlq", "/api/v1/tasks", "/api/v1/workers"):
        assert api.get(url, headers=admin).status_code == 200, url


# --- every route declares who may call it --------------------------------------------------

# Routes anyone may reach without a key or session: docs (see test_api_docs), health, static
# files, the login form, and the factory's public verification pages.
OPEN_ROUTES = {
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("*", "/static"),
    ("*", "/static/api-docs"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/verify"),
    ("GET", "/verify/{token:path}"),
    # The agri pack's public proof page: anyone holding a payout's CID checks it.
    ("GET", "/proofs"),
    ("GET", "/proofs/{cid}"),
}


def _is_page(route: Any) -> bool:
    """A dashboard page: its dependencies include a session check (``page_scope``)."""

    def names(dependant: Any) -> list[str]:
        return [n for d in dependant.dependencies for n in (d.call.__name__, *names(d))]

    dependant = getattr(route, "dependant", None)
    return dependant is not None and any(n.startswith("page_") for n in names(dependant))


ALL_ROUTES = [(m, p) for m, p, _ in APP_ROUTES]


@pytest.mark.parametrize(("method", "path"), ALL_ROUTES, ids=[f"{m} {p}" for m, p in ALL_ROUTES])
def test_every_route_declares_who_may_call_it(method: str, path: str) -> None:
    """Every route of the app, pack routes included: an API route declares one requirement
    (scope, and tasks or job-by-job limits), a dashboard page needs a session, and anything else
    is listed in OPEN_ROUTES on purpose."""
    (route,) = [r for m, p, r in APP_ROUTES if (m, p) == (method, path)]
    declared = REQUIREMENTS[(method, path)]
    if path.startswith("/api/v1") or path == "/metrics":
        assert len(declared) == 1, f"{method} {path} declares {declared}: declare exactly one"
        assert declared[0].scope == EXPECTED_SCOPE[(method, path)]
    elif (method, path) not in OPEN_ROUTES:
        assert _is_page(route), (
            f"{method} {path} needs no session and is not in OPEN_ROUTES: give it page_scope(...)"
        )


# --- allowlists bind every route -----------------------------------------------------------

FOREIGN_TASK = "demo.echo"
OWN_TASK = "demo.add"


def dead_job(ledger: Any, task: str, queue: str = "default") -> str:
    """A dead job of ``task`` written straight into the ledger (no broker or worker needed)."""
    job_id = str(uuid.uuid4())
    with ledger.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO conveyor_jobs (id, task, state, queue, args, error_type, "
                "error_message, finished_at) VALUES (:id, :task, 'dead', :queue, "
                "'[\"secret-args\"]', 'Boom', 'it died', now())"
            ),
            {"id": job_id, "task": task, "queue": queue},
        )
    return job_id


@pytest.fixture(scope="module")
def jobs_of_two_tasks(ledger: Any) -> tuple[str, str]:
    """(own, foreign): a dead job a limited key may see and one it may not."""
    return dead_job(ledger, OWN_TASK), dead_job(ledger, FOREIGN_TASK)


def limited_key(ledger: Any, **options: Any) -> dict[str, str]:
    """Every scope but admin, limited to demo.add on the default queue unless told otherwise."""
    options = {"allowed_tasks": [OWN_TASK], "allowed_queues": ["default"], **options}
    return bearer(make_key(ledger, "jobs:read", "jobs:write", "dlq:admin", **options))


def ids_of(r: Any) -> set[str]:
    assert r.status_code == 200, r.text
    return {item["id"] for item in r.json()["items"]}


# How a limited key is bound on each job route, where the limit applies job by job: given the
# client, the key's headers, its own job and a job of a task outside its list. A job route not
# listed here fails test_a_limited_key_is_bound_on_every_api_route.
def _list(url: str) -> Any:
    def check(api: TestClient, key: dict[str, str], own: str, foreign: str) -> None:
        assert own in ids_of(api.get(f"{url}?task={OWN_TASK}&limit=500", headers=key))
        assert foreign not in ids_of(api.get(f"{url}?limit=500", headers=key))
        assert ids_of(api.get(f"{url}?task={FOREIGN_TASK}", headers=key)) == set()

    return check


def _one(method: str, url: str, own_status: int | None = 200) -> Any:
    """A route on one job: the foreign job is a 404 (as if it did not exist, so ids do not
    leak), the key's own job passes the allowlist."""

    def check(api: TestClient, key: dict[str, str], own: str, foreign: str) -> None:
        r = api.request(method, url.format(job_id=foreign), headers=key)
        assert r.status_code == 404, r.text
        assert "secret-args" not in r.text and FOREIGN_TASK not in r.text
        if own_status is not None:
            mine = api.request(method, url.format(job_id=own), headers=key)
            assert mine.status_code == own_status, mine.text

    return check


def _submit(api: TestClient, key: dict[str, str], own: str, foreign: str) -> None:
    r = api.post("/api/v1/jobs", json={"task": FOREIGN_TASK, "args": ["x"]}, headers=key)
    assert r.status_code == 403 and f"task {FOREIGN_TASK!r}" in r.json()["detail"]


def _bulk(url: str) -> Any:
    def check(api: TestClient, key: dict[str, str], own: str, foreign: str) -> None:
        r = api.post(url, json={}, headers=key)
        assert r.status_code == 403 and "give a `task` filter" in r.json()["detail"]
        r = api.post(url, json={"task": FOREIGN_TASK, "queue": "default"}, headers=key)
        assert r.status_code == 403
        nothing = {"task": OWN_TASK, "queue": "default", "q": "matches-no-job-at-all"}
        assert api.post(url, json=nothing, headers=key).status_code == 200

    return check


def _tasks(api: TestClient, key: dict[str, str], own: str, foreign: str) -> None:
    r = api.get("/api/v1/tasks", headers=key)
    assert r.status_code == 200 and [t["name"] for t in r.json()] == [OWN_TASK]


def _queues(api: TestClient, key: dict[str, str], own: str, foreign: str) -> None:
    r = api.get("/api/v1/queues", headers=key)
    assert r.status_code == 200 and {q["name"] for q in r.json()} <= {"default"}


def schedule_of(ledger: Any, task: str, args: list[Any]) -> str:
    """A paused schedule of ``task`` written straight into the ledger."""
    schedule_id = str(uuid.uuid4())
    with ledger.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO conveyor_schedules (id, name, task, args, trigger_kind, "
                "trigger_expr, paused) VALUES (:id, :name, :task, CAST(:args AS jsonb), 'cron', "
                "'0 0 1 1 *', true)"
            ),
            {"id": schedule_id, "name": schedule_id, "task": task, "args": json.dumps(args)},
        )
    return schedule_id


def _schedule(method: str, suffix: str = "", body: Any = None, own_status: int = 200) -> Any:
    """A route on one schedule: a schedule of a task outside the list is a 404 (as a job is);
    one of the key's own task gets through."""

    def check(api: TestClient, key: dict[str, str], own: str, foreign: str) -> None:
        ledger = api.app.state.services.engine  # type: ignore[attr-defined]
        theirs = schedule_of(ledger, FOREIGN_TASK, ["secret-args"])
        mine = schedule_of(ledger, OWN_TASK, [1, 2])
        r = api.request(method, f"/api/v1/schedules/{theirs}{suffix}", json=body, headers=key)
        assert r.status_code == 404, r.text
        assert "secret-args" not in r.text and FOREIGN_TASK not in r.text
        r = api.request(method, f"/api/v1/schedules/{mine}{suffix}", json=body, headers=key)
        assert r.status_code == own_status, r.text

    return check


def _spec_workflow(api: TestClient, task: str) -> str:
    """A spec workflow of one step of ``task``, not yet run, written straight to the ledger."""
    workflow_id = str(uuid.uuid4())
    with api.app.state.services.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(
            text("INSERT INTO conveyor_workflows (id, source) VALUES (:id, 'spec')"),
            {"id": workflow_id},
        )
        conn.execute(
            text(
                "INSERT INTO conveyor_workflow_nodes (workflow_id, step, task, queue) "
                "VALUES (:id, 'only', :task, 'default')"
            ),
            {"id": workflow_id, "task": task},
        )
    return workflow_id


def _workflow(method: str, suffix: str, own_status: int | None) -> Any:
    """A route on one workflow: one with a node outside the key's lists is a 404 to it."""

    def check(api: TestClient, key: dict[str, str], own: str, foreign: str) -> None:
        url = f"/api/v1/workflows/{_spec_workflow(api, FOREIGN_TASK)}{suffix}"
        r = api.request(method, url, headers=key)
        assert r.status_code == 404, r.text
        assert FOREIGN_TASK not in r.text
        if own_status is not None:
            url = f"/api/v1/workflows/{_spec_workflow(api, OWN_TASK)}{suffix}"
            mine = api.request(method, url, headers=key)
            assert mine.status_code == own_status, mine.text

    return check


def _schedule_list(api: TestClient, key: dict[str, str], own: str, foreign: str) -> None:
    ledger = api.app.state.services.engine  # type: ignore[attr-defined]
    theirs = schedule_of(ledger, FOREIGN_TASK, ["secret-args"])
    mine = schedule_of(ledger, OWN_TASK, [1, 2])
    seen = {s["id"] for s in api.get("/api/v1/schedules", headers=key).json()}
    assert mine in seen and theirs not in seen


def _schedule_new(path: str) -> Any:
    def check(api: TestClient, key: dict[str, str], own: str, foreign: str) -> None:
        body = {"name": f"n-{uuid.uuid4().hex}", "task": FOREIGN_TASK, "args": ["x"], "every": 60}
        r = api.post(path, json=body, headers=key)
        assert r.status_code == 403 and f"task {FOREIGN_TASK!r}" in r.json()["detail"]

    return check


def _submit_workflow(api: TestClient, key: dict[str, str], own: str, foreign: str) -> None:
    steps = [{"name": "a", "task": OWN_TASK, "args": [1, 2]}, {"name": "b", "task": FOREIGN_TASK}]
    r = api.post("/api/v1/workflows", json={"steps": steps}, headers=key)
    assert r.status_code == 403 and f"task {FOREIGN_TASK!r}" in r.json()["detail"]


JOB_ROUTE_CHECKS: dict[tuple[str, str], Any] = {
    ("GET", "/api/v1/jobs"): _list("/api/v1/jobs"),
    ("GET", "/api/v1/jobs/{job_id}"): _one("GET", "/api/v1/jobs/{job_id}"),
    ("GET", "/api/v1/jobs/{job_id}/result"): _one("GET", "/api/v1/jobs/{job_id}/result"),
    ("GET", "/api/v1/jobs/{job_id}/events"): _one("GET", "/api/v1/jobs/{job_id}/events"),
    ("POST", "/api/v1/jobs"): _submit,
    ("POST", "/api/v1/jobs/{job_id}/cancel"): _one("POST", "/api/v1/jobs/{job_id}/cancel", None),
    ("POST", "/api/v1/jobs/{job_id}/retry"): _one("POST", "/api/v1/jobs/{job_id}/retry", None),
    ("POST", "/api/v1/jobs/{job_id}/run-now"): _one("POST", "/api/v1/jobs/{job_id}/run-now", 409),
    ("GET", "/api/v1/dlq"): _list("/api/v1/dlq"),
    ("POST", "/api/v1/dlq/{job_id}/replay"): _one("POST", "/api/v1/dlq/{job_id}/replay", None),
    ("DELETE", "/api/v1/dlq/{job_id}"): _one("DELETE", "/api/v1/dlq/{job_id}", None),
    ("POST", "/api/v1/dlq/replay"): _bulk("/api/v1/dlq/replay"),
    ("POST", "/api/v1/dlq/purge"): _bulk("/api/v1/dlq/purge"),
    ("GET", "/api/v1/tasks"): _tasks,
    ("GET", "/api/v1/queues"): _queues,
    ("GET", "/api/v1/schedules"): _schedule_list,
    ("POST", "/api/v1/schedules"): _schedule_new("/api/v1/schedules"),
    ("POST", "/api/v1/schedules/preview"): _schedule_new("/api/v1/schedules/preview"),
    ("GET", "/api/v1/schedules/{ref}"): _schedule("GET"),
    ("PATCH", "/api/v1/schedules/{ref}"): _schedule("PATCH", body={"paused_note": "x"}),
    ("DELETE", "/api/v1/schedules/{ref}"): _schedule("DELETE", own_status=204),
    ("POST", "/api/v1/schedules/{ref}/pause"): _schedule("POST", "/pause"),
    ("POST", "/api/v1/schedules/{ref}/resume"): _schedule("POST", "/resume"),
    ("POST", "/api/v1/schedules/{ref}/reset"): _schedule("POST", "/reset", own_status=422),
    ("POST", "/api/v1/schedules/{ref}/trigger"): _schedule("POST", "/trigger", own_status=202),
    ("POST", "/api/v1/schedules/{ref}/backfill"): _schedule(
        "POST",
        "/backfill",
        {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"},
        own_status=202,
    ),
    ("GET", "/api/v1/schedules/{ref}/next"): _schedule("GET", "/next"),
    ("GET", "/api/v1/schedules/{ref}/runs"): _schedule("GET", "/runs"),
    ("GET", "/api/v1/workflows/{workflow_id}"): _workflow("GET", "", 200),
    ("POST", "/api/v1/workflows/{workflow_id}/cancel"): _workflow("POST", "/cancel", 200),
    ("POST", "/api/v1/workflows/{workflow_id}/retry"): _workflow("POST", "/retry", 409),
    ("POST", "/api/v1/workflows"): _submit_workflow,
}

# Ids that match nothing, so the calls of an allowed key change nothing.
NO_SUCH = {
    "{import_id}": str(uuid.uuid4()),
    "{batch_id}": str(uuid.uuid4()),
    "{product_id}": "999999999",
    "{webhook_id}": "999999999",
    "{token:path}": "dev.not-a-token",
    "{name}": "no-such-queue",
    "{ref}": str(uuid.uuid4()),
}


def call_route(client: TestClient, method: str, path: str, headers: dict[str, str]) -> Any:
    for param, value in NO_SUCH.items():
        path = path.replace(param, value)
    return call(client, method, path, headers)


@pytest.mark.parametrize(("method", "path"), API_ROUTES, ids=[f"{m} {p}" for m, p in API_ROUTES])
def test_a_limited_key_is_bound_on_every_api_route(
    api: TestClient, ledger: Any, jobs_of_two_tasks: tuple[str, str], method: str, path: str
) -> None:
    """Guarantee 11: a key's task/queue allowlist binds every API route, pack routes included,
    reads as well as writes; and a key allowed what the route declares gets through."""
    (req,) = REQUIREMENTS[(method, path)]
    own, foreign = jobs_of_two_tasks
    limited = limited_key(ledger)
    if req.scope is None:  # public: the same answer for everyone
        assert (
            call_route(api, method, path, limited).status_code
            == call(api, method, path, {}).status_code
        )
        assert call_route(api, method, path, limited).status_code not in (401, 403)
    elif req.whole:
        r = call_route(api, method, path, limited)
        assert r.status_code == 403 and "concerns every task" in r.json()["detail"], r.text
        unlimited = bearer(make_key(ledger, req.scope))
        assert call_route(api, method, path, unlimited).status_code not in (401, 403)
    elif req.tasks:
        r = call_route(api, method, path, limited)
        assert r.status_code == 403, r.text
        assert "needs every one of them allowed" in r.json()["detail"]
        queue_only = limited_key(ledger, allowed_tasks=None, allowed_queues=["no-such-queue"])
        assert call_route(api, method, path, queue_only).status_code == 403
        allowed = limited_key(ledger, allowed_tasks=list(req.tasks), allowed_queues=None)
        r = call_route(api, method, path, allowed)
        assert r.status_code not in (401, 403), r.text
    else:
        check = JOB_ROUTE_CHECKS.get((method, path))
        assert check is not None, f"say in JOB_ROUTE_CHECKS how a limited key is bound on {path}"
        check(api, limited, own, foreign)
    with ledger.connect() as conn:  # nothing the limited key did touched the foreign job
        row = conn.execute(
            text("SELECT state FROM conveyor_jobs WHERE id = :id"), {"id": foreign}
        ).one()
        assert row.state == "dead"


def test_the_issue_11_key_cannot_empty_the_catalog(api: TestClient, ledger: Any) -> None:
    """The key of issue 11 item 5 (`--task probe.add --queue default`) neither deletes every
    product nor adds a webhook nor reads other tasks' jobs; `--pack catalog` opens the catalog."""
    admin = bearer(make_key(ledger, *ADMIN_SCOPES))
    sku = f"KEEP-{uuid.uuid4().hex[:8]}"
    made = api.post("/api/v1/catalog/products", json={"sku": sku, "name": "kept"}, headers=admin)
    assert made.status_code == 201, made.text
    probe = limited_key(ledger, allowed_tasks=["probe.add"])
    r = api.delete("/api/v1/catalog/products?confirm=all", headers=probe)
    assert r.status_code == 403 and "catalog.import_products" in r.json()["detail"]
    hook = {"url": "https://example.com/hook", "events": ["product.created"]}
    assert api.post("/api/v1/catalog/webhooks", json=hook, headers=probe).status_code == 403
    assert ids_of(api.get("/api/v1/jobs", headers=probe)) == set()
    r = api.get(f"/api/v1/catalog/products?sku={sku}", headers=admin)
    assert [p["sku"] for p in r.json()["items"]] == [sku]


def test_an_api_route_that_declares_nothing_refuses_to_start() -> None:
    """A pack route added without a requirement would be open to every limited key; the app
    refuses to start with it rather than serve it."""
    from fastapi import APIRouter, FastAPI

    from conveyor.api.auth import check_declared

    router = APIRouter()

    @router.get("/things")
    def things() -> list[str]:
        return []

    app = FastAPI()
    app.include_router(router, prefix="/api/v1/newpack")
    with pytest.raises(ConfigurationError, match=re.escape("/api/v1/newpack/things")):
        check_declared(app)


def test_keys_cli_pack_adds_the_tasks_a_pack_needs(
    services: Any, api: TestClient, ledger: Any
) -> None:
    env = {**services.env(), "COLUMNS": "200"}
    made = conveyor(
        "keys", "create", "catalog-bot", "--scope", "jobs:read", "--task", OWN_TASK,
        "--pack", "catalog", env=env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "catalog.import_products" in made.stderr and "catalog.deliver_webhook" in made.stderr
    key = bearer(made.stdout.strip())
    assert api.get("/api/v1/catalog/products", headers=key).status_code == 200
    assert api.get("/api/v1/catalog/webhooks", headers=key).status_code == 200
    assert api.get("/api/v1/factory/batches", headers=key).status_code == 403
    bad = conveyor("keys", "create", "x", "--scope", "jobs:read", "--pack", "nope", env=env)
    assert bad.returncode == 2 and "unknown pack 'nope'" in bad.stderr


def test_limited_keys_open_no_dashboard_session(browser: TestClient, ledger: Any) -> None:
    """The dashboard's pages list every task's jobs, so a limited key cannot log in to them."""
    key = make_key(ledger, "jobs:read", allowed_tasks=[OWN_TASK])
    r = login(browser, key)
    assert r.status_code == 403 and "limited to some tasks or queues" in r.text
    assert "set-cookie" not in r.headers or "conveyor_session=" not in r.headers["set-cookie"]
    assert browser.get("/jobs", headers=HTML, follow_redirects=False).status_code == 303


# --- allowlists ----------------------------------------------------------------------------


@pytest.mark.broker
def test_allowlists_limit_tasks_and_queues(
    api: TestClient, client: TestClient, ledger: Any
) -> None:
    limited = bearer(
        make_key(ledger, "jobs:read", "jobs:write", allowed_tasks=["demo.add"], name="adder")
    )
    ok = api.post("/api/v1/jobs", json={"task": "demo.add", "args": [1, 2]}, headers=limited)
    assert ok.status_code == 202, ok.text

    before = count_jobs(ledger)
    r = api.post("/api/v1/jobs", json={"task": "demo.echo", "args": [1]}, headers=limited)
    assert r.status_code == 403
    assert "task 'demo.echo'" in r.json()["detail"] and "demo.add" in r.json()["detail"]
    assert count_jobs(ledger) == before

    other = client.post("/api/v1/jobs", json={"task": "demo.sleep", "args": [0.01]}).json()
    for action in ("cancel", "retry"):  # another task's job does not exist for this key
        r = api.post(f"/api/v1/jobs/{other['id']}/{action}", headers=limited)
        assert r.status_code == 404, (action, r.text)
        assert "'demo.sleep'" not in r.json()["detail"]
    # Its own task passes the allowlist (a finished job then answers 409, not 403).
    own = api.post(f"/api/v1/jobs/{ok.json()['id']}/retry", headers=limited)
    assert own.status_code in (202, 409), own.text

    queued = bearer(make_key(ledger, "jobs:write", allowed_queues=["default"], name="default-only"))
    r = api.post(
        "/api/v1/jobs", json={"task": "demo.add", "args": [1, 2], "queue": "high"}, headers=queued
    )
    assert r.status_code == 403 and "queue 'high'" in r.json()["detail"]
    assert "default" in r.json()["detail"]
    r = api.post("/api/v1/jobs", json={"task": "demo.add", "args": [1, 2]}, headers=queued)
    assert r.status_code == 202 and r.json()["queue"] == "default"

    dlq = bearer(make_key(ledger, "dlq:admin", allowed_tasks=["demo.add"], name="dlq-adder"))
    r = api.post(f"/api/v1/dlq/{other['id']}/replay", headers=dlq)
    assert r.status_code == 404 and "'demo.sleep'" not in r.json()["detail"]
    r = api.post("/api/v1/dlq/replay", json={}, headers=dlq)
    assert r.status_code == 403 and "give a `task` filter" in r.json()["detail"]
    r = api.post("/api/v1/dlq/purge", json={"task": "demo.echo"}, headers=dlq)
    assert r.status_code == 403
    assert api.post("/api/v1/dlq/replay", json={"task": "demo.add"}, headers=dlq).status_code == 200


# --- storage -------------------------------------------------------------------------------


def test_keys_are_stored_hashed(api: TestClient, ledger: Any) -> None:
    key = make_key(ledger, "jobs:read", name="hash-check")
    secret = key.split("_", 2)[2]
    assert api.get("/api/v1/jobs", headers=bearer(key)).status_code == 200
    with ledger.connect() as conn:
        rows = conn.execute(text("SELECT row_to_json(k)::text FROM conveyor_api_keys k")).all()
        dump = "\n".join(r[0] for r in rows)
        stored = conn.execute(
            text("SELECT secret_hash FROM conveyor_api_keys WHERE key_id = :k"),
            {"k": keys.key_id_of(key)},
        ).scalar_one()
    assert secret not in dump and key not in dump
    assert stored == hashlib.sha256(key.encode()).hexdigest()


def test_last_used_is_recorded_and_throttled(api: TestClient, ledger: Any) -> None:
    key = make_key(ledger, "jobs:read")
    query = text("SELECT last_used_at FROM conveyor_api_keys WHERE key_id = :k")
    params = {"k": keys.key_id_of(key)}
    with ledger.connect() as conn:
        assert conn.execute(query, params).scalar_one() is None
    assert api.get("/api/v1/jobs", headers=bearer(key)).status_code == 200
    with ledger.connect() as conn:
        first = conn.execute(query, params).scalar_one()
    assert first is not None and datetime.now(UTC) - first < timedelta(minutes=1)
    assert api.get("/api/v1/jobs", headers=bearer(key)).status_code == 200
    with ledger.connect() as conn:
        assert conn.execute(query, params).scalar_one() == first  # at most once a minute


# --- the CLI -------------------------------------------------------------------------------


def conveyor(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=120,
    )


def test_keys_cli_creates_lists_and_revokes(services: Any, api: TestClient) -> None:
    env = {**services.env(), "COLUMNS": "200"}
    made = conveyor(
        "keys", "create", "ci-deployer", "--scope", "jobs:read", "--scope", "jobs:write",
        "--task", "demo.add", "--queue", "default", "--expires-in-days", "30", env=env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert re.fullmatch(r"cvk_[a-z0-9]{8}_[A-Za-z0-9]{40}", key), made.stdout
    assert "shown only this once" in made.stderr
    key_id = keys.key_id_of(key) or ""
    assert api.get("/api/v1/jobs", headers=bearer(key)).status_code == 200

    listed = conveyor("keys", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert key.split("_", 2)[2] not in listed.stdout
    (row,) = [k for k in json.loads(listed.stdout) if k["key_id"] == key_id]
    assert row["name"] == "ci-deployer" and row["scopes"] == ["jobs:read", "jobs:write"]
    assert row["allowed_tasks"] == ["demo.add"] and row["allowed_queues"] == ["default"]
    assert row["status"] == "active" and row["expires_at"]
    table = conveyor("keys", "list", env=env)
    assert f"cvk_{key_id}" in table.stdout and key.split("_", 2)[2] not in table.stdout

    revoked = conveyor("keys", "revoke", f"cvk_{key_id}", env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in revoked.stderr and "CONVEYOR_AUTH_CACHE_SECONDS" in revoked.stderr
    assert api.get("/api/v1/jobs", headers=bearer(key)).status_code == 401
    assert key_id not in conveyor("keys", "list", env=env).stdout
    assert key_id in conveyor("keys", "list", "--all", env=env).stdout


def test_keys_cli_refuses_bad_input(services: Any) -> None:
    env = services.env()
    bad = conveyor("keys", "create", "x", "--scope", "jobs:delete", env=env)
    assert bad.returncode == 2
    assert "unknown scope 'jobs:delete'" in bad.stderr and "dlq:admin" in bad.stderr
    assert conveyor("keys", "create", "x", env=env).returncode == 2  # --scope is required
    missing = conveyor("keys", "revoke", "nokey123", env=env)
    assert missing.returncode == 1 and "no API key with id 'nokey123'" in missing.stderr


# --- production refuses to start open -----------------------------------------------------


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"auth": "off", "secret_key": SECRET}, "CONVEYOR_AUTH=off"),
        ({}, "CONVEYOR_SECRET_KEY is not set"),
        ({"secret_key": SecretStr("changeme")}, "is a placeholder"),
        ({"secret_key": SecretStr("secret")}, "is a placeholder"),
        ({"secret_key": SecretStr("dev")}, "is a placeholder"),
        ({"secret_key": SecretStr("changeme-" + "a1b2c3d4e5" * 4)}, "is a placeholder"),
        ({"secret_key": SecretStr("Tr0ub4dor&3")}, "shorter than 32"),
        ({"secret_key": SecretStr("ab" * 20)}, "too few distinct"),
    ],
)
def test_production_refuses_an_open_or_weak_setup(
    settings: Settings, update: dict[str, Any], message: str
) -> None:
    unsafe = settings.model_copy(update={"env": "production", "secret_key": None, **update})
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        create_app(unsafe)


def test_production_starts_with_keys_and_a_strong_secret(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"env": "production", "secret_key": SECRET}))
    with TestClient(app) as c:
        assert c.get("/api/v1/jobs").status_code == 401
        assert c.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"CONVEYOR_AUTH": "off", "CONVEYOR_SECRET_KEY": SECRET.get_secret_value()},
         "CONVEYOR_AUTH=off"),
        ({}, "CONVEYOR_SECRET_KEY is not set"),
        ({"CONVEYOR_SECRET_KEY": "changeme"}, "is a placeholder"),
    ],
)  # fmt: skip
def test_conveyor_api_refuses_to_start_in_production(
    services: Any, extra: dict[str, str], message: str
) -> None:
    env = {
        k: v for k, v in services.env().items() if k not in ("CONVEYOR_AUTH", "CONVEYOR_SECRET_KEY")
    }
    env.update({"CONVEYOR_ENV": "production", "CONVEYOR_API_PORT": str(free_port()), **extra})
    out = conveyor("api", env=env)
    assert out.returncode != 0
    assert message in out.stderr, out.stderr[-2000:]


# --- the dashboard -------------------------------------------------------------------------

HTML = {"Accept": "text/html"}


def login(c: TestClient, key: str, next: str = "/jobs") -> Any:
    """The login form's API-key option, posted with the form's CSRF token."""
    return c.post(
        "/login",
        data={"key": key, "next": next, "csrf_token": csrf_token(c)},
        headers=HTML,
        follow_redirects=False,
    )


@pytest.fixture
def browser(settings: Settings) -> Iterator[TestClient]:
    """A fresh client (its own cookie jar) on the auth-enabled app."""
    with TestClient(create_app(auth_settings(settings))) as c:
        yield c


def test_dashboard_needs_a_session(browser: TestClient, ledger: Any) -> None:
    r = browser.get("/jobs", headers=HTML, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("/login?next=%2Fjobs")
    assert browser.get("/live/jobs").status_code == 401  # the pages' script, not a browser
    form = browser.get("/login")
    assert form.status_code == 200 and 'name="key"' in form.text
    assert "Open access" not in form.text
    assert browser.get("/static/conveyor.css").status_code == 200


def test_login_sets_a_strict_cookie_and_logout_clears_it(browser: TestClient, ledger: Any) -> None:
    key = make_key(ledger, "jobs:read", name="viewer-anna")
    # Another last character (overwriting it with "Z" is no change for 1 key in 62).
    refused = login(browser, key[:-1] + ("Z" if key[-1] != "Z" else "Y"))
    assert refused.status_code == 401 and "Login refused" in refused.text

    r = login(browser, key)
    assert r.status_code == 303 and r.headers["location"] == "/jobs"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("conveyor_session=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Max-Age=28800" in cookie and "Secure" not in cookie
    assert key.split("_", 2)[2] not in cookie
    page = browser.get("/jobs", headers=HTML)
    assert page.status_code == 200 and "viewer-anna" in page.text and "Log out" in page.text
    assert "Open access" not in page.text

    out = browser.post(
        "/logout", data={"csrf_token": csrf_token(browser, "/jobs")}, follow_redirects=False
    )
    assert out.status_code == 303 and out.headers["location"].endswith("/login")
    assert (
        'conveyor_session=""' in out.headers["set-cookie"]
        or "Max-Age=0" in out.headers["set-cookie"]
    )
    assert browser.get("/jobs", headers=HTML, follow_redirects=False).status_code == 303


def test_session_cookie_is_secure_over_https(settings: Settings, ledger: Any) -> None:
    key = make_key(ledger, "jobs:read")
    app = create_app(auth_settings(settings))
    with TestClient(app, base_url="https://testserver") as c:
        assert "Secure" in login(c, key).headers["set-cookie"]


def test_forged_expired_or_revoked_sessions_are_refused(browser: TestClient, ledger: Any) -> None:
    key = make_key(ledger, "jobs:read")
    assert login(browser, key).status_code == 303
    good = browser.cookies["conveyor_session"]
    version, payload, signature = good.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["s"] = ["admin"]
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    browser.cookies.set("conveyor_session", f"{version}.{forged}.{signature}")
    assert browser.get("/jobs", headers=HTML, follow_redirects=False).status_code == 303

    browser.cookies.set("conveyor_session", good)
    assert browser.get("/jobs", headers=HTML).status_code == 200
    with ledger.begin() as conn:
        keys.revoke_key(conn, keys.key_id_of(key) or "")
    assert browser.get("/jobs", headers=HTML, follow_redirects=False).status_code == 303


def test_login_needs_jobs_read_and_same_origin(browser: TestClient, ledger: Any) -> None:
    dlq_only = make_key(ledger, "dlq:admin")
    r = login(browser, dlq_only)
    assert r.status_code == 403 and "jobs:read" in r.text
    viewer = make_key(ledger, "jobs:read")
    cross = browser.post(
        "/login",
        data={"key": viewer, "csrf_token": csrf_token(browser)},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert cross.status_code == 403 and "set-cookie" not in cross.headers
    away = login(browser, viewer, next="//evil.example/x")
    assert away.status_code == 303 and away.headers["location"] == "/"


@pytest.mark.broker
def test_a_viewer_cannot_cancel_but_an_operator_can(
    settings: Settings, client: TestClient, ledger: Any
) -> None:
    job = client.post("/api/v1/jobs", json={"task": "testing.block", "args": [30]}).json()
    viewer = make_key(ledger, "jobs:read", name="viewer")
    operator = make_key(ledger, "jobs:read", "jobs:write", name="operator")
    app = create_app(auth_settings(settings))
    with TestClient(app) as c:
        login(c, viewer)
        r = c.post(
            f"/jobs/{job['id']}/cancel",
            data={"csrf_token": csrf_token(c, f"/jobs/{job['id']}")},
            headers=HTML,
            follow_redirects=False,
        )
        assert r.status_code == 403 and "jobs:write" in r.text
        assert client.get(f"/api/v1/jobs/{job['id']}").json()["cancel_requested"] is False
    with TestClient(app) as c:
        login(c, operator)
        r = c.post(
            f"/jobs/{job['id']}/cancel",
            data={"csrf_token": csrf_token(c, f"/jobs/{job['id']}")},
            headers=HTML,
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text
    assert client.get(f"/api/v1/jobs/{job['id']}").json()["cancel_requested"] is True


def test_open_dashboard_shows_a_warning_on_every_page(settings: Settings) -> None:
    with TestClient(create_app(settings)) as c:
        for url in ("/jobs", f"/jobs/{uuid.uuid4()}"):
            assert "Open access" in c.get(url).text, url
        assert c.get("/login", follow_redirects=False).status_code == 303


def test_env_default_picks_auth(settings: Settings) -> None:
    from conveyor.api.auth import auth_required

    assert not auth_required(settings.model_copy(update={"env": "development"}))
    assert not auth_required(settings.model_copy(update={"env": "test"}))
    assert auth_required(settings.model_copy(update={"env": "production"}))
    assert auth_required(settings.model_copy(update={"env": "test", "auth": "required"}))
