"""`conveyor up`: embedded services, migrations, then API, worker, beat and recorder as children.

The children are supervised (`conveyor.cli.supervisor`): one that exits is started again with
backoff while the others keep running. Each runs in a process group of its own; on Ctrl-C or
SIGTERM they are all asked to stop, given a grace period, then killed with whatever their
groups still hold, and the embedded servers are stopped last.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from functools import partial
from pathlib import Path

from rich.console import Console

from conveyor.cli.supervisor import Child, Supervisor
from conveyor.cli.supervisor import stop_children as stop_children  # its old home
from conveyor.config import Settings
from conveyor.embedded.stack import EmbeddedStack
from conveyor.ledger.migrate import upgrade
from conveyor.logs import configure_logging
from conveyor.packs import LocalServices
from conveyor.runtime.context import STACK_FILE

console = Console(stderr=True)
log = logging.getLogger("conveyor.up")

OPEN_ACCESS = (
    "OPEN ACCESS: the API and dashboard require no login.\n"
    "Anyone who can reach {url} can submit, cancel, retry and purge jobs.\n"
    "This is local development mode (CONVEYOR_AUTH=off). Never expose it to a "
    "network; in production (CONVEYOR_ENV=production) API keys are required."
)


def _say(settings: Settings, message: str, level: int = logging.INFO) -> None:
    if settings.log_format == "json":
        log.log(level, message)
    else:
        style = "red" if level >= logging.ERROR else "yellow" if level >= logging.WARNING else None
        console.print(message, style=style, soft_wrap=True)


def _banner(url: str, resolved: Settings, seconds: float, open_access: bool) -> None:
    console.rule("[bold green]Conveyor is up")
    console.print(f"  dashboard  [bold]{url}[/]")
    console.print(f"  API docs   {url}docs")
    console.print(f"  ledger     {resolved.database_url}")
    console.print(f"  redis      {resolved.redis_url}")
    console.print(f"  started in {seconds:.1f}s; Ctrl-C stops everything")
    if open_access:
        from rich.panel import Panel

        first, rest = OPEN_ACCESS.format(url=url).split("\n", 1)
        console.print(
            Panel(
                f"[bold]{first}[/]\n{rest}",
                title="[bold]WARNING[/]",
                border_style="bold red",
                style="bold red",
            )
        )


def _start_local_peers(settings: Settings, env: dict[str, str]) -> list[LocalServices]:
    """Start the enabled packs' local peers (see ``Pack.local``) and add what the children
    need to ``env``; what was started."""
    from conveyor.packs import enabled

    started: list[LocalServices] = []
    allow = list(settings.egress_allow)
    for pack in enabled(settings):
        if not pack.local:
            continue
        peers: LocalServices | None = pack.attribute(pack.local)(settings)
        if peers is None:
            continue
        started.append(peers)
        env.update(peers.env)
        allow += peers.allow
    if allow:
        env["CONVEYOR_EGRESS_ALLOW"] = ",".join(allow)
    return started


def run_stack(
    settings: Settings,
    *,
    workers: int = 1,
    concurrency: int | None = None,
    open_banner: bool = True,
) -> int:
    home = Path(settings.home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    if settings.log_format == "json":
        # The children log JSON (they read CONVEYOR_LOG_FORMAT); so does this process, instead
        # of printing its banner. In text mode it keeps the terminal to the banner.
        configure_logging("json", settings.log_level)
    stack = EmbeddedStack(settings.model_copy(update={"home": home}))
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    supervisor: Supervisor | None = None
    local: list[LocalServices] = []
    state_path = home / STACK_FILE
    try:
        started = time.monotonic()
        resolved = stack.start()
        assert resolved.database_url
        upgrade(resolved.database_url)
        state_path.write_text(
            json.dumps(
                {
                    "database_url": resolved.database_url,
                    "redis_url": resolved.redis_url,
                    "broker_url": resolved.broker_url,
                    "pid": os.getpid(),
                }
            )
        )
        env = {
            **os.environ,
            **stack.env(),
            "CONVEYOR_HOME": str(home),
            # `--host` / `--port` reach the API, and every child that builds its own URLs.
            "CONVEYOR_API_HOST": settings.api_host,
            "CONVEYOR_API_PORT": str(settings.api_port),
        }
        local = _start_local_peers(resolved, env)
        conc = str(concurrency or os.cpu_count() or 2)
        children = [Child("api", ["api"])]
        for i in range(workers):
            name = f"worker{i + 1}"
            children.append(Child(name, ["worker", "-c", conc, "-n", f"{name}@%h"]))
        children += [Child("beat", ["beat"]), Child("recorder", ["recorder"])]
        supervisor = Supervisor(children, env, resolved.redis_url, partial(_say, settings))
        supervisor.start()
        url = f"http://{settings.api_host}:{settings.api_port}/"
        from conveyor.api.auth import auth_required

        open_access = open_banner and not auth_required(settings)
        if settings.log_format == "json":
            log.info(
                "Conveyor is up",
                extra={
                    "dashboard": url,
                    "ledger": resolved.database_url,
                    "redis": resolved.redis_url,
                    "started_seconds": round(time.monotonic() - started, 2),
                },
            )
            if open_access:
                log.warning(OPEN_ACCESS.format(url=url).replace("\n", " "))
        else:
            _banner(url, resolved, time.monotonic() - started, open_access)
        while not stopping:
            supervisor.poll()
            time.sleep(0.2)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if supervisor is not None:
            supervisor.stop(grace=15)
        state_path.unlink(missing_ok=True)
        for peers in local:
            peers.stop()
        stack.stop()
        _say(settings, "Conveyor stopped.")
