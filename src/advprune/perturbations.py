"""RS-FGSM (Wong et al. 2020) and PGD in [0,1] pixel space, shared by training, scoring and monitoring."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def uniform_start(x: torch.Tensor, eps: float, generator: torch.Generator, clip_to_image: bool) -> torch.Tensor:
    """delta ~ U(-eps, eps); optionally clipped so x + delta stays in [0,1] (the CIFAR-10 reference does, MNIST not)."""
    delta = (torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1) * eps
    if clip_to_image:
        delta = torch.clamp(delta, -x, 1 - x)
    return delta


def project(delta: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Back into the eps-ball, then so that x + delta is an image again (the reference's order)."""
    delta = torch.clamp(delta, -eps, eps)
    return torch.clamp(delta, -x, 1 - x)


def rs_fgsm_delta(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    alpha: float,
    clip_random_start: bool,
    generator: torch.Generator,
) -> torch.Tensor:
    """One random start, one signed gradient step of size alpha, projection. Returns a detached delta.

    The gradient is taken with respect to delta only, so parameter gradients are untouched (the reference zeroes
    them before the weight update; the result is the same). The model's mode is left to the caller: training runs
    this in train mode, as the reference does, and scoring in eval mode.
    """
    delta = uniform_start(x, eps, generator, clip_random_start).requires_grad_(True)
    loss = F.cross_entropy(model(x + delta), y)
    (grad,) = torch.autograd.grad(loss, delta)
    return project(delta.detach() + alpha * grad.sign(), x, eps)


def rs_fgsm_example(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **options: object) -> torch.Tensor:
    """The training input of RS-FGSM: x + rs_fgsm_delta (options: eps, alpha, clip_random_start, generator)."""
    return x + rs_fgsm_delta(model, x, y, **options)  # type: ignore[arg-type]


def clean_example(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **options: object) -> torch.Tensor:
    """Standard training's input: x itself (no random draw, so the generator's stream is untouched)."""
    return x


# settings `training_attack` -> the input the weight update is computed on; a new attack is one function here.
TRAINING_ATTACKS = {"rs-fgsm": rs_fgsm_example, "none": clean_example}


def pgd_correct(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    restarts: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Boolean per point: still correctly classified after every restart of L-inf PGD with a random start."""
    correct = torch.ones_like(y, dtype=torch.bool)
    for _ in range(restarts):
        delta = uniform_start(x, eps, generator, clip_to_image=True)
        for _ in range(steps):
            delta.requires_grad_(True)
            loss = F.cross_entropy(model(x + delta), y)
            (grad,) = torch.autograd.grad(loss, delta)
            delta = project(delta.detach() + step_size * grad.sign(), x, eps)
        with torch.no_grad():
            correct &= model(x + delta).argmax(dim=1) == y
    return correct
