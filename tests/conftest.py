"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only `shared/` folder beside the repository (ADVPRUNE_SHARED overrides); skip the test if absent."""
    override = os.environ.get("ADVPRUNE_SHARED")
    path = Path(override) if override else Path(__file__).resolve().parents[1].parent / "shared"
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} not found (set ADVPRUNE_SHARED to point at it)")
    return path


@pytest.fixture
def one_thread():
    """Tiny tensors: one intra-op thread is as fast on an idle machine and far faster on a busy one."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
