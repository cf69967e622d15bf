"""Which GPU a job runs on: `jobs_per_gpu` slots per visible GPU, each a file lock (advprune.locks).

A local Snakemake run assigns no GPU ids: every job would land on cuda:0. So a training or evaluation job asked for
plain `cuda` claims a slot itself, on the least busy visible GPU, and holds it until it exits (the operating system
drops the lock of a killed process). A job that finds every slot held waits for one. Where the GPU is already chosen
(`cuda:N`, or inside a Slurm job, whose scheduler narrowed CUDA_VISIBLE_DEVICES to its GPU) nothing is picked.

Locks live in ADVPRUNE_GPU_LOCKS (default: <tmp>/advprune-gpu-slots-<uid>, so they are per user and per machine);
`slots.jsonl` there gets one line per released slot: which, by whom, when asked, taken and given back. The folder
must be private (mode 0700, this user's; the default is created so) and no lock or log in it is opened through a
symbolic link: its name is guessable, and a link planted there would otherwise empty or extend a file of the user's.
Slots per GPU: the caller's `jobs_per_gpu`, else ADVPRUNE_JOBS_PER_GPU, else 1.
ADVPRUNE_FAKE_GPUS=N makes the picker see N GPUs while the job computes where it was told (the tests' hook).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping

from advprune.locks import ExclusiveLock, append_line, private_directory

if TYPE_CHECKING:
    import torch

LOCK_DIR = "ADVPRUNE_GPU_LOCKS"
JOBS_PER_GPU = "ADVPRUNE_JOBS_PER_GPU"  # the workflow's jobs_per_gpu, exported to its jobs (rules/environment.smk)
FAKE_GPUS = "ADVPRUNE_FAKE_GPUS"
MAX_JOBS_PER_GPU = 64


@dataclass(frozen=True)
class Placement:
    """Where a job runs, as its provenance records it."""

    device: torch.device
    gpu: str | None  # the GPU's name in CUDA_VISIBLE_DEVICES (its index when unset); None on the CPU
    slot: int | None  # the slot this job holds on it; None where nothing was picked
    jobs_on_device: int  # the most jobs that share the device: its slots when picked, else what the caller said


def visible_gpus(environ: Mapping[str, str], device_count: int) -> list[str]:
    """The names of the GPUs this process sees, in CUDA's order: cuda:i is the i-th. Names, not indices, identify a
    physical GPU across jobs whose CUDA_VISIBLE_DEVICES differ."""
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return [str(i) for i in range(device_count)]
    return [name.strip() for name in listed.split(",") if name.strip()][:device_count]


def pick(n_gpus: int, jobs_per_gpu: int, held: set[tuple[int, int]]) -> tuple[int, int] | None:
    """(gpu, slot): the lowest free slot of the GPU with the fewest held slots (the first such GPU), or None when
    every slot is held. `held` is a set of (gpu, slot)."""
    load = [sum((g, s) in held for s in range(jobs_per_gpu)) for g in range(n_gpus)]
    open_gpus = [g for g in range(n_gpus) if load[g] < jobs_per_gpu]
    if not open_gpus:
        return None
    gpu = min(open_gpus, key=lambda g: (load[g], g))
    return gpu, min(s for s in range(jobs_per_gpu) if (gpu, s) not in held)


def jobs_per_gpu_from(given: int | None, environ: Mapping[str, str]) -> int:
    """The slots per GPU: `given`, else ADVPRUNE_JOBS_PER_GPU, else 1."""
    value = given if given is not None else environ.get(JOBS_PER_GPU, "1")
    text = str(value)
    if isinstance(value, bool) or not text.isdigit() or not 1 <= int(text) <= MAX_JOBS_PER_GPU:
        where = "jobs per GPU" if given is not None else JOBS_PER_GPU
        raise ValueError(f"{where} must be an integer in [1, {MAX_JOBS_PER_GPU}], got {value!r}")
    return int(text)


def lock_dir(environ: Mapping[str, str] = os.environ) -> Path:
    given = environ.get(LOCK_DIR)
    return Path(given) if given else Path(tempfile.gettempdir()) / f"advprune-gpu-slots-{os.getuid()}"


def _fake_count(environ: Mapping[str, str]) -> int | None:
    text = environ.get(FAKE_GPUS)
    if text is None:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise ValueError(f"{FAKE_GPUS} must be an integer in [1, 64], got {text!r}")
    return int(text)


def _lock_name(gpu: str, slot: int) -> str:
    return f"gpu-{re.sub(r'[^A-Za-z0-9._-]', '_', gpu)}.slot-{slot}.lock"


@contextmanager
def claim(
    device: torch.device, jobs_per_gpu: int | None = None, *, jobs_on_device: int = 1,
    environ: Mapping[str, str] = os.environ, poll_seconds: float = 0.5,
) -> Iterator[Placement]:
    """Hold a GPU slot for the block when `device` is plain `cuda` (or any device without an index while
    ADVPRUNE_FAKE_GPUS is set) outside a Slurm job, and yield where the job runs; otherwise yield `device` as given,
    with `jobs_on_device` as the caller counts it."""
    import torch

    jobs_per_gpu = jobs_per_gpu_from(jobs_per_gpu, environ)
    fake = _fake_count(environ)
    count = fake if fake is not None else (torch.cuda.device_count() if device.type == "cuda" else 0)
    gpus = visible_gpus(environ, count)
    chosen_elsewhere = device.index is not None or bool(environ.get("SLURM_JOB_ID"))  # by the user or by Slurm
    picks = not chosen_elsewhere and (device.type == "cuda" or fake is not None)
    if not picks or not gpus:
        index = device.index or 0
        gpu = gpus[index] if device.type == "cuda" and index < len(gpus) else None
        yield Placement(device, gpu, None, jobs_on_device)
        return
    directory = private_directory(lock_dir(environ), f"the GPU lock folder (${LOCK_DIR})")
    requested = time.time()
    slot_lock, (g, s) = _acquire(directory, gpus, jobs_per_gpu, poll_seconds)
    acquired = time.time()
    try:
        where = torch.device("cuda", g) if device.type == "cuda" else device
        if where.type == "cuda":
            torch.cuda.set_device(where)  # a stray allocation on plain "cuda" (a library's) lands here, not on GPU 0
        yield Placement(where, gpus[g], s, jobs_per_gpu)
    finally:
        record = {"gpu": gpus[g], "slot": s, "pid": os.getpid(), "requested": requested, "acquired": acquired,
                  "released": time.time()}
        try:
            append_line(directory / "slots.jsonl", json.dumps(record))  # one short line per write: no interleaving
        finally:
            slot_lock.release()


def _acquire(
    directory: Path, gpus: list[str], jobs_per_gpu: int, poll_seconds: float
) -> tuple[ExclusiveLock, tuple[int, int]]:
    """Under the picker's own lock, try every slot (a held one refuses at once), keep the chosen one, let the others
    go. Only pickers take the picker's lock, so no other job takes a slot between the survey and the choice."""
    waiting_said = False
    while True:
        with ExclusiveLock(directory / "picker.lock"), ExitStack() as probes:
            free: dict[tuple[int, int], ExclusiveLock] = {}
            for g, name in enumerate(gpus):
                for s in range(jobs_per_gpu):
                    lock = ExclusiveLock(directory / _lock_name(name, s))
                    if not lock.try_acquire():
                        continue
                    free[g, s] = lock
                    probes.callback(lock.release)
            every = {(g, s) for g in range(len(gpus)) for s in range(jobs_per_gpu)}
            chosen = pick(len(gpus), jobs_per_gpu, every - free.keys())
            if chosen is not None:
                kept = free.pop(chosen)
                probes.pop_all()  # the chosen slot stays held; the others are released below
                for lock in free.values():
                    lock.release()
                return kept, chosen
        if not waiting_said:
            print(f"waiting for a GPU slot: all {len(gpus)} x {jobs_per_gpu} are held (locks in {directory})",
                  file=sys.stderr)
            waiting_said = True
        time.sleep(poll_seconds)
