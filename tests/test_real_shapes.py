"""The real shapes on the CPU, through the command line: MNIST's 28x28x1 with `mnist_net`, CIFAR-10's 32x32x3 with
`preact_resnet18` and CIFAR-10's normalisation, and one bf16 run; each trained, pruned and evaluated with AutoAttack.

Each case writes a tiny canonical `<root>/<dataset>.npz` (64 training and 16 test images of uniform noise) and runs
`python -m advprune train` and `evaluate` in subprocesses, with the dataset's real settings: `--set` changes only sizes
(epochs, the monitor's batch and steps, the scoring batch), never eps, alpha, the model or the normalisation.
"One epoch on 64 images, pruning at epoch 1": the pruning epoch must be less than the number of epochs, so training
runs 2 epochs, the first on all 64 images, then low+high scoring keeps 32 (keep 0.5) for the second.

Choosing the test labels. Two updates on noise leave a model whose predictions are nearly constant, and whose margins
can be wider than eps can cross: AutoAttack on a correctly classified point would then run all four attacks, minutes
of PreAct-ResNet18 on the CPU (measured: 206 s for one point), or, on misclassified points, none at all. Training never
reads the test set, so each case first trains the same run in-process (same seed, same settings, one thread: the same
weights, which the test checks), looks at its predictions on the 16 test images, and only then writes the file: the
first test point is the image with the smallest margin, labelled as predicted, the next three are labelled wrong
(AutoAttack must leave them alone). The command line then trains on the file it finds and evaluates. Measured: APGD-CE
breaks the MNIST points at once (0.3 s of attacks); on CIFAR-10, APGD-CE leaves the point and APGD-T breaks it (9 s),
so the targeted attack runs in the 3-channel shape too. Were a point to survive APGD-T, FAB-T and Square would take
minutes; the choice is deterministic (seeded, one thread), so that would mean the method's numerics changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from advprune import METHOD_VERSION, datasets, settings
from advprune.autoattack_eval import STANDARD_ATTACKS
from advprune.pruning import kept_indices
from advprune.identity import ModelKey
from advprune.training import Trainer

pytestmark = pytest.mark.slow

CPU = torch.device("cpu")
SEED, KEEP, PRUNE_EPOCH, STRATEGY = 0, 0.5, 1, "low+high"
N_TRAIN, N_TEST, N_EXAMPLES = 64, 16, 4
# Sizes only: two epochs (pruning after the first), a small monitor batch and PGD, a small scoring batch.
SIZES = ["epochs=2", "monitor.n_points=16", "monitor.pgd_steps=2", "score_batch_size=32"]
SIZED_KEYS = {"epochs", "monitor", "score_batch_size", "precision"}
CIFAR10_MEAN, CIFAR10_STD = [0.4914, 0.4822, 0.4465], [0.2471, 0.2435, 0.2616]

CASES = {"mnist_fp32": ("mnist", "fp32"), "cifar10_fp32": ("cifar10", "fp32"), "mnist_bf16": ("mnist", "bf16")}


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _cli(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "advprune", *args], env=_env(), capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, f"advprune {args[0]} failed:\n{done.stderr[-3000:]}"
    return done


def _probe(dataset: str, precision: str, x_train: np.ndarray, y_train: np.ndarray, out: Path) -> Trainer:
    """The run the command line will make, trained in-process (training never looks at the test set)."""
    resolved = settings.resolve(dataset, overrides=SIZES, precision=precision)
    run = ModelKey.from_settings(dataset, STRATEGY, KEEP, PRUNE_EPOCH, SEED, resolved)
    trainer = Trainer(run, resolved, x_train, y_train, out_dir=out, device=CPU, dataset_sha256="probe",
                      show_progress=False)
    trainer.fit()
    return trainer


def _run_case(name: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    dataset, precision = CASES[name]
    info = datasets.get_dataset(dataset)
    root = tmp_path_factory.mktemp(name)
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (N_TRAIN, *info.image_shape), dtype=np.uint8)
    y_train = np.arange(N_TRAIN) % 10  # every class present: the model's output size follows the labels
    x_test = rng.integers(0, 256, (N_TEST, *info.image_shape), dtype=np.uint8)

    probe = _probe(dataset, precision, x_train, y_train, root / "probe")
    with torch.no_grad():
        logits = probe.model.eval()(torch.from_numpy(x_test).permute(0, 3, 1, 2).float().div(255))
    top2 = logits.topk(2, dim=1).values
    margin = (top2[:, 0] - top2[:, 1]).numpy()
    predicted = logits.argmax(1).numpy()
    fragile = int(np.argmin(margin))
    order = [fragile] + [i for i in range(N_TEST) if i != fragile]
    x_test, predicted, margin = x_test[order], predicted[order], margin[order]
    # Correct: the fragile first point, and every other one of the 12 points AutoAttack does not see.
    correct = np.array([i == 0 or (i >= N_EXAMPLES and i % 2 == 0) for i in range(N_TEST)])
    y_test = np.where(correct, predicted, (predicted + 1) % 10)
    data_file = datasets.write_canonical(root, dataset, datasets.DatasetArrays(x_train, y_train, x_test, y_test))

    out, metrics_file = root / "run", root / f"autoattack-n{N_EXAMPLES}.json"
    train = _cli("train", "--dataset", dataset, "--strategy", STRATEGY, "--keep", str(KEEP), "--prune-epoch",
                 str(PRUNE_EPOCH), "--seed", str(SEED), "--precision", precision, "--out", str(out),
                 "--data-root", str(root), "--device", "cpu", "--no-progress",
                 *[arg for item in SIZES for arg in ("--set", item)])
    evaluate = _cli("evaluate", "--checkpoint", str(out / "model.pt"), "--n-examples", str(N_EXAMPLES),
                    "--out", str(metrics_file), "--dataset", dataset, "--model", settings.resolve(dataset)["model"],
                    "--data-root", str(root), "--batch-size", "16", "--seed", "0", "--device", "cpu")
    with np.load(out / "pruning.npz") as npz:
        pruning = {key: npz[key] for key in npz.files}
    return {
        "name": name, "dataset": dataset, "precision": precision,
        "probe": probe, "margin": margin, "y_test": y_test, "correct": correct,
        "data_sha256": datasets.file_sha256(data_file),
        "train_stdout": json.loads(train.stdout.strip().splitlines()[-1]),
        "evaluate_stdout": json.loads(evaluate.stdout.strip().splitlines()[-1]),
        "train_json": json.loads((out / "train.json").read_text()),
        "checkpoint": torch.load(out / "model.pt", weights_only=True),
        "pruning": pruning,
        "metrics": json.loads(metrics_file.read_text()),
        "out": out,
    }


@pytest.fixture(scope="module")
def mnist_fp32(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _run_case("mnist_fp32", tmp_path_factory)


@pytest.fixture(scope="module")
def cifar10_fp32(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _run_case("cifar10_fp32", tmp_path_factory)


@pytest.fixture(scope="module")
def mnist_bf16(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _run_case("mnist_bf16", tmp_path_factory)


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in state.items()}


# -- the architectures in their real shapes ---------------------------------------------------------------------------
def test_mnist_net_in_mnist_shape(mnist_fp32: dict[str, Any]) -> None:
    checkpoint = mnist_fp32["checkpoint"]
    assert checkpoint["architecture"] == {"name": "mnist_net", "in_channels": 1, "num_classes": 10,
                                          "image_size": 28, "normalization": None}
    state = checkpoint["model_state"]
    # conv(1->16, k4, s2, p1): 28 -> 14; conv(16->32, k4, s2, p1): 14 -> 7; FC(32*7*7 = 1568 -> 100); FC(100 -> 10).
    assert _shapes(state) == {
        "0.mean": (1, 1, 1, 1), "0.std": (1, 1, 1, 1),
        "1.weight": (16, 1, 4, 4), "1.bias": (16,), "3.weight": (32, 16, 4, 4), "3.bias": (32,),
        "6.weight": (100, 1568), "6.bias": (100,), "8.weight": (10, 100), "8.bias": (10,),
    }
    assert state["0.mean"].item() == 0.0 and state["0.std"].item() == 1.0  # no normalisation for MNIST


def test_preact_resnet18_in_cifar10_shape_with_its_normalisation(cifar10_fp32: dict[str, Any]) -> None:
    checkpoint = cifar10_fp32["checkpoint"]
    assert checkpoint["architecture"] == {"name": "preact_resnet18", "in_channels": 3, "num_classes": 10,
                                          "image_size": 32,
                                          "normalization": {"mean": CIFAR10_MEAN, "std": CIFAR10_STD}}
    state = checkpoint["model_state"]
    expected_mean = torch.tensor(CIFAR10_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    expected_std = torch.tensor(CIFAR10_STD, dtype=torch.float32).view(1, 3, 1, 1)
    assert torch.equal(state["normalize.mean"], expected_mean) and torch.equal(state["normalize.std"], expected_std)
    shapes = _shapes(state)
    assert shapes["conv1.weight"] == (64, 3, 3, 3)
    assert shapes["bn.weight"] == (512,) and shapes["linear.weight"] == (10, 512) and shapes["linear.bias"] == (10,)
    # The reference's layout: 4 layers of 2 pre-activation blocks; a 1x1 projection shortcut where the shape changes.
    widths = {1: (64, 64), 2: (64, 128), 3: (128, 256), 4: (256, 512)}
    for layer, (in_planes, planes) in widths.items():
        for block in (0, 1):
            prefix = f"layer{layer}.{block}"
            first_in = in_planes if block == 0 else planes
            assert shapes[f"{prefix}.bn1.weight"] == (first_in,)
            assert shapes[f"{prefix}.conv1.weight"] == (planes, first_in, 3, 3)
            assert shapes[f"{prefix}.bn2.weight"] == (planes,)
            assert shapes[f"{prefix}.conv2.weight"] == (planes, planes, 3, 3)
            has_shortcut = block == 0 and layer > 1
            assert (f"{prefix}.shortcut.0.weight" in shapes) == has_shortcut, prefix
            if has_shortcut:
                assert shapes[f"{prefix}.shortcut.0.weight"] == (planes, in_planes, 1, 1)
    parameters = sum(v.numel() for k, v in state.items() if not k.endswith(("running_mean", "running_var",
                                                                             "num_batches_tracked", ".mean", ".std")))
    # kuangliu's PreActResNet18 has 11,171,146 parameters; Wong et al.'s adds a final BatchNorm2d(512) (1,024 more).
    assert parameters == 11_171_146 + 2 * 512
    # Batch norm ran in training mode: the two training batches moved its running statistics.
    assert state["layer1.0.bn1.num_batches_tracked"].item() > 0


# -- training, pruning and precision ----------------------------------------------------------------------------------
@pytest.mark.parametrize("which", list(CASES))
def test_train_prunes_at_epoch_1_with_the_real_settings(which: str, request: pytest.FixtureRequest) -> None:
    case = request.getfixturevalue(which)
    summary, checkpoint, pruning = case["train_json"], case["checkpoint"], case["pruning"]
    dataset, precision = case["dataset"], case["precision"]
    real = settings.resolve(dataset)
    # Only sizes were changed: every setting of the method is the dataset's own.
    assert {k: v for k, v in summary["settings"].items() if k not in SIZED_KEYS} == {
        k: v for k, v in real.items() if k not in SIZED_KEYS}
    assert summary["settings"]["epochs"] == 2 and summary["settings"]["precision"] == precision
    assert (summary["dataset"], summary["model"], summary["precision"]) == (dataset, real["model"], precision)
    assert (summary["strategy"], summary["keep"], summary["prune_epoch"]) == (STRATEGY, KEEP, PRUNE_EPOCH)
    assert summary["method_version"] == METHOD_VERSION
    assert summary["dataset_sha256"] == case["data_sha256"] == checkpoint["dataset_sha256"]
    assert (summary["n_train"], summary["n_kept"]) == (N_TRAIN, 32) == (N_TRAIN, case["train_stdout"]["n_kept"])
    assert [record["n_points"] for record in summary["history"]] == [N_TRAIN, 32]
    assert summary["scoring_seconds"] > 0 and summary["resumed_at_epochs"] == []

    scores, kept = pruning["scores"], pruning["kept"]
    assert scores.dtype == np.float32 and scores.shape == (N_TRAIN,) and np.isfinite(scores).all()
    assert (scores >= 0).all()  # cross-entropy losses at each point's RS-FGSM perturbation
    np.testing.assert_array_equal(kept, kept_indices(scores, KEEP, STRATEGY, seed=SEED))
    assert len(kept) == 32

    assert checkpoint["complete"] is True and checkpoint["settings"]["precision"] == precision
    assert checkpoint["settings"] == summary["settings"]
    # bf16 is autocast: the weights stay float32.
    assert all(v.dtype == torch.float32 for k, v in checkpoint["model_state"].items()
               if not k.endswith("num_batches_tracked"))
    # The premise of the chosen test labels: the command line trained exactly the in-process probe's weights.
    probe = case["probe"].model.state_dict()
    assert checkpoint["model_state"].keys() == probe.keys()
    for key, value in checkpoint["model_state"].items():
        assert torch.equal(value, probe[key]), f"{key}: the command line's weights differ from the in-process run's"
    np.testing.assert_array_equal(kept, case["probe"].state.kept)


def test_bf16_is_recorded_as_part_of_the_model(mnist_bf16: dict[str, Any], mnist_fp32: dict[str, Any]) -> None:
    assert mnist_bf16["train_json"]["precision"] == "bf16"
    assert mnist_bf16["train_json"]["settings"]["precision"] == "bf16"
    assert mnist_bf16["checkpoint"]["settings"]["precision"] == "bf16"
    assert mnist_fp32["train_json"]["precision"] == "fp32"
    # The same noise, seed and sizes in both: bf16 autocast trained other weights (the labels of the test images
    # differ between the two files, but training never reads them).
    bf16, fp32 = mnist_bf16["checkpoint"]["model_state"], mnist_fp32["checkpoint"]["model_state"]
    assert not torch.equal(bf16["6.weight"], fp32["6.weight"])


# -- evaluation with AutoAttack on 4 points ---------------------------------------------------------------------------
@pytest.mark.parametrize("which", list(CASES))
def test_evaluate_runs_autoattack_on_4_points(which: str, request: pytest.FixtureRequest) -> None:
    case = request.getfixturevalue(which)
    metrics, dataset = case["metrics"], case["dataset"]
    real = settings.resolve(dataset)
    assert (metrics["dataset"], metrics["model"], metrics["eps"]) == (dataset, real["model"], real["eps"])
    assert (metrics["n_examples"], metrics["n_test"]) == (N_EXAMPLES, N_TEST)
    assert metrics["dataset_sha256"] == case["data_sha256"]
    assert metrics["run"]["method_version"] == METHOD_VERSION and metrics["run"]["strategy"] == STRATEGY
    # Clean accuracy as the in-process probe predicted it: on all 16 test images, and on the 4 attacked.
    assert metrics["clean_acc"] == case["correct"].sum() / N_TEST == case["evaluate_stdout"]["clean_acc"]
    assert metrics["clean_acc_subset"] == 1 / N_EXAMPLES
    # AutoAttack ran: it attacked the one correctly classified point and broke it (robust accuracy below clean).
    assert metrics["attacks_run"][:1] == ["apgd-ce"], metrics["attacks_run"]
    assert metrics["attacks_run"] + metrics["attacks_skipped"] == STANDARD_ATTACKS
    assert metrics["autoattack_acc"] == 0.0 < metrics["clean_acc_subset"]
    after = [metrics["robust_acc_after"][name] for name in STANDARD_ATTACKS]
    assert after == sorted(after, reverse=True) and after[-1] == metrics["autoattack_acc"]
    assert 0 < metrics["max_perturbation"] <= real["eps"] + 1e-6
    assert metrics["warnings"] == []  # AutoAttack's checks (randomness, logits, classes) pass in the real shape
