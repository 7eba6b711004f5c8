"""`--before-ref REF`: the service as it was at a git commit, measured in the same run.

The commit's tree is exported with `git archive` (no worktree is registered in the
repository) into the bench cache, with its own venv installed from its own pyproject.toml;
both are kept and reused by the next run with the same commit.
"""

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench import procs, tools


@dataclass(frozen=True)
class Before:
    ref: str
    commit: str
    root: Path

    @property
    def python(self) -> str:
        return str(self.root / ".venv" / "bin" / "python")

    @property
    def label(self) -> str:
        return f"before ({self.ref})"


def prepare(ref: str) -> Before:
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"],
        cwd=procs.ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    root = tools.CACHE / "before" / commit[:12]
    before = Before(ref, commit, root)
    ready = root / ".venv" / ".bench-ready"
    if ready.exists():
        return before
    print(f"bench: exporting {ref} ({commit[:12]}) to {root} with its own venv", flush=True)
    root.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit], cwd=procs.ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    subprocess.run([sys.executable, "-m", "venv", str(root / ".venv")], check=True)
    subprocess.run(
        [
            before.python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-e",
            ".",
        ],
        cwd=root,
        check=True,
        timeout=900,
    )
    ready.touch()
    return before
