"""A small HTTP/1.1 keep-alive client on raw asyncio streams, and the open-loop generator.

httpx costs more CPU per request than the server under test spends on a trivial endpoint;
this client does the least a load generator can (one write, one header read, one body read)
so the generator's core is not what limits a run.

The open-loop generator schedules request i at t0 + i/rate whatever the server does, and
measures each latency from that scheduled moment: when the server stalls, the requests that
should have gone out meanwhile wait in the queue and their waiting counts (no coordinated
omission, as wrk2 does it).
"""

import asyncio
import contextlib
import gc
import math
import time
from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

Request = tuple[str, str, bytes, dict[str, str]]  # method, path, body, headers


class HttpError(Exception):
    """The connection broke or the answer was not HTTP/1.1 we can read."""


@dataclass
class Answer:
    status: int
    body: bytes


class Connection:
    """One keep-alive connection to 127.0.0.1:port; reconnects when the server closes it."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Answer:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        head.append(f"Content-Length: {len(body)}")
        self._writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        try:
            raw = await self._reader.readuntil(b"\r\n\r\n")
            status, length, chunked, close = _parse_head(raw)
            if chunked:
                payload = await self._read_chunked()
            else:
                payload = await self._reader.readexactly(length) if length else b""
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as exc:
            await self.close()
            raise HttpError(f"{type(exc).__name__}: {exc}") from exc
        if close:
            await self.close()
        return Answer(status, payload)

    async def _read_chunked(self) -> bytes:
        assert self._reader is not None
        parts: list[bytes] = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self._reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self._reader.readexactly(size + 2))
            parts[-1] = parts[-1][:-2]

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


def _parse_head(raw: bytes) -> tuple[int, int, bool, bool]:
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HttpError(f"not an HTTP/1.1 answer: {lines[0][:80]!r}")
    length, chunked, close = 0, False, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value
        elif name == "connection":
            close = value == "close"
    return int(parts[1]), length, chunked, close


async def fan_out(
    port: int,
    requests: list[Request],
    concurrency: int,
) -> list[Answer | HttpError]:
    """Send every request once over `concurrency` keep-alive connections (closed loop)."""
    answers: list[Answer | HttpError] = [HttpError("not sent")] * len(requests)
    cursor = iter(range(len(requests)))

    async def worker() -> None:
        connection = Connection(port)
        try:
            for i in cursor:
                method, path, body, headers = requests[i]
                try:
                    answers[i] = await connection.request(method, path, body, headers)
                except HttpError as exc:
                    answers[i] = exc
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(requests))))))
    return answers


@dataclass
class OpenLoopResult:
    rate: float
    scheduled: int
    latencies: list[float] = field(default_factory=list)  # seconds, of completed requests
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0  # connection failures and requests still unanswered at the deadline
    elapsed: float = 0.0  # t0 to the last answer
    max_dispatch_lag: float = 0.0  # how late the generator itself put a request in the queue

    @property
    def completed(self) -> int:
        return len(self.latencies)

    @property
    def achieved_rate(self) -> float:
        return self.completed / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: float) -> float:
        return percentile(self.latencies, p)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


async def open_loop(
    port: int,
    path: str,
    bodies: list[bytes],
    rate: float,
    *,
    headers: dict[str, str],
    connections: int = 128,
    grace: float = 15.0,
) -> OpenLoopResult:
    """POST bodies[i] at t0 + i/rate; latency of each is measured from that scheduled time."""
    # perf_counter, not loop.time(): uvloop's loop clock ticks in whole milliseconds.
    clock = time.perf_counter
    result = OpenLoopResult(rate=rate, scheduled=len(bodies))
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    pool = [Connection(port) for _ in range(connections)]
    # Open the connections first: a connect storm inside the window would be our cost.
    await asyncio.gather(*(c.request("GET", "/healthz") for c in pool))
    t0 = last_answer = math.inf  # set once the collector is off, just before the first send

    async def dispatch() -> None:
        for i in range(len(bodies)):
            scheduled = t0 + i / rate
            delay = scheduled - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            result.max_dispatch_lag = max(result.max_dispatch_lag, clock() - scheduled)
            queue.put_nowait((i, scheduled))
        for _ in pool:
            queue.put_nowait(None)

    async def worker(connection: Connection) -> None:
        nonlocal last_answer
        while (item := await queue.get()) is not None:
            i, scheduled = item
            try:
                answer = await connection.request("POST", path, bodies[i], headers)
            except HttpError:
                result.errors += 1
                continue
            now = clock()
            last_answer = max(last_answer, now)
            result.latencies.append(now - scheduled)
            result.statuses[answer.status] += 1

    deadline = len(bodies) / rate + grace  # then what is unanswered counts as errors
    with _no_gc():
        t0 = last_answer = clock() + 0.05
        workers = [asyncio.create_task(worker(c)) for c in pool]
        try:
            await _run(dispatch(), workers, deadline, result)
        finally:
            await asyncio.gather(*(c.close() for c in pool))
    result.elapsed = last_answer - t0
    return result


async def _run(
    dispatch: Coroutine[Any, Any, None],
    workers: list[asyncio.Task[None]],
    deadline: float,
    result: OpenLoopResult,
) -> None:
    try:
        await asyncio.wait_for(asyncio.gather(dispatch, *workers), deadline)
    except TimeoutError:
        result.errors += result.scheduled - result.completed - result.errors
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """No collector pauses inside a window: a gen-2 pass over the driver's heap would stall
    the generator for tens of milliseconds and show up as the server's tail."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@dataclass
class ClosedLoopResult:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    elapsed: float = 0.0


async def closed_loop(
    port: int,
    path: str,
    bodies: list[bytes],
    seconds: float,
    *,
    headers: dict[str, str],
    connections: int = 64,
) -> ClosedLoopResult:
    """As many POSTs as `connections` keep-alive connections manage in `seconds` (the
    fallback when wrk is missing: Python-bound, so it understates a fast server)."""
    clock = time.perf_counter
    result = ClosedLoopResult()
    position = 0
    start = clock()
    deadline = start + seconds

    async def worker() -> None:
        nonlocal position
        connection = Connection(port)
        try:
            while clock() < deadline:
                body = bodies[position % len(bodies)]
                position += 1
                sent = clock()
                try:
                    answer = await connection.request("POST", path, body, headers)
                except HttpError:
                    result.errors += 1
                    continue
                result.latencies.append(clock() - sent)
                result.statuses[answer.status] += 1
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    result.elapsed = clock() - start
    return result
