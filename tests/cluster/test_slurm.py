"""profiles/slurm on a real single-node Slurm (slurm-up.sh): a small demo target runs through `snakemake --profile`,
one training job is cancelled by the scheduler mid-run and resumes, and `sacct` and the results are checked against
the plan and against a local run of the same target.

Root only (it installs packages and starts daemons), and only on CI or with ADVPRUNE_SLURM_TEST=1: otherwise it
skips, saying why in the summary; on CI (CI=true, which .ci/run sets) it never skips: not being root fails it, and so does a cluster that cannot be
installed or does not come up. It starts early, beside the demo (tests/conftest.py), and its daemons keep running
until the whole session ends (tests/conftest.py's pytest_sessionfinish, which runs slurm-down.sh: daemons stopped by
PID whatever happened): from the stop on, every `snakemake` start would wait about 9 s on the Slurm plugin's
`scontrol` retries, and with pytest-xdist another worker may still be starting Snakemake.
"""

from __future__ import annotations

import json
import math
import os
import pwd
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from workflow_helpers import SESSION_OWNER, SLURM_STARTED, copy_workflow, in_ci, planned_jobs, write_config_overlay

pytestmark = [pytest.mark.cluster, pytest.mark.workflow, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ACCOUNT = "advprune_ci"  # tests/cluster/profile.yaml names it
TARGET = "figures/fig2.pdf"
# fig2 on the digits stand-in for MNIST, one seed: the full-data model and random keep 0.4 after one epoch, each
# trained and AutoAttacked, in 5 epochs (the pruned run is stopped after epoch 2 and resumes for the other 3). The
# pruned run forks from its prefix (the seed's first epoch, advprune.prefix), a Slurm job of its own that it waits for:
# fig7 at e=1 (not built by the target) shares that prefix, and a prefix is planned where two models of the plan
# share it.
OVERLAY = {
    "artefacts": {"fig2": {"roles": ["mnist"], "keep": [0.4, 1.0], "prune_epoch": 1, "seeds": 1},
                  "fig7": {"prune_epoch": 1}},
    "training_overrides": {"digits-mnist": ["epochs=5"]},
}
EPOCHS = 5
PAUSE_EPOCH = 2  # after the pruning (epoch 1): the resumed job must restore the pruning decision
PAUSED = "paused"  # the marker file tests/pause_training.py writes in the cluster copy once the run waits
CANCELLED = "results/models/digits-mnist/fp32/random_keep0.4_e1_rescale/seed0"
CANCELLED_COMMENT = "rule_train_model_wildcards_digits-mnist_fp32_random_keep0.4_e1_rescale_0"
PREFIX = "results/prefixes/digits-mnist/fp32/rescale_e1/seed0/prefix.pt"
GROUP_COMMENT = "rule_evaluation_evaluate_model"  # the plugin's comment for a job of group `evaluation`
TIMING_COLUMNS = ["train_seconds", "scoring_seconds", "time_seconds", "time_minutes", "eval_seconds"]
# Each rule's job sets OMP_NUM_THREADS to its threads (1) itself; pinned here too, for the Snakemake processes.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}


def _run(command: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)


OPT_IN = "ADVPRUNE_SLURM_TEST"  # =1: run the Slurm test outside CI too (as root)


def cluster_gate(environ: dict | os._Environ, euid: int) -> tuple[str, str]:
    """("run", "") on CI or when opted in (OPT_IN=1), as root; ("skip", why) elsewhere; ("fail", why) on CI without
    root, where a test that skips would leave the build green without it. Root alone is not consent: a developer
    running `pytest` as root (a container, a VM) must not get Slurm, MariaDB and munge installed and started."""
    wanted = in_ci(environ) or environ.get(OPT_IN, "").strip().lower() in {"1", "true", "yes"}
    if not wanted:
        return "skip", (f"the Slurm test installs Slurm, MariaDB and munge with apt-get and starts their daemons: it "
                        f"runs on CI (CI=true) or with {OPT_IN}=1, as root")
    if euid == 0:
        return "run", ""
    reason = "the Slurm test installs packages and starts daemons: it needs root"
    if in_ci(environ):
        return "fail", f"{reason}, and CI must run it (CI=true): run CI as root"
    return "skip", f"{reason} ({OPT_IN} is set, but this is not root)"


@pytest.fixture(scope="module")
def slurm():
    """A running single-node Slurm with slurmdbd (so sacct works) and one fake GPU, stopped when the session ends."""
    decision, reason = cluster_gate(os.environ, os.geteuid())
    if decision == "skip":
        pytest.skip(reason)
    if decision == "fail":
        pytest.fail(reason, pytrace=False)
    start = time.monotonic()
    SLURM_STARTED.write_text(f"{os.environ[SESSION_OWNER]}\n")  # before anything starts: its session's end stops it
    up = _run(["timeout", "-k", "10", "300", "bash", str(HERE / "slurm-up.sh")], timeout=330,
              env={**os.environ, "SLURM_ACCOUNT": ACCOUNT, "SLURM_FAKE_GPU": "1", "SLURM_WITH_DBD": "1"})
    assert up.returncode == 0, f"Slurm did not come up:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
    print(f"slurm-up: {time.monotonic() - start:.1f} s")


def slurm_profile(directory: Path) -> str:
    """profiles/slurm with tests/cluster/profile.yaml layered on it (mappings merged), plus the demo's config."""

    def merge(base: dict, over: dict) -> dict:
        merged = dict(base)
        for key, value in over.items():
            both = isinstance(value, dict) and isinstance(base.get(key), dict)
            merged[key] = merge(base[key], value) if both else value
        return merged

    profile = merge(yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text()),
                    yaml.safe_load((HERE / "profile.yaml").read_text()))
    profile["configfiles"] = ["profiles/demo/demo.yaml", "overlay.yaml"]
    (directory / "profiles/slurm-test").mkdir()
    (directory / "profiles/slurm-test/config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return "profiles/slurm-test"


def snakemake_command(*args: str, limit: int) -> list[str]:
    # A hard limit: Snakemake ignores the first SIGTERM while remote jobs run.
    return ["timeout", "-k", "30", str(limit), sys.executable, "-m", "snakemake", *args]


def pause_the_cancelled_training(directory: Path) -> None:
    """Route the cluster copy's trainings through tests/pause_training.py: the run the test cancels writes the marker
    PAUSED after epoch PAUSE_EPOCH and waits there, so the scheduler's cancel lands after its pruning and before its
    end on every machine, however fast (the other runs, and the resubmitted job, which starts after that epoch, go
    straight through). Only the command's prefix changes; the arguments are the rule's own."""
    rule = directory / "rules/train.smk"
    command = "python -m advprune train"
    assert rule.read_text().count(command) == 1, f"{rule} no longer runs `{command}`: update this test"
    hook = (f"PAUSE_ONLY={shlex.quote(CANCELLED)} python {shlex.quote(str(REPO / 'tests/pause_training.py'))} "
            f"{PAUSE_EPOCH} {shlex.quote(str(directory / PAUSED))} train")
    rule.write_text(rule.read_text().replace(command, hook))


def cancel_mid_training(directory: Path, process: subprocess.Popen, timeout: float = 300) -> dict:
    """scancel the pruned model's training job once it waits after epoch PAUSE_EPOCH, as a scheduler pre-empting it
    would; returns the epoch it had reached and the Slurm job id."""
    deadline = time.monotonic() + timeout
    while not (directory / PAUSED).exists():
        assert process.poll() is None, "Snakemake ended before the training job could be cancelled"
        assert time.monotonic() < deadline, f"{CANCELLED} did not reach epoch {PAUSE_EPOCH} within {timeout} s"
        time.sleep(0.1)
    epoch = torch.load(directory / CANCELLED / "resume.pt", weights_only=True)["state"]["epoch"]
    assert epoch == PAUSE_EPOCH and not (directory / CANCELLED / "model.pt").exists()
    queue = _run(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"], timeout=30).stdout.split()
    ids = [line.split("|")[0] for line in queue if line.split("|")[1] == CANCELLED_COMMENT]
    assert len(ids) == 1, f"no single running job {CANCELLED_COMMENT} in squeue: {queue}"
    assert _run(["scancel", ids[0]], timeout=30).returncode == 0
    return {"epoch": epoch, "job": ids[0]}


def processes_of(directory: Path) -> list[int]:
    """PIDs of the processes whose command line names `directory`: the Slurm jobs' Snakemake and its commands."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(directory).encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:  # ended meanwhile
            pass
    return pids


def sacct_jobs(run_id: str) -> pd.DataFrame:
    fields = ["JobID", "JobName", "Comment", "Partition", "Account", "AllocTRES", "State", "Start", "End"]
    result = _run(["sacct", "-X", "--parsable2", "--noheader", "--starttime", "now-1days", "--name", run_id,
                   f"--format={','.join(fields)}"], timeout=60)
    assert result.returncode == 0, result.stderr
    rows = [line.split("|") for line in result.stdout.splitlines() if line]
    return pd.DataFrame(rows, columns=fields)


def tidy(directory: Path) -> pd.DataFrame:
    table = pd.read_csv(directory / "results/artefacts/fig2.csv")
    return table.drop(columns=TIMING_COLUMNS).sort_values(["strategy", "keep"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def runs(slurm, tmp_path_factory):
    """The target through the Slurm profile, with one training cancelled, and the same target run locally (at the
    same time: the Slurm run mostly waits on the scheduler)."""
    cluster = copy_workflow(tmp_path_factory.mktemp("slurm"))
    local = copy_workflow(tmp_path_factory.mktemp("local"))
    for directory in (cluster, local):
        write_config_overlay(directory, OVERLAY)
    profile = slurm_profile(cluster)
    pause_the_cancelled_training(cluster)
    planned = planned_jobs(cluster, "--profile", profile, TARGET)

    local_log, log = (local / "snakemake.log").open("w"), (cluster / "snakemake.log").open("w")
    local_run = subprocess.Popen(
        snakemake_command("--profile", "profiles/demo", TARGET, "--configfile", "profiles/demo/demo.yaml",
                          "overlay.yaml", limit=420),
        cwd=local, env=ENV, stdout=local_log, stderr=subprocess.STDOUT)
    start = time.monotonic()
    # --verbose: the log then holds each sbatch call, checked below.
    cluster_run = subprocess.Popen(snakemake_command("--profile", profile, TARGET, "--verbose", limit=420),
                                   cwd=cluster, env=ENV, stdout=log, stderr=subprocess.STDOUT)
    try:
        cancelled = cancel_mid_training(cluster, cluster_run)
        cluster_run.wait(timeout=480)
        seconds = time.monotonic() - start
        local_run.wait(timeout=480)
        for _ in range(30):  # a cancelled job's processes get SIGKILL after KillWait (5 s)
            if not (leftovers := processes_of(cluster)):
                break
            time.sleep(1)
    finally:
        for process in (cluster_run, local_run):
            if process.poll() is None:
                process.kill()
                process.wait()
        _run(["scancel", f"--user={pwd.getpwuid(os.geteuid()).pw_name}"], timeout=30)  # nothing left queued
        for pid in processes_of(cluster):  # whatever a job left behind dies with the test (reported below)
            os.kill(pid, signal.SIGKILL)
        local_log.close()
        log.close()
    output = (cluster / "snakemake.log").read_text()
    assert cluster_run.returncode == 0, output[-6000:]
    assert local_run.returncode == 0, (local / "snakemake.log").read_text()[-4000:]
    run_id = next(line.split("SLURM run ID:")[1].strip() for line in output.splitlines() if "SLURM run ID:" in line)
    print(f"Slurm run: {seconds:.0f} s; cancelled job {cancelled['job']} at epoch {cancelled['epoch']}")
    return {"cluster": cluster, "local": local, "planned": planned, "cancelled": cancelled, "run_id": run_id,
            "output": output, "leftovers": leftovers}


def test_sacct_lists_exactly_the_planned_jobs(runs):
    planned = runs["planned"]
    jobs = sacct_jobs(runs["run_id"])
    print(jobs.to_string())
    per_group = yaml.safe_load((HERE / "profile.yaml").read_text())["group-components"]["evaluation"]
    groups = math.ceil(planned["evaluate_model"] / per_group)
    # Trainings one job each, plus the resubmission of the cancelled one; evaluations in grouped jobs; the local
    # rules (download, tidy table, figure) never reach Slurm.
    trainings = jobs[jobs["Comment"].str.startswith("rule_train_model_")]
    assert len(trainings) == planned["train_model"] + 1
    assert trainings["Comment"].nunique() == planned["train_model"]
    assert (trainings["Comment"] == CANCELLED_COMMENT).sum() == 2
    assert (jobs["Comment"] == GROUP_COMMENT).sum() == groups
    # The prefix: one job, which the fork's first job waits for (sacct's times are ISO 8601, to the second).
    prefixes = jobs[jobs["Comment"].str.startswith("rule_train_prefix_")]
    assert len(prefixes) == planned["train_prefix"] == 1
    fork = trainings[trainings["Comment"] == CANCELLED_COMMENT]
    assert fork["Start"].min() >= prefixes["End"].iloc[0]
    assert len(jobs) == planned["train_model"] + 1 + len(prefixes) + groups, (
        "a job that should have run locally went to Slurm")
    states = jobs.set_index("JobID")["State"].str.split().str[0]  # "CANCELLED by 0" -> "CANCELLED"
    assert states.pop(runs["cancelled"]["job"]) == "CANCELLED"
    assert (states == "COMPLETED").all()
    # GPU jobs: the GPU partition, one (fake) GPU each, also for a group of evaluations; the account from the profile.
    assert (jobs["Partition"] == "gpu").all() and (jobs["Account"] == ACCOUNT).all()
    assert jobs["AllocTRES"].str.contains("gres/gpu=1").all(), jobs["AllocTRES"].tolist()
    # As submitted (--verbose logs each sbatch call): a GPU by resources, and no forced --ntasks-per-gpu.
    calls = [line for line in runs["output"].splitlines() if line.startswith("sbatch call:")]
    assert len(calls) == len(jobs)
    assert all("--gpus=1" in call and "--ntasks-per-gpu" not in call for call in calls)


def test_results_equal_a_local_run(runs):
    pd.testing.assert_frame_equal(tidy(runs["cluster"]), tidy(runs["local"]), check_exact=True)


def test_cancelled_training_resumed_to_the_uninterrupted_result(runs):
    cluster, local = runs["cluster"] / CANCELLED, runs["local"] / CANCELLED
    resumed, uninterrupted = (json.loads((d / "train.json").read_text()) for d in (cluster, local))
    # It continued from its last checkpoint (not from scratch) in the resubmitted job ...
    assert resumed["resumed_at_epochs"] == [runs["cancelled"]["epoch"]] == [PAUSE_EPOCH]
    assert len(resumed["history"]) == len(uninterrupted["history"]) == EPOCHS
    assert uninterrupted["resumed_at_epochs"] == []
    assert not (cluster / "resume.pt").exists()
    # Both forked from their prefix after epoch 1, which the cancel (after epoch 2) did not make it start again from.
    for summary, directory in ((resumed, runs["cluster"]), (uninterrupted, runs["local"])):
        assert summary["forked_from"] == {"prefix": PREFIX, "epoch": 1,
                                          "weights_sha256": summary["history"][0]["weights_sha256"]}
        assert (directory / PREFIX).exists()  # digits-mnist keeps its prefixes (config keep_prefixes)
    # ... and ended where the uninterrupted run did: the same weights, pruning decision and per-epoch history.
    weights = [torch.load(d / "model.pt", weights_only=True)["model_state"] for d in (cluster, local)]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
    pruning = [np.load(d / "pruning.npz") for d in (cluster, local)]
    assert np.array_equal(pruning[0]["kept"], pruning[1]["kept"])
    for key in ("train_loss", "train_acc", "lr", "n_points", "pgd_acc"):
        assert [h[key] for h in resumed["history"]] == [h[key] for h in uninterrupted["history"]], key


def test_nothing_left_behind(runs):
    assert _run(["squeue", "-h"], timeout=30).stdout.strip() == ""
    # No process of a job outlives it (the cancelled one included): Slurm tracks them by process group.
    assert runs["leftovers"] == []
