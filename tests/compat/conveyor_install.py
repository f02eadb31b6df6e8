"""pytest plugin for Celery's own integration suite: ``conveyor.install(app)`` on every app the
suite creates (``make compat`` loads it with ``-p conveyor_install`` in the second run).

The suite builds its apps with ``celery.contrib.testing.app.TestApp`` (through the
``celery_app`` and ``celery_session_app`` fixtures); wrapping it installs Conveyor exactly as a
team would on its own app: after the app is created, with the app's settings already given.
Conveyor's settings come from the environment (CONVEYOR_DATABASE_URL, CONVEYOR_REDIS_URL).
"""

from __future__ import annotations

from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing import app as testing_app

import conveyor

installed: list[Celery] = []


def pytest_configure(config: pytest.Config) -> None:
    create = testing_app.TestApp

    def test_app_with_conveyor(*args: Any, **kwargs: Any) -> Celery:
        app = conveyor.install(create(*args, **kwargs))
        installed.append(app)
        return app

    testing_app.TestApp = test_app_with_conveyor


def pytest_report_header(config: pytest.Config) -> str:
    return "conveyor: install(app) on every app the suite creates"


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not installed:
        raise pytest.UsageError("conveyor_install: the suite created no app to install into")
