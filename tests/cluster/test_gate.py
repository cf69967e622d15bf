"""When the Slurm test runs, skips or fails (it must never vanish from CI), and that it runs after every other test.
Fast: nothing here starts Slurm."""

from __future__ import annotations

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


def test_the_cluster_test_runs_last(request: pytest.FixtureRequest) -> None:
    """In this very session's order (tests/conftest.py moves it): after the cluster test stops its daemons, each
    `snakemake` start waits about 9 s on the Slurm plugin, so no other test may come after it."""
    clustered = [item.get_closest_marker("cluster") is not None for item in request.session.items]
    assert clustered == sorted(clustered), "a test runs after the cluster test"
