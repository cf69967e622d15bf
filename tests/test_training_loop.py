"""The training loop in-process on a tiny run (40 random 8x8 images, digits-mnist's recipe, batches of 16): fast
enough for the fast lane, where tests/test_training.py's weight- and resume-checking runs are all slow.

- Every weight update against a reference loop written out here as Wong et al.'s `MNIST/train_mnist.py` writes it
  (RS-FGSM, then zero_grad, backward, step), drawing from a generator with the same seed.
- A run stopped after its first epoch's checkpoint and resumed in a fresh Trainer ends where an uninterrupted run ends.
- A resume state written under other settings or another dataset file is refused, even for the same run name.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from advprune import settings, training
from advprune.checkpoint import RESUME_KEYS, RunState
from advprune.identity import ModelKey
from advprune.resume_state import ForeignCheckpoint
from advprune.training import Trainer

DATASET = "digits-mnist"
CPU = torch.device("cpu")
SEED = 0
N_TRAIN, BATCH, EPOCHS = 40, 16, 2  # 3 updates an epoch, the last on a short batch of 8
SHA256 = "0" * 64
# Size-only overrides: the optimiser, schedule, eps and alpha under test stay digits-mnist's own.
SMALL = [f"batch_size={BATCH}", f"epochs={EPOCHS}", "monitor.n_points=8", "monitor.pgd_steps=1"]


def _data() -> tuple[np.ndarray, np.ndarray]:
    """Canonical layout (uint8 [N, 8, 8, 1]), pixels over the whole range so that RS-FGSM's clipping matters."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(N_TRAIN, 8, 8, 1), dtype=np.uint8), np.arange(N_TRAIN) % 10


def _trainer(out: Path, overrides: tuple[str, ...] = (), dataset_sha256: str = SHA256) -> Trainer:
    resolved = settings.resolve(DATASET, overrides=[*SMALL, *overrides])
    key = ModelKey.from_settings(DATASET, "random", 1.0, None, SEED, resolved)
    x, y = _data()
    return Trainer(key, resolved, x, y, out_dir=out, device=CPU, dataset_sha256=dataset_sha256, show_progress=False)


class _Stopped(Exception):
    """Raised in place of a kill, right after the first epoch's resume.pt is written."""


def _stopped_after_first_epoch(out: Path, monkeypatch: pytest.MonkeyPatch) -> Trainer:
    trainer = _trainer(out)
    save = training.save_checkpoint

    def save_then_stop(path: Any, payload: dict[str, Any]) -> None:
        save(path, payload)
        raise _Stopped

    with monkeypatch.context() as patch:
        patch.setattr(training, "save_checkpoint", save_then_stop)
        with pytest.raises(_Stopped):
            trainer.fit()
    assert (out / "resume.pt").exists() and trainer.state.epoch == 1
    return trainer


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs"


def _reference_lr(epoch: int, i: int, batches: int, lr_max: float) -> float:
    """`MNIST/train_mnist.py`: np.interp(epoch + (i + 1) / len(loader), [0, 2/5 E, E], [0, lr_max, 0]) before update i
    (SPEC's "piecewise linear 0 -> 5e-3 at 2/5 of training -> 0")."""
    return float(np.interp(epoch + (i + 1) / batches, [0, EPOCHS * 2 / 5, EPOCHS], [0, lr_max, 0]))


def test_every_update_equals_a_hand_written_rs_fgsm_loop(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path / "run")
    s = trainer.settings
    assert (s["optimizer"], s["weight_decay"], s["clip_random_start"], s["crop_padding"], s["horizontal_flip"]) == (
        "adam", 0.0, False, 0, False)  # the recipe the reference below writes out
    model = copy.deepcopy(trainer.model)  # the initial weights; the loop below is the reference's, not the Trainer's
    trainer.fit()

    x_all, y_all = _data()
    images = torch.from_numpy(x_all).permute(0, 3, 1, 2).float() / 255
    labels = torch.from_numpy(y_all).long()
    eps, alpha = s["eps"], s["alpha"]
    generator = torch.Generator().manual_seed(SEED)  # one stream: the shuffle, then each batch's random start
    optimizer = torch.optim.Adam(model.parameters(), lr=0.0)
    model.train()
    losses, correct = [], []
    for epoch in range(EPOCHS):
        batches = torch.randperm(N_TRAIN, generator=generator).split(BATCH)
        for i, index in enumerate(batches):
            x, y = images[index], labels[index]
            for group in optimizer.param_groups:
                group["lr"] = _reference_lr(epoch, i, len(batches), s["lr_max"])
            # RS-FGSM: delta ~ U(-eps, eps) (not clipped into the image on MNIST), one signed step of alpha, back into
            # the eps-ball and the image box.
            delta = ((torch.rand(x.shape, generator=generator) * 2 - 1) * eps).requires_grad_(True)
            F.cross_entropy(model(x + delta), y).backward()
            delta = (delta.detach() + alpha * delta.grad.sign()).clamp(-eps, eps)
            delta = torch.max(torch.min(delta, 1 - x), -x)
            output = model(x + delta)
            loss = F.cross_entropy(output, y)
            optimizer.zero_grad()  # also clears what the attack's backward left in the weights' gradients
            loss.backward()
            optimizer.step()
            losses.append(loss.item() * len(y))
            correct.append((output.argmax(dim=1) == y).sum().item())
    assert len(losses) == EPOCHS * 3 == trainer.state.step
    ours = trainer.model.state_dict()
    for name, value in model.state_dict().items():
        # Equal but for rounding (the learning rate is computed another way here).
        torch.testing.assert_close(ours[name], value, rtol=1e-5, atol=1e-7, msg=f"{name} differs")
    # The history's last epoch: its loss and accuracy at the perturbed points, before each update.
    last = trainer.state.history[-1]
    assert (last["epoch"], last["n_points"]) == (EPOCHS, N_TRAIN)
    assert last["train_loss"] == pytest.approx(sum(losses[3:]) / N_TRAIN, rel=1e-5)
    assert last["train_acc"] == sum(correct[3:]) / N_TRAIN


def test_a_run_resumed_after_its_first_epoch_ends_where_an_uninterrupted_run_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uninterrupted = _trainer(tmp_path / "uninterrupted")
    uninterrupted.fit()
    _stopped_after_first_epoch(tmp_path / "stopped", monkeypatch)

    resumed = _trainer(tmp_path / "stopped")  # a fresh process would start the same way
    assert resumed.try_resume()
    assert resumed.state.epoch == 1
    summary = resumed.fit()

    # The shuffle and random starts of epoch 2 come from the restored generator: same stream, same weights.
    assert torch.equal(resumed.generator.get_state(), uninterrupted.generator.get_state())
    _assert_same_weights(resumed.model.state_dict(), uninterrupted.model.state_dict())
    without_seconds = lambda history: [{k: v for k, v in r.items() if k != "seconds"} for r in history]  # noqa: E731
    assert without_seconds(summary["history"]) == without_seconds(uninterrupted.state.history)
    assert summary["resumed_at_epochs"] == [1]


@pytest.mark.parametrize(
    ("overrides", "dataset_sha256"),
    [(("lr_max=0.004",), SHA256), (("eps=0.1",), SHA256), ((), "1" * 64)],
    ids=["lr_max", "eps", "dataset_sha256"],
)
def test_a_resume_state_of_the_same_run_name_but_other_settings_or_data_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overrides: tuple[str, ...], dataset_sha256: str
) -> None:
    out = tmp_path / "run"
    _stopped_after_first_epoch(out, monkeypatch)
    saved = (out / "resume.pt").read_bytes()

    other = _trainer(out, overrides, dataset_sha256)
    assert other.key == _trainer(tmp_path / "unused").key  # the same run name: only settings or data differ
    with pytest.raises(ForeignCheckpoint, match="different run or settings"):
        other.try_resume()
    assert (out / "resume.pt").read_bytes() == saved, "left untouched"
    assert _trainer(out).try_resume(), "the run's own settings resume it"


def test_run_state_round_trips_through_a_checkpoint_with_the_keys_it_always_had() -> None:
    """Tensors in the checkpoint, numpy while training; `forked_from` is written by forks only, so the resume.pt of a
    run from scratch holds exactly the keys that runs trained before prefixes hold."""
    state = RunState(epoch=2, step=6, history=[{"epoch": 1}, {"epoch": 2}], kept=np.array([0, 3], dtype=np.int64),
                     scores=np.zeros(4, dtype=np.float32), resumed_at_epochs=[1])
    saved = state.to_checkpoint()
    assert list(saved) == list(RESUME_KEYS["state"]) and isinstance(saved["kept"], torch.Tensor)
    back = RunState.from_checkpoint(saved)
    assert back.kept.dtype == np.int64 and back.scores.dtype == np.float32 and back.history == state.history
    fork = RunState(forked_from={"prefix": "prefix.pt", "epoch": 1, "weights_sha256": "0" * 64})
    assert list(fork.to_checkpoint())[-1] == "forked_from"
    assert RunState.from_checkpoint(fork.to_checkpoint()).forked_from == fork.forked_from
