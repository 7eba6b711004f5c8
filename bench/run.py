"""`python -m bench`: set everything up, measure, and write docs/BENCHMARKS.md.

One run, in this order (each server a subprocess on CPU 0, everything else on CPU 1):
1. database round trips per request, counted in-process on PostgreSQL and SQLite;
2. the yardsticks (bench/baseline.py): wrk on the trivial endpoint and the cost ladder,
   and the open-loop rates on the trivial endpoint;
3. the NICEPAY client's CPU per status inquiry by transport (bench/client_ab.py);
4. per engine, a grown database (bench/grown.py: 1,000,000 payments, 3,000,000 ledger rows,
   loaded in bulk; the hot queries' plans) next to an empty one (a throwaway PostgreSQL
   database; a temp SQLite file);
5. per engine, registration latency (service vs simulator; inquiry off) on the empty and the
   grown database in alternating rounds; then per engine and inquiry setting, the empty
   and the grown database side by side, a fresh simulator and service (`python -m app serve`)
   each: duplicates (wrk over already-paid payments), then rounds of the trivial endpoint
   (the yardstick for the ratios) and the first deposits of each (wrk over a pool sized from
   the duplicate rate; the two take turns), and on the empty database the open-loop rates over fresh
   payments and a py-spy profile (SQLite's grown database: inquiry off only); on PostgreSQL then the service's memory over 100,000 first
   deposits on the grown database (bench/memory.py);
6. with --before-ref REF: the service at that commit (bench/before_ref.py), inquiry off,
   both databases;
7. the report.

Every push is checked afterwards in the ledger: each window lists what its pushes became.
"""

import argparse
import asyncio
import contextlib
import json
import math
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

import uvloop

from bench import before_ref, procs, pushes, roundtrips, tools
from bench import client_ab as client_ab_run
from bench import grown as grown_db
from bench import memory as memory_run
from bench import profile as profiling
from bench.http import Connection, closed_loop, fan_out, open_loop, percentile
from bench.pushes import FORM, NOTIFY_PATH, PUSH_HEADERS, Registered
from bench.report import write_report

RESULTS = Path(__file__).resolve().parent / "results"  # the profiles the report points to
LAST_RUN = tools.CACHE / "last-run.pickle"  # for --report-only; outside the work tree


@dataclass(frozen=True)
class Plan:
    throughput_seconds: float
    warmup_seconds: float
    open_loop_seconds: float
    overload_seconds: float  # window for a rate above the measured capacity
    rates: tuple[int, ...]
    warm_payments: int
    registration_samples: int
    pool_cap: int
    profile_seconds: float
    grown_payments: int  # bench/grown.py: loaded in bulk
    grown_ledger: int
    memory_pushes: int  # first deposits in the memory run (RSS sampled every memory_every)
    memory_every: int
    client_calls: int  # per NICEPAY client A/B measurement
    rounds: int  # first-deposit windows, each after one on the trivial endpoint
    connections: int = 64  # wrk, closed loop
    open_loop_connections: int = 64


FULL = Plan(
    throughput_seconds=5,
    warmup_seconds=2,
    open_loop_seconds=5,
    overload_seconds=2,
    rates=(250, 500, 1000),
    warm_payments=300,
    registration_samples=200,
    pool_cap=36_000,
    profile_seconds=4,
    grown_payments=1_000_000,
    grown_ledger=3_000_000,
    memory_pushes=100_000,
    memory_every=10_000,
    client_calls=3_000,
    rounds=3,
)
QUICK = Plan(1, 1, 1, 0.5, (100, 1000), 60, 20, 2_000, 1, 20_000, 60_000, 4_000, 1_000, 300, 2)


@dataclass
class Window:
    """One measured load window."""

    label: str
    method: str
    requests: int
    seconds: float
    p50: float
    p99: float
    max: float
    errors: int  # non-2xx answers and socket errors
    server_cpu: float  # share of one core the server used
    cores: tuple[float, ...]  # busy share of each core
    outcomes: dict[str, int] = field(default_factory=dict)  # what the ledger recorded
    rate: float | None = None  # scheduled (open loop)
    over_capacity: bool = False
    dispatch_lag: float = 0.0
    new_backends: int = 0  # PostgreSQL backends that appeared during the window (sampled)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        return self.server_cpu * self.seconds / self.requests * 1000 if self.requests else math.nan


@dataclass
class RegistrationLatency:
    database: str
    service: list[float]
    simulator: list[float]
    profile: profiling.Profile | None = None  # py-spy over sequential registrations
    profile_file: str | None = None
    grown: bool = False
    version: str = ""

    @property
    def name(self) -> str:
        return (
            self.database
            + (", grown database" if self.grown else "")
            + (f" [{self.version}]" if self.version else "")
        )

    def p(self, which: str, q: float) -> float:
        return percentile(getattr(self, which), q)

    @property
    def added_p50(self) -> float:
        return self.p("service", 50) - self.p("simulator", 50)


@dataclass
class Config:
    database: str
    inquiry: bool
    grown: bool = False  # on the database loaded by bench/grown.py
    version: str = ""  # "" for this tree; "before (REF)" for --before-ref
    duplicates: Window | None = None
    first_deposits: Window | None = None
    open_loop: list[Window] = field(default_factory=list)
    profile: profiling.Profile | None = None
    profile_window: Window | None = None
    profile_file: str | None = None
    simulator_cpu: float | None = None  # share of a core the simulator used, first deposits
    # The trivial endpoint in windows alternating with the first deposits' (Bench.alternating):
    # the yardstick for this configuration's ratios, so a ratio never spans the host's drift.
    trivial: Window | None = None
    rounds: list[tuple[Window, Window]] = field(default_factory=list)  # (trivial, deposits)

    @property
    def name(self) -> str:
        grown = ", grown database" if self.grown else ""
        version = f" [{self.version}]" if self.version else ""
        return f"{self.database}{grown}, inquiry {'on' if self.inquiry else 'off'}{version}"

    @property
    def slug(self) -> str:
        return "-".join(
            part
            for part in (
                self.database.lower(),
                "grown" if self.grown else "",
                "inquiry" if self.inquiry else "no-inquiry",
                "before" if self.version else "",
            )
            if part
        )


@dataclass
class Results:
    started: float
    quick: bool
    plan: Plan
    machine: dict[str, str] = field(default_factory=dict)
    wrk: str | None = None
    py_spy: str | None = None
    baseline: list[Window] = field(default_factory=list)
    baseline_open_loop: list[Window] = field(default_factory=list)
    configs: list[Config] = field(default_factory=list)
    registration: list[RegistrationLatency] = field(default_factory=list)
    round_trips: dict[str, dict[str, roundtrips.Trace]] = field(default_factory=dict)
    churn: roundtrips.Churn | None = None
    notes: list[str] = field(default_factory=list)
    grown: list[grown_db.Load] = field(default_factory=list)
    memory: memory_run.Memory | None = None
    client_ab: list[client_ab_run.Sample] = field(default_factory=list)
    before_ref: str | None = None
    finished: float = 0.0
    idle_cores: tuple[float, ...] = ()  # each core's busy share before the run started

    def windows(self) -> list["Window"]:
        found = [*self.baseline, *self.baseline_open_loop]
        for c in self.configs:
            found += [w for w in (c.duplicates, c.first_deposits, *c.open_loop) if w]
        return found

    @property
    def others_on_server_core(self) -> float:
        """Mean share of the server's core used by processes other than the server."""
        shares = [max(0.0, w.cores[0] - w.server_cpu) for w in self.windows() if w.cores]
        return sum(shares) / len(shares) if shares else 0.0


@dataclass
class _Side:
    """One configuration's service in a measurement: its simulator, database and pushes."""

    config: Config
    service: procs.Server
    simulator: procs.Server
    url: str
    bodies: list[str] = field(default_factory=list)  # first deposits, each pushed once
    seconds: float = 0.0  # the length of each first-deposit window


class Bench:
    def __init__(self, plan: Plan, results: Results, work: Path) -> None:
        self.plan, self.results, self.work = plan, results, work
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self._files = 0

    # -- load primitives ---------------------------------------------------------------------

    def _bodies_file(self, bodies: list[str]) -> Path:
        self._files += 1
        path = self.work / f"bodies-{self._files}.txt"
        path.write_text("\n".join(bodies) + "\n")
        return path

    async def closed(
        self,
        label: str,
        server: procs.Server,
        path: str,
        bodies: list[str],
        seconds: float,
        url: str | None,
    ) -> Window:
        """Closed loop at full speed: wrk, or the Python generator when wrk is missing."""
        before = await procs.outcomes(url) if url else {}
        async with procs.backends_pinned(url, procs.LOAD_CPU) as new_backends:
            window = await self._closed(label, server, path, bodies, seconds)
        window.new_backends = len(new_backends)
        if url:
            window.outcomes = _delta(before, await procs.outcomes(url))
        return window

    async def _closed(
        self, label: str, server: procs.Server, path: str, bodies: list[str], seconds: float
    ) -> Window:
        meter = procs.Meter(server.pid)
        if self.results.wrk:
            run = await tools.run_wrk(
                self.results.wrk,
                server.port,
                path,
                self._bodies_file(bodies),
                seconds,
                connections=self.plan.connections,
                content_type=FORM,
                user_agent=PUSH_HEADERS["User-Agent"],
            )
            cpu, cores = meter.stop()
            window = Window(
                label,
                f"wrk, {self.plan.connections} connections",
                run.requests,
                run.seconds,
                run.p50,
                run.p99,
                run.max,
                run.non_2xx + run.socket_errors,
                cpu,
                cores,
            )
        else:
            result = await closed_loop(
                server.port,
                path,
                [b.encode() for b in bodies],
                seconds,
                headers=PUSH_HEADERS,
                connections=self.plan.connections,
            )
            cpu, cores = meter.stop()
            bad = sum(n for status, n in result.statuses.items() if status >= 300)
            window = Window(
                label,
                f"Python closed loop, {self.plan.connections} connections (no wrk)",
                len(result.latencies),
                result.elapsed,
                percentile(result.latencies, 50),
                percentile(result.latencies, 99),
                max(result.latencies, default=math.nan),
                bad + result.errors,
                cpu,
                cores,
            )
        return window

    async def opened(
        self,
        label: str,
        server: procs.Server,
        path: str,
        bodies: list[str],
        rate: float,
        url: str | None,
        over_capacity: bool = False,
    ) -> Window:
        before = await procs.outcomes(url) if url else {}
        async with procs.backends_pinned(url, procs.LOAD_CPU) as new_backends:
            meter = procs.Meter(server.pid)
            result = await open_loop(
                server.port,
                path,
                [b.encode() for b in bodies],
                rate,
                headers=PUSH_HEADERS,
                connections=self.plan.open_loop_connections,
            )
            cpu, cores = meter.stop()
        bad = sum(n for status, n in result.statuses.items() if status >= 300)
        window = Window(
            label,
            f"open loop, {rate:g}/s",
            result.completed,
            result.elapsed,
            result.percentile(50),
            result.percentile(99),
            max(result.latencies, default=math.nan),
            bad + result.errors,
            cpu,
            cores,
            rate=rate,
            over_capacity=over_capacity,
            dispatch_lag=result.max_dispatch_lag,
            new_backends=len(new_backends),
        )
        if url:
            window.outcomes = _delta(before, await procs.outcomes(url))
        return window

    # -- phases ------------------------------------------------------------------------------

    async def count_round_trips(self, url: str, database: str) -> None:
        print(f"bench: counting round trips on {database}", flush=True)
        self.results.round_trips[database] = await roundtrips.count(url, database.lower()[:2])
        if database == "PostgreSQL":
            self.results.churn = await roundtrips.churn(url)

    async def baseline(self, pg_url: str) -> None:
        """The trivial endpoint (the yardstick) and the ladder of costs above it."""
        print("bench: baseline and cost ladder", flush=True)
        port = procs.free_port()
        env = procs.python_env(BENCH_DSN=procs.plain_dsn(pg_url))
        argv = [sys.executable, "-m", "bench.baseline", "--port", str(port)]
        sample = _sample_pushes(500)
        plan = self.plan
        async with procs.server(
            "baseline", argv, port=port, cpu=procs.SERVER_CPU, env=env, logs=self.logs
        ) as srv:
            await self.closed("warm-up", srv, "/trivial", sample, plan.warmup_seconds, None)
            for path, label in (
                ("/trivial", "trivial endpoint (baseline)"),
                ("/form", "+ form parsing and merchantToken check"),
                ("/asyncpg", "+ one INSERT, raw asyncpg pool"),
                ("/sqlalchemy", "+ the same INSERT, SQLAlchemy async session"),
                ("/sqlalchemy-preping", "+ the same, SQLAlchemy with pool_pre_ping"),
            ):
                window = await self.closed(label, srv, path, sample, plan.throughput_seconds, None)
                self.results.baseline.append(window)
                _show(window)
            for rate in plan.rates:
                n = int(rate * plan.open_loop_seconds)
                window = await self.opened(
                    f"trivial endpoint at {rate}/s",
                    srv,
                    "/trivial",
                    (sample * (n // len(sample) + 1))[:n],
                    rate,
                    None,
                )
                self.results.baseline_open_loop.append(window)
                _show(window)

    async def alternating(self, sides: list[_Side], seconds: float) -> None:
        """First deposits in `plan.rounds` windows of `seconds` per configuration, each round
        right after a window on the trivial endpoint (its own server on the same core, idle
        meanwhile). The windows span the same stretch of time, so neither a ratio against the
        trivial endpoint nor one between configurations measured together (the empty and the
        grown database) carries the host's drift over a run, and a slow second on the host
        falls on each about as often; the configurations take turns going first."""
        port = procs.free_port()
        argv = [sys.executable, "-m", "bench.baseline", "--port", str(port)]
        sample, rounds = _sample_pushes(500), self.plan.rounds
        simulator_cpu, trivials = [0.0] * len(sides), []
        async with procs.server(
            f"trivial-{sides[0].config.slug}", argv, port=port, cpu=procs.SERVER_CPU,
            env=procs.python_env(), logs=self.logs,
        ) as srv:  # fmt: skip
            await self.closed("warm-up", srv, "/trivial", sample, self.plan.warmup_seconds, None)
            for i in range(rounds):
                trivial = await self.closed(
                    "trivial endpoint, next to it", srv, "/trivial", sample, seconds, None
                )
                trivials.append(trivial)
                turns = list(enumerate(sides))
                for k, side in turns[:: -1 if i % 2 else 1]:
                    chunk = len(side.bodies) // rounds
                    meter = procs.Meter(side.simulator.pid)
                    deposits = await self.closed(
                        "first deposits", side.service, NOTIFY_PATH,
                        side.bodies[i * chunk : (i + 1) * chunk], seconds, side.url,
                    )  # fmt: skip
                    simulator_cpu[k] += meter.stop()[0] * deposits.seconds
                    side.config.rounds.append((trivial, deposits))
        merged = _merged(trivials)
        _show(merged)
        for side, cpu in zip(sides, simulator_cpu, strict=True):
            config = side.config
            config.trivial = merged
            config.first_deposits = _merged([d for _, d in config.rounds])
            config.simulator_cpu = cpu / config.first_deposits.seconds
            _show(config.first_deposits)

    @contextlib.asynccontextmanager
    async def serving(
        self,
        url: str,
        inquiry: bool,
        name: str,
        before: "before_ref.Before | None" = None,
    ) -> AsyncIterator[tuple[procs.Server, procs.Server]]:
        """A fresh simulator (load core) and the service on it (server core): (simulator,
        service)."""
        sim_port, port = procs.free_port(), procs.free_port()
        sim_argv = [
            sys.executable, "-m", "simulator", "--port", str(sim_port), "--no-access-log"
        ]  # fmt: skip
        if before:  # its own simulator: today's refuses what that version did not send
            sim_argv = [before.python, "-m", "simulator", "--port", str(sim_port)]
        root = before.root if before else procs.ROOT
        env = procs.python_env(
            root,
            DATABASE_URL=url,
            NICEPAY_BASE_URL=f"http://127.0.0.1:{sim_port}",
            NICEPAY_ALLOWED_IPS="127.0.0.1/32",
            STOREFRONT_API_KEYS=pushes.STOREFRONT_KEY,
            NICEPAY_VERIFY_WITH_INQUIRY="true" if inquiry else "false",
            PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
            LOG_LEVEL="WARNING",
            RECONCILE_INTERVAL_SECONDS="0",
            MERCHANT_WEBHOOK_URL="",
            APP_ENV="development",
        )
        python = before.python if before else sys.executable
        service_argv = [python, "-m", "app", "serve", "--port", str(port)]
        async with (
            procs.server(
                f"simulator-{name}",
                sim_argv,
                port=sim_port,
                cpu=procs.LOAD_CPU,
                env=procs.python_env(root),
                logs=self.logs,
                ready_path="/sim/stats",
                cwd=root,  # `python -m simulator` imports from its working directory first
            ) as simulator,
            procs.server(
                f"service-{name}",
                service_argv,
                port=port,
                cpu=procs.SERVER_CPU,
                env=env,
                logs=self.logs,
                ready_path="/readyz",
                cwd=root,
            ) as service,
        ):
            yield simulator, service

    async def registrations(self, database: str, empty_url: str, grown_url: str) -> None:
        """Registration latency on the empty and the grown database in alternating rounds,
        both services up side by side, so their ratio does not span the host's drift; then
        the empty one's profile."""
        rounds = self.plan.rounds
        samples = max(1, self.plan.registration_samples // rounds)
        print(f"bench: {database}, registration, empty and grown database", flush=True)
        merged = {
            grown: RegistrationLatency(database, [], [], grown=grown) for grown in (False, True)
        }
        tag = f"{database[:2]}g{int(time.time()) % 100000}"
        async with contextlib.AsyncExitStack() as stack:
            up = {
                grown: await stack.enter_async_context(
                    self.serving(url, False, f"{database.lower()}-registration{'-grown' * grown}")
                )
                for grown, url in ((False, empty_url), (True, grown_url))
            }
            for i in range(rounds):
                for grown, (simulator, service) in up.items():
                    one = await self.registration_latency(
                        database, service, simulator.port, f"{tag}{i}{int(grown)}", samples
                    )
                    merged[grown].service += one.service
                    merged[grown].simulator += one.simulator
            if self.results.py_spy:  # where the time goes, on the empty database
                await self.profile_registrations(merged[False], up[False][1], f"{tag}p")
        self.results.registration += merged.values()

    async def config(
        self,
        url: str,
        database: str,
        inquiry: bool,
        *,
        grown_url: str | None = None,
        before: "before_ref.Before | None" = None,
    ) -> None:
        """One service (this tree's, or the --before-ref tree's) on one database and one
        inquiry setting: duplicates, first deposits, open loop, profile; for the --before-ref
        tree registration latency first and no open loop (this tree's registration latency:
        `registrations`). With `grown_url`, the
        same setting on the grown database as well, its own simulator and service up side by
        side: its duplicates, then the first-deposit windows of the two taking turns (so the
        grown-over-empty ratio does not span the host's drift); no open loop or profile there."""
        configs = {url: Config(database, inquiry, False, before.label if before else "")}
        if grown_url:
            configs[grown_url] = Config(database, inquiry, True)
        self.results.configs += configs.values()
        tag = f"{database[:2]}{'i' if inquiry else 'n'}{int(time.time()) % 100000}"
        async with contextlib.AsyncExitStack() as stack:
            sides = []
            for i, (at, config) in enumerate(configs.items()):
                print(f"bench: {config.name}", flush=True)
                simulator, service = await stack.enter_async_context(
                    self.serving(at, inquiry, config.slug, before)
                )
                if before:
                    latency = await self.registration_latency(
                        database, service, simulator.port, f"{tag}r", self.plan.registration_samples
                    )
                    latency.version = config.version
                    self.results.registration.append(latency)
                sides.append(_Side(config, service, simulator, at))
                await self._duplicates(sides[-1], f"{tag}{i}")
            await self.alternating(sides, min(side.seconds for side in sides))
            empty = sides[0]
            config, service = empty.config, empty.service
            assert config.first_deposits is not None
            capacity = config.first_deposits.rps
            for rate in () if before else self.plan.rates:
                over = rate > capacity
                n = int(
                    rate * (self.plan.overload_seconds if over else self.plan.open_loop_seconds)
                )
                if over:  # bounded so the backlog drains in a few seconds
                    n = min(n, int(max(capacity, 20.0) * self.plan.overload_seconds * 2.5))
                bodies = await self._pool(empty, f"{tag}o{rate}-", n)
                window = await self.opened(
                    f"first deposits at {rate}/s", service, NOTIFY_PATH, bodies, rate, url, over
                )
                config.open_loop.append(window)
                _show(window)
            if self.results.py_spy and not before:
                count = min(
                    self.plan.pool_cap, int(capacity * self.plan.profile_seconds * 1.5) + 100
                )
                await self.profile(config, service, url, await self._pool(empty, f"{tag}p", count))

    async def _pool(self, side: _Side, prefix: str, count: int) -> list[str]:
        """`count` payments registered through the side's service: their deposit pushes (with the
        inquiry on, each settled in the simulator first, so the inquiry says paid)."""
        payments = await pushes.register_pool(side.service.port, prefix, count)
        if side.config.inquiry:
            await pushes.settle_in_simulator(side.simulator.port, payments)
        return [pushes.deposit_form(p) for p in payments]

    async def _duplicates(self, side: _Side, tag: str) -> None:
        """The warm-up and the duplicates window; then the side's pool of fresh payments for the
        first deposits and the length of their windows."""
        plan, config, service = self.plan, side.config, side.service
        warm = await self._pool(side, f"{tag}w", plan.warm_payments)
        # Every warm payment paid once, so the duplicates window holds duplicates only.
        await fan_out(
            service.port, [("POST", NOTIFY_PATH, b.encode(), PUSH_HEADERS) for b in warm], 16
        )
        await self.closed("warm-up", service, NOTIFY_PATH, warm, plan.warmup_seconds, side.url)
        config.duplicates = await self.closed(
            "duplicate deposits (already paid)",
            service,
            NOTIFY_PATH,
            warm,
            plan.throughput_seconds,
            side.url,
        )
        _show(config.duplicates)
        # A first deposit can be cheaper than a duplicate (one statement against three
        # with the inquiry off): size for twice the duplicate rate, so the pool lasts;
        # `rounds` windows of about half the throughput window (wrk runs whole seconds),
        # shortened if the pool is capped.
        guess, rounds = max(2 * config.duplicates.rps, 50.0), plan.rounds
        seconds = max(1, round(plan.throughput_seconds / 2))
        size = min(plan.pool_cap, max(200, int(guess * seconds * rounds * 1.5)))
        side.seconds = max(1, min(seconds, int(size / (guess * 1.5 * rounds) + 1e-9)))
        side.bodies = await self._pool(side, f"{tag}t", size)

    async def client_transports(self) -> None:
        """CPU per status inquiry: httpx's own transport against the service's, same process
        layout as the service (client on the server's core, the simulator on the load core)."""
        print("bench: NICEPAY client, httpx's transport against aiohttp's", flush=True)
        sim_port = procs.free_port()
        sim_argv = [sys.executable, "-m", "simulator", "--port", str(sim_port), "--no-access-log"]
        async with procs.server(
            "simulator-client-ab",
            sim_argv,
            port=sim_port,
            cpu=procs.LOAD_CPU,
            env=procs.python_env(),
            logs=self.logs,
            ready_path="/sim/stats",
        ):
            for concurrency in (1, 64):
                for transport in client_ab_run.TRANSPORTS:
                    sample = await asyncio.to_thread(
                        client_ab_run.run,
                        sys.executable,
                        sim_port,
                        transport,
                        concurrency,
                        self.plan.client_calls,
                    )
                    self.results.client_ab.append(sample)
                    print(
                        f"  {transport:<8} concurrency {concurrency:>3}: "
                        f"{sample.cpu_ms_per_call:.2f} ms CPU/call, {sample.calls_per_second:,.0f} calls/s",
                        flush=True,
                    )

    async def grown(self, url: str, database: str) -> grown_db.Load:
        plan = self.plan
        print(
            f"bench: loading {plan.grown_payments:,} payments and {plan.grown_ledger:,} ledger "
            f"rows into {database}",
            flush=True,
        )
        load = await grown_db.load(url, plan.grown_payments, plan.grown_ledger, plan.memory_pushes)
        self.results.grown.append(load)
        print(f"  loaded in {load.seconds:.0f} s; not index-backed: {load.unindexed}", flush=True)
        return load

    async def memory(self, url: str, database: str) -> None:
        """RSS of the service over memory_pushes first deposits (the grown database's pending
        payments), inquiry off: every push a full write; sampled every memory_every."""
        plan = self.plan
        setting = f"{database}, grown database, inquiry off"
        print(f"bench: memory over {plan.memory_pushes:,} first deposits ({setting})", flush=True)
        from app.nicepay.wib import now_utc

        now = now_utc()
        forms = await asyncio.to_thread(
            grown_db.deposit_forms,
            1,
            plan.memory_pushes,
            now - timedelta(hours=2),
            now + timedelta(days=1),
        )
        port = procs.free_port()
        env = procs.python_env(
            DATABASE_URL=url,
            NICEPAY_BASE_URL="http://127.0.0.1:9",  # never called: inquiry off
            NICEPAY_ALLOWED_IPS="127.0.0.1/32",
            STOREFRONT_API_KEYS=pushes.STOREFRONT_KEY,
            NICEPAY_VERIFY_WITH_INQUIRY="false",
            LOG_LEVEL="WARNING",
            RECONCILE_INTERVAL_SECONDS="0",
            MERCHANT_WEBHOOK_URL="",
            APP_ENV="development",
        )
        argv = [sys.executable, "-m", "app", "serve", "--port", str(port)]
        async with procs.server(
            "service-memory", argv, port=port, cpu=procs.SERVER_CPU, env=env, logs=self.logs,
            ready_path="/readyz",
        ) as service:  # fmt: skip
            before = await procs.outcomes(url)
            async with procs.backends_pinned(url, procs.LOAD_CPU):
                result = await memory_run.measure(
                    setting, port, service.pid, forms, plan.memory_every
                )
            result.outcomes = _delta(before, await procs.outcomes(url))
        self.results.memory = result

    async def _sampling(
        self, server: procs.Server, name: str
    ) -> tuple["subprocess.Popen[bytes]", Path]:
        """py-spy on the server for the plan's profile window, attached before the load."""
        assert self.results.py_spy is not None
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"profile-{name}.txt"
        seconds = self.plan.profile_seconds + 0.5
        sampler = profiling.record(self.results.py_spy, server.pid, seconds, out)
        await asyncio.sleep(0.3)
        return sampler, out

    async def profile(
        self, config: Config, service: procs.Server, url: str, bodies: list[str]
    ) -> None:
        seconds = self.plan.profile_seconds
        sampler, out = await self._sampling(
            service,
            f"{config.database.lower()}-notification" + ("-inquiry" if config.inquiry else ""),
        )
        config.profile_window = await self.closed(
            "first deposits under py-spy", service, NOTIFY_PATH, bodies, seconds, url
        )
        config.profile, config.profile_file = await _collected(sampler, out)
        if config.profile is None:
            self.results.notes.append(f"py-spy wrote no profile for {config.name}")

    async def registration_latency(
        self,
        database: str,
        server: procs.Server,
        sim_port: int,
        tag: str,
        samples: int,
    ) -> RegistrationLatency:
        """Sequential, interleaved: POST /api/v1/cvs/payments vs onePass.do on the simulator."""
        result = RegistrationLatency(database, [], [])
        port = server.port
        service, simulator = Connection(port), Connection(sim_port)
        db_process_url = f"http://127.0.0.1:{port}{NOTIFY_PATH}"
        warm = 10
        try:
            for i in range(warm + samples):
                body = pushes.registration_body(f"{tag}-{i}", 10_000 + i)
                started = time.perf_counter()
                answer = await service.request(
                    "POST", pushes.PAYMENTS_PATH, body, pushes.JSON_HEADERS
                )
                took = time.perf_counter() - started
                if answer.status != 201:
                    raise RuntimeError(f"registration: {answer.status} {answer.body[:200]!r}")
                if i >= warm:
                    result.service.append(took)
                form = pushes.nicepay_registration_form(f"{tag}-d{i}", 10_000 + i, db_process_url)
                started = time.perf_counter()
                answer = await simulator.request(
                    "POST", pushes.REGISTER_PATH, form, {"Content-Type": FORM}
                )
                took = time.perf_counter() - started
                if answer.status != 200 or json.loads(answer.body).get("resultCd") != "0000":
                    raise RuntimeError(f"simulator registration: {answer.body[:200]!r}")
                if i >= warm:
                    result.simulator.append(took)
        finally:
            await service.close()
            await simulator.close()
        print(
            f"  registration p50 service {result.p('service', 50) * 1000:.2f} ms, "
            f"simulator {result.p('simulator', 50) * 1000:.2f} ms",
            flush=True,
        )
        return result

    async def profile_registrations(
        self, result: RegistrationLatency, server: procs.Server, tag: str
    ) -> None:
        seconds = self.plan.profile_seconds
        sampler, out = await self._sampling(server, f"{result.database.lower()}-registration")
        service = Connection(server.port)
        try:
            deadline, i = time.monotonic() + seconds, 0
            while time.monotonic() < deadline:
                body = pushes.registration_body(f"{tag}-{i}", 10_000 + i)
                await service.request("POST", pushes.PAYMENTS_PATH, body, pushes.JSON_HEADERS)
                i += 1
        finally:
            await service.close()
        result.profile, result.profile_file = await _collected(sampler, out)


async def _collected(
    sampler: "subprocess.Popen[bytes]", out: Path
) -> tuple[profiling.Profile | None, str | None]:
    """Wait for py-spy to finish; its profile summarised, and the stacks file, if it wrote one."""
    try:
        await asyncio.wait_for(asyncio.to_thread(sampler.wait), 30)
    except TimeoutError:
        sampler.kill()
    return _summary(out)


def _summary(out: Path) -> tuple[profiling.Profile | None, str | None]:
    if not out.exists():
        return None, None
    return profiling.summarise(out), str(out.relative_to(procs.ROOT))


def _sample_pushes(n: int) -> list[str]:
    """Valid-looking pushes for the yardsticks (tokens right; no payment behind them)."""
    from datetime import timedelta

    from app.nicepay.wib import now_utc

    now = now_utc()
    return [
        pushes.deposit_form(
            Registered(
                f"BASE-{i}",
                f"IONPAYTEST03{i:018d}",
                10_000 + i,
                "ALMA",
                f"0{i:011d}",
                now + timedelta(days=1),
                now,
            )
        )
        for i in range(n)
    ]


def _merged(windows: list[Window]) -> Window:
    """Closed-loop windows of one kind as one: totals, the time-weighted CPU shares, the
    median of the p50s and the largest p99 and maximum."""
    seconds = sum(w.seconds for w in windows)

    def weighted(values: list[float]) -> float:
        return sum(v * w.seconds for v, w in zip(values, windows, strict=True)) / seconds

    outcomes: dict[str, int] = {}
    for w in windows:
        for k, v in w.outcomes.items():
            outcomes[k] = outcomes.get(k, 0) + v
    first = windows[0]
    return Window(
        first.label + (f" ({len(windows)} windows)" if len(windows) > 1 else ""),
        first.method,
        sum(w.requests for w in windows),
        seconds,
        percentile([w.p50 for w in windows], 50),
        max(w.p99 for w in windows),
        max(w.max for w in windows),
        sum(w.errors for w in windows),
        weighted([w.server_cpu for w in windows]),
        tuple(weighted([w.cores[i] for w in windows]) for i in range(len(first.cores))),
        outcomes,
        new_backends=sum(w.new_backends for w in windows),
    )


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {
        k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)
    }


def _show(w: Window) -> None:
    print(
        f"  {w.label:<58} {w.rps:8.0f} req/s  p50 {w.p50 * 1000:7.2f} ms  p99 {w.p99 * 1000:8.2f} ms"
        f"  errors {w.errors}  server cpu {w.server_cpu * 100:3.0f}%  {w.outcomes or ''}",
        flush=True,
    )


async def run(args: argparse.Namespace) -> Results:
    plan = QUICK if args.quick else FULL
    if args.rates:
        plan = Plan(**{**asdict(plan), "rates": tuple(args.rates)})
    results = Results(started=time.time(), quick=args.quick, plan=plan)
    # Ctrl-C or a kill cancels the run, so every server is stopped and the database dropped.
    main_task, loop = asyncio.current_task(), asyncio.get_running_loop()
    if main_task is not None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, main_task.cancel)
    procs.pin_self(procs.LOAD_CPU)
    results.idle_cores = await procs.busy_before()
    if max(results.idle_cores, default=0) > 0.2:
        print(
            "bench: warning: the machine is busy before the run ("
            + " / ".join(f"{b * 100:.0f}%" for b in results.idle_cores)
            + " per core): figures will be noisy",
            flush=True,
        )
    results.machine = procs.machine()
    results.machine["postgresql"] = await procs.postgres_version()
    results.machine.update(procs.versions())
    results.wrk = tools.ensure_wrk()
    if not results.wrk:
        results.notes.append(
            "wrk was not available: closed-loop figures come from the Python generator."
        )
    results.py_spy = None if args.no_profile else tools.ensure_py_spy()
    with tempfile.TemporaryDirectory(prefix="nicepay-bench-") as tmp:
        work = Path(tmp)
        bench = Bench(plan, results, work)
        try:
            # The grown database is measured side by side with the empty one, setting by
            # setting: their first-deposit windows take turns.
            async with procs.postgres_database() as pg_url, procs.postgres_database() as grown_url:
                for url in (pg_url, grown_url):
                    await asyncio.to_thread(procs.migrate, url, bench.logs)
                await bench.count_round_trips(pg_url, "PostgreSQL")
                await bench.baseline(pg_url)
                await bench.client_transports()
                await bench.grown(grown_url, "PostgreSQL")
                await bench.registrations("PostgreSQL", pg_url, grown_url)
                for inquiry in (False, True):
                    await bench.config(pg_url, "PostgreSQL", inquiry, grown_url=grown_url)
                await bench.memory(grown_url, "PostgreSQL")
            (work / "grown").mkdir()
            with (
                procs.sqlite_database(work) as sqlite_url,
                procs.sqlite_database(work / "grown") as grown_sqlite,
            ):
                for url in (sqlite_url, grown_sqlite):
                    await asyncio.to_thread(procs.migrate, url, bench.logs)
                await bench.count_round_trips(sqlite_url, "SQLite")
                await bench.grown(grown_sqlite, "SQLite")
                await bench.registrations("SQLite", sqlite_url, grown_sqlite)
                await bench.config(sqlite_url, "SQLite", False, grown_url=grown_sqlite)
                await bench.config(sqlite_url, "SQLite", True)
            if args.before_ref:
                before = await asyncio.to_thread(before_ref.prepare, args.before_ref)
                results.before_ref = f"{before.ref} ({before.commit[:12]})"
                async with procs.postgres_database() as old_pg:
                    await asyncio.to_thread(
                        procs.migrate, old_pg, bench.logs, before.root, before.python
                    )
                    await bench.config(old_pg, "PostgreSQL", False, before=before)
                (work / "before").mkdir()
                with procs.sqlite_database(work / "before") as old_lite:
                    await asyncio.to_thread(
                        procs.migrate, old_lite, bench.logs, before.root, before.python
                    )
                    await bench.config(old_lite, "SQLite", False, before=before)
        except BaseException:
            _keep_logs(bench.logs)
            raise
    results.finished = time.time()
    results.machine["load_average_after"] = procs.machine()["load_average"]
    return results


def _keep_logs(logs: Path) -> None:
    keep = tools.CACHE / "logs"
    with contextlib.suppress(OSError):
        keep.mkdir(parents=True, exist_ok=True)
        for log in logs.glob("*.log"):
            (keep / log.name).write_bytes(log.read_bytes())
        print(f"bench: server logs kept in {keep}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="short windows, small sizes: a smoke test (~5 min)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=procs.ROOT / "docs" / "BENCHMARKS.md",
        help="where to write the report (default docs/BENCHMARKS.md)",
    )
    parser.add_argument(
        "--rates",
        type=int,
        nargs="+",
        metavar="N",
        help="open-loop rates in req/s (default 250 500 1000)",
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    parser.add_argument(
        "--before-ref",
        metavar="REF",
        help="also measure the service at git commit REF (its own tree and venv, in the bench "
        "cache): registration and the notification windows, inquiry off, both databases, "
        "side by side in the report",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help=f"rewrite the report from the last run's results ({LAST_RUN.name}) without measuring",
    )
    args = parser.parse_args(argv)
    if args.report_only:
        results: Results = pickle.loads(LAST_RUN.read_bytes())  # our own file, from a run here
    else:
        try:
            results = uvloop.run(run(args))
        except asyncio.CancelledError:
            print("bench: cancelled; servers stopped, bench database dropped", file=sys.stderr)
            raise SystemExit(130) from None
        LAST_RUN.parent.mkdir(parents=True, exist_ok=True)
        LAST_RUN.write_bytes(pickle.dumps(results))
    write_report(results, args.out)
    took = (
        "from the last run"
        if args.report_only
        else f"in {results.finished - results.started:.0f} s"
    )
    print(f"bench: wrote {args.out} {took}")
