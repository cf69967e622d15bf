"""What a resume.pt may hold: the state of a run after one of its epochs, checked against the run it would continue.

Its keys and types are checkpoint.RESUME_KEYS'; this checks what they say. A damaged state must not become a
"finished" model (an epoch of 10^6 ended the loop at once, as a run never pruned) nor a traceback (an empty history,
indices beyond the training set, a short random state): every value is refused naming its key.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from advprune.checkpoint import RESUME_KEYS, check_keys, load_checkpoint, recorded_identity
from advprune.pruning import n_kept

HISTORY_NUMBERS = ("train_loss", "train_acc", "lr", "n_points", "seconds", "pgd_acc")
SECONDS = ("train_seconds", "scoring_seconds", "monitor_seconds")


class ForeignCheckpoint(ValueError):
    """A whole checkpoint of another run or other settings than the one requested: refused and left as it is (a
    damaged one is a plain ValueError)."""


def read_checkpoint_of(path: Path, identity: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A checkpoint that continues a run (a resume.pt, a prefix), checked to be whole (checkpoint.RESUME_KEYS) and of
    the run `identity` (checkpoint.run_identity): ForeignCheckpoint for one of another run, ValueError for a damaged
    one. Its state is the caller's to check."""
    checkpoint = load_checkpoint(path, map_location=device)
    check_keys(checkpoint, RESUME_KEYS, path)
    if recorded_identity(checkpoint, list(identity)) != identity:
        raise ForeignCheckpoint(f"{path} belongs to a different run or settings than the one requested; it was left "
                                "untouched. Delete it to start this run from scratch.")
    return checkpoint


def read_resume(path: Path, identity: dict[str, Any], device: torch.device, **run: Any) -> dict[str, Any]:
    """A resume.pt, checked by read_checkpoint_of, and holding a state that run can have left (check_resume_state's
    `run` arguments); ValueError otherwise."""
    checkpoint = read_checkpoint_of(path, identity, device)
    check_resume_state(checkpoint, path, **run)
    return checkpoint


def check_resume_state(
    checkpoint: dict[str, Any], path: Path, *, epochs: int, n_train: int, batch_size: int, keep: float,
    prune_epoch: int | None, rng_templates: dict[str, torch.Tensor],
) -> None:
    """Raise ValueError naming the first value of `checkpoint` (a resume.pt of this run) that no run can have left."""
    state = checkpoint["state"]

    def refuse(key: str, problem: str) -> None:
        raise ValueError(f"{path}: damaged resume state: {key} {problem}; it was left untouched. Delete it to start "
                         "this run from scratch")

    epoch = state["epoch"]
    if not 1 <= epoch <= epochs:
        refuse("state.epoch", f"is {epoch}, expected an epoch in [1, {epochs}] (a resume.pt is written after one)")
    _check_history(state["history"], epoch, refuse)
    most_steps = epochs * -(-n_train // batch_size)
    if not 0 <= state["step"] <= most_steps:
        refuse("state.step", f"is {state['step']}, expected in [0, {most_steps}]")
    for key in SECONDS:
        if not (math.isfinite(state[key]) and state[key] >= 0):
            refuse(f"state.{key}", f"is {state[key]}, expected a finite number >= 0")
    resumed = state["resumed_at_epochs"]
    if not all(isinstance(e, int) and not isinstance(e, bool) and 1 <= e <= epoch for e in resumed):
        refuse("state.resumed_at_epochs", f"is {resumed!r:.60}, expected epochs in [1, {epoch}]")
    _check_pruning(state, epoch, n_train, keep, prune_epoch, refuse)
    for name, template in rng_templates.items():
        saved = checkpoint["rng"][name]
        if saved.dtype != template.dtype or saved.shape != template.shape:
            refuse(f"rng.{name}", f"is a {saved.dtype} tensor of shape {tuple(saved.shape)}, expected "
                   f"{template.dtype} of shape {tuple(template.shape)}")


def _check_history(history: list, epoch: int, refuse) -> None:
    if len(history) != epoch:
        refuse("state.history", f"has {len(history)} epochs, expected {epoch} (state.epoch)")
    for index, record in enumerate(history):
        if not isinstance(record, dict) or record.get("epoch") != index + 1:
            refuse(f"state.history[{index}]", f"is {record!r:.60}, expected the record of epoch {index + 1}")
        for key in HISTORY_NUMBERS:
            value = record.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                refuse(f"state.history[{index}].{key}", f"is {value!r:.60}, expected a finite number")


def _check_pruning(state: dict, epoch: int, n_train: int, keep: float, prune_epoch: int | None, refuse) -> None:
    """kept (and scores) exist exactly when the run has pruned: from the epoch after prune_epoch on."""
    pruned = prune_epoch is not None and epoch > prune_epoch
    kept, scores = state["kept"], state["scores"]
    if not pruned:
        for key, value in (("kept", kept), ("scores", scores)):
            if value is not None:
                refuse(f"state.{key}", f"is set, but the run has not pruned yet (epoch {epoch})")
        return
    if kept is None or scores is None:
        refuse("state.kept" if kept is None else "state.scores", f"is missing, but the run pruned after epoch "
               f"{prune_epoch}")
    expected = n_kept(n_train, keep)
    if kept.ndim != 1 or kept.is_floating_point() or kept.dtype == torch.bool or len(kept) != expected:
        refuse("state.kept", f"is a {kept.dtype} tensor of shape {tuple(kept.shape)}, expected {expected} indices")
    if len(kept) and (int(kept.min()) < 0 or int(kept.max()) >= n_train or not bool((kept[1:] > kept[:-1]).all())):
        refuse("state.kept", f"holds indices outside [0, {n_train}) or not sorted and distinct")
    if scores.ndim != 1 or not scores.is_floating_point() or len(scores) != n_train:
        refuse("state.scores", f"is a {scores.dtype} tensor of shape {tuple(scores.shape)}, expected {n_train} "
               "floats")
