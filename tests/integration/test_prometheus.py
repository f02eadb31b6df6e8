"""A real Prometheus server (Debian's `prometheus`, installed by .ci/run) scrapes `conveyor api`
and answers queries over what it scraped. Without the binary this skips locally and fails under
CI=true."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.embedded.process import free_port
from conveyor.testing.services import start_api, wait_for

PROMETHEUS = Path(os.environ.get("CONVEYOR_TEST_PROMETHEUS", "/usr/bin/prometheus"))

pytestmark = pytest.mark.broker


def test_prometheus_scrapes_conveyor(
    services: Any, runtime: Any, tmp_path: Path, artifacts: Path
) -> None:
    if not PROMETHEUS.exists():
        reason = f"no Prometheus at {PROMETHEUS} (apt-get install prometheus; .ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    api, base = start_api(services.env(), artifacts / "prometheus-api.log")
    prom_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: conveyor\n"
        f"    static_configs:\n      - targets: ['{base.removeprefix('http://')}']\n"
    )
    prom_log = (artifacts / "prometheus.log").open("wb")
    prom = subprocess.Popen(
        [
            str(PROMETHEUS),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=prom_log,
        stderr=subprocess.STDOUT,
    )
    try:
        job = httpx.post(base + "/api/v1/jobs", json={"task": "demo.add", "args": [40, 2]}).json()
        wait_for(
            lambda: httpx.get(f"{base}/api/v1/jobs/{job['id']}").json()["state"] == "succeeded",
            timeout=60,
            message="the job to succeed",
        )

        def query(expr: str) -> list[Any]:
            assert prom.poll() is None, "prometheus exited; see prometheus.log"
            try:
                r = httpx.get(
                    f"http://127.0.0.1:{prom_port}/api/v1/query", params={"query": expr}, timeout=2
                )
            except httpx.HTTPError:
                return []
            body = r.json()
            return list(body["data"]["result"]) if body.get("status") == "success" else []

        succeeded = wait_for(
            lambda: query('conveyor_jobs_finished_total{task="demo.add",state="succeeded"} > 0'),
            timeout=60,
            message="Prometheus to have scraped a succeeded demo.add",
        )
        assert succeeded[0]["metric"]["job"] == "conveyor"
        up = query('up{job="conveyor"}')
        assert up and up[0]["value"][1] == "1"
        assert query("conveyor_workers_alive >= 1")
    finally:
        prom.terminate()
        prom.wait(timeout=30)
        prom_log.close()
        api.stop()
