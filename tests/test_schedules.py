"""The learning-rate schedule (`advprune.schedules`) and the on-device augmentation (`advprune.augment`)."""

from __future__ import annotations

import math

import pytest
import torch

from advprune.augment import augment, random_crop, random_flip
from advprune.schedules import LR_AT, SCHEDULES, cycled_momentum, piecewise_linear, progress, schedule_scale




# -- piecewise_linear -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("lr_max", "peak"), [(5e-3, 0.4), (0.2, 0.5), (1.0, 0.25)])
def test_piecewise_linear_shape(lr_max: float, peak: float) -> None:
    lr = lambda p: piecewise_linear(p, lr_max=lr_max, peak_fraction=peak)  # noqa: E731
    assert lr(0.0) == 0.0
    assert lr(peak) == pytest.approx(lr_max, rel=1e-12)
    assert lr(1.0) == 0.0
    # Linear on each side: half-way up is half of lr_max, half-way down too.
    assert lr(peak / 2) == pytest.approx(lr_max / 2, rel=1e-12)
    assert lr((peak + 1) / 2) == pytest.approx(lr_max / 2, rel=1e-12)
    for p in (0.1 * peak, 0.33 * peak, 0.9 * peak):
        assert lr(p) == pytest.approx(lr_max * p / peak, rel=1e-12)
    for p in (peak + 0.1 * (1 - peak), peak + 0.7 * (1 - peak)):
        assert lr(p) == pytest.approx(lr_max * (1 - p) / (1 - peak), rel=1e-12)
    # Monotone up to the peak, down after it.
    grid = [i / 1000 for i in range(1001)]
    values = [lr(p) for p in grid]
    up = [v for p, v in zip(grid, values) if p <= peak]
    down = [v for p, v in zip(grid, values) if p >= peak]
    assert up == sorted(up) and down == sorted(down, reverse=True)


def test_piecewise_linear_clamps_progress() -> None:
    assert piecewise_linear(-0.5, lr_max=0.2, peak_fraction=0.5) == 0.0
    assert piecewise_linear(1.5, lr_max=0.2, peak_fraction=0.5) == 0.0


def test_piecewise_linear_matches_the_mnist_reference() -> None:
    """Wong et al.'s MNIST: np.interp(t, [0, epochs * 2 // 5, epochs], [0, lr_max, 0]) with t in fractional epochs."""
    import numpy as np

    epochs, lr_max = 10, 5e-3
    for t in (0.1, 1.0, 2.5, 4.0, 4.3, 7.77, 9.99, 10.0):
        reference = float(np.interp(t, [0, epochs * 2 // 5, epochs], [0, lr_max, 0]))
        assert piecewise_linear(t / epochs, lr_max=lr_max, peak_fraction=0.4) == pytest.approx(reference, abs=1e-15)


# -- progress ---------------------------------------------------------------------------------------------------------
def _walk(
    policy: str, *, epochs: int, full_batches: int, prune_epoch: int | None, kept_batches: int, lr_at: str = "step_end"
) -> list[float]:
    """The progress each update of a run takes its learning rate at, as the training loop calls it."""
    values, step = [], 0
    for epoch in range(epochs):
        batches = kept_batches if prune_epoch is not None and epoch >= prune_epoch else full_batches
        for batch in range(batches):
            values.append(
                progress(policy, lr_at=lr_at, epoch=epoch, batch=batch, batches_in_epoch=batches, step=step,
                         epochs=epochs, full_batches_per_epoch=full_batches)
            )
            step += 1
    return values


def test_policies() -> None:
    assert SCHEDULES == ("rescale", "fixed")
    assert LR_AT == ("step_end", "step_start")


@pytest.mark.parametrize("lr_at", LR_AT)
@pytest.mark.parametrize(("epochs", "batches"), [(10, 15), (15, 391), (3, 1)])
def test_policies_agree_without_pruning(epochs: int, batches: int, lr_at: str) -> None:
    walk = lambda policy: _walk(  # noqa: E731
        policy, epochs=epochs, full_batches=batches, prune_epoch=None, kept_batches=batches, lr_at=lr_at
    )
    rescale, fixed = walk("rescale"), walk("fixed")
    assert len(rescale) == epochs * batches
    assert rescale == pytest.approx(fixed, rel=1e-12, abs=1e-15)
    assert rescale == sorted(rescale)
    if lr_at == "step_end":  # the MNIST reference: the first update already climbs, the last reaches the end
        assert rescale[0] > 0 and rescale[-1] == 1.0 and fixed[-1] == 1.0
    else:  # CyclicLR: the first update uses lr(0) = 0, the last lr((N - 1) / N)
        assert rescale[0] == 0 and fixed[-1] == pytest.approx(1 - 1 / (epochs * batches), rel=1e-12)


def test_step_start_is_one_update_behind_step_end() -> None:
    end = _walk("fixed", epochs=15, full_batches=7, prune_epoch=3, kept_batches=3, lr_at="step_end")
    start = _walk("fixed", epochs=15, full_batches=7, prune_epoch=3, kept_batches=3, lr_at="step_start")
    assert start[0] == 0.0 and start[1:] == pytest.approx(end[:-1], rel=1e-12)


def test_momentum_cycles_opposite_to_the_learning_rate() -> None:
    assert cycled_momentum(0.0, at_ends=0.9, at_peak=0.8) == 0.9
    assert cycled_momentum(1.0, at_ends=0.9, at_peak=0.8) == pytest.approx(0.8, rel=1e-12)
    assert cycled_momentum(0.5, at_ends=0.9, at_peak=0.8) == pytest.approx(0.85, rel=1e-12)
    assert cycled_momentum(0.7, at_ends=0.9, at_peak=None) == 0.9  # no cycling: constant
    assert schedule_scale(0.25, peak_fraction=0.5) == 0.5 and schedule_scale(0.75, peak_fraction=0.5) == 0.5


def test_rescale_ends_at_one_after_pruning() -> None:
    values = _walk("rescale", epochs=15, full_batches=391, prune_epoch=3, kept_batches=157, lr_at="step_end")
    assert len(values) == 3 * 391 + 12 * 157
    assert values[-1] == 1.0
    assert piecewise_linear(values[-1], lr_max=0.2, peak_fraction=0.5) == 0.0
    assert values == sorted(values)
    # Each epoch spans the same share of the schedule however many batches it has.
    assert values[3 * 391 - 1] == pytest.approx(3 / 15)
    assert values[3 * 391 + 157 - 1] == pytest.approx(4 / 15)


def test_fixed_ends_part_way_at_a_high_learning_rate() -> None:
    """SPEC's CIFAR-10 example: keep 0.4 after 3 of 15 epochs; 50000 points -> 391 batches of 128, 20000 -> 157."""
    epochs, prune_epoch, full, kept, lr_max, peak = 15, 3, 391, 157, 0.2, 0.5
    assert math.ceil(50000 / 128) == full and math.ceil(20000 / 128) == kept
    values = _walk(
        "fixed", epochs=epochs, full_batches=full, prune_epoch=prune_epoch, kept_batches=kept, lr_at="step_start"
    )
    steps = prune_epoch * full + (epochs - prune_epoch) * kept  # 1173 + 1884 = 3057 steps taken
    expected_progress = (steps - 1) / (epochs * full)  # of 5865 planned; CyclicLR: the last update uses lr(k / N)
    assert values[-1] == pytest.approx(expected_progress, rel=1e-12)
    assert values[-1] < 1.0
    final_lr = piecewise_linear(values[-1], lr_max=lr_max, peak_fraction=peak)
    assert final_lr == pytest.approx(lr_max * (1 - expected_progress) / (1 - peak), rel=1e-12)
    assert final_lr == pytest.approx(0.19, abs=0.005)  # SPEC: "final learning rate 0.19"
    # Before pruning both policies give the same schedule.
    rescale = _walk(
        "rescale", epochs=epochs, full_batches=full, prune_epoch=prune_epoch, kept_batches=kept, lr_at="step_start"
    )
    assert values[: prune_epoch * full] == pytest.approx(rescale[: prune_epoch * full], rel=1e-12)


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown schedule_after_pruning 'cosine'.*rescale.*fixed"):
        progress("cosine", lr_at="step_end", epoch=0, batch=0, batches_in_epoch=1, step=0, epochs=1,
                 full_batches_per_epoch=1)
    with pytest.raises(ValueError, match="unknown lr_at 'middle'.*step_end.*step_start"):
        progress("fixed", lr_at="middle", epoch=0, batch=0, batches_in_epoch=1, step=0, epochs=1,
                 full_batches_per_epoch=1)


# -- augmentation -----------------------------------------------------------------------------------------------------
def _distinct_images(n: int = 32, c: int = 3, h: int = 8, w: int = 8) -> torch.Tensor:
    """Images whose pixels are all distinct and nonzero, so a window of the padded image is identified uniquely."""
    return (torch.randperm(n * c * h * w, generator=torch.Generator().manual_seed(0)).float() + 1).view(n, c, h, w)


def test_random_crop_with_zero_padding_is_the_identity() -> None:
    x = _distinct_images()
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(random_crop(x, 0, generator), x)
    assert torch.equal(augment(x, crop_padding=0, horizontal_flip=False, generator=generator), x)


@pytest.mark.parametrize(("h", "w", "padding"), [(8, 8, 1), (8, 8, 4), (5, 7, 2)])
def test_random_crop_is_a_shifted_window_of_the_zero_padded_image(h: int, w: int, padding: int) -> None:
    x = _distinct_images(64, 2, h, w)
    out = random_crop(x, padding, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    offsets = set()
    for i in range(len(x)):
        matches = [
            (dy, dx)
            for dy in range(2 * padding + 1)
            for dx in range(2 * padding + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + h, dx : dx + w])
        ]
        assert len(matches) == 1, f"sample {i} is not a window of its padded image"
        offsets.add(matches[0])
    # The offsets are random: many different windows appear, including a corner.
    assert len(offsets) > min(10, (2 * padding + 1) ** 2 // 2)


def test_random_crop_pads_with_zeros() -> None:
    x = torch.ones(200, 1, 8, 8)
    out = random_crop(x, 4, torch.Generator().manual_seed(0))
    values = set(out.unique().tolist())
    assert values == {0.0, 1.0}
    assert (out == 1).sum(dim=(1, 2, 3)).min() >= 4 * 4  # at least a 4x4 block of the image survives


def test_random_flip_flips_whole_samples_horizontally() -> None:
    x = _distinct_images(64)
    out = random_flip(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(out[i], x[i].flip(-1)) for i in range(len(x))]
    kept = [torch.equal(out[i], x[i]) for i in range(len(x))]
    assert all(f != k for f, k in zip(flipped, kept)), "each sample is either flipped (width axis) or untouched"
    assert 16 < sum(flipped) < 48, "about half the samples are flipped"
    # Exactly the samples the generator selects: flip decisions are the same for any images of this batch size.
    probe = random_flip(torch.arange(4.0).expand(64, 1, 1, 4).contiguous(), torch.Generator().manual_seed(0))
    assert [bool(probe[i, 0, 0, 0] == 3.0) for i in range(64)] == flipped


def test_augment_is_deterministic_for_a_generator_seed() -> None:
    x = _distinct_images(64)
    run = lambda seed: augment(x, crop_padding=2, horizontal_flip=True,  # noqa: E731
                               generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))
    assert run(5).shape == x.shape


def test_augment_with_flip_only_keeps_pixels() -> None:
    x = _distinct_images(16)
    out = augment(x, crop_padding=0, horizontal_flip=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.flatten(1).sort(dim=1).values, x.flatten(1).sort(dim=1).values)
