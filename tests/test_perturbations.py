"""RS-FGSM and PGD (`advprune.perturbations`) and the scoring pass built on them (`advprune.scoring`)."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advprune import perturbations
from advprune.models import build_model
from advprune.perturbations import pgd_correct, project, rs_fgsm_delta, uniform_start
from advprune.scoring import score_points




def _images(n: int = 64, seed: int = 0) -> torch.Tensor:
    """Random [n,1,8,8] images in [0,1], with a good share of pixels exactly at 0 and at 1 (digits have many)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g)
    u = torch.rand(n, 1, 8, 8, generator=g)
    x[u < 0.3] = 0.0
    x[u > 0.8] = 1.0
    return x


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("digits_net", in_channels=1, num_classes=10, image_size=8)


def _labels(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(seed + 1))


# -- RS-FGSM ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("clip_random_start", [False, True])
@pytest.mark.parametrize(("eps", "alpha"), [(0.3, 0.375), (8 / 255, 10 / 255), (0.1, 0.125)])
def test_rs_fgsm_delta_stays_in_the_ball_and_the_image_box(clip_random_start: bool, eps: float, alpha: float) -> None:
    x = _images()
    y = _labels(len(x))
    delta = rs_fgsm_delta(
        _model(), x, y, eps=eps, alpha=alpha, clip_random_start=clip_random_start,
        generator=torch.Generator().manual_seed(0),
    )
    assert delta.shape == x.shape
    assert not delta.requires_grad
    assert delta.abs().max().item() <= eps + 1e-7
    assert (x + delta).min().item() >= 0.0
    assert (x + delta).max().item() <= 1.0
    # The perturbation is not trivial: most coordinates sit at the ball's edge (alpha > eps) or move.
    assert (delta != 0).float().mean().item() > 0.3


def test_uniform_start_without_clipping_leaves_the_image_box() -> None:
    """The MNIST reference: delta ~ U(-eps, eps), NOT clipped so that x + delta is an image."""
    x = torch.zeros(4, 1, 8, 8)
    delta = uniform_start(x, 0.3, torch.Generator().manual_seed(0), clip_to_image=False)
    assert (delta < 0).any(), "at x = 0 an unclipped start must go below the image box"
    assert delta.abs().max().item() <= 0.3
    assert delta.min().item() < -0.2 and delta.max().item() > 0.2  # spans the whole ball
    ones = torch.ones(4, 1, 8, 8)
    assert (uniform_start(ones, 0.3, torch.Generator().manual_seed(0), clip_to_image=False) > 0).any()


def test_uniform_start_with_clipping_stays_in_the_image_box() -> None:
    """The CIFAR-10 reference: the random start is clipped so x + delta is in [0, 1]."""
    x = _images()
    delta = uniform_start(x, 0.3, torch.Generator().manual_seed(0), clip_to_image=True)
    assert (x + delta).min().item() >= 0.0 and (x + delta).max().item() <= 1.0
    assert delta.abs().max().item() <= 0.3
    zeros = torch.zeros(4, 1, 8, 8)
    assert (uniform_start(zeros, 0.3, torch.Generator().manual_seed(0), clip_to_image=True) >= 0).all()
    # Inside the box, far from its edges, clipping changes nothing: the same draw as the unclipped start.
    middle = torch.full((4, 1, 8, 8), 0.5)
    torch.testing.assert_close(
        uniform_start(middle, 0.3, torch.Generator().manual_seed(5), clip_to_image=True),
        uniform_start(middle, 0.3, torch.Generator().manual_seed(5), clip_to_image=False),
        rtol=0, atol=0,
    )


def test_uniform_start_is_deterministic_for_a_generator_seed() -> None:
    x = _images()
    a = uniform_start(x, 0.1, torch.Generator().manual_seed(7), clip_to_image=False)
    b = uniform_start(x, 0.1, torch.Generator().manual_seed(7), clip_to_image=False)
    c = uniform_start(x, 0.1, torch.Generator().manual_seed(8), clip_to_image=False)
    assert torch.equal(a, b) and not torch.equal(a, c)


def _input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    delta = delta.clone().requires_grad_(True)
    F.cross_entropy(model(x + delta), y).backward()
    return delta.grad


@pytest.mark.parametrize("clip_random_start", [False, True])
def test_rs_fgsm_is_one_signed_step_of_size_alpha_from_the_random_start(
    monkeypatch: pytest.MonkeyPatch, clip_random_start: bool
) -> None:
    """Before projection, delta = start + alpha * sign(grad at the start): a step from the start, not from 0."""
    model = _model()
    x = torch.full((16, 1, 8, 8), 0.5)
    y = _labels(16)
    eps, alpha = 1000.0, 0.125  # a huge ball: only the projection (disabled here) could bind
    start = uniform_start(x, eps, torch.Generator().manual_seed(3), clip_random_start)
    grad = _input_gradient(model, x, y, start)
    assert (grad != 0).all(), "the check needs a gradient with a sign in every coordinate"

    monkeypatch.setattr(perturbations, "project", lambda delta, x, eps: delta)
    delta = rs_fgsm_delta(
        model, x, y, eps=eps, alpha=alpha, clip_random_start=clip_random_start,
        generator=torch.Generator().manual_seed(3),
    )
    torch.testing.assert_close((delta - start).abs(), torch.full_like(x, alpha), rtol=0, atol=1e-5)
    torch.testing.assert_close(delta - start, alpha * grad.sign(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("clip_random_start", [False, True])
def test_rs_fgsm_equals_the_reference_computation(clip_random_start: bool) -> None:
    """start; one signed step of size alpha; clip to [-eps, eps]; clip so x + delta is in [0, 1] (in that order)."""
    model = _model(1)
    x, y = _images(32, seed=1), _labels(32, seed=1)
    eps, alpha = 0.3, 0.375
    start = uniform_start(x, eps, torch.Generator().manual_seed(11), clip_random_start)
    grad = _input_gradient(model, x, y, start)
    expected = torch.clamp(start + alpha * grad.sign(), -eps, eps)
    expected = torch.max(torch.min(1 - x, expected), -x)
    delta = rs_fgsm_delta(
        model, x, y, eps=eps, alpha=alpha, clip_random_start=clip_random_start,
        generator=torch.Generator().manual_seed(11),
    )
    torch.testing.assert_close(delta, expected, rtol=0, atol=0)


def test_rs_fgsm_raises_the_loss() -> None:
    model = _model(2)
    x, y = _images(256, seed=2), _labels(256, seed=2)
    delta = rs_fgsm_delta(model, x, y, eps=0.3, alpha=0.375, clip_random_start=False,
                          generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert F.cross_entropy(model(x + delta), y) > F.cross_entropy(model(x), y)


def test_rs_fgsm_leaves_parameter_gradients_alone() -> None:
    model = _model()
    x, y = _images(8), _labels(8)
    rs_fgsm_delta(model, x, y, eps=0.1, alpha=0.125, clip_random_start=False, generator=torch.Generator().manual_seed(0))
    assert all(p.grad is None for p in model.parameters())


def test_rs_fgsm_leaves_the_model_mode_to_the_caller() -> None:
    model = _model()
    x, y = _images(8), _labels(8)
    for mode in (True, False):
        model.train(mode)
        rs_fgsm_delta(model, x, y, eps=0.1, alpha=0.125, clip_random_start=True,
                      generator=torch.Generator().manual_seed(0))
        assert model.training is mode


def test_project_clips_to_the_ball_then_the_box() -> None:
    x = torch.tensor([0.0, 0.0, 1.0, 0.5, 0.95])
    delta = torch.tensor([-0.2, 0.5, 0.05, -0.05, 0.2])
    torch.testing.assert_close(project(delta, x, 0.1), torch.tensor([0.0, 0.1, 0.0, -0.05, 0.05]), rtol=0, atol=1e-7)


# -- PGD --------------------------------------------------------------------------------------------------------------
class ConstantLogits(nn.Module):
    """Robust by construction: the logits do not depend on the input and favour class 0."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([2.0, 0.0, -1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(len(x), -1) + 0.0 * x.flatten(1).sum(dim=1, keepdim=True)


def _fragile_linear() -> nn.Module:
    """Correct on clean x = 0.5 with a margin of 0.05, but an L-inf move of 0.1 on 16 pixels shifts the margin by 3.2."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([torch.ones(16), -torch.ones(16)]))
        model[1].bias.copy_(torch.tensor([-8.0 + 0.05, 8.0]))  # logits at x = 0.5: [0.05, 0.0]
    return model


def _pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
    return pgd_correct(model, x, y, eps=eps, step_size=eps / 4, steps=10, restarts=1,
                       generator=torch.Generator().manual_seed(0))


def test_pgd_leaves_a_robust_model_correct() -> None:
    x = torch.rand(20, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(20, dtype=torch.long)
    correct = _pgd(ConstantLogits(), x, y, eps=0.3)
    assert correct.dtype == torch.bool and correct.shape == (20,)
    assert correct.all()


def test_pgd_breaks_an_undefended_model() -> None:
    model = _fragile_linear()
    x = torch.full((20, 1, 4, 4), 0.5)
    y = torch.zeros(20, dtype=torch.long)
    assert (model(x).argmax(dim=1) == y).all(), "clean inputs are classified correctly"
    assert not _pgd(model, x, y).any()
    # At a radius too small to cover the margin (16 * eps * 2 < 0.05), nothing is broken.
    assert _pgd(model, x, y, eps=0.001).all()


def test_pgd_counts_misclassified_points_as_incorrect() -> None:
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    assert _pgd(ConstantLogits(), x, y, eps=0.3).tolist() == [True, False, False, True, False, False]


class OneSidedTrap(nn.Module):
    """Class 0 unless pixel 0 moves more than 0.2 up from 0.5; the loss rises as that pixel moves away from 0.5 on
    either side, but only upwards enough to flip the class. So PGD at eps 0.3 breaks a point exactly when its random
    start puts pixel 0 above 0.5 (probability 1/2), and each restart is a fresh coin: a point survives k restarts
    with probability 2^-k, whatever PGD's implementation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.flatten(1)[:, 0] - 0.5
        wrong = 5 * F.relu(t) + F.relu(-t)  # 1.5 at t = 0.3 (broken), 0.3 at t = -0.3 (still class 0)
        return torch.stack([torch.ones_like(t), wrong], dim=1)


@pytest.mark.parametrize("restarts", [1, 2, 3])
def test_pgd_survival_falls_by_half_with_each_restart(restarts: int) -> None:
    n = 4000
    x = torch.full((n, 1, 2, 2), 0.5)
    y = torch.zeros(n, dtype=torch.long)
    correct = pgd_correct(OneSidedTrap(), x, y, eps=0.3, step_size=0.075, steps=10, restarts=restarts,
                          generator=torch.Generator().manual_seed(restarts))
    expected = 0.5**restarts
    assert abs(correct.float().mean().item() - expected) < 4 * (expected * (1 - expected) / n) ** 0.5


# -- scoring ----------------------------------------------------------------------------------------------------------
def _linear_two_class(seed: int = 0) -> nn.Module:
    """logits (w.x, -w.x): for label 0 the loss rises along -sign(w), for label 1 along +sign(w), everywhere."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2, bias=False))
    w = torch.randn(64, generator=torch.Generator().manual_seed(seed))
    w = w.sign() * (0.05 + w.abs() / 10)  # no zero weight: every pixel has a gradient sign
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([w, -w]))
    return model


@pytest.mark.parametrize("batch_size", [7, 1000])
def test_score_points_is_the_loss_at_the_worst_case_corner(batch_size: int) -> None:
    """An independent oracle: with alpha >= 2 eps one signed step from any start in the ball ends past the ball's
    edge in the gradient's direction, so RS-FGSM's delta is eps * sign(gradient), clipped to the image box, whatever
    the random start. For a linear model that sign is known in closed form, and the loss there by hand."""
    model = _linear_two_class(4)
    model.train()
    images = (_images(20, seed=4) * 255).round().to(torch.uint8)
    labels = torch.randint(0, 2, (20,), generator=torch.Generator().manual_seed(5))
    eps = 0.1
    scores = score_points(
        model, images, labels, eps=eps, alpha=2.5 * eps, clip_random_start=False, batch_size=batch_size,
        generator=torch.Generator().manual_seed(0), autocast=contextlib.nullcontext(),
    )
    assert model.training, "scoring restores the caller's mode"
    assert scores.shape == (20,) and scores.dtype == torch.float32
    assert all(p.grad is None for p in model.parameters())
    w = model[1].weight[0].detach().reshape(1, 1, 8, 8)
    x = images.float() / 255
    direction = torch.where(labels == 0, -1.0, 1.0).reshape(-1, 1, 1, 1) * w.sign()
    worst = (x + eps * direction).clamp(0, 1)
    margin = (worst * w).flatten(1).sum(dim=1)  # logits (margin, -margin)
    expected = F.softplus(torch.where(labels == 0, -2 * margin, 2 * margin))  # cross-entropy of two logits
    torch.testing.assert_close(scores, expected, rtol=0, atol=1e-5)


def test_score_points_draws_its_random_start_from_the_generator() -> None:
    """With alpha < eps the random start shows in the scores: the same generator seed gives the same scores, and
    another seed other scores."""
    model = _model(4).eval()
    images = (_images(20, seed=4) * 255).round().to(torch.uint8)
    labels = _labels(20, seed=4)

    def scores(seed: int) -> torch.Tensor:
        return score_points(model, images, labels, eps=0.1, alpha=0.05, clip_random_start=True, batch_size=7,
                            generator=torch.Generator().manual_seed(seed), autocast=contextlib.nullcontext())

    assert torch.equal(scores(0), scores(0))
    assert not torch.equal(scores(0), scores(1))
    assert torch.isfinite(scores(0)).all() and (scores(0) >= 0).all()


def test_score_points_scores_a_batch_norm_model_in_eval_mode() -> None:
    """SPEC: scores in eval mode. A BatchNorm model handed over in train mode keeps its running statistics (train mode
    would update them on every forward pass) and scores as the same model in eval mode (batch statistics differ)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    with torch.no_grad():  # running statistics unlike any batch's, so that the two modes score differently
        model[2].running_mean.fill_(0.5)
        model[2].running_var.fill_(4.0)
    in_eval_mode = copy.deepcopy(model).eval()
    before = copy.deepcopy(model.state_dict())
    images = (_images(20, seed=6) * 255).round().to(torch.uint8)
    labels = _labels(20, seed=6)

    def scores(scored: nn.Module) -> torch.Tensor:
        return score_points(scored, images, labels, eps=0.1, alpha=0.125, clip_random_start=True, batch_size=7,
                            generator=torch.Generator().manual_seed(0), autocast=contextlib.nullcontext())

    model.train()
    ours = scores(model)
    assert model.training, "scoring restores the caller's mode"
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), f"scoring changed {name}"
    torch.testing.assert_close(ours, scores(in_eval_mode), rtol=0, atol=0)
