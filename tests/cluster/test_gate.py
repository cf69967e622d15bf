"""When the Slurm test runs, skips or fails (it must never vanish from CI), that it starts early (after the demo) and
its daemons stop once, at the session's end, and how tests are grouped on pytest-xdist's workers. Fast: nothing here
starts Slurm."""

from __future__ import annotations

import os

import pytest

from test_slurm import cluster_gate


@pytest.mark.parametrize(
    ("environ", "euid", "decision"),
    [
        ({}, 0, "skip"),  # root alone is not consent to apt-get and daemons
        ({"CI": "false"}, 0, "skip"),
        ({"ADVPRUNE_SLURM_TEST": "1"}, 0, "run"),  # explicitly asked for, as root
        ({"ADVPRUNE_SLURM_TEST": "1"}, 1000, "skip"),
        ({"CI": "true"}, 0, "run"),  # as root on CI it runs; a cluster that does not come up then fails it
        ({}, 1000, "skip"),  # a developer's machine: skipped, the reason in the summary (-ra)
        ({"CI": "false"}, 1000, "skip"),
        ({"CI": "true"}, 1000, "fail"),  # on CI a skip would leave the build green without the test
        ({"CI": "1"}, 1000, "fail"),
    ],
)
def test_the_cluster_test_skips_only_outside_ci(environ: dict, euid: int, decision: str) -> None:
    assert cluster_gate(environ, euid)[0] == decision
    if decision != "run":
        reason = cluster_gate(environ, euid)[1]
        assert "root" in reason and ("ADVPRUNE_SLURM_TEST" in reason or "CI" in reason)


def test_the_demo_and_then_the_cluster_test_start_first(request: pytest.FixtureRequest) -> None:
    """In this very session's order (tests/conftest.py sets it): the demo's readers, then the cluster test, then the
    rest, each part in collection order."""
    def part(item) -> int:
        return 0 if "demo" in item.fixturenames else 1 if item.get_closest_marker("cluster") is not None else 2

    parts = [part(item) for item in request.session.items]
    assert parts == sorted(parts), "the demo's readers, then the cluster test, then the rest"
    assert request.config.getoption("loadscopereorder", default=False) is False, "xdist would reorder the groups"


def test_the_test_slurm_stops_once_and_only_in_the_session_that_started_it(tmp_path) -> None:
    """tests/conftest.py's pytest_sessionfinish calls this at the session's end: the stop script runs only when the
    cluster test left its flag, only in the session that owns it (a pytest that a test starts, as the device check
    does, ends first and must not stop it under the other tests), once, with PURGE=1."""
    from workflow_helpers import stop_test_slurm

    flag, down, ran = tmp_path / "started", tmp_path / "down.sh", tmp_path / "ran"
    down.write_text(f'echo "PURGE=$PURGE" >> {ran}\n')
    assert stop_test_slurm("41", flag, down) is False and not ran.exists()
    flag.write_text("41\n")
    assert stop_test_slurm("42", flag, down) is False and not ran.exists() and flag.exists()  # an inner session
    assert stop_test_slurm("41", flag, down) is True and ran.read_text() == "PURGE=1\n"
    assert not flag.exists() and stop_test_slurm("41", flag, down) is False and ran.read_text() == "PURGE=1\n"


def test_every_process_of_this_session_knows_its_owner() -> None:
    """Set once by the outermost session (the controller under xdist) and inherited: a worker is not its owner."""
    from workflow_helpers import SESSION_OWNER

    owner = int(os.environ[SESSION_OWNER])
    assert owner == os.getpid() if os.environ.get("PYTEST_XDIST_WORKER") is None else owner == os.getppid()


def test_demo_readers_share_one_worker_and_modules_stay_whole(request: pytest.FixtureRequest) -> None:
    """Under pytest-xdist's loadgroup each group runs on one worker: the demo once per session, a module's fixtures
    once. Checked on this session's own items: every test that reads the demo is in group `demo`, every other in its
    module's group."""
    for item in request.session.items:
        groups = [mark.args[0] for mark in item.iter_markers("xdist_group")]
        module = item.nodeid.split("::")[0].split("@")[0]
        assert groups == (["demo"] if "demo" in item.fixturenames else [module]), item.nodeid
