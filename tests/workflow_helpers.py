"""Run the real Snakemake workflow in a scratch copy of the project, and read what it plans."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "rules", "schemas", "captions", "profiles", "envs", "config.yaml", "src")


def in_ci(environ: Mapping[str, str] = os.environ) -> bool:
    """True on CI: CI=true (or 1, yes), as GitHub Actions, GitLab and .ci/run set it."""
    return environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def hypothesis_profile(environ: Mapping[str, str] = os.environ) -> str:
    """The Hypothesis profile of a run (tests/conftest.py registers them): HYPOTHESIS_PROFILE if set, else "ci" on
    CI (derandomised: the same examples on every run) and "dev" elsewhere (a fresh draw each run)."""
    return environ.get("HYPOTHESIS_PROFILE") or ("ci" if in_ci(environ) else "dev")


def copy_workflow(destination: Path) -> Path:
    """A private copy, so runs and edits in a test never touch the checkout (src is copied: the copy's Snakefile and
    its jobs import the copy's advprune, as a second checkout's do)."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, destination / name)
    return destination


@contextlib.contextmanager
def restored(*paths: Path) -> Iterator[None]:
    """Files a test edits or deletes in a shared directory (the demo): on exit each is back, byte for byte and with
    its modification time, which Snakemake compares. (Cheaper than a copy of the demo, which plans nothing either:
    tests/test_first_hour.py moves one.)"""
    saved = {path: (path.read_bytes(), path.stat()) for path in paths}
    try:
        yield
    finally:
        for path, (content, stat) in saved.items():
            path.write_bytes(content)
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def tree_state(directory: Path) -> dict[str, tuple[int, int]]:
    """(size, modification time in ns) of every file under `directory`, but Snakemake's locks, logs and I/O cache and
    Python's caches (which a dry run writes): what a test must leave as it found it in a shared directory."""
    skipped = {"__pycache__", "locks", "log", "iocache"}
    state = {}
    for path in directory.rglob("*"):
        relative = path.relative_to(directory)
        if skipped & set(relative.parts) or not path.is_file():
            continue
        stat = path.stat()
        state[str(relative)] = (stat.st_size, stat.st_mtime_ns)
    return state


SLURM_STARTED = Path("/run/advprune-test-slurm")  # tests/cluster writes its session's owner there before starting Slurm
SLURM_DOWN = REPO / "tests/cluster/slurm-down.sh"
# The PID of the process that runs the outermost pytest session (with xdist, the controller): set by the first
# pytest_configure and inherited by xdist's workers and by every process a test starts, a pytest run by a test
# included (tests/test_device_check.py), so such an inner session knows it does not own the test Slurm.
SESSION_OWNER = "ADVPRUNE_TEST_SESSION"


def stop_test_slurm(owner: str, started: Path = SLURM_STARTED, down: Path = SLURM_DOWN) -> bool:
    """Stop the single-node Slurm the cluster test started (its daemons by PID, state purged), if the session `owner`
    started one; True if it did."""
    if not started.exists() or started.read_text().strip() != owner:
        return False
    result = subprocess.run(["timeout", "-k", "10", "120", "bash", str(down)], capture_output=True, text=True,
                            timeout=150, env={**os.environ, "PURGE": "1"})
    print(result.stdout[-2000:], result.stderr[-2000:])
    started.unlink()
    return True


def xdist_group(nodeid: str, fixturenames: Iterable[str]) -> str:
    """The pytest-xdist group a test runs in: `demo` if it reads the shared demo, else its module."""
    return "demo" if "demo" in fixturenames else nodeid.split("::")[0]


def demo_and_cluster_first(items: list) -> list:
    """Test items in the same order, except that those reading the shared demo come first and those marked `cluster`
    second (tests/conftest.py says why)."""
    def rank(item) -> int:
        if "demo" in getattr(item, "fixturenames", ()):
            return 0
        return 1 if item.get_closest_marker("cluster") is not None else 2

    return sorted(items, key=rank)  # stable: the order within each part is kept


def snakemake(
    directory: Path, *args: str, timeout: float = 900, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Real Snakemake in `directory`; `env` adds environment variables."""
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=directory, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


def snakemake_many(directory: Path, calls: Iterable[tuple[str, ...]], workers: int = 2
                   ) -> list[subprocess.CompletedProcess]:
    """Several Snakemake calls that only read `directory` (dry runs), `workers` at a time; results in call order.
    A dry run is one Python process busy on one core for seconds: on 2 cores two at a time take half as long."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda args: snakemake(directory, *args), calls))


def planned_jobs(directory: Path, *args: str, env: dict | None = None) -> dict[str, int]:
    """Job counts per rule from a dry run (`snakemake -n`), {} when nothing is to be done."""
    return job_counts(snakemake(directory, *dry_run_args(*args), env=env))


def dry_run_args(*args: str) -> tuple[str, ...]:
    return ("-n", *args, "--quiet", "rules")


def job_counts(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Job counts per rule from the output of a dry run made with `dry_run_args`."""
    assert result.returncode == 0, result.stdout + result.stderr
    counts = {}
    in_stats = False
    for line in result.stdout.splitlines():
        if line.startswith("Job stats:"):
            in_stats = True
        elif in_stats:
            match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
            if match and match[1] != "total":
                counts[match[1]] = int(match[2])
            elif line.strip().startswith("total"):
                break
    return counts


def write_config_overlay(directory: Path, overlay: dict, name: str = "overlay.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(overlay))
    return path
