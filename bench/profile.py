"""Where the server's time goes: py-spy samples of the service under load, summarised.

py-spy (`pip install py-spy`; a sampling profiler that reads the target's memory from
outside, so the server runs unmodified) writes collapsed stacks, one `frame;frame;... N`
per line; this module turns them into the two tables the report shows: the share of
samples each function is on the stack for (inclusive) and at the top of (own time).
"""

import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import LOAD_CPU, pinned

# "name (path/to/file.py:123)" -> "name (file.py)": lines vary, a function is what we rank.
_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^:)]*)(?::\d+)?\)$")
# Innermost frames that mean "waiting", should py-spy still sample an idle thread.
_IDLE = ("select (selectors.py)", "wait (threading.py)", "get (queue.py)", "_wait_for_tstate_lock")


def record(
    binary: str, pid: int, seconds: float, out: Path, rate: int = 250
) -> subprocess.Popen[bytes]:
    """Start sampling `pid` for `seconds` on the load core (non-blocking: never pauses it)."""
    argv = [binary, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))]
    argv += ["--rate", str(rate), "--nonblocking", "--format", "raw", "--output", str(out)]
    return subprocess.Popen(
        pinned(argv, LOAD_CPU), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = match["file"]
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{match['name']} ({file})"


@dataclass
class Profile:
    samples: int = 0
    idle: int = 0
    inclusive: Counter[str] = field(default_factory=Counter)
    own: Counter[str] = field(default_factory=Counter)

    @property
    def busy(self) -> int:
        return self.samples - self.idle

    def top(self, table: Counter[str], n: int) -> list[tuple[str, float]]:
        """The n largest entries, each as a share of the busy samples."""
        busy = self.busy or 1
        return [(name, count / busy) for name, count in table.most_common(n)]


def summarise(path: Path) -> Profile:
    profile = Profile()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        profile.samples += count
        if frames and any(idle in frames[-1] for idle in _IDLE):
            profile.idle += count
            continue
        for name in set(frames):
            profile.inclusive[name] += count
        if frames:
            profile.own[frames[-1]] += count
    return profile
