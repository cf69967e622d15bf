"""Device choice: outside and inside a Slurm job (where the scheduler's GPU is used as given)."""

from __future__ import annotations

import os

import pytest
import torch

from advprune.runtime import DeviceUnavailableError, choose_device


@pytest.fixture
def no_slurm(monkeypatch):
    for name in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def slurm_job(monkeypatch):
    """What a Slurm job with `--gpus=1` sees: its job id, and the one GPU it was given (here the node's third)."""
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")


def gpus(monkeypatch, present: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: present)


def test_outside_slurm(no_slurm, monkeypatch):
    gpus(monkeypatch, False)
    assert choose_device("auto") == torch.device("cpu")
    assert choose_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceUnavailableError, match="no CUDA GPU on this machine"):
        choose_device("cuda")
    gpus(monkeypatch, True)
    assert choose_device("auto") == torch.device("cuda")
    assert choose_device("cuda:1") == torch.device("cuda", 1)


def test_inside_slurm_the_given_gpu_is_used_as_is(slurm_job, monkeypatch):
    gpus(monkeypatch, True)
    for request in ("auto", "cuda", "cuda:0"):
        assert choose_device(request) == torch.device("cuda", 0), request
    assert choose_device("cpu") == torch.device("cpu")
    # Nothing re-picks: the scheduler's choice stays in the environment, untouched.
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2"


def test_inside_slurm_without_a_gpu(slurm_job, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    gpus(monkeypatch, False)
    assert choose_device("auto") == torch.device("cpu")
    with pytest.raises(DeviceUnavailableError, match=r"Slurm job 4242 has no GPU .*resource gpu=1"):
        choose_device("cuda")
