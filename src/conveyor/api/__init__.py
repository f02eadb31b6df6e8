"""The REST control plane (FastAPI)."""

from conveyor.api.app import create_app

__all__ = ["create_app"]
