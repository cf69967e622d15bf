"""The method against Wong et al.'s reference (locuslab/fast_adversarial), checked with oracles from the libraries
themselves, not with copies of this project's code:

- the learning rate and SGD momentum of every update of the real training loop against `torch.optim.lr_scheduler.
  CyclicLR` built with `CIFAR10/train_fgsm.py`'s arguments, and against `np.interp` as `MNIST/train_mnist.py` calls it;
- PreAct-ResNet18 against the layer definitions of `CIFAR10/preact_resnet.py` (state-dict keys and shapes, parameter
  count, and what the projection shortcut is applied to).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from advprune import settings
from advprune.models import build_model
from advprune.identity import ModelKey
from advprune.training import Trainer


N_TRAIN, BATCH = 64, 16  # 4 updates per full-data epoch
# Size-only overrides: the schedule, optimiser and momentum settings under test stay the dataset's own.
SMALL = ["model=digits_mlp", f"batch_size={BATCH}", "monitor.n_points=8", "monitor.pgd_steps=1"]


def _updates(
    dataset: str, shape: tuple[int, int, int], tmp_path: Path, *, epochs: int, keep: float = 1.0,
    prune_epoch: int | None = None, schedule: str = "rescale", n_train: int = N_TRAIN,
) -> list[dict[str, float]]:
    """(lr, momentum) of the optimizer's param group at every `optimizer.step()` of a real, tiny training run."""
    resolved = settings.resolve(dataset, overrides=[*SMALL, f"epochs={epochs}", f"schedule_after_pruning={schedule}"])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n_train, *shape), dtype=np.uint8)
    y = np.arange(n_train) % 10
    run = ModelKey.from_settings(dataset, "random", keep, prune_epoch, 0, resolved)
    trainer = Trainer(
        run, resolved, x, y, out_dir=tmp_path, device=torch.device("cpu"), dataset_sha256="0" * 64,
        show_progress=False,
    )
    seen: list[dict[str, float]] = []
    trainer.optimizer.register_step_pre_hook(
        lambda optimizer, args, kwargs: seen.append(dict(optimizer.param_groups[0]))
    )
    trainer.fit()
    return seen


def _cyclic_lr_reference(total_steps: int) -> list[tuple[float, float]]:
    """`CIFAR10/train_fgsm.py`: SGD(lr=0.2, momentum=0.9, weight_decay=5e-4) and CyclicLR(base_lr=0, max_lr=0.2,
    step_size_up=lr_steps / 2, step_size_down=lr_steps / 2) with lr_steps = epochs * len(train_loader), stepped after
    every update; everything else at PyTorch's defaults (cycle_momentum=True, base 0.8, max 0.9)."""
    optimizer = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.2, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CyclicLR(
        optimizer, base_lr=0.0, max_lr=0.2, step_size_up=total_steps / 2, step_size_down=total_steps / 2
    )
    values = []
    for _ in range(total_steps):
        group = optimizer.param_groups[0]
        values.append((group["lr"], group["momentum"]))
        optimizer.step()
        scheduler.step()
    return values


def test_cifar10_lr_and_momentum_equal_cyclic_lr_at_every_update(tmp_path: Path) -> None:
    epochs = 6
    ours = _updates("cifar10", (32, 32, 3), tmp_path, epochs=epochs)
    reference = _cyclic_lr_reference(epochs * N_TRAIN // BATCH)
    assert len(ours) == len(reference) == 24
    assert [u["lr"] for u in ours] == pytest.approx([lr for lr, _ in reference], rel=1e-9, abs=1e-12)
    assert [u["momentum"] for u in ours] == pytest.approx([m for _, m in reference], rel=1e-9)
    assert min(u["momentum"] for u in ours) == pytest.approx(0.8, abs=1e-9)  # at the peak, as CyclicLR has it
    assert ours[0]["lr"] == 0.0 and ours[0]["momentum"] == 0.9


def test_cifar10_fixed_schedule_after_pruning_is_cyclic_lr_sized_for_the_full_data(tmp_path: Path) -> None:
    """`fixed`: the reference's scheduler, sized for full data before training, simply stepped fewer times."""
    epochs, prune_epoch = 6, 2
    ours = _updates("cifar10", (32, 32, 3), tmp_path, epochs=epochs, keep=0.5, prune_epoch=prune_epoch,
                    schedule="fixed")
    taken = prune_epoch * 4 + (epochs - prune_epoch) * 2  # 4 updates per full epoch, 2 after keeping half
    reference = _cyclic_lr_reference(epochs * N_TRAIN // BATCH)[:taken]
    assert len(ours) == taken
    assert [u["lr"] for u in ours] == pytest.approx([lr for lr, _ in reference], rel=1e-9, abs=1e-12)
    assert [u["momentum"] for u in ours] == pytest.approx([m for _, m in reference], rel=1e-9)
    assert ours[-1]["lr"] > 0.1  # ends part-way, at a high learning rate


def test_cifar10_fixed_schedule_counts_the_short_last_batch_of_the_full_data(tmp_path: Path) -> None:
    """The reference sizes CyclicLR with `len(train_loader)`, a DataLoader without drop_last: a short last batch is an
    update too. 60 points in batches of 16 are 4 updates an epoch, not 3 (64 points, above, cannot tell)."""
    n_train, epochs, prune_epoch = 60, 6, 2
    full = len(DataLoader(range(n_train), batch_size=BATCH))
    kept = len(DataLoader(range(n_train // 2), batch_size=BATCH))  # keep 0.5 of 60
    assert (full, kept) == (4, 2)
    ours = _updates("cifar10", (32, 32, 3), tmp_path, epochs=epochs, keep=0.5, prune_epoch=prune_epoch,
                    schedule="fixed", n_train=n_train)
    taken = prune_epoch * full + (epochs - prune_epoch) * kept
    reference = _cyclic_lr_reference(epochs * full)[:taken]
    assert len(ours) == taken
    assert [u["lr"] for u in ours] == pytest.approx([lr for lr, _ in reference], rel=1e-9, abs=1e-12)
    assert [u["momentum"] for u in ours] == pytest.approx([m for _, m in reference], rel=1e-9)


def _mnist_reference(epochs: int, batches_per_epoch: list[int], lr_max: float = 5e-3) -> list[float]:
    """`MNIST/train_mnist.py`: lr_schedule = lambda t: np.interp([t], [0, epochs * 2 // 5, epochs], [0, lr_max, 0])[0],
    set before update i of an epoch with t = epoch + (i + 1) / len(train_loader)."""
    schedule = lambda t: np.interp([t], [0, epochs * 2 // 5, epochs], [0, lr_max, 0])[0]  # noqa: E731
    return [schedule(epoch + (i + 1) / n) for epoch, n in enumerate(batches_per_epoch) for i in range(n)]


def test_mnist_lr_equals_the_reference_interp_at_every_update(tmp_path: Path) -> None:
    epochs = 5  # a multiple of 5, so the reference's integer peak epochs * 2 // 5 is 2/5 of training exactly
    ours = _updates("mnist", (28, 28, 1), tmp_path, epochs=epochs)
    reference = _mnist_reference(epochs, [4] * epochs)
    assert [u["lr"] for u in ours] == pytest.approx(reference, rel=1e-9, abs=1e-15)
    assert all("momentum" not in u for u in ours)  # Adam: nothing cycles


def test_mnist_rescaled_schedule_after_pruning_is_the_reference_over_the_kept_loader(tmp_path: Path) -> None:
    """The MNIST reference's schedule is a function of fractional epochs, so over a smaller loader it is `rescale`."""
    epochs, prune_epoch = 5, 2
    ours = _updates("mnist", (28, 28, 1), tmp_path, epochs=epochs, keep=0.5, prune_epoch=prune_epoch)
    reference = _mnist_reference(epochs, [4] * prune_epoch + [2] * (epochs - prune_epoch))
    assert [u["lr"] for u in ours] == pytest.approx(reference, rel=1e-9, abs=1e-15)
    assert ours[-1]["lr"] == pytest.approx(0.0, abs=1e-15)


# -- PreAct-ResNet18 --------------------------------------------------------------------------------------------------
def _reference_state_shapes(num_classes: int = 10) -> dict[str, tuple[int, ...]]:
    """State-dict shapes of `CIFAR10/preact_resnet.py`'s PreActResNet18: conv1 3->64 (3x3); layer1..layer4 of two
    PreActBlocks (64, 128, 256, 512 planes; stride 1, 2, 2, 2 in the first block); each block bn1(in), conv1 3x3,
    bn2, conv2 3x3, and `shortcut = nn.Sequential(nn.Conv2d(in, planes, 1, stride, bias=False))` when the stride or
    width changes; bn(512); linear(512 -> classes)."""
    def bn(prefix: str, n: int) -> dict[str, tuple[int, ...]]:
        return {f"{prefix}.weight": (n,), f"{prefix}.bias": (n,), f"{prefix}.running_mean": (n,),
                f"{prefix}.running_var": (n,), f"{prefix}.num_batches_tracked": ()}

    shapes = {"conv1.weight": (64, 3, 3, 3)}
    in_planes = 64
    for layer, (planes, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
        for block, block_stride in enumerate([stride, 1]):
            prefix = f"layer{layer}.{block}"
            shapes |= bn(f"{prefix}.bn1", in_planes)
            shapes[f"{prefix}.conv1.weight"] = (planes, in_planes, 3, 3)
            shapes |= bn(f"{prefix}.bn2", planes)
            shapes[f"{prefix}.conv2.weight"] = (planes, planes, 3, 3)
            if block_stride != 1 or in_planes != planes:
                shapes[f"{prefix}.shortcut.0.weight"] = (planes, in_planes, 1, 1)
            in_planes = planes
    return shapes | bn("bn", 512) | {"linear.weight": (num_classes, 512), "linear.bias": (num_classes,)}


def _preact() -> nn.Module:
    cifar = settings.resolve("cifar10")
    return build_model("preact_resnet18", in_channels=3, num_classes=10, image_size=32,
                       normalization=cifar["normalization"])


def test_preact_resnet18_has_the_reference_layers_and_parameter_count() -> None:
    model = _preact()
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items() if not key.startswith("normalize.")}
    assert ours == _reference_state_shapes()
    # The reference network's parameter count: the often-quoted 11,171,146 of PreActResNet18 (10 classes) plus the
    # reference's final `bn` (2 x 512).
    assert sum(p.numel() for p in model.parameters()) == 11_171_146 + 1_024
    # The normalisation is buffers only: nothing to train, and CIFAR-10's statistics.
    assert torch.allclose(model.state_dict()["normalize.mean"].flatten(), torch.tensor([0.4914, 0.4822, 0.4465]))


def test_projection_shortcuts_take_the_block_input() -> None:
    """`shortcut = self.shortcut(x)`: the raw input of the block, not relu(bn1(x)) (kuangliu's variant)."""
    model = _preact().eval()
    blocks = {name: module for name, module in model.named_modules() if getattr(module, "shortcut", None) is not None}
    assert sorted(blocks) == ["layer2.0", "layer3.0", "layer4.0"]
    block_inputs, shortcut_inputs = {}, {}
    for name, block in blocks.items():
        block.register_forward_pre_hook(lambda m, args, name=name: block_inputs.__setitem__(name, args[0]))
        block.shortcut.register_forward_pre_hook(lambda m, args, name=name: shortcut_inputs.__setitem__(name, args[0]))
    with torch.no_grad():
        model(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    for name in blocks:
        assert torch.equal(shortcut_inputs[name], block_inputs[name]), f"{name}: shortcut does not take the block input"
        assert (block_inputs[name] < 0).any(), f"{name}: the block input has negative values, a relu output would not"
