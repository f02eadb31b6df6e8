"""Celery's own integration suite, plain and with ``conveyor.install(app)``: the proof that an
installed app behaves as before (``make compat``; docs/runtime.md, "Fidelity mode").

1. Downloads the sdist of the installed Celery (``pip download --no-binary :all:``) into
   ``.compat/`` once and takes its ``t/integration``.
2. Runs ``t/integration/test_tasks.py`` and ``test_canvas.py -k "chain or group or chord"`` on
   each broker (the machine's Redis; RabbitMQ with Redis for results), twice: plain, and with
   the plugin ``conveyor_install`` (this directory), whose apps record into a ledger database of
   their own (``conveyor_compat``) through a real ``conveyor recorder``. All runs go in parallel,
   each on its own Redis databases and RabbitMQ virtual host.
3. Compares the passed tests of the two modes per broker (``compare.py``, ``exclusions.txt``).
4. Confirms each difference: the tests that differ run again alone, in both modes, CONFIRM
   times (2). A difference fails the run only if it held in every confirmation; one that came
   and went is reported as unstable (a timing-sensitive test of the suite), not counted.

Environment: COMPAT_REDIS (redis://127.0.0.1:6379), COMPAT_AMQP
(amqp://guest:guest@127.0.0.1:5672), COMPAT_POSTGRES (postgresql://postgres@127.0.0.1:5432/
postgres), COMPAT_REDIS_DB (the first of seven Redis databases it flushes and uses, 1),
COMPAT_BROKERS (redis,rabbitmq), COMPAT_TIMEOUT (per test, 300 s), COMPAT_K (another -k
selection, for a quick look), COMPAT_CONFIRM (confirmation rounds, 2).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CACHE = ROOT / ".compat"
BIN = Path(sys.executable).parent
sys.path.insert(0, str(HERE))

from compare import Comparison, comparison, node_id, outcomes, report  # noqa: E402

REDIS = os.environ.get("COMPAT_REDIS", "redis://127.0.0.1:6379").rstrip("/")
AMQP = os.environ.get("COMPAT_AMQP", "amqp://guest:guest@127.0.0.1:5672").rstrip("/")
POSTGRES = os.environ.get("COMPAT_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
BROKERS = os.environ.get("COMPAT_BROKERS", "redis,rabbitmq").split(",")
TIMEOUT = os.environ.get("COMPAT_TIMEOUT", "300")
CONFIRM = int(os.environ.get("COMPAT_CONFIRM", "2"))
SELECTION = [
    "t/integration/test_tasks.py",
    "t/integration/test_canvas.py",
    "-k",
    os.environ.get("COMPAT_K", "not test_canvas or chain or group or chord"),
]
# Redis databases of this run's own (COMPAT_REDIS_DB + 0..6): per (broker, mode) the broker's,
# and one for results and the suite's own keys; then Conveyor's events.
BASE_DB = int(os.environ.get("COMPAT_REDIS_DB", "1"))
DBS = {
    ("redis", "plain"): (BASE_DB, BASE_DB + 1),
    ("redis", "install"): (BASE_DB + 2, BASE_DB + 3),
    ("rabbitmq", "plain"): (None, BASE_DB + 4),
    ("rabbitmq", "install"): (None, BASE_DB + 5),
}
CONVEYOR_REDIS_DB = BASE_DB + 6
LEDGER_DB = "conveyor_compat"


def suite() -> Path:
    """Celery's integration suite for the installed version, unpacked under .compat/."""
    celery = version("celery")
    target = CACHE / f"celery-{celery}"
    if (target / "t" / "integration" / "test_tasks.py").exists():
        return target
    CACHE.mkdir(exist_ok=True)
    sdist = CACHE / f"celery-{celery}.tar.gz"
    if not sdist.exists():
        subprocess.run(
            [
                *(str(BIN / "python"), "-m", "pip", "download", "--no-binary", ":all:"),
                *("--no-deps", f"celery=={celery}", "-d", str(CACHE)),
            ],
            check=True,
        )
    prefix = f"celery-{celery}/"
    keep = ("t/__init__.py", "t/canvas_helpers.py", "t/skip.py", "t/integration/", "pyproject")
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.removeprefix(prefix).startswith(keep)]
        tar.extractall(CACHE, members=members, filter="data")
    # The suite keeps its own keys in Redis db 0 ("echo_chamber", ...); give each parallel run
    # a database of its own so they do not read each other's.
    tasks = target / "t" / "integration" / "tasks.py"
    source = tasks.read_text()
    fixed = source.replace(
        "StrictRedis(host=host, port=port, socket_timeout=None)",
        'StrictRedis(host=host, port=port, db=int(os.environ.get("REDIS_DB", 0)), '
        "socket_timeout=None)",
    )
    if fixed == source:
        raise SystemExit(f"{tasks}: get_redis_connection() changed; update tests/compat/run.py")
    tasks.write_text(fixed)
    return target


def ledger() -> str:
    """A fresh, migrated ledger database for the installed runs."""
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{LEDGER_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{LEDGER_DB}"')
    base, _, _ = POSTGRES.rpartition("/")
    url = f"{base}/{LEDGER_DB}"
    subprocess.run([str(BIN / "conveyor"), "migrate"], env=conveyor_env(url), check=True)
    return url


def conveyor_env(ledger_url: str) -> dict[str, str]:
    """What the installed runs and their recorder need: the ledger and a Redis for events."""
    return {
        **os.environ,
        "CONVEYOR_DATABASE_URL": ledger_url,
        "CONVEYOR_REDIS_URL": f"{REDIS}/{CONVEYOR_REDIS_DB}",
        "CONVEYOR_ENV": "test",
    }


def vhost(name: str) -> str:
    """A RabbitMQ virtual host of this run's own (rabbitmqctl), else the default one."""
    ctl = shutil.which("rabbitmqctl")
    if ctl:
        subprocess.run([ctl, "-q", "delete_vhost", name], capture_output=True)
        made = subprocess.run([ctl, "-q", "add_vhost", name], capture_output=True)
        perms = subprocess.run(
            [ctl, "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
            capture_output=True,
        )
        if made.returncode == 0 and perms.returncode == 0:
            return name
    return ""


@dataclass
class Run:
    broker: str
    mode: str
    env: dict[str, str]
    out: Path
    wave: int = 0
    process: subprocess.Popen[bytes] | None = None

    label: str = ""  # "" for the main run, "confirm-<n>" for a confirmation round

    @property
    def junit(self) -> Path:
        return self.out / f"{self.broker}-{self.mode}{self.suffix}.xml"

    @property
    def log(self) -> Path:
        return self.out / f"{self.broker}-{self.mode}{self.suffix}.log"

    @property
    def suffix(self) -> str:
        return f"-{self.label}" if self.label else ""

    def start(self, where: Path, selection: list[str] = SELECTION) -> Run:
        plugins = ["-p", "celery.contrib.pytest"]
        if self.mode == "install":
            plugins += ["-p", "conveyor_install"]
        argv = [
            *(str(BIN / "python"), "-m", "pytest", *plugins, *selection),
            *("-p", "no:cacheprovider", "-q", "-rfE", f"--timeout={TIMEOUT}"),
            # The suite has timing-sensitive tests beyond those it marks flaky: a failure gets
            # one more run in both modes alike, so that only a difference that holds is reported.
            *("--reruns", "1", "--reruns-delay", "1"),
            f"--junitxml={self.junit}",
        ]
        self.process = subprocess.Popen(
            argv,
            cwd=where,
            env=self.env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        return self


def runs(out: Path, ledger_url: str) -> list[Run]:
    made = []
    for broker in BROKERS:
        for mode in ("plain", "install"):
            broker_db, results_db = DBS[broker, mode]
            host = ""
            if broker == "redis":
                broker_url = f"{REDIS}/{broker_db}"
            else:
                host = vhost(f"conveyor-compat-{mode}")
                broker_url = f"{AMQP}/{host}"
            host_port = REDIS.removeprefix("redis://").split("/")[0]
            env = {
                **(conveyor_env(ledger_url) if mode == "install" else os.environ),
                "TEST_BROKER": broker_url,
                "TEST_BACKEND": f"{REDIS}/{results_db}",
                "REDIS_HOST": host_port.split(":")[0],
                "REDIS_PORT": host_port.split(":")[1] if ":" in host_port else "6379",
                "REDIS_DB": str(results_db),
                "PYTHONPATH": str(HERE),
            }
            # Without a virtual host of its own the install run must wait for the plain one:
            # on one vhost their workers would take each other's messages.
            wave = 1 if broker == "rabbitmq" and mode == "install" and not host else 0
            made.append(Run(broker, mode, env, out, wave=wave))
    return made


def flush(dbs: list[int]) -> None:
    import redis

    for db in dbs:
        redis.Redis.from_url(f"{REDIS}/{db}").flushdb()


def main() -> None:
    where = suite()
    out = ROOT / "artifacts" / "compat"
    out.mkdir(parents=True, exist_ok=True)
    flush([db for pair in DBS.values() for db in pair if db is not None] + [CONVEYOR_REDIS_DB])
    ledger_url = ledger()
    recorder = subprocess.Popen(
        [str(BIN / "conveyor"), "recorder", "--no-reconcile"],
        env=conveyor_env(ledger_url),
        stdout=(out / "recorder.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    started = time.monotonic()
    ok = True
    try:
        planned = runs(out, ledger_url)
        run_waves(planned, where)
        print(f"compat runs took {time.monotonic() - started:.0f} s")
        for broker in BROKERS:
            plain, installed = (out / f"{broker}-{mode}.xml" for mode in ("plain", "install"))
            if not plain.exists() or not installed.exists():
                print(f"[{broker}] a run wrote no results; see its log")
                ok = False
                continue
            found = comparison(plain, installed, broker)
            if not report(found, broker):
                ok = confirm(found, broker, planned, where) and ok
    finally:
        recorder.terminate()
        recorder.wait(timeout=30)
    recorded = recorded_jobs(ledger_url)
    print(f"ledger: {recorded} jobs recorded by the installed runs")
    if recorded == 0:
        print("the installed runs recorded no job: the plugin or the recorder did not work")
        ok = False
    sys.exit(0 if ok else 1)


def run_waves(planned: list[Run], where: Path, selection: list[str] = SELECTION) -> None:
    for wave in sorted({run.wave for run in planned}):
        todo = [run.start(where, selection) for run in planned if run.wave == wave]
        for run in todo:
            assert run.process is not None
            run.process.wait()
            print(
                f"{run.broker}/{run.mode}{run.suffix}: exit {run.process.returncode}, log {run.log}"
            )


def confirm(found: Comparison, broker: str, planned: list[Run], where: Path) -> bool:
    """Run the differing tests alone again, both modes, CONFIRM times. True unless a
    difference held every time (the same test passed in one mode and not the other)."""
    differing = {test: (plain, installed) for test, plain, installed in found.differences}
    nodes = [node_id(test, where) for test in differing]
    held = set(differing)
    for n in range(1, CONFIRM + 1):
        again = [
            Run(run.broker, run.mode, run.env, run.out, run.wave, label=f"confirm-{n}")
            for run in planned
            if run.broker == broker
        ]
        run_waves(again, where, nodes)
        plain, installed = (outcomes(run.junit) if run.junit.exists() else {} for run in again)
        for test in list(held):
            if (plain.get(test) == "passed") == (installed.get(test) == "passed"):
                held.discard(test)
    for test, (plain_was, installed_was) in differing.items():
        verdict = "HELD in every confirmation" if test in held else "unstable, not counted"
        print(f"[{broker}] {test}: plain {plain_was}, install {installed_was}; {verdict}")
    print(f"[{broker}] {len(held)} of {len(differing)} differences held")
    return not held


def recorded_jobs(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM conveyor_jobs").fetchone()
    return int(row[0]) if row else 0


if __name__ == "__main__":
    main()
