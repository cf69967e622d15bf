"""Checkpoints that `torch.load(..., weights_only=True)` reads: tensors, numbers, strings, lists and dicts only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advprune.models import build_model
from advprune.runtime import atomic_path

FORMAT = "advprune.checkpoint/1"


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **payload}, tmp)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise ValueError(f"{path}: not a readable checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise ValueError(f"{path}: not an advprune checkpoint (expected format {FORMAT!r})")
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any], device: torch.device) -> nn.Module:
    """Rebuild the network a checkpoint belongs to, load its weights, and put it in eval mode."""
    architecture = checkpoint["architecture"]
    model = build_model(
        architecture["name"],
        in_channels=architecture["in_channels"],
        num_classes=architecture["num_classes"],
        image_size=architecture["image_size"],
        normalization=architecture["normalization"],
    )
    model.load_state_dict(checkpoint["model_state"])
    return model.to(device).eval()
