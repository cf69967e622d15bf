"""The GPU picker (advprune.gpu_slots) on the CPU, with a faked GPU count: its choice, its locks, and the CLI hook."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import threading
import time

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from workflow_helpers import copy_workflow, snakemake, write_config_overlay

from advprune import cli, gpu_slots

CPU = torch.device("cpu")


@pytest.fixture
def fake_gpus(tmp_path, monkeypatch):
    """Two fake GPUs named 3 and 7 (as CUDA_VISIBLE_DEVICES=3,7 names them), locks in a private folder."""
    monkeypatch.setenv(gpu_slots.FAKE_GPUS, "2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,7")
    monkeypatch.setenv(gpu_slots.LOCK_DIR, str(tmp_path / "locks"))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    return tmp_path / "locks"


def test_visible_gpus_follow_cuda_visible_devices():
    assert gpu_slots.visible_gpus({}, 3) == ["0", "1", "2"]
    assert gpu_slots.visible_gpus({"CUDA_VISIBLE_DEVICES": "3,7"}, 2) == ["3", "7"]
    assert gpu_slots.visible_gpus({"CUDA_VISIBLE_DEVICES": " GPU-ab12 , 5"}, 2) == ["GPU-ab12", "5"]
    assert gpu_slots.visible_gpus({"CUDA_VISIBLE_DEVICES": "3,7"}, 1) == ["3"]  # what CUDA could open
    assert gpu_slots.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, 0) == []


@given(n_gpus=st.integers(1, 5), k=st.integers(1, 4), data=st.data())
def test_pick_takes_a_free_slot_of_a_least_busy_gpu(n_gpus, k, data):
    every = [(g, s) for g in range(n_gpus) for s in range(k)]
    held = set(data.draw(st.lists(st.sampled_from(every), unique=True)))
    chosen = gpu_slots.pick(n_gpus, k, held)
    if len(held) == len(every):
        assert chosen is None
        return
    assert chosen in set(every) - held
    load = {g: sum(1 for h in held if h[0] == g) for g in range(n_gpus)}
    assert load[chosen[0]] == min(load[g] for g in range(n_gpus) if load[g] < k)


@given(n_gpus=st.integers(1, 5), k=st.integers(1, 4))
def test_jobs_arriving_one_by_one_are_spread_evenly(n_gpus, k):
    held: set = set()
    for taken in range(1, n_gpus * k + 1):
        held.add(gpu_slots.pick(n_gpus, k, held))
        loads = [sum(1 for h in held if h[0] == g) for g in range(n_gpus)]
        assert max(loads) - min(loads) <= 1 and sum(loads) == taken
    assert gpu_slots.pick(n_gpus, k, held) is None


def test_claims_spread_over_fake_gpus_and_a_fifth_waits(fake_gpus):
    got = []

    def fifth():
        with gpu_slots.claim(CPU, 2, poll_seconds=0.05) as placement:
            got.append((placement.gpu, placement.slot))

    with contextlib.ExitStack() as held:
        four = [held.enter_context(gpu_slots.claim(CPU, 2)) for _ in range(4)]
        assert [(p.gpu, p.slot) for p in four] == [("3", 0), ("7", 0), ("3", 1), ("7", 1)]
        assert {p.jobs_on_device for p in four} == {2} and {p.device for p in four} == {CPU}
        waiter = threading.Thread(target=fifth)
        waiter.start()
        time.sleep(0.5)
        assert not got, "a fifth job took a slot while all four were held"
    waiter.join(10)
    assert got == [("3", 0)]  # all four free again: the first slot of the first GPU
    lines = [json.loads(line) for line in (fake_gpus / "slots.jsonl").read_text().splitlines()]
    assert len(lines) == 5 and all(line["requested"] <= line["acquired"] <= line["released"] for line in lines)


def _hold(lock_dir: str, seconds: float, start: float) -> None:
    import os

    os.environ.update({gpu_slots.FAKE_GPUS: "2", gpu_slots.LOCK_DIR: lock_dir, "CUDA_VISIBLE_DEVICES": "3,7"})
    time.sleep(max(0.0, start - time.time()))
    with gpu_slots.claim(CPU, 2, poll_seconds=0.02):
        time.sleep(seconds)


def test_no_slot_is_ever_held_twice_by_concurrent_processes(tmp_path):
    """Eight processes asking at once for 2 fake GPUs x 2 slots: the log's holding intervals of each slot are
    disjoint, and four of them had to wait."""
    context = multiprocessing.get_context("fork")  # torch is imported already: no second import per process
    start = time.time() + 0.5
    workers = [context.Process(target=_hold, args=(str(tmp_path), 0.4, start)) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    lines = [json.loads(line) for line in (tmp_path / "slots.jsonl").read_text().splitlines()]
    assert len(lines) == 8
    assert overlaps(lines) == []
    assert {(line["gpu"], line["slot"]) for line in lines} == {("3", 0), ("3", 1), ("7", 0), ("7", 1)}
    waited = sorted(line["acquired"] - line["requested"] for line in lines)
    assert waited[4] > 0.2, f"fewer than four processes waited for a slot: {waited}"


def overlaps(lines: list[dict]) -> list[tuple[dict, dict]]:
    """Pairs of log lines that held the same slot at the same time."""
    clashes = []
    for i, a in enumerate(lines):
        for b in lines[i + 1:]:
            if (a["gpu"], a["slot"]) == (b["gpu"], b["slot"]) and a["acquired"] < b["released"] and \
                    b["acquired"] < a["released"]:
                clashes.append((a, b))
    return clashes


def test_nothing_is_picked_where_the_device_is_chosen_already(fake_gpus, monkeypatch):
    with gpu_slots.claim(torch.device("cuda", 1), 2, jobs_on_device=3) as placement:
        assert (placement.device, placement.gpu, placement.slot, placement.jobs_on_device) == \
            (torch.device("cuda", 1), "7", None, 3)
    with gpu_slots.claim(torch.device("cuda", 5), 2) as placement:  # beyond the list: named by no one
        assert (placement.gpu, placement.slot) == (None, None)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    with gpu_slots.claim(CPU, 2) as placement:
        assert (placement.gpu, placement.slot, placement.jobs_on_device) == (None, None, 1)
    assert not (fake_gpus / "slots.jsonl").exists()


def test_cpu_without_fake_gpus_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.delenv(gpu_slots.FAKE_GPUS, raising=False)
    monkeypatch.setenv(gpu_slots.LOCK_DIR, str(tmp_path))
    with gpu_slots.claim(CPU, 4) as placement:
        assert (placement.device, placement.gpu, placement.slot, placement.jobs_on_device) == (CPU, None, None, 1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["two", "0", "-1", "1.5"])
def test_a_bad_fake_count_is_one_clear_error(fake_gpus, monkeypatch, bad):
    monkeypatch.setenv(gpu_slots.FAKE_GPUS, bad)
    with pytest.raises(ValueError, match=gpu_slots.FAKE_GPUS):
        with gpu_slots.claim(CPU, 2):
            pass


def test_train_records_the_gpu_and_its_jobs(fake_gpus, data_root, tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main([
        "train", "--dataset", "digits-mnist", "--keep", "1.0", "--seed", "0", "--out", str(out), "--device", "cpu",
        "--data-root", str(data_root), "--set", "epochs=1", "--jobs-per-gpu", "2", "--no-progress",
    ])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "train.json").read_text())
    assert (record["provenance"]["gpu"], record["provenance"]["jobs_on_device"]) == ("3", 2)
    assert record["jobs_on_device"] == 2
    (line,) = (fake_gpus / "slots.jsonl").read_text().splitlines()
    assert json.loads(line)["gpu"] == "3"


def test_jobs_per_gpu_out_of_range_is_refused_in_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as stop:
        cli.main(["evaluate", "--checkpoint", str(tmp_path / "m.pt"), "--out", str(tmp_path / "x.json"),
                  "--jobs-per-gpu", "0"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "--jobs-per-gpu" in err


def test_the_workflow_exports_jobs_per_gpu(fake_gpus, monkeypatch):
    monkeypatch.setenv(gpu_slots.JOBS_PER_GPU, "2")
    with gpu_slots.claim(CPU) as placement:
        assert placement.jobs_on_device == 2
    monkeypatch.setenv(gpu_slots.JOBS_PER_GPU, "many")
    with pytest.raises(ValueError, match=gpu_slots.JOBS_PER_GPU):
        with gpu_slots.claim(CPU):
            pass


@pytest.mark.workflow
@pytest.mark.slow
def test_workflow_on_two_fake_gpus_never_holds_a_slot_twice(tmp_path):
    """Six of the demo's digits trainings that Snakemake starts at once (--resources gpu_slots=6 overrides the profile's
    limit of gpus x jobs_per_gpu = 4) on 2 fake GPUs (CUDA_VISIBLE_DEVICES=3,7) x 2 slots: the picker's locks alone
    hold them to four at a time, two per GPU, and every train.json names the GPU it was given."""
    directory = copy_workflow(tmp_path / "wf")
    overlay = write_config_overlay(directory, {"gpus": 2, "jobs_per_gpu": 2})
    targets = [f"results/models/digits-mnist/fp32/full/seed{seed}/model.pt" for seed in range(6)]
    locks = tmp_path / "locks"
    env = {gpu_slots.FAKE_GPUS: "2", gpu_slots.LOCK_DIR: str(locks), "CUDA_VISIBLE_DEVICES": "3,7",
           "OMP_NUM_THREADS": "1"}
    result = snakemake(directory, "--cores", "6", "--resources", "gpu_slots=6", "--configfile", "config.yaml",
                       "profiles/demo/demo.yaml", str(overlay), "--", *targets, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = [json.loads(line) for line in (locks / "slots.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and overlaps(lines) == []
    assert {line["gpu"] for line in lines} == {"3", "7"}
    moments = sorted({line["acquired"] for line in lines})
    most = max(sum(line["acquired"] <= t < line["released"] for line in lines) for t in moments)
    assert 2 <= most <= 4, f"{most} slots held at once"
    records = [json.loads((directory / target).with_name("train.json").read_text())["provenance"] for target in targets]
    assert sorted(r["gpu"] for r in records) == sorted(line["gpu"] for line in lines)
    assert {r["jobs_on_device"] for r in records} == {2}
