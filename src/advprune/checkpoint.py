"""Checkpoints that `torch.load(..., weights_only=True)` reads: tensors, numbers, strings, lists and dicts only."""

from __future__ import annotations

import hashlib
import io
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import nn

from advprune import METHOD_VERSION
from advprune.models import build_model
from advprune.runtime import atomic_path

if TYPE_CHECKING:
    import numpy as np

    from advprune.identity import ModelKey

FORMAT = "advprune.checkpoint/1"


def weights_sha256(model: nn.Module) -> str:
    """sha256 of a model's parameters and buffers (state_dict order, names, dtypes, shapes and bytes): two models with
    this digest hold the same weights bit for bit. train.json records it after every epoch, so that models which share
    their first epochs (the same seed, pruned at different points) can be shown to, not assumed to."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        value = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()

# What reading a model needs, with its type: checked on load, so a damaged or foreign payload with the right `format`
# is refused naming the key, not met later as a KeyError or TypeError. (Nested mappings are checked key by key.)
_INT = "positive integer"
MODEL_KEYS: dict[str, Any] = {
    "dataset": str,
    "architecture": {"name": str, "in_channels": _INT, "num_classes": _INT, "image_size": _INT,
                     "normalization": (dict, type(None))},
    "run": {"dataset": str, "strategy": str, "keep": (int, float), "prune_epoch": (int, type(None)), "seed": int},
    "settings": {"eps": float},
    "dataset_sha256": str,
    "model_state": dict,
    "complete": bool,
}
# What resuming needs besides (resume.pt).
RESUME_KEYS: dict[str, Any] = {
    "optimizer_state": dict,
    "rng": {"generator": torch.Tensor, "torch": torch.Tensor},
    "state": {"epoch": int, "step": int, "history": list, "kept": (torch.Tensor, type(None)),
              "scores": (torch.Tensor, type(None)), "train_seconds": float, "scoring_seconds": float,
              "monitor_seconds": float, "resumed_at_epochs": list},
}


@dataclass
class RunState:
    """Where a run stands after an epoch: the `state` of its resume.pt (and model.pt). Kept indices and scores are
    numpy arrays while training and tensors in a checkpoint, which holds tensors only (weights_only loading)."""

    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    kept: np.ndarray | None = None
    scores: np.ndarray | None = None
    train_seconds: float = 0.0
    scoring_seconds: float = 0.0
    monitor_seconds: float = 0.0
    resumed_at_epochs: list[int] = field(default_factory=list)
    forked_from: dict[str, Any] | None = None  # the prefix a fork started from (advprune.prefix); None from scratch

    def to_checkpoint(self) -> dict[str, Any]:
        state = {item.name: getattr(self, item.name) for item in fields(self)}
        for name in ("kept", "scores"):
            if state[name] is not None:
                state[name] = torch.as_tensor(state[name])
        if state["forked_from"] is None:  # written only by forks: a run from scratch keeps the keys it always had
            del state["forked_from"]
        return state

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> "RunState":
        """The state of a checkpoint whose keys check_keys accepted (RESUME_KEYS)."""
        values = {item.name: state[item.name] for item in fields(cls) if item.name in state}
        for name in ("kept", "scores"):
            if values[name] is not None:
                values[name] = values[name].cpu().numpy()
        return cls(**values)


def recorded_identity(checkpoint: Mapping[str, Any], keys: list[str]) -> dict[str, Any]:
    """The identity `keys` (those of run_identity) as `checkpoint` records them, less any retired setting: what is
    compared with this run's own identity."""
    from advprune.settings import RETIRED_SETTINGS

    recorded = {key: checkpoint.get(key) for key in keys}
    if isinstance(recorded.get("settings"), Mapping):
        recorded["settings"] = {k: v for k, v in recorded["settings"].items() if k not in RETIRED_SETTINGS}
    return recorded


def run_identity(key: "ModelKey", settings: Mapping[str, Any], dataset_sha256: str) -> dict[str, Any]:
    """What identifies a run in its checkpoints: a checkpoint of another run is never resumed, evaluated or taken for
    this one."""
    from advprune.settings import Settings

    settings = Settings(settings)
    if not key.prunes:
        # Without pruning both schedule policies give the same schedule; one name keeps one identity.
        settings = settings.replace(schedule_after_pruning="rescale")
    return {
        "dataset": key.dataset,
        "run": {**key.checkpoint_fields(), "method_version": METHOD_VERSION},
        "settings": settings.as_dict(),
        "dataset_sha256": dataset_sha256,
    }


def training_checkpoint(
    identity: dict[str, Any], *, architecture: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
    generator: torch.Generator, state: RunState, complete: bool,
) -> dict[str, Any]:
    """A run's resume.pt (complete=False) or model.pt (complete=True): everything that continues it bit for bit."""
    return {
        **identity,
        "architecture": architecture,
        "model_state": model.state_dict(),
        "optimizer_state": optimizer.state_dict(),
        "rng": {"generator": generator.get_state(), "torch": torch.get_rng_state()},
        "state": state.to_checkpoint(),
        "complete": complete,
    }


def restore_training(
    checkpoint: dict[str, Any], path: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> RunState:
    """Load a checked resume checkpoint (RESUME_KEYS, resume_state) into the run's model, optimiser and random
    streams; its state."""
    for key, target in (("model_state", model), ("optimizer_state", optimizer)):
        try:
            target.load_state_dict(checkpoint[key])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as error:
            message = " ".join(str(error).split())[:200]
            raise ValueError(f"{path}: damaged resume state: {key} does not fit this run ({message}); it was left "
                             "untouched. Delete it to start this run from scratch") from None
    generator.set_state(checkpoint["rng"]["generator"].cpu())
    torch.set_rng_state(checkpoint["rng"]["torch"].cpu())
    return RunState.from_checkpoint(checkpoint["state"])


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    save_tensors(path, {"format": FORMAT, **payload})


def save_tensors(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """torch.save, atomically; a failed write (a full disk) is one line naming the file (runtime.WriteFailure)."""
    with atomic_path(path) as tmp:
        try:
            torch.save(payload, tmp)
        except RuntimeError as error:  # torch's writer on a full disk: "[enforce fail ...] unexpected pos ..."
            raise OSError(f"PyTorch could not write it: {' '.join(str(error).split())[:100]}") from None


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    return read_checkpoint(path, map_location)[0]


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], str]:
    """The checkpoint, checked, and the sha256 of the very bytes it was read from: what metrics name as the model
    they measured (a file replaced while it is read cannot pair one model's metrics with another's hash)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    if not path.is_file():
        raise ValueError(f"{path}: not a checkpoint file")
    data = path.read_bytes()
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        # Not torch's message: for a foreign pickle it is a page of advice ending in "rerun with weights_only=False",
        # which would run the file's code. Only the error's type is kept.
        raise ValueError(
            f"{path}: not an advprune checkpoint (torch.load cannot read it safely: {type(error).__name__}); "
            "use a model.pt written by `advprune train`"
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise ValueError(f"{path}: not an advprune checkpoint (expected format {FORMAT!r})")
    check_keys(checkpoint, MODEL_KEYS, path)
    eps = checkpoint["settings"]["eps"]
    if not (math.isfinite(eps) and 0 < eps <= 1):  # the budget every robust accuracy is measured at
        raise ValueError(f"{path}: settings.eps must be a finite number in (0, 1], got {eps}")
    _check_finite_weights(checkpoint["model_state"], path)
    return checkpoint, hashlib.sha256(data).hexdigest()


def _check_finite_weights(model_state: dict[str, Any], path: Path) -> None:
    """NaN or infinite weights are no model: evaluated, they scored clean 0.1 and AutoAttack 0.0 as if measured."""
    for name, tensor in model_state.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{path}: model_state.{name} holds values that are not finite (NaN or infinity): "
                             "not a usable model; train it again")


def check_keys(payload: dict[str, Any], spec: dict[str, Any], path: str | os.PathLike, prefix: str = "") -> None:
    """Refuse a payload that lacks a key of `spec` or holds a value of another type, naming the key."""
    for key, kind in spec.items():
        where = f"{prefix}{key}"
        if key not in payload:
            raise ValueError(f"{path}: damaged or foreign checkpoint: key {where} is missing")
        value = payload[key]
        if isinstance(kind, dict):
            if not isinstance(value, dict):
                raise ValueError(f"{path}: damaged or foreign checkpoint: {where} is a {type(value).__name__}, "
                                 "expected a mapping")
            check_keys(value, kind, path, f"{where}.")
        elif not _is(value, kind):
            expected = kind if isinstance(kind, str) else " or ".join(t.__name__ for t in _types(kind))
            shown = " ".join(repr(value).split())[:60]
            raise ValueError(f"{path}: damaged or foreign checkpoint: {where} is {shown}, expected {expected}")


def _types(kind: Any) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _is(value: Any, kind: Any) -> bool:
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if isinstance(value, bool) and bool not in _types(kind):  # True is an int to Python, not to a checkpoint
        return False
    if kind is float or (isinstance(kind, tuple) and float in kind):
        return isinstance(value, (int, float)) or isinstance(value, _types(kind))
    return isinstance(value, _types(kind))


def model_from_checkpoint(checkpoint: dict[str, Any], device: torch.device, where: str = "checkpoint") -> nn.Module:
    """Rebuild the network a checkpoint belongs to, load its weights, and put it in eval mode."""
    architecture = checkpoint["architecture"]
    try:
        model = build_model(
            architecture["name"],
            in_channels=architecture["in_channels"],
            num_classes=architecture["num_classes"],
            image_size=architecture["image_size"],
            normalization=architecture["normalization"],
        )
        model.load_state_dict(checkpoint["model_state"])
    except (RuntimeError, ValueError, TypeError, KeyError) as error:  # weights of another shape, or from elsewhere
        message = " ".join(str(error).split())[:300]
        raise ValueError(f"{where}: model_state does not fit architecture {architecture} ({message})") from None
    return model.to(device).eval()
