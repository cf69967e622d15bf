"""Model registry. Every model takes images in [0, 1] (NCHW) and normalises inside, so attacks see pixel space."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class Normalize(nn.Module):
    """Per-channel (x - mean) / std as the first layer; the identity when no statistics are given."""

    def __init__(self, mean: Sequence[float] | None, std: Sequence[float] | None):
        super().__init__()
        if mean is None:
            mean, std = [0.0], [1.0]
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _two_conv_net(
    in_channels: int, num_classes: int, image_size: int, normalization: dict | None, *, first_kernel: int,
    first_stride: int,
) -> nn.Module:
    """conv(16) ReLU conv(32,k4,s2,p1) ReLU FC(100) ReLU FC: Wong et al.'s MNIST net, parametrised by its first layer."""
    side = image_size // (2 * first_stride)
    return nn.Sequential(
        _normalize(normalization),
        nn.Conv2d(in_channels, 16, first_kernel, stride=first_stride, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * side * side, 100),
        nn.ReLU(),
        nn.Linear(100, num_classes),
    )


def mnist_net(in_channels: int, num_classes: int, image_size: int, normalization: dict | None) -> nn.Module:
    """Wong et al.'s MNIST net: conv(16,k4,s2,p1) ReLU conv(32,k4,s2,p1) ReLU FC(100) ReLU FC."""
    return _two_conv_net(in_channels, num_classes, image_size, normalization, first_kernel=4, first_stride=2)


def digits_net(in_channels: int, num_classes: int, image_size: int, normalization: dict | None) -> nn.Module:
    """The MNIST net's shape with a stride-1 first layer (8x8 is too small to halve twice)."""
    return _two_conv_net(in_channels, num_classes, image_size, normalization, first_kernel=3, first_stride=1)


def digits_mlp(in_channels: int, num_classes: int, image_size: int, normalization: dict | None) -> nn.Module:
    """The demo's model: a two-hidden-layer perceptron. On the CPU, standard AutoAttack's thousands of small forward
    and backward passes cost a fraction of what they cost through convolutions, which is what sizes the demo."""
    return nn.Sequential(
        _normalize(normalization),
        nn.Flatten(),
        nn.Linear(in_channels * image_size * image_size, 256),
        nn.ReLU(),
        nn.Linear(256, 256),
        nn.ReLU(),
        nn.Linear(256, num_classes),
    )


class PreActBlock(nn.Module):
    """Wong et al.'s `CIFAR10/preact_resnet.py` block: the 1x1 projection shortcut takes the block's raw input `x`
    (kuangliu's variant feeds it relu(bn1(x)) instead). Module names follow the reference, so its state dict loads."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(x) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """PreAct-ResNet18 as in Wong et al.'s `CIFAR10/preact_resnet.py` (same layers and parameter names), with the
    input normalisation moved inside (`normalize`, buffers only) so attacks see [0, 1] pixels."""

    def __init__(self, in_channels: int, num_classes: int, normalization: dict | None):
        super().__init__()
        self.normalize = _normalize(normalization)
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.layer1 = self._layer(64, 64, stride=1)
        self.layer2 = self._layer(64, 128, stride=2)
        self.layer3 = self._layer(128, 256, stride=2)
        self.layer4 = self._layer(256, 512, stride=2)
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, num_classes)

    @staticmethod
    def _layer(in_planes: int, planes: int, stride: int) -> nn.Sequential:
        return nn.Sequential(PreActBlock(in_planes, planes, stride), PreActBlock(planes, planes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.normalize(x))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.relu(self.bn(out))
        # The reference's avg_pool2d(out, 4) on its 4x4 map; adaptive pooling is the same there.
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def preact_resnet18(in_channels: int, num_classes: int, image_size: int, normalization: dict | None) -> nn.Module:
    return PreActResNet18(in_channels, num_classes, normalization)


def _normalize(normalization: dict | None) -> Normalize:
    if normalization is None:
        return Normalize(None, None)
    return Normalize(normalization["mean"], normalization["std"])


ModelBuilder = Callable[[int, int, int, "dict | None"], nn.Module]

# A new model joins with one builder function and one entry here.
MODELS: dict[str, ModelBuilder] = {
    "mnist_net": mnist_net,
    "digits_net": digits_net,
    "digits_mlp": digits_mlp,
    "preact_resnet18": preact_resnet18,
}


def build_model(
    name: str, *, in_channels: int, num_classes: int, image_size: int, normalization: dict | None = None
) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name](in_channels, num_classes, image_size, normalization)
