"""``python -m bench.loadgen``: an HTTP/1.1 load generator that costs as little CPU as it can.

The server and the load share two cores, so every cycle the client burns is one the server
does not get. Requests are pre-encoded bytes on keep-alive connections, and responses are read
by their ``Content-Length`` only — several times cheaper per request than a general client.

Two modes:

- closed loop (``--concurrency C``): C connections each send the next request as soon as the
  previous answer arrives — the server's maximum rate. Latency here is mostly queueing: by
  Little's law the mean is C / rate.
- open loop (``--rate R``): requests are due at a fixed rate whatever the server does, and a
  request's latency counts from when it was due, so a slow server is not hidden by the client
  waiting for it (no coordinated omission).

Prints one JSON line: completed requests, seconds, status counts and latency percentiles (ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bench.report import percentile


@dataclass
class Stats:
    measure_from: float
    measure_until: float
    latencies: list[float] = field(default_factory=list)
    status: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    missed: int = 0  # open loop: requests still unsent when the run had to end

    def add(self, due: float, done: float, status: int) -> None:
        if self.measure_from <= due < self.measure_until:
            self.latencies.append(done - due)
            self.status[status] += 1


def build_request(url: str, body: bytes, method: str = "POST") -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = f"{method} {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    if method == "GET":
        return host, port, (head + "\r\n").encode()
    head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return host, port, head.encode() + body


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
        elif name.lower() == b"transfer-encoding":
            raise RuntimeError("chunked responses are not supported by this load generator")
    if length:
        await reader.readexactly(length)
    return status


async def closed_loop(
    host: str, port: int, request: bytes, concurrency: int, warmup: float, duration: float
) -> Stats:
    start = time.perf_counter()
    stats = Stats(start + warmup, start + warmup + duration)

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (due := time.perf_counter()) < stats.measure_until:
                try:
                    status = await exchange(reader, writer, request)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    stats.errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                stats.add(due, time.perf_counter(), status)
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return stats


async def open_loop(
    host: str,
    port: int,
    request: bytes,
    rate: float,
    connections: int,
    warmup: float,
    duration: float,
) -> Stats:
    start = time.perf_counter()
    stats = Stats(start + warmup, start + warmup + duration)
    due_times: asyncio.Queue[float | None] = asyncio.Queue()

    async def schedule() -> None:
        sent = 0
        while True:
            now = time.perf_counter()
            if now >= stats.measure_until:
                break
            due_count = int((now - start) * rate) + 1
            for i in range(sent, due_count):
                due_times.put_nowait(start + i / rate)
            sent = due_count
            await asyncio.sleep(0.0005)
        for _ in range(connections):
            due_times.put_nowait(None)

    # A server slower than the rate never catches up; give it a little time, then stop.
    hard_stop = stats.measure_until + 2.0

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (due := await due_times.get()) is not None:
                if time.perf_counter() > hard_stop:
                    stats.missed += 1
                    continue
                try:
                    status = await exchange(reader, writer, request)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    stats.errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                stats.add(due, time.perf_counter(), status)
        finally:
            writer.close()

    await asyncio.gather(schedule(), *(client() for _ in range(connections)))
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("url")
    parser.add_argument("--method", choices=("POST", "GET"), default="POST")
    parser.add_argument("--body", default='{"task": "bench.noop"}')
    parser.add_argument("--concurrency", type=int, default=32, help="closed loop: connections")
    parser.add_argument("--rate", type=float, help="open loop: requests per second")
    parser.add_argument("--connections", type=int, default=128, help="open loop: pool size")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    host, port, request = build_request(args.url, args.body.encode(), args.method)
    if args.rate:
        run = open_loop(
            host, port, request, args.rate, args.connections, args.warmup, args.duration
        )
    else:
        run = closed_loop(host, port, request, args.concurrency, args.warmup, args.duration)
    cpu0 = time.process_time()
    stats = asyncio.run(run)
    lat = [x * 1000 for x in stats.latencies] or [float("nan")]
    print(
        json.dumps(
            {
                "completed": len(stats.latencies),
                "seconds": args.duration,
                "errors": stats.errors,
                "missed": stats.missed,
                "status": dict(stats.status),
                "p50_ms": percentile(lat, 50),
                "p90_ms": percentile(lat, 90),
                "p99_ms": percentile(lat, 99),
                "max_ms": max(lat),
                "client_cpu_seconds": time.process_time() - cpu0,
            }
        )
    )


if __name__ == "__main__":
    main()
