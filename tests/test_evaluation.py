"""AutoAttack adapter and checkpoint evaluation, on the demo's MLP trained plainly (not adversarially) on digits.

One intra-op thread throughout: these tensors are tiny, and on a 2-core machine shared with other jobs PyTorch's
default of one thread per core makes AutoAttack's thousands of small passes many times slower."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from advprune import METHOD_VERSION
from advprune.autoattack_eval import _per_attack_accuracy, run_autoattack
from advprune.checkpoint import save_checkpoint
from advprune.datasets import file_sha256
from advprune.evaluation import evaluate_checkpoint
from advprune.models import build_model
from pyautoattack import AutoAttack

CPU = torch.device("cpu")
STANDARD = ["apgd-ce", "apgd-t", "fab-t", "square"]
METRIC_KEYS = {
    "schema", "checkpoint", "dataset", "model", "run", "eps", "norm", "version", "n_examples", "n_test", "clean_acc",
    "clean_acc_subset", "autoattack_acc", "robust_acc_after", "attacks_run", "attacks_skipped", "max_perturbation",
    "clean_seconds", "attack_seconds", "eval_seconds", "warnings", "device", "versions", "dataset_sha256", "seed",
    "batch_size", "provenance", "checkpoint_sha256",
}
N_TRAIN = 1400
MODEL = "digits_mlp"  # the demo's model: AutoAttack through it costs a fraction of what it costs through convolutions

@pytest.fixture(scope="module")
def digits() -> dict[str, np.ndarray]:
    """Canonical-layout digits: uint8 [N, 8, 8, 1] HWC images, int64 labels."""
    data = load_digits()
    images = np.rint(data.images * 255 / 16).astype(np.uint8)[..., None]
    labels = data.target.astype(np.int64)
    return {"x_train": images[:N_TRAIN], "y_train": labels[:N_TRAIN],
            "x_test": images[N_TRAIN:], "y_test": labels[N_TRAIN:]}


def _nchw(images: np.ndarray) -> torch.Tensor:
    """uint8 HWC -> float NCHW in [0, 1], as a permuted view of the HWC storage (non-contiguous when C > 1)."""
    return torch.from_numpy(images).float().div(255).permute(0, 3, 1, 2)


def _train(x: torch.Tensor, y: torch.Tensor) -> torch.nn.Module:
    """A few epochs of plain training: an undefended model that AutoAttack breaks easily."""
    torch.manual_seed(0)
    model = build_model(MODEL, in_channels=x.shape[1], num_classes=10, image_size=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(8):
        for batch in torch.randperm(len(x)).split(50):
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.fixture(scope="module")
def grey_model(digits) -> torch.nn.Module:
    model = _train(_nchw(digits["x_train"]), torch.from_numpy(digits["y_train"]))
    assert _accuracy(model, _nchw(digits["x_test"]), torch.from_numpy(digits["y_test"])) > 0.85
    return model


@pytest.mark.slow
def test_autoattack_breaks_undefended_model_on_non_contiguous_input(digits):
    # RGB stored HWC (as CIFAR-10's canonical arrays are) and permuted to NCHW: pyautoattack's APGD-T calls `.view` on
    # gradients shaped like this and fails unless the adapter makes the input contiguous (it does so through the MLP
    # as through a convolutional net: checked against pyautoattack directly).
    rgb = {key: np.repeat(digits[key], 3, axis=-1) for key in ("x_train", "x_test")}
    x, y = _nchw(rgb["x_test"][:32]), torch.from_numpy(digits["y_test"][:32])
    assert not x.is_contiguous()
    model = _train(_nchw(rgb["x_train"]).contiguous(), torch.from_numpy(digits["y_train"]))
    logger = logging.getLogger("auto-attack")
    before = logger.level, list(logger.handlers), logger.propagate

    eps = 0.12  # small enough that some points survive APGD-CE, so all four attacks run (measured: 6 of 32)
    result = run_autoattack(model, x, y, eps=eps, device=CPU, batch_size=1000, seed=0)

    assert (logger.level, list(logger.handlers), logger.propagate) == before
    assert result.clean_acc > 0.85
    assert result.robust_acc < result.clean_acc / 2
    assert result.attacks_run == STANDARD and result.attacks_skipped == []
    after = [result.robust_acc_after[name] for name in STANDARD]
    assert after == sorted(after, reverse=True)
    assert after[0] <= result.clean_acc
    assert after[-1] == pytest.approx(result.robust_acc)  # AutoAttack's log agrees with our re-check on the CPU
    assert 0 < result.max_perturbation <= eps + 1e-6
    assert all(isinstance(m, str) for m in result.warnings + result.log)
    assert any(m.startswith("robust accuracy after SQUARE") for m in result.log)
    assert result.seconds > 0


def test_per_attack_accuracy_after_early_stop_and_unknown_format():
    log = ["initial accuracy: 93.75%", "robust accuracy after APGD-CE: 0.00% (total time 0.1 s)",
           "no robust datapoints left, skipping remaining attacks"]
    after, run, skipped = _per_attack_accuracy(log, STANDARD, 64)
    assert after == dict.fromkeys(STANDARD, 0.0)
    assert (run, skipped) == (["apgd-ce"], STANDARD[1:])
    # Two decimals of a percent are rounded to whole points: 57.81% of 64 is 37 points.
    after, _, _ = _per_attack_accuracy(["robust accuracy after APGD-CE: 57.81% (total time 0.2 s)"], ["apgd-ce"], 64)
    assert after == {"apgd-ce": 37 / 64}
    with pytest.raises(RuntimeError, match="log format"):
        _per_attack_accuracy(log[:2], STANDARD, 64)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> str:
    np.savez(path, **arrays)
    return file_sha256(path)


def _checkpoint(model: torch.nn.Module, sha: str, **changes) -> dict:
    payload = {
        "dataset": "digits-mnist",
        "architecture": {"name": MODEL, "in_channels": 1, "num_classes": 10, "image_size": 8,
                         "normalization": None},
        "settings": {"eps": 0.3},  # large enough that APGD-CE breaks every point: the early-stop path, and fast
        "dataset_sha256": sha,
        "run": {"dataset": "digits-mnist", "strategy": "full", "keep": 1.0, "prune_epoch": None, "seed": 0},
        "complete": True,
        "model_state": model.state_dict(),
    }
    return {**payload, **changes}


def test_evaluate_checkpoint_end_to_end(tmp_path, digits, grey_model):
    sha = _write_npz(tmp_path / "digits-mnist.npz", digits)
    save_checkpoint(tmp_path / "model.pt", _checkpoint(grey_model, sha))

    metrics = evaluate_checkpoint(
        tmp_path / "model.pt", n_examples=32, data_root=tmp_path, device=CPU, batch_size=100, seed=0,
        expected_dataset="digits-mnist", expected_model=MODEL,
    )

    assert set(metrics) == METRIC_KEYS
    json.dumps(metrics, allow_nan=False)  # metrics.json must hold plain JSON
    assert metrics["schema"] == "advprune.metrics/1"
    provenance = metrics["provenance"]
    assert provenance["dataset_sha256"] == metrics["dataset_sha256"] and provenance["jobs_on_device"] == 1
    assert provenance["method_version"] == METHOD_VERSION and len(provenance["config_sha256"]) == 64
    assert (metrics["dataset"], metrics["model"], metrics["eps"]) == ("digits-mnist", MODEL, 0.3)
    assert (metrics["n_examples"], metrics["n_test"]) == (32, len(digits["y_test"]))
    assert list(metrics["robust_acc_after"]) == STANDARD
    accuracies = [metrics[key] for key in ("clean_acc", "clean_acc_subset", "autoattack_acc")]
    assert all(0 <= value <= 1 for value in accuracies + list(metrics["robust_acc_after"].values()))
    assert metrics["clean_acc"] > 0.85
    # 32 examples: every accuracy on the subset is a whole number of points out of 32.
    assert metrics["clean_acc_subset"] * 32 == round(metrics["clean_acc_subset"] * 32)
    assert metrics["autoattack_acc"] == 0.0
    assert metrics["attacks_run"] == ["apgd-ce"] and metrics["attacks_skipped"] == STANDARD[1:]
    assert metrics["max_perturbation"] <= 0.3 + 1e-6
    assert metrics["eval_seconds"] >= metrics["clean_seconds"] + metrics["attack_seconds"]
    assert metrics["dataset_sha256"] == sha and metrics["run"]["seed"] == 0
    assert metrics["versions"]["pyautoattack"] == "0.2.0" and metrics["device"].startswith("cpu")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("dataset", r"expected a dataset 'mnist' checkpoint, but it is 'digits-mnist'"),
        ("model", r"expected a model 'mnist_net' checkpoint, but it is 'digits_mlp'"),
        ("incomplete", r"unfinished \(complete = False\)"),
        ("sha", r"digits-mnist\.npz has sha256 .*re-prepare"),
        ("n_examples", r"n_examples must be in \[1, 397\].*got 5000"),
    ],
)
def test_evaluate_checkpoint_refuses(tmp_path, digits, grey_model, case, message):
    sha = _write_npz(tmp_path / "digits-mnist.npz", digits)
    save_checkpoint(tmp_path / "model.pt", _checkpoint(grey_model, sha, complete=case != "incomplete"))
    if case == "sha":  # the file changed since training: one pixel differs
        x_test = digits["x_test"].copy()
        x_test[0, 0, 0, 0] ^= 1
        _write_npz(tmp_path / "digits-mnist.npz", {**digits, "x_test": x_test})
    expected = {"dataset": {"expected_dataset": "mnist"}, "model": {"expected_model": "mnist_net"}}.get(case, {})

    with pytest.raises(ValueError, match=message):
        evaluate_checkpoint(
            tmp_path / "model.pt", n_examples=5000 if case == "n_examples" else 32, data_root=tmp_path, device=CPU,
            **expected,
        )


# -- the adapter's own guards, on a hand-made model: fast, since APGD-CE breaks every point at its first step ----------
EPS = 0.1


def _threshold_model() -> torch.nn.Module:
    """Class 0 where the mean pixel, through BatchNorm, is above 0.25, else class 1 (classes 2-9 never win). In eval
    mode, with running mean 0 and variance 1, BatchNorm passes the pixels through; in train mode it standardises them
    over the batch, and about half of a batch falls below the threshold."""
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 10))
    with torch.no_grad():
        model[2].weight.zero_()
        model[2].weight[0].fill_(10.0 / 4)
        model[2].bias.fill_(-10.0)
        model[2].bias[:2] = torch.tensor([-2.5, 0.0])  # logits 10 * (mean pixel - 0.25) and 0
    return model


def _threshold_points() -> tuple[torch.Tensor, torch.Tensor]:
    """Eight flat 2x2 images of label 0, each pixel 0.30-0.34: correct in eval mode, and every one broken by moving
    each pixel down by EPS (to 0.20-0.24), which stays inside the image box."""
    x = torch.linspace(0.30, 0.34, 8).reshape(8, 1, 1, 1).expand(8, 1, 2, 2).contiguous()
    return x, torch.zeros(8, dtype=torch.long)


def test_autoattack_evaluates_a_model_handed_over_in_train_mode_in_eval_mode():
    model = _threshold_model().train()
    x, y = _threshold_points()
    before = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        assert _accuracy(copy.deepcopy(model).eval(), x, y) == 1.0
        assert _accuracy(copy.deepcopy(model), x, y) < 1.0  # batch statistics would misclassify some

    result = run_autoattack(model, x, y, eps=EPS, device=CPU, batch_size=8, seed=0)

    assert (result.clean_acc, result.robust_acc) == (1.0, 0.0)  # the eval-mode model's
    assert (result.attacks_run, result.attacks_skipped) == (["apgd-ce"], STANDARD[1:])
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), f"the evaluation changed {name}"
    assert not model.training


@pytest.mark.parametrize("factor", [1.0, 1.5])
def test_autoattack_refuses_an_adversarial_example_outside_the_eps_ball(monkeypatch, factor):
    """pyautoattack is trusted for nothing: an example moved by 1.5 eps (still inside the image box) is no result."""
    model = _threshold_model().eval()
    x, y = _threshold_points()

    def beyond_the_ball(self, x_sub, y_sub, batch_size):
        return x_sub - factor * EPS, torch.ones_like(y_sub)

    monkeypatch.setattr(AutoAttack, "run_standard_evaluation", beyond_the_ball)
    if factor == 1.0:  # the ball's edge is allowed
        result = run_autoattack(model, x, y, eps=EPS, device=CPU, batch_size=8, seed=0)
        assert result.max_perturbation == pytest.approx(EPS) and result.robust_acc == 0.0
        return
    with pytest.raises(RuntimeError, match=r"L-inf norm 0\.15 > eps = 0\.1"):
        run_autoattack(model, x, y, eps=EPS, device=CPU, batch_size=8, seed=0)
