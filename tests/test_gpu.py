"""On a CUDA GPU (`pytest -m gpu`; skipped without one, so CI skips them; scripts/device-check.sh runs them).

Tiny data in the real shapes (MNIST's mnist_net, CIFAR-10's preact_resnet18): training, resume after a kill,
evaluation, reproducibility, the CUDA generator paths, and AutoAttack on the GPU against AutoAttack on the CPU.
Bit-for-bit reproducibility holds where cuDNN allows it: with deterministic algorithms (asserted below); with
PyTorch's defaults, as the workflow runs, cuDNN may choose non-deterministic convolution kernels, so two runs are
compared to a tolerance and whether they were identical is printed (the device check keeps the output).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from advprune import datasets
from advprune.bench import synthetic
from advprune.settings import resolve
from advprune.identity import ModelKey
from advprune.training import Trainer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (scripts/device-check.sh runs these)"),
]
REPO = Path(__file__).resolve().parents[1]
SHAPES = {"mnist": 256, "cifar10": 128}  # training points: a few steps of the real batch size
TINY = ["epochs=3", "monitor.n_points=64"]


@pytest.fixture(scope="module")
def gpu_data_root(tmp_path_factory) -> Path:
    """Canonical files named mnist and cifar10 holding synthetic data of the real shapes (no download)."""
    root = tmp_path_factory.mktemp("gpu-data")
    for shape, n in SHAPES.items():
        x, y = synthetic(shape, n, seed=0)
        xt, yt = synthetic(shape, 200, seed=1)
        datasets.write_canonical(root, shape, datasets.DatasetArrays(x, y, xt, yt))
    return root


def train(shape: str, out: Path, device: str = "cuda") -> dict:
    settings = resolve(shape, overrides=TINY)
    x, y = synthetic(shape, SHAPES[shape], seed=0)
    trainer = Trainer(ModelKey.from_settings(shape, "random", 0.5, 1, 0, settings), settings, x, y, out_dir=out,
                      device=torch.device(device), dataset_sha256="synthetic", show_progress=False)
    return trainer.fit()


def weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "model.pt", weights_only=True, map_location="cpu")["model_state"]


@pytest.mark.parametrize("shape", SHAPES)
def test_training_on_cuda_in_the_real_shapes(shape, tmp_path):
    summary = train(shape, tmp_path)
    assert summary["device"] == torch.cuda.get_device_name(0)
    assert summary["n_kept"] == SHAPES[shape] // 2 and len(summary["history"]) == 3
    assert all(np.isfinite(record["train_loss"]) for record in summary["history"])
    assert all(t.device.type == "cpu" and torch.isfinite(t.float()).all() for t in weights(tmp_path).values())


@pytest.mark.parametrize("shape", SHAPES)
def test_two_runs_agree_and_say_whether_bit_identical(shape, tmp_path):
    first, second = train(shape, tmp_path / "a"), train(shape, tmp_path / "b")
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    identical = all(torch.equal(a[k], b[k]) for k in a)
    largest = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    print(f"{shape}: two default-settings CUDA runs bit-identical: {identical} (largest weight difference {largest:.3g})")
    losses = [[r["train_loss"] for r in s["history"]] for s in (first, second)]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-3)


DETERMINISTIC = """
import hashlib, sys, torch
torch.use_deterministic_algorithms(True)
torch.backends.cudnn.benchmark = False
sys.path.insert(0, {tests!r})
from test_gpu import train
from pathlib import Path
summary = train({shape!r}, Path(sys.argv[1]))
state = torch.load(Path(sys.argv[1]) / "model.pt", weights_only=True)["model_state"]
print(hashlib.sha256(b"".join(t.cpu().numpy().tobytes() for t in state.values())).hexdigest())
"""


@pytest.mark.parametrize("shape", SHAPES)
def test_deterministic_algorithms_give_bit_identical_runs(shape, tmp_path):
    """Where cuDNN allows it: with torch.use_deterministic_algorithms, two runs give the same bits."""
    code = DETERMINISTIC.format(tests=str(REPO / "tests"), shape=shape)
    env = {**os.environ, "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    digests = []
    for run in ("a", "b"):
        result = subprocess.run([sys.executable, "-c", code, str(tmp_path / run)], capture_output=True, text=True,
                                env=env, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        digests.append(result.stdout.split()[-1])
    assert digests[0] == digests[1]


def test_cuda_generator_streams_repeat_from_a_saved_state():
    generator = torch.Generator(device="cuda").manual_seed(7)
    state = generator.get_state()
    first = (torch.randperm(1000, generator=generator, device="cuda"),
             torch.rand(64, 3, 32, 32, generator=generator, device="cuda"))
    generator.set_state(state.cpu())  # as Trainer.try_resume restores it from a checkpoint
    second = (torch.randperm(1000, generator=generator, device="cuda"),
              torch.rand(64, 3, 32, 32, generator=generator, device="cuda"))
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def advprune(*args: str, pause: tuple[int, Path] | None = None) -> subprocess.Popen:
    prefix = [str(REPO / "tests/pause_training.py"), str(pause[0]), str(pause[1])] if pause else ["-m", "advprune"]
    return subprocess.Popen([sys.executable, *prefix, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.mark.parametrize("shape", SHAPES)
def test_resume_after_a_kill_and_evaluate_on_cuda(shape, gpu_data_root, tmp_path):
    arguments = ["train", "--dataset", shape, "--keep", "0.5", "--prune-epoch", "1", "--seed", "0", "--device", "cuda",
                 "--data-root", str(gpu_data_root), "--no-progress", *(w for s in TINY for w in ("--set", s))]
    marker = tmp_path / "paused"
    paused = advprune(*arguments, "--out", str(tmp_path / "killed"), pause=(2, marker))
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert paused.poll() is None and time.monotonic() < deadline, paused.communicate()[1][-3000:]
        time.sleep(0.2)
    paused.send_signal(signal.SIGKILL)
    paused.wait()
    resumed = advprune(*arguments, "--out", str(tmp_path / "killed"))
    whole = advprune(*arguments, "--out", str(tmp_path / "whole"))
    for process in (resumed, whole):
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
    killed = json.loads((tmp_path / "killed/train.json").read_text())
    uninterrupted = json.loads((tmp_path / "whole/train.json").read_text())
    assert killed["resumed_at_epochs"] == [2]
    np.testing.assert_allclose([r["train_loss"] for r in killed["history"]],
                               [r["train_loss"] for r in uninterrupted["history"]], rtol=1e-3)
    evaluation = subprocess.run([sys.executable, "-m", "advprune", "evaluate", "--checkpoint",
                                 str(tmp_path / "killed/model.pt"), "--n-examples", "20", "--device", "cuda",
                                 "--data-root", str(gpu_data_root), "--out", str(tmp_path / "metrics.json")],
                                capture_output=True, text=True, timeout=600)
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["device"] == torch.cuda.get_device_name(0)
    assert 0 <= metrics["autoattack_acc"] <= metrics["clean_acc_subset"] <= 1


def margins(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The true class's logit minus the largest other one: below 0 is misclassified, near 0 a tie."""
    with torch.no_grad():
        logits = model(x).float()
    true = logits.gather(1, y[:, None])[:, 0]
    return true - logits.scatter(1, y[:, None], float("-inf")).max(1).values


@pytest.mark.parametrize("shape", ["mnist"])
def test_autoattack_on_the_gpu_matches_the_cpu(shape, tmp_path):
    """Same model, same 100 points: the robust flags agree except where the logits tie within float tolerance."""
    from pyautoattack import AutoAttack

    from advprune.checkpoint import load_checkpoint, model_from_checkpoint

    train(shape, tmp_path)
    payload = load_checkpoint(tmp_path / "model.pt")
    x, y = synthetic(shape, 100, seed=2)
    images = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().float().div(255)
    labels = torch.from_numpy(y)
    flags, found, models = {}, {}, {}
    for device in ("cpu", "cuda"):
        models[device] = model_from_checkpoint(payload, torch.device(device)).eval()
        attack = AutoAttack(models[device], norm="Linf", eps=float(payload["settings"]["eps"]), version="standard",
                            device=device, seed=0)
        x_adv = attack.run_standard_evaluation(images.to(device), labels.to(device), batch_size=100)
        x_adv = x_adv[0] if isinstance(x_adv, tuple) else x_adv
        found[device] = x_adv.cpu()
        flags[device] = (margins(models[device], x_adv, labels.to(device)) > 0).cpu()
    differ = (flags["cpu"] != flags["cuda"]).nonzero()[:, 0]
    ties = []
    for i in differ.tolist():  # the adversarial example one device found, scored by the other device's model
        broken_on = "cpu" if not flags["cpu"][i] else "cuda"
        other = "cuda" if broken_on == "cpu" else "cpu"
        ties.append(margins(models[other], found[broken_on][i:i + 1].to(other), labels[i:i + 1].to(other)).item())
    print(f"{shape}: robust on CPU {flags['cpu'].float().mean():.2f}, on GPU {flags['cuda'].float().mean():.2f}; "
          f"{len(differ)} of 100 flags differ; the other device's margins there: {ties}")
    assert all(abs(margin) < 1e-3 for margin in ties), "a flag differs where the logits do not tie"
