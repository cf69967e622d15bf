"""Shared pytest fixtures, the Hypothesis profiles, how tests share workers (pytest-xdist), and when the test Slurm
stops."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
from hypothesis import settings as hypothesis_settings

from workflow_helpers import (
    SESSION_OWNER,
    demo_and_cluster_first,
    copy_workflow,
    hypothesis_profile,
    snakemake,
    stop_test_slurm,
    tree_state,
    xdist_group,
)


# Hypothesis: on CI the same examples on every run (derandomised, no example database), so a red build is
# reproducible; locally a fresh draw each run, remembered in .hypothesis/, to keep exploring.
# HYPOTHESIS_PROFILE=ci|dev|explore picks one explicitly (explore: ten times the examples).
# (Each names its parent: Hypothesis itself loads a CI profile when it sees CI=true, which must not leak into "dev".)
_DEFAULT = hypothesis_settings.get_profile("default")
hypothesis_settings.register_profile("ci", _DEFAULT, max_examples=150, derandomize=True, database=None,
                                     print_blob=True)
hypothesis_settings.register_profile("dev", _DEFAULT, max_examples=150, derandomize=False)
hypothesis_settings.register_profile("explore", _DEFAULT, max_examples=1500, derandomize=False)
hypothesis_settings.load_profile(hypothesis_profile(os.environ))


def pytest_configure(config: pytest.Config) -> None:
    """One intra-op thread in this process and, through the environment, in every process a test starts (Snakemake
    and its jobs included). The tests' tensors are tiny and several processes often run at once: with torch's default
    of a thread per core in each, a 4 s fixture took 66 s on a busy 2-core machine (measured). One thread everywhere
    also gives the in-process and the subprocess runs the same kernels, which the bit-for-bit comparisons need."""
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    os.environ.setdefault(SESSION_OWNER, str(os.getpid()))  # the outermost session's process (workflow_helpers)


def pytest_itemcollected(item: pytest.Item) -> None:
    """Snakemake runs take seconds at least: a `workflow` test, and any test that reads the shared demo (minutes to
    build), is also `slow`, so `-m "not slow"` leaves it out.

    With pytest-xdist (`--dist loadgroup`, pyproject.toml) each test joins a group that one worker runs whole: its
    module, so a module-scoped fixture (a training, a set of dry runs) is built once; or `demo` for every test that
    reads the shared demo, so the demo runs once per session, not once per worker."""
    uses_demo = "demo" in getattr(item, "fixturenames", ())
    if (item.get_closest_marker("workflow") is not None or uses_demo) and item.get_closest_marker("slow") is None:
        item.add_marker(pytest.mark.slow)
    item.add_marker(pytest.mark.xdist_group(xdist_group(item.nodeid, getattr(item, "fixturenames", ()))))


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]):
    """The two longest parts start first, whatever order collection, deselection or a random-order plugin chose (a
    wrapper: this runs after every other plugin's reordering; with xdist, `--no-loadscope-reorder` keeps this order,
    so the first worker takes the demo and the second the cluster test). The shared demo keeps two cores busy for
    minutes; the Slurm test mostly waits on the scheduler, and other tests fill that wait. Starting Snakemake while
    Slurm is being installed costs about 9 s (the Slurm executor plugin asks `scontrol show config` at import whenever
    `sacct` is on the PATH, and retries while no controller answers), so the demo's Snakemake starts before the
    install, and its jobs, which are not Snakemake processes, do not pay it; once the daemons answer, nobody does.
    The tests pass in any order: this order is only faster."""
    result = yield
    items[:] = demo_and_cluster_first(items)
    return result


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the test Slurm, if tests/cluster started one, when the whole session ends, in the process that started the
    session (with xdist, the controller, once every worker is done). Not earlier: from the stop on, each `snakemake`
    start would wait about 9 s (above), and with several workers another test may still be running."""
    if not hasattr(session.config, "workerinput"):
        stop_test_slurm(owner=str(os.getpid()))  # only the session that owns it: not a pytest a test started


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only `shared/` folder beside the repository (ADVPRUNE_SHARED overrides); skip the test if absent."""
    override = os.environ.get("ADVPRUNE_SHARED")
    path = Path(override) if override else Path(__file__).resolve().parents[1].parent / "shared"
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} not found (set ADVPRUNE_SHARED to point at it)")
    return path


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding digits-mnist's canonical file, prepared once per session for every test that trains on it."""
    from advprune import datasets

    root = tmp_path_factory.mktemp("data")
    datasets.prepare("digits-mnist", root)
    return root


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """The README's demo command, run once per session in a scratch copy: (its directory, seconds it took).

    Read-only for the tests that use it (tests/test_workflow.py, tests/test_toy.py): a test that changes a file of it
    restores it (workflow_helpers.restored), so the tests pass in any order; _shared_demo_is_left_as_found checks."""
    directory = copy_workflow(tmp_path_factory.mktemp("demo"))
    start = time.monotonic()
    result = snakemake(directory, "--profile", "profiles/demo", timeout=900)
    seconds = time.monotonic() - start
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    print(f"demo run: {seconds:.0f} s")
    return directory, seconds


@pytest.fixture(autouse=True)
def _shared_demo_is_left_as_found(request: pytest.FixtureRequest):
    """A test that reads the shared demo must leave every file of it as it found it (same size, same modification
    time): otherwise the tests after it would read a changed demo, and pass or fail depending on the order."""
    if "demo" not in request.fixturenames:
        yield
        return
    directory, _ = request.getfixturevalue("demo")
    before = tree_state(directory)
    yield
    after = tree_state(directory)
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    assert not changed, f"{request.node.nodeid} changed the shared demo (restore what it changes: workflow_helpers.restored): {changed[:20]}"
