"""The service's memory over a long run of pushes: resident set size (VmRSS from /proc)
sampled every `every` pushes, so growth shows as a slope, not one figure."""

import time
from dataclasses import dataclass, field

from bench import procs
from bench.http import HttpError, Request, fan_out
from bench.pushes import NOTIFY_PATH, PUSH_HEADERS

RSS_LIMIT = 200 * 1024 * 1024  # the bound after 100,000 pushes
GROWTH_LIMIT = 0.10  # from half the run to the end


@dataclass
class Memory:
    setting: str
    samples: list[tuple[int, int]] = field(default_factory=list)  # (pushes so far, RSS bytes)
    errors: int = 0
    seconds: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def pushes(self) -> int:
        return self.samples[-1][0] if self.samples else 0

    def rss_at(self, pushes: int) -> int:
        """RSS at the sample nearest `pushes`."""
        return min(self.samples, key=lambda s: abs(s[0] - pushes))[1] if self.samples else 0

    @property
    def final(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    @property
    def growth(self) -> float:
        """Growth from the sample nearest half the run to the last one."""
        half = self.rss_at(self.pushes // 2)
        return self.final / half - 1 if half else float("nan")


async def measure(
    setting: str, port: int, pid: int, forms: list[str], every: int, concurrency: int = 32
) -> Memory:
    memory = Memory(setting, [(0, procs.rss_bytes(pid))])
    started = time.monotonic()
    for start in range(0, len(forms), every):
        chunk: list[Request] = [
            ("POST", NOTIFY_PATH, form.encode(), PUSH_HEADERS)
            for form in forms[start : start + every]
        ]
        answers = await fan_out(port, chunk, concurrency)
        memory.errors += sum(1 for a in answers if isinstance(a, HttpError) or a.status != 200)
        memory.samples.append((start + len(chunk), procs.rss_bytes(pid)))
        print(
            f"  {start + len(chunk):>7,} pushes: RSS {memory.samples[-1][1] / 2**20:6.1f} MiB",
            flush=True,
        )
    memory.seconds = time.monotonic() - started
    return memory
