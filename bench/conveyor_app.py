"""``CONVEYOR_APP=bench.conveyor_app:app``: the benchmark's Conveyor app for ``conveyor api`` and
``conveyor worker`` child processes (settings and queue prefix are read at first use)."""

from bench.apps import conveyor_app

app = conveyor_app(None, None)
