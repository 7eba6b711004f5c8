"""The report's sections for the default path (issue 17) and the before/after comparison
(issue 11): targets, the NICEPAY client A/B, the grown database with its query plans,
memory over a long run, and the previous version side by side."""

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

from bench.memory import GROWTH_LIMIT, RSS_LIMIT

if TYPE_CHECKING:
    from bench.run import Config, RegistrationLatency, Results, Window

X, NONE = "\u00d7", "\u2013"
INQUIRY_TARGET, INQUIRY_CPU_MS = 0.10, 1.0
GROWN_TOLERANCE = 0.10
MIB = 1024 * 1024


def _mark(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def ms(seconds: float) -> str:
    return NONE if seconds is None or math.isnan(seconds) else f"{seconds * 1000:.1f}"


def find(
    r: "Results", database: str, inquiry: bool, *, grown: bool = False, before: bool = False
) -> "Config | None":
    return next(
        (
            c
            for c in r.configs
            if c.database == database
            and c.inquiry == inquiry
            and c.grown == grown
            and bool(c.version) == before
        ),
        None,
    )


def yardstick(r: "Results", config: "Config") -> "Window | None":
    """The trivial endpoint a configuration's ratios are taken against: the one measured next
    to it (a run from before that existed: the run's opening one)."""
    return config.trivial or (r.baseline[0] if r.baseline else None)


def per_trivial(r: "Results", config: "Config", w: "Window | None") -> float:
    """The window's throughput over the trivial endpoint measured next to it."""
    base = yardstick(r, config)
    return w.rps / base.rps if w and base and base.rps else math.nan


def registration(
    r: "Results", database: str, *, grown: bool = False, before: bool = False
) -> "RegistrationLatency | None":
    return next(
        (
            x
            for x in r.registration
            if x.database == database
            and getattr(x, "grown", False) == grown
            and bool(getattr(x, "version", "")) == before
        ),
        None,
    )


def target_rows(r: "Results") -> list[str]:
    """Rows for the Targets table: inquiry on, grown database, memory."""
    rows = []
    pg_on = find(r, "PostgreSQL", True)
    base = yardstick(r, pg_on) if pg_on else None
    if pg_on and pg_on.first_deposits and base:
        w = pg_on.first_deposits
        ratio = w.rps / base.rps
        rows.append(
            f"| default setting (inquiry on), PostgreSQL, first deposits: ≥ {INQUIRY_TARGET:.2f}{X} "
            f"the trivial endpoint | {w.rps:,.0f} / {base.rps:,.0f} req/s = {ratio:.3f}{X} "
            f"| {_mark(ratio >= INQUIRY_TARGET)} |"
        )
        rows.append(
            f"| default setting (inquiry on), PostgreSQL: server CPU ≤ {INQUIRY_CPU_MS:g} ms per push "
            f"| {w.cpu_ms_per_request:.2f} ms | {_mark(w.cpu_ms_per_request <= INQUIRY_CPU_MS)} |"
        )
    for database, inquiry, empty, grown, ratio in grown_pairs(r):
        e, g = empty.first_deposits, grown.first_deposits
        assert e and g
        rows.append(
            f"| grown database, {database}, inquiry {'on' if inquiry else 'off'}: first-deposit "
            f"throughput within {GROWN_TOLERANCE:.0%} of the empty database (the two in windows "
            f"taking turns) | {ratio:.2f} (req/s {g.rps:,.0f} / {e.rps:,.0f}) "
            f"| {_mark(ratio >= 1 - GROWN_TOLERANCE)} |"
        )
    for database in ("PostgreSQL", "SQLite"):
        empty_reg, grown_reg = registration(r, database), registration(r, database, grown=True)
        if empty_reg and grown_reg:
            a, b = empty_reg.p("service", 50), grown_reg.p("service", 50)
            rows.append(
                f"| grown database, {database}: registration p50 within {GROWN_TOLERANCE:.0%} of the "
                f"empty database | {ms(b)} / {ms(a)} ms = {b / a:.2f} "
                f"| {_mark(b <= a * (1 + GROWN_TOLERANCE))} |"
            )
    for load in r.grown:
        rows.append(
            f"| grown database, {load.database}: every hot query index-backed "
            f"| {len(load.plans) - len(load.unindexed)} of {len(load.plans)} "
            + (f"(not: {', '.join(load.unindexed)})" if load.unindexed else "")
            + f" | {_mark(not load.unindexed)} |"
        )
    m = r.memory
    if m and m.samples:
        rows.append(
            f"| memory: server RSS after {m.pushes:,} pushes ≤ {RSS_LIMIT // MIB} MiB "
            f"| {m.final / MIB:.0f} MiB | {_mark(m.final <= RSS_LIMIT)} |"
        )
        rows.append(
            f"| memory: flat, ≤ {GROWTH_LIMIT:.0%} growth from {m.pushes // 2:,} to {m.pushes:,} pushes "
            f"| {m.rss_at(m.pushes // 2) / MIB:.0f} → {m.final / MIB:.0f} MiB = {m.growth:+.1%} "
            f"| {_mark(m.growth <= GROWTH_LIMIT)} |"
        )
    return rows


def grown_pairs(r: "Results") -> "Iterator[tuple[str, bool, Config, Config, float]]":
    """(database, inquiry, empty, grown, ratio) for each grown configuration with first
    deposits and its empty one; ratio: the grown database's first deposits over the empty
    one's, each over the trivial endpoint measured next to it."""
    for database in ("PostgreSQL", "SQLite"):
        for inquiry in (False, True):
            empty, grown = find(r, database, inquiry), find(r, database, inquiry, grown=True)
            if empty and grown and empty.first_deposits and grown.first_deposits:
                ratio = per_trivial(r, grown, grown.first_deposits) / per_trivial(
                    r, empty, empty.first_deposits
                )
                yield database, inquiry, empty, grown, ratio


def grown_bounds(r: "Results") -> list[str]:
    """For each grown-database row that misses: what the run shows about why (the server's CPU
    per push on each database, the window pairs' spread, the simulator's own latency)."""

    def pairs(c: "Config") -> str:
        return ", ".join(f"{d.rps / t.rps:.2f}" for t, d in c.rounds) or NONE

    def trivial_ms(c: "Config") -> float:
        return c.trivial.cpu_ms_per_request if c.trivial else math.nan

    bounds = []
    for _, _, empty, grown, ratio in grown_pairs(r):
        if ratio >= 1 - GROWN_TOLERANCE:
            continue
        a, b = empty.first_deposits, grown.first_deposits
        assert a and b
        cpu = b.cpu_ms_per_request / a.cpu_ms_per_request
        bounds.append(
            f"- **{grown.name}: {ratio:.2f} of the empty database.** The server's CPU per "
            f"push: {b.cpu_ms_per_request:.2f} ms grown against {a.cpu_ms_per_request:.2f} ms "
            f"empty ({cpu:.2f}{X}); the trivial endpoint next to each: {trivial_ms(grown):.3f} "
            f"against {trivial_ms(empty):.3f} ms. Window pairs (first deposits {X} trivial): "
            f"grown {pairs(grown)}, empty {pairs(empty)}. "
            + (
                "The push costs the server about the same on both databases, so the gap is in "
                "the waits (the database's own work, the load core), not in the server. "
                if cpu <= 1 + GROWN_TOLERANCE
                else "The server spends more CPU a push on the grown database. "
            )
        )
    for database in ("PostgreSQL", "SQLite"):
        empty_reg, grown_reg = registration(r, database), registration(r, database, grown=True)
        if empty_reg and grown_reg:
            sa, sb = empty_reg.p("service", 50), grown_reg.p("service", 50)
            if sb > sa * (1 + GROWN_TOLERANCE):
                na, nb = empty_reg.p("simulator", 50), grown_reg.p("simulator", 50)
                bounds.append(
                    f"- **Registration on the grown {database} database: p50 {ms(sb)} against "
                    f"{ms(sa)} ms.** The simulator's own p50, measured in the same rounds: "
                    f"{ms(nb)} against {ms(na)} ms; the service's added time "
                    f"{ms(grown_reg.added_p50)} against {ms(empty_reg.added_p50)} ms. "
                )
    return bounds


def client_section(r: "Results") -> list[str]:
    if not r.client_ab:
        return []
    lines = [
        "",
        "### NICEPAY client: CPU per status inquiry, by transport",
        "",
        "`python -m bench.client_ab`: the service's `NicepayClient.inquire` in a process on the "
        "server's core, against the simulator on the load core, one real code at the simulator "
        "(every answer 0000), after 200 warm-up calls. *httpx*: httpx's own transport (httpcore "
        "on anyio, default limits: 20 kept-alive connections); *httpx-aiohttp*: httpx over the "
        "`httpx-aiohttp` package's transport (100 connections kept alive); *aiohttp*: what the "
        "service ships (app/nicepay/transport.py: the form posted with aiohttp directly, 100 "
        "connections kept alive, no cookie jar). The form, the token and the pydantic models "
        "are the same in all three. CPU is the process's own (user + system) over the calls.",
        "",
        "| transport | concurrent calls | calls | calls/s | CPU ms per call | failures |",
        "|---|---|---|---|---|---|",
    ]
    for s in r.client_ab:
        lines.append(
            f"| {s.transport} | {s.concurrency} | {s.calls:,} | {s.calls_per_second:,.0f} "
            f"| {s.cpu_ms_per_call:.2f} | {s.failures} |"
        )
    return lines


def grown_section(r: "Results") -> list[str]:
    if not r.grown:
        return []
    lines = [
        "",
        "## Grown database",
        "",
        "Loaded in bulk by bench/grown.py, not through the API (PostgreSQL: `INSERT ... SELECT "
        "FROM generate_series`; SQLite: `executemany` in transactions of 50,000 rows), then "
        "`ANALYZE`. The first payments are pending (the memory run pushes them), the rest paid, "
        "each with ledger rows. The grown rows in the throughput and registration tables ran "
        "on it (registration, duplicates, first deposits; no open loop), its service up side by "
        "side with the empty database's: their first-deposit windows take turns after the same "
        "trivial-endpoint window, so the grown-over-empty ratio does not span the host's drift.",
        "",
        "| database | payments | ledger rows | pending | load s | hot queries index-backed |",
        "|---|---|---|---|---|---|",
    ]
    for load in r.grown:
        lines.append(
            f"| {load.database} | {load.payments:,} | {load.ledger:,} | {load.pending:,} "
            f"| {load.seconds:.0f} | {len(load.plans) - len(load.unindexed)} of {len(load.plans)} |"
        )
    for load in r.grown:
        lines += ["", f"### Query plans on the grown database, {load.database}", ""]
        for name, plan in load.plans.items():
            lines += [f"- {name}:", "", "  ```", *[f"  {x}" for x in plan.splitlines()], "  ```"]
    return lines


def memory_section(r: "Results") -> list[str]:
    m = r.memory
    if not m or not m.samples:
        return []
    ledger = ", ".join(f"{k} {v}" for k, v in sorted(m.outcomes.items())) or NONE
    lines = [
        "",
        "## Memory over a long run",
        "",
        f"{m.pushes:,} first deposits ({m.setting}) through the Python generator, 32 "
        f"keep-alive connections, in {m.seconds:.0f} s ({m.pushes / m.seconds:,.0f} req/s); "
        f"errors {m.errors}; ledger: {ledger}. The service's resident set size (VmRSS from "
        "`/proc/PID/status`) after each step:",
        "",
        "| pushes | RSS MiB |",
        "|---|---|",
    ]
    lines += [f"| {n:,} | {rss / MIB:.1f} |" for n, rss in m.samples]
    return lines


def before_section(r: "Results") -> list[str]:
    if not r.before_ref:
        return []
    lines = [
        "",
        f"## Before and after: this tree against {r.before_ref}",
        "",
        "`--before-ref`: the commit's tree (`git archive`) with its own venv, served the same "
        "way against the same simulator, in this same run; inquiry off, first deposits and "
        "duplicates closed loop, registration p50.",
        "",
        f"| | this tree req/s | before req/s | this tree {X} trivial | before {X} trivial "
        "| this tree CPU ms/req | before CPU ms/req |",
        "|---|---|---|---|---|---|---|",
    ]
    for database in ("PostgreSQL", "SQLite"):
        now, then = find(r, database, False), find(r, database, False, before=True)
        if not (now and then):
            continue
        for label in ("first_deposits", "duplicates"):
            a, b = getattr(now, label), getattr(then, label)
            if not (a and b):
                continue
            lines.append(
                f"| {database}, inquiry off: {a.label} | {a.rps:,.0f} | {b.rps:,.0f} "
                f"| {per_trivial(r, now, a):.2f}{X} | {per_trivial(r, then, b):.2f}{X} "
                f"| {a.cpu_ms_per_request:.2f} | {b.cpu_ms_per_request:.2f} |"
            )
        ra, rb = registration(r, database), registration(r, database, before=True)
        if ra and rb:
            lines.append(
                f"| {database}: registration p50 ms (service / added over the simulator) "
                f"| {ms(ra.p('service', 50))} / {ms(ra.added_p50)} "
                f"| {ms(rb.p('service', 50))} / {ms(rb.added_p50)} | | | | |"
            )
    return lines
