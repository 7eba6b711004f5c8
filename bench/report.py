"""docs/BENCHMARKS.md from one run's results: targets, machine, method, tables, round
trips, profile, and what bounds each figure that misses its target.

Everything here is computed from the run, so a re-run rewrites the whole page truthfully.
"""

import math
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from bench import sections
from bench.procs import PACKAGES
from bench.profile import Profile

if TYPE_CHECKING:
    from bench.run import Config, Results, Window

X, NONE, MINUS = "\u00d7", "\u2013", "\u2212"  # x, en dash, minus: typography only
TARGETS = {"PostgreSQL": 0.30, "SQLite": 0.20}
P99_TARGET, P99_RATE, REGISTRATION_TARGET = 0.025, 1000, 0.003
LAG_LIMIT = 0.010  # open-loop dispatch lag past which a row's tail is the generator's too

# Profile samples by the file of the innermost Python frame: where the CPU went.
CATEGORIES = (
    ("SQLAlchemy (ORM, Core, greenlet bridge)", ("sqlalchemy/", "greenlet")),
    ("asyncpg driver", ("asyncpg/",)),
    ("aiosqlite / sqlite3", ("aiosqlite/", "sqlite3")),
    ("thread hand-offs (threading, queue)", ("threading.py", "queue.py")),
    (
        "FastAPI / Starlette / uvicorn / anyio",
        ("fastapi/", "starlette/", "uvicorn/", "anyio/", "httptools"),
    ),
    ("pydantic", ("pydantic",)),
    ("httpx / httpcore (NICEPAY client)", ("httpx/", "httpcore/", "h11/", "httpx_aiohttp/")),
    ("aiohttp (NICEPAY client's transport)", ("aiohttp/", "yarl/", "multidict/")),
    ("logging and metrics", ("logging/", "prometheus_client/")),
    ("the service's own code (app/)", ("app/",)),
    ("event loop (uvloop C code: I/O, and idle waits py-spy counted)", ("asyncio/", "uvloop")),
)


# Frames every request passes through: on every stack, they say nothing about the cost.
_ENTRY_FRAMES = (
    "(app/__main__.py)",
    "(app/cli/",
    "RequestContext.__call__",
    "nicepay_notification",
)


def ms(seconds: float) -> str:
    return NONE if seconds is None or math.isnan(seconds) else f"{seconds * 1000:.1f}"


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}{X}" if base else NONE


def _mark(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _ledger(outcomes: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or NONE


def _cores(w: "Window") -> str:
    return " / ".join(f"{c * 100:.0f}%" for c in w.cores)


def _category(frame: str) -> str:
    for name, markers in CATEGORIES:
        if any(m in frame for m in markers):
            return name
    return "other (stdlib, interpreter)"


# Sections below this line are written by other benchmarks (bench/day.py, bench/explain.py):
# a rewrite of this page keeps them.
KEPT = "<!-- kept: sections below are not written by bench.report -->"


def write_report(results: "Results", out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    old = out.read_text() if out.exists() else ""
    kept = old[old.index(KEPT) :] if KEPT in old else ""
    out.write_text("\n".join(_lines(results)) + "\n" + ("\n" + kept if kept else ""))


def _find(results: "Results", database: str, inquiry: bool) -> "Config | None":
    """The empty-database configuration of this tree (not grown, not --before-ref)."""
    return sections.find(results, database, inquiry)


def _lines(r: "Results") -> list[str]:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(r.started))
    kind = (
        "a **quick** (smoke-test) run: windows too short for figures to quote"
        if r.quick
        else "a full run"
    )
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `python -m bench` on {when}, {kind}, in {r.finished - r.started:.0f} s. "
        "Everything on this page is generated from that one run; re-run it to refresh (see "
        "[Re-running](#re-running)).",
        "",
        "> The machine is shared: other engineers' test suites may have run at the same time. "
        "Before the run the cores were "
        + " / ".join(f"{b * 100:.0f}%" for b in r.idle_cores)
        + f" busy; load average {r.machine.get('load_average', '?')} at the start, "
        f"{r.machine.get('load_average_after', '?')} at the end. During the measured windows, "
        f"processes other than the server used on average {r.others_on_server_core * 100:.0f}% of "
        "the server's core (core 0 busy minus server CPU, per window in the tables)"
        + (
            ": **these figures are depressed by that contention; re-run on a quiet machine.**"
            if r.others_on_server_core > 0.1
            else "."
        ),
        "",
        "## Targets",
        "",
        "| target | measured | result |",
        "|---|---|---|",
    ]
    bounds: list[str] = []
    for database, target in TARGETS.items():
        config = _find(r, database, False)
        base = sections.yardstick(r, config) if config else None
        if config and config.first_deposits and base:
            ratio = config.first_deposits.rps / base.rps
            lines.append(
                f"| notification path, inquiry off, {database}: ≥ {target:.2f}{X} the trivial endpoint "
                f"| {config.first_deposits.rps:,.0f} / {base.rps:,.0f} req/s = {ratio:.2f}{X} "
                f"({_ratio(base.cpu_ms_per_request, config.first_deposits.cpu_ms_per_request)} by CPU) "
                f"| {_mark(ratio >= target)} |"
            )
            if ratio < target:
                bounds.append(_throughput_bound(r, config, base, target))
    pg = _find(r, "PostgreSQL", False)
    at_rate = next((w for w in pg.open_loop if w.rate == P99_RATE), None) if pg else None
    if pg and at_rate:
        lines.append(
            f"| p99 ≤ 25 ms at {P99_RATE:,} req/s open loop, PostgreSQL, inquiry off "
            f"| p99 {ms(at_rate.p99)} ms (p50 {ms(at_rate.p50)} ms) | {_mark(at_rate.p99 <= P99_TARGET and at_rate.errors == 0)} |"
        )
        if at_rate.p99 > P99_TARGET or at_rate.errors:
            bounds.append(_latency_bound(pg, at_rate))
    for reg in [x for x in r.registration if x.name == x.database]:  # this tree, empty database
        lines.append(
            f"| registration adds ≤ 3 ms at p50 over the simulator ({reg.database}) "
            f"| {ms(reg.p('service', 50))} {MINUS} {ms(reg.p('simulator', 50))} = {ms(reg.added_p50)} ms "
            f"| {_mark(reg.added_p50 <= REGISTRATION_TARGET)} |"
        )
        if reg.added_p50 > REGISTRATION_TARGET:
            bounds.append(_registration_bound(r, reg.database))
    lines += sections.target_rows(r)
    bounds += sections.grown_bounds(r)
    on = _find(r, "PostgreSQL", True)
    if on and on.first_deposits:
        bounds.append(_inquiry_bound(r, on))
    if bounds:
        lines += ["", "### What bounds the default path, and any figure that misses", "", *bounds]
    lines += _levers(r)
    lines += _machine(r) + _method(r) + _tables(r) + sections.client_section(r)
    lines += sections.before_section(r) + sections.grown_section(r)
    lines += sections.memory_section(r) + _round_trips(r) + _profiles(r) + _rerun()
    return lines


def _inquiry_bound(r: "Results", config: "Config") -> str:
    """What bounds the default setting (inquiry on): the server's CPU per push, where it goes."""
    w = config.first_deposits
    assert w is not None
    off = _find(r, config.database, False)
    parts = [
        f"- **{config.name}, first deposits: {w.rps:,.0f} req/s, {w.cpu_ms_per_request:.2f} ms of "
        f"server CPU per push** (server {w.server_cpu * 100:.0f}% busy; cores {_cores(w)}). "
    ]
    if off and off.first_deposits:
        extra = w.cpu_ms_per_request - off.first_deposits.cpu_ms_per_request
        parts.append(
            f"Against inquiry off ({off.first_deposits.cpu_ms_per_request:.2f} ms) the inquiry adds "
            f"{extra:.2f} ms per push: the HTTP call to NICEPAY and the read before the write. "
        )
    ab = [s for s in r.client_ab if s.concurrency > 1]
    if ab:
        parts.append(
            "The NICEPAY call alone, 64 at a time, costs "
            + ", ".join(f"{s.cpu_ms_per_call:.2f} ms through {s.transport}" for s in ab)
            + " (the A/B below; the service ships aiohttp). "
        )
    if config.simulator_cpu is not None:
        parts.append(
            f"The simulator (answering every inquiry, on the load core) used "
            f"{config.simulator_cpu * 100:.0f}% of a core"
            + (
                ": the load core was saturated, so the figure is a lower bound for the server. "
                if len(w.cores) > 1 and w.cores[1] >= 0.9
                else "; the load core was not saturated. "
            )
        )
    if config.profile:
        parts.append(
            "Profile: " + _category_line(config.profile) + f"; stacks in `{config.profile_file}`."
        )
    return "".join(parts)


# -- bounds ------------------------------------------------------------------------------------


def _throughput_bound(r: "Results", config: "Config", base: "Window", target: float) -> str:
    w = config.first_deposits
    assert w is not None
    needed = target * base.rps
    parts = [
        f"- **{config.name}: {w.rps:,.0f} req/s, {w.rps / base.rps:.2f}{X} (needs {needed:,.0f}).** "
    ]
    cpu_needed = base.cpu_ms_per_request / target
    server_core, load_cores = w.cores[0] if w.cores else 0.0, w.cores[1:]
    if w.server_cpu >= 0.85 or server_core >= 0.9:
        others = max(0.0, server_core - w.server_cpu)
        parts.append(
            f"The server's core was saturated: the server used {w.server_cpu * 100:.0f}% of it"
            + (f" (other processes {others * 100:.0f}%)" if others >= 0.05 else "")
            + f", {w.cpu_ms_per_request:.2f} ms of CPU per push against "
            f"{base.cpu_ms_per_request:.3f} ms for the trivial endpoint "
            f"({base.cpu_ms_per_request / w.cpu_ms_per_request:.2f}{X} by CPU). CPU-bound, the target "
            f"needs ≤ {cpu_needed:.2f} ms per push. "
        )
        if max(load_cores, default=0) >= 0.9:
            parts.append(
                "The load core was saturated as well (wrk, the simulator"
                + (", PostgreSQL" if config.database == "PostgreSQL" else "")
                + ", other processes). "
            )
    elif max(load_cores, default=0) >= 0.9:
        parts.append(
            f"The load core was saturated ({_cores(w)} busy): the figure is a lower bound for the server. "
        )
    else:
        parts.append(
            f"Neither core was saturated ({_cores(w)} busy; server {w.server_cpu * 100:.0f}%): "
            "the server waits on the database (round trips, pool). "
        )
    ladder = next((b for b in r.baseline if "raw asyncpg" in b.label), None)
    if ladder and ladder.cpu_ms_per_request:
        parts.append(
            f"For scale: the yardstick with one raw asyncpg INSERT costs {ladder.cpu_ms_per_request:.2f} ms "
            f"({r.baseline[0].cpu_ms_per_request / ladder.cpu_ms_per_request:.2f}{X} the trivial endpoint by CPU) "
            f"and serves {ladder.rps:,.0f} req/s ({ladder.rps / r.baseline[0].rps:.2f}{X}); this path, "
            f"which verifies the push and writes three tables atomically, serves "
            f"{w.rps / ladder.rps:.2f} of that. "
        )
    trace = r.round_trips.get(config.database, {}).get("first deposit (inquiry off)")
    if trace:
        trips, statements = len(trace.round_trips), len(trace.statements)
        unit = (
            ("round trip" if trips == 1 else "round trips") + " to PostgreSQL"
            if config.database == "PostgreSQL"
            else ("hop" if trips == 1 else "hops") + " to the SQLite writer thread"
        )
        parts.append(
            f"Each push costs {trips} {unit} ({statements} SQL "
            f"{'statement' if statements == 1 else 'statements'}). "
        )
    if config.profile:
        parts.append("Profile: " + _category_line(config.profile) + ".")
    return "".join(parts)


def _latency_bound(config: "Config", w: "Window") -> str:
    capacity = config.first_deposits.rps if config.first_deposits else math.nan
    if w.over_capacity:
        return (
            f"- **p99 at {w.rate:,.0f} req/s: {ms(w.p99)} ms.** {w.rate:,.0f} req/s is above the path's "
            f"measured capacity ({capacity:,.0f} req/s closed loop): requests queue for the whole "
            f"{w.seconds:.1f} s window, so the tail measures the backlog. The latency target follows "
            "once throughput is above the offered rate with headroom."
        )
    lower = [x for x in config.open_loop if x.rate and x.rate < (w.rate or 0)]
    trend = ", ".join(f"{x.rate:,.0f}/s → p99 {ms(x.p99)} ms" for x in lower)
    return (
        f"- **p99 at {w.rate:,.0f} req/s: {ms(w.p99)} ms** with capacity {capacity:,.0f} req/s "
        f"(server {w.server_cpu * 100:.0f}% busy; {trend}): the tail comes from queueing as "
        "utilisation nears 100% of the server's core, and from the load core's neighbours."
    )


def _registration_bound(r: "Results", database: str) -> str:
    trace = r.round_trips.get(database, {}).get("registration (webhooks off)")
    trips = f"{len(trace.round_trips)} database round trips" if trace else "its database work"
    line = (
        f"- **Registration ({database}):** the service's own time is {trips} through the "
        "payments store (INSERT ... ON CONFLICT ... RETURNING of the `registering` row, "
        "committed before NICEPAY is called, then one compare-and-set to `pending`), the "
        "call to NICEPAY, request validation and the JSON resource."
    )
    reg = sections.registration(r, database)
    if reg and reg.profile:
        line += (
            " Profile of sequential registrations: "
            + _category_line(reg.profile)
            + f"; stacks in `{reg.profile_file}`."
        )
    return line


def _share(p: Profile | None, marker: str) -> float:
    """Share of busy samples with a frame containing `marker` anywhere on the stack."""
    if p is None or not p.busy:
        return 0.0
    return max((count for name, count in p.inclusive.items() if marker in name), default=0) / p.busy


def _levers(r: "Results") -> list[str]:
    """Costs on the notification path that this run can see, each with its measure."""
    found = []
    pg, lite = _find(r, "PostgreSQL", False), _find(r, "SQLite", False)
    if pg and pg.first_deposits and pg.first_deposits.new_backends:
        found.append(
            f"- Connection churn: {pg.first_deposits.new_backends} new PostgreSQL backends appeared "
            "during the first-deposit window (overflow connections opened and closed under load; "
            "see the burst count under the round trips)."
        )
    for config in (pg, lite):
        if config is None or config.profile is None:
            continue
        threads = _share(config.profile, "WorkerThread.run (anyio/")
        flush = _share(config.profile, "Session.flush (sqlalchemy/orm/session.py)")
        orm = _share(config.profile, "Session.execute (sqlalchemy/orm/session.py)")
        if threads >= 0.01:
            found.append(
                f"- {config.database}: {threads * 100:.0f}% of samples in anyio's worker threads: "
                "synchronous (`def`) dependencies run on the thread pool, one hop per request."
            )
        if flush or orm:
            found.append(
                f"- {config.database}: ORM unit of work: `Session.flush` on {flush * 100:.0f}% and "
                f"`Session.execute` on {orm * 100:.0f}% of samples."
            )
    hops = r.round_trips.get("SQLite", {}).get("first deposit (inquiry off)")
    if hops and len(hops.round_trips) > 1:
        found.append(
            f"- SQLite: {len(hops.round_trips)} thread hops for {len(hops.statements)} "
            "statements per push (each hop wakes the event loop)."
        )
    if not found:
        return []
    return ["", "### Costs visible in this run", "", *found]


def _category_line(p: Profile) -> str:
    totals: Counter[str] = Counter()
    for frame, count in p.own.items():
        totals[_category(frame)] += count
    busy = sum(totals.values()) or 1
    return ", ".join(f"{name} {count / busy * 100:.0f}%" for name, count in totals.most_common(6))


# -- sections ----------------------------------------------------------------------------------


def _machine(r: "Results") -> list[str]:
    m = r.machine
    packages = ", ".join(f"{k} {m[k]}" for k in PACKAGES if k in m)
    return [
        "",
        "## Machine",
        "",
        f"- {m.get('cpus')} CPUs: {m.get('cpu_model')}; {m.get('memory')} memory; Linux {m.get('kernel')}",
        f"- Python {m.get('python')}; PostgreSQL {m.get('postgresql')} (local, 127.0.0.1:5432); SQLite {m.get('sqlite')}",
        f"- {packages}",
        f"- load generator: {'wrk (' + r.wrk + ')' if r.wrk else 'the Python closed-loop generator (wrk missing)'}; "
        "open loop: bench/http.py; profiler: " + (f"py-spy ({r.py_spy})" if r.py_spy else "none"),
    ]


def _method(r: "Results") -> list[str]:
    p = r.plan
    return [
        "",
        "## Method",
        "",
        "- **Processes and cores.** Each server is a subprocess pinned with `taskset` to CPU 0: the "
        "service as it ships (`python -m app serve`: one uvicorn worker, uvloop, httptools, no access "
        "log), the yardsticks (bench/baseline.py) with the same uvicorn options. The load generators, "
        "the NICEPAY simulator (`python -m simulator --no-access-log`) and the driver run on CPU 1. PostgreSQL is the "
        "machine's own server: the backends serving the bench database are moved to CPU 1 "
        "(`sched_setaffinity`) before each window; its shared processes (WAL writer, checkpointer) "
        "and any other tenant's processes stay unpinned.",
        "- **Settings.** `DATABASE_URL` = a throwaway PostgreSQL database (created, migrated with "
        "`python -m app migrate`, dropped) or a temp SQLite file; `NICEPAY_BASE_URL` = the simulator; "
        "`NICEPAY_ALLOWED_IPS=127.0.0.1/32`; `NICEPAY_VERIFY_WITH_INQUIRY=false|true`; "
        "`LOG_LEVEL=WARNING`; `RECONCILE_INTERVAL_SECONDS=0`; no `MERCHANT_WEBHOOK_URL` (the outbox "
        "adds two statements per change when it is set: see the round trips).",
        "- **Valid pushes only.** Payments are registered through `POST /api/v1/cvs/payments` (the "
        "simulator issues each tXid); each push is the simulator's own deposit form with "
        "merchantToken = SHA256(iMid + tXid + amt + key). With the inquiry on, each payment is first "
        "settled in the simulator (`/sim/transactions/{tXid}/settle`), so the inquiry says paid. "
        "Every window's pushes are checked in the ledger afterwards (the *ledger* column).",
        f"- **Throughput (closed loop).** wrk, 1 thread, {p.connections} keep-alive connections, "
        f"{p.throughput_seconds:g} s after a {p.warmup_seconds:g} s warm-up. *Duplicates*: the "
        "warm-up payments again (already paid: the full path with a ledger row, no transition). "
        f"*First deposits*: each payment pushed once, in {p.rounds} windows of up to "
        f"{max(1, round(p.throughput_seconds / 2))} s (the pool is sized at 1.5{X} twice the duplicate rate "
        f"and capped at {p.pool_cap:,}; the windows are shortened so it is not exhausted), each "
        "right after a window of the same length on the trivial endpoint (its own server on the "
        "server's core, the service idle meanwhile). A configuration's ratios are taken against "
        "those trivial windows: the two span the same minute, so a ratio carries neither the "
        "host's drift over the run (this VM's speed moves by a third within minutes, and a "
        "whole run takes most of an hour) nor, mostly, its slow seconds. The per-window pairs "
        "are listed under the throughput table. The grown database's service runs side by side "
        "with the empty one's (each with its own simulator): in each round their first-deposit "
        "windows follow the same trivial window, taking turns going first.",
        f"- **Latency (open loop).** Request i is sent at t0 + i/rate over up to "
        f"{p.open_loop_connections} keep-alive connections, whatever the server does, and its "
        "latency is measured from that scheduled time (a slow server cannot hide its tail). Rates "
        f"{', '.join(f'{x:,}' for x in p.rates)} req/s, {p.open_loop_seconds:g} s each "
        f"(when the rate is above the measured closed-loop capacity: at most {p.overload_seconds:g} s "
        f"and 2.5{X} capacity {X} {p.overload_seconds:g} s requests, so the backlog drains). "
        "*dispatch lag* is how late the generator itself was (should be ≈ 0).",
        f"- **Registration.** {p.registration_samples} sequential registrations against the service "
        "and, interleaved, the same onePass.do form straight to the simulator; the service's added "
        "latency is the difference of the medians. The empty and the grown database are measured "
        f"in {p.rounds} alternating rounds, both services up side by side (each with its own "
        "simulator), so their ratio does not span the host's drift.",
        "- **Round trips.** Counted in-process at the driver (asyncpg protocol calls; hops to "
        "aiosqlite's and the notification writer's threads) on a warm connection: "
        "bench/roundtrips.py.",
        "- **CPU.** *server CPU* is the server process's CPU time over the window (100% = its whole "
        "core); *CPU ms/req* divides it by the requests served; *cores* is each core's busy share. "
        f"*{X} trivial by CPU* is the trivial endpoint's CPU per request over the row's: what the "
        "throughput ratio would be with both CPU-bound on an otherwise idle core, so it holds up "
        "better than the throughput ratio when other processes share the machine. The targets "
        "are judged on throughput, as the issue states them.",
    ]


def _window_row(w: "Window", base: "Window | None", name: str = "") -> str:
    base_rps, base_cpu = (base.rps, base.cpu_ms_per_request) if base else (0.0, 0.0)
    by_cpu = _ratio(base_cpu, w.cpu_ms_per_request) if w.requests else NONE
    return (
        f"| {name or w.label} | {w.rps:,.0f} | {_ratio(w.rps, base_rps)} | {by_cpu} | {ms(w.p50)} | {ms(w.p99)} "
        f"| {w.errors} | {w.server_cpu * 100:.0f}% | {w.cpu_ms_per_request:.2f} | {_cores(w)} "
        f"| {w.new_backends} | {_ledger(w.outcomes)} |"
    )


def _tables(r: "Results") -> list[str]:
    head = (
        f"| | req/s | {X} trivial | {X} trivial by CPU | p50 ms | p99 ms | errors | server CPU | CPU ms/req | cores 0 / 1 | new PG backends | ledger |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = ["", "## Results", "", "### Yardsticks: the trivial endpoint and the cost ladder", ""]
    lines += [
        "The same uvicorn configuration, each rung adding one layer of the notification path's "
        "work (closed loop; the INSERT rungs write one row to PostgreSQL).",
        "",
        head,
    ]
    opening = r.baseline[0] if r.baseline else None
    lines += [_window_row(w, opening) for w in r.baseline]
    lines += [
        "",
        "### Notification path: throughput (closed loop)",
        "",
        f"Each configuration's *{X} trivial* columns are taken against its own trivial-endpoint "
        "windows (the row under its name), measured alternately with its first deposits; the "
        "opening one above is " + (f"{opening.rps:,.0f} req/s." if opening else f"{NONE}."),
        "",
        head,
    ]
    for c in r.configs:
        base = sections.yardstick(r, c)
        for w in (c.first_deposits, c.duplicates, c.trivial):
            if w:
                lines.append(_window_row(w, base, f"{c.name}: {w.label}"))
    paired = [c for c in r.configs if len(c.rounds) > 1]
    if paired:
        lines += [
            "",
            "First deposits window by window: req/s of the trivial endpoint → first deposits "
            "right after it (their ratio).",
            "",
            "| | " + " | ".join(f"pair {i + 1}" for i in range(len(paired[0].rounds))) + " |",
            "|---|" + "---|" * len(paired[0].rounds),
        ]
        lines += [
            f"| {c.name} | "
            + " | ".join(
                f"{t.rps:,.0f} → {d.rps:,.0f} ({_ratio(d.rps, t.rps)})" for t, d in c.rounds
            )
            + " |"
            for c in paired
        ]
    lines += [
        "",
        "### Notification path: latency under open-loop load",
        "",
        "| | rate | sent → answered | achieved req/s | p50 ms | p99 ms | max ms | errors | server CPU | cores 0 / 1 | dispatch lag ms | new PG backends | ledger |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [("trivial endpoint", w) for w in r.baseline_open_loop]
    rows += [(c.name, w) for c in r.configs for w in c.open_loop]
    stalled = False
    for name, w in rows:
        over = " (above capacity)" if w.over_capacity else ""
        if w.dispatch_lag > LAG_LIMIT:
            stalled, over = True, over + " †"
        lines.append(
            f"| {name} | {w.rate:,.0f}/s{over} | {w.requests:,} | {w.rps:,.0f} | {ms(w.p50)} | {ms(w.p99)} "
            f"| {ms(w.max)} | {w.errors} | {w.server_cpu * 100:.0f}% | {_cores(w)} | {ms(w.dispatch_lag)} "
            f"| {w.new_backends} | {_ledger(w.outcomes)} |"
        )
    if stalled:
        lines += [
            "",
            f"† The generator itself fell behind its schedule by more than {LAG_LIMIT * 1000:.0f} ms "
            "at least once (its core was busy): that row's tail includes the generator's own delay.",
        ]
    if r.registration:
        lines += [
            "",
            "### Registration: the service's latency over the simulator's",
            "",
            "| database | samples | service p50 / p99 ms | simulator p50 / p99 ms | added at p50 ms |",
            "|---|---|---|---|---|",
        ]
        for reg in r.registration:
            lines.append(
                f"| {reg.name} | {len(reg.service)} | {ms(reg.p('service', 50))} / {ms(reg.p('service', 99))} "
                f"| {ms(reg.p('simulator', 50))} / {ms(reg.p('simulator', 99))} | {ms(reg.added_p50)} |"
            )
    if r.notes:
        lines += ["", *[f"> {note}" for note in r.notes]]
    return lines


def _round_trips(r: "Results") -> list[str]:
    if not r.round_trips:
        return []
    names: list[str] = []
    for traces in r.round_trips.values():
        names += [n for n in traces if n not in names]
    pg, lite = r.round_trips.get("PostgreSQL", {}), r.round_trips.get("SQLite", {})
    lines = [
        "",
        "## Database round trips per request",
        "",
        "Steady state (statements already prepared on the connection). PostgreSQL: protocol "
        "exchanges with the server; SQLite: hops to a worker thread (aiosqlite's for the ORM "
        "paths, the notification writer's for pushes), each waking the event loop.",
        "",
        "| request | PostgreSQL round trips | PostgreSQL statements | SQLite thread hops "
        "| SQLite statements |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        p, s = pg.get(name), lite.get(name)
        lines.append(
            f"| {name} | {len(p.round_trips) if p else NONE} | {len(p.statements) if p else NONE} "
            f"| {len(s.round_trips) if s else NONE} | {len(s.statements) if s else NONE} |"
        )
    if r.churn:
        c = r.churn
        lines += [
            "",
            f"**Connection churn (PostgreSQL).** {c.bursts} bursts of {c.concurrency} concurrent "
            f"first deposits (in-process) opened {c.opened} new PostgreSQL connections and closed "
            f"{c.closed}. Connections are opened on demand up to `DATABASE_POOL_SIZE` and kept: "
            "the first burst fills the notification path's connections, later bursts reuse them "
            "(a new connection costs a TLS attempt, authentication, type introspection and every "
            "statement prepared again). The *new PG backends* column of the load tables samples "
            "the same thing on the running server.",
        ]
    trace = pg.get("first deposit (inquiry off)")
    if trace:
        lines += ["", "A first deposit (inquiry off) on PostgreSQL, in order:", "", "```"]
        lines += [f"{i + 1:2}. {call}" for i, call in enumerate(trace.round_trips)]
        lines.append("```")
    return lines


def _profiles(r: "Results") -> list[str]:
    lines = ["", "## Profile"]
    profiled = [c for c in r.configs if c.profile]
    if not profiled:
        return [*lines, "", "No profile in this run (py-spy unavailable or `--no-profile`)."]
    lines += [
        "",
        "py-spy sampled the service (250 Hz, non-blocking: the process is never paused) during a "
        "closed-loop window of first deposits. *Own* is where the CPU was when sampled "
        "(the innermost Python frame; C code counts to its caller); *on stack* is the share of "
        "samples a function was anywhere on the stack; code SQLAlchemy runs inside its greenlet bridge "
        "does not show its async callers, so app/ functions undercount the database work they "
        "cause. Raw collapsed stacks (for flamegraph.pl or "
        "speedscope) are in the file named under each table.",
    ]
    for c in profiled:
        p = c.profile
        assert p is not None
        w = c.profile_window
        lines += [
            "",
            f"### {c.name}",
            "",
            f"{p.busy:,} busy samples"
            + (
                f" over {w.requests:,} pushes at {w.rps:,.0f} req/s (server CPU {w.server_cpu * 100:.0f}%)"
                if w
                else ""
            )
            + f"; stacks in `{c.profile_file}`.",
            "",
            "Where the CPU went, by the innermost frame's package: " + _category_line(p) + ".",
            "",
            "| own % | function | | on stack % | function (app/ and the database layer) |",
            "|---|---|---|---|---|",
        ]
        own = p.top(p.own, 15)
        inclusive = [
            (n, s)
            for n, s in p.top(p.inclusive, 400)
            if any(
                k in n
                for k in (
                    "(app/",
                    "session.py",
                    "asyncpg/",
                    "aiosqlite/",
                    "persistence.py",
                    "httpx_aiohttp/",
                    "aiohttp/client.py",
                    "_client.py (httpx/",
                )
            )
            and not any(k in n for k in _ENTRY_FRAMES)
            and not n.split(" (", 1)[0].endswith(".__call__")  # ASGI middleware: every request
        ][:15]
        for i in range(max(len(own), len(inclusive))):
            a = own[i] if i < len(own) else ("", 0.0)
            b = inclusive[i] if i < len(inclusive) else ("", 0.0)
            lines.append(
                f"| {a[1] * 100:.1f} | `{a[0]}` | | {b[1] * 100:.1f} | `{b[0]}` |"
                if a[0] or b[0]
                else ""
            )
    return lines


def _rerun() -> list[str]:
    return [
        "",
        "## Re-running",
        "",
        "```",
        "python -m bench --before-ref 2ef0af7   # full run, the previous version side by side (~30 min)",
        "python -m bench                 # full run without it (~25 min), rewrites docs/BENCHMARKS.md",
        "python -m bench --quick --out /tmp/bench.md   # smoke test (~5 min)",
        "bench/run.sh                    # the same, with the project's venv",
        "python -m bench --report-only   # rewrite this page from the last run (~/.cache/nicepay-bench)",
        "```",
        "",
        "Needs the local PostgreSQL on 127.0.0.1:5432 (trust auth as `postgres`, or "
        "`BENCH_POSTGRES_DSN`), `taskset` (util-linux) and wrk (installed with apt-get when "
        "missing and running as root; without it the Python generator is used); py-spy is "
        "pip-installed into `~/.cache/nicepay-bench/tools` when missing (`--no-profile` skips it). "
        "Run it on a quiet machine: the figures are only as clean as the cores are idle.",
    ]
