"""What every route needs, built once in create_app and reached through typed dependencies."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Annotated

from celery import Celery
from fastapi import Depends, Request
from sqlalchemy import Engine

from conveyor.config import Settings
from conveyor.control import Control

if TYPE_CHECKING:
    from conveyor.schedules import ScheduleService


@dataclass
class Services:
    settings: Settings
    app: Celery
    engine: Engine
    control: Control

    @cached_property
    def schedules(self) -> ScheduleService:
        from conveyor.schedules import ScheduleService

        return ScheduleService(self.control, self.engine)


def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]
