"""Killed jobs: AutoAttack evaluation resumes from its per-attack state, and no kill leaves a finished-looking file.

One small RS-FGSM model (digits-mnist, 3 epochs: robust at eps 0.1, so every attack has points to work on) is trained
once; its uninterrupted evaluation is the reference for an in-process interruption and for a real SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from advprune import cli, datasets
from advprune.autoattack_eval import run_autoattack
from advprune.checkpoint import load_checkpoint, model_from_checkpoint
from advprune.evaluation import _to_tensors
from pyautoattack import AutoAttack

CPU = torch.device("cpu")
# AutoAttack's standard version (Croce & Hein 2020), in its order: written out here, not read from the code under test.
STANDARD_ATTACKS = ["apgd-ce", "apgd-t", "fab-t", "square"]
N = 8
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# Training and AutoAttack, in this process and in subprocesses: the slow lane (one intra-op thread everywhere, as
# tests/conftest.py sets for the session).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A trained checkpoint, its data and the metrics of an uninterrupted `evaluate` (the command's own code path)."""
    root = tmp_path_factory.mktemp("resume")
    datasets.prepare("digits-mnist", root / "data")
    assert cli.main(["train", "--dataset", "digits-mnist", "--keep", "1.0", "--seed", "0", "--set", "epochs=3",
                     "--data-root", str(root / "data"), "--out", str(root / "run"), "--device", "cpu",
                     "--no-progress"]) == 0
    reference = root / "reference.json"
    assert cli.main(_evaluate_args(root, reference)) == 0
    metrics = json.loads(reference.read_text())
    assert metrics["attacks_run"] == STANDARD_ATTACKS  # points survive APGD-CE: every attack runs
    assert not reference.with_name(reference.name + ".partial.pt").exists()  # deleted when the evaluation completes
    return {"root": root, "metrics": metrics}


def _evaluate_args(root: Path, out: Path) -> list[str]:
    return ["evaluate", "--checkpoint", str(root / "run" / "model.pt"), "--n-examples", str(N), "--out", str(out),
            "--dataset", "digits-mnist", "--data-root", str(root / "data"), "--device", "cpu", "--seed", "0"]


class _Interrupted(Exception):
    pass


def test_interrupted_adapter_resumes_to_the_uninterrupted_result(trained, tmp_path, monkeypatch):
    root, reference = trained["root"], trained["metrics"]
    model = model_from_checkpoint(load_checkpoint(root / "run" / "model.pt", map_location="cpu"), CPU)
    arrays = datasets.load_canonical(root / "data" / "digits-mnist.npz", datasets.get_dataset("digits-mnist"))
    x, y = _to_tensors(arrays.x_test[:N], arrays.y_test[:N], CPU)
    eps, state = reference["eps"], tmp_path / "aa.partial.pt"
    original, calls = AutoAttack.run_standard_evaluation, []

    def interrupted(self, *args, **kwargs):
        calls.append(self.attacks_to_run[0])
        if self.attacks_to_run == ["apgd-t"]:
            raise _Interrupted
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AutoAttack, "run_standard_evaluation", interrupted)
    with pytest.raises(_Interrupted):
        run_autoattack(model, x, y, eps=eps, device=CPU, batch_size=1000, seed=0, state_path=state)
    saved = torch.load(state, weights_only=True)
    assert saved["attacks_done"] == ["apgd-ce"] and saved["seconds"] > 0
    assert saved["robust_acc_after"] == {"apgd-ce": reference["robust_acc_after"]["apgd-ce"]}
    assert [p.name for p in tmp_path.iterdir()] == [state.name]  # no temporary file left beside it

    # A state of another evaluation is refused, naming the file, and left alone.
    for changes in ({"seed": 1}, {"eps": eps / 2}, {"y": y.roll(1)}):
        arguments = {"eps": eps, "seed": 0, "y": y, **changes}
        with pytest.raises(ValueError, match=rf"{state}: .*another evaluation .*Delete it"):
            run_autoattack(model, x, device=CPU, batch_size=1000, state_path=state, **arguments)
    assert torch.load(state, weights_only=True)["attacks_done"] == ["apgd-ce"]

    calls.clear()
    monkeypatch.setattr(AutoAttack, "run_standard_evaluation",
                        lambda self, *a, **k: calls.append(self.attacks_to_run[0]) or original(self, *a, **k))
    result = run_autoattack(model, x, y, eps=eps, device=CPU, batch_size=1000, seed=0, state_path=state)

    assert calls == STANDARD_ATTACKS[1:]  # APGD-CE is not run again
    assert not state.exists()  # deleted on completion
    assert result.robust_acc == reference["autoattack_acc"]
    assert result.robust_acc_after == reference["robust_acc_after"]
    assert (result.attacks_run, result.attacks_skipped) == (STANDARD_ATTACKS, [])
    assert result.clean_acc == reference["clean_acc_subset"]
    assert result.seconds >= saved["seconds"] and result.resumed_seconds == saved["seconds"]
    assert 0 < result.max_perturbation <= eps + 1e-6
    assert sum(m.startswith("initial accuracy") for m in result.log) == 1  # one run's log, not one per attack
    assert [m.split(":")[0] for m in result.log if m.startswith("robust accuracy after")] == [
        f"robust accuracy after {name.upper()}" for name in STANDARD_ATTACKS]


def _kill_when(process: subprocess.Popen, path: Path, timeout: float = 120) -> None:
    """SIGKILL `process` as soon as `path` exists (it must not finish first)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"finished before {path.name} appeared: {process.communicate()}"
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL


def test_killed_evaluate_leaves_no_metrics_and_resumes_exactly(trained, tmp_path):
    root, reference = trained["root"], trained["metrics"]
    out = tmp_path / "autoattack-n8.json"
    state = tmp_path / "autoattack-n8.json.partial.pt"
    command = [sys.executable, "-m", "advprune", *_evaluate_args(root, out)]

    _kill_when(subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE), state)

    assert not out.exists()  # no finished-looking metrics file
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [state.name]
    saved = torch.load(state, weights_only=True)
    assert saved["attacks_done"] and saved["attacks_done"] != STANDARD_ATTACKS  # killed mid-evaluation

    finished = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr

    metrics = json.loads(out.read_text())
    assert not state.exists()
    for key in ("autoattack_acc", "robust_acc_after", "attacks_run", "attacks_skipped", "clean_acc",
                "clean_acc_subset"):
        assert metrics[key] == reference[key], key
    assert metrics["attack_seconds"] >= saved["seconds"]  # time before the kill counts
    assert metrics["eval_seconds"] >= metrics["attack_seconds"]


def test_killed_training_leaves_no_finished_looking_file(tmp_path, trained):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "advprune", "train", "--dataset", "digits-mnist", "--keep", "1.0", "--seed", "0",
               "--set", "epochs=400", "--data-root", str(trained["root"] / "data"), "--out", str(out),
               "--device", "cpu", "--no-progress"]

    _kill_when(subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE), out / "resume.pt")

    for name in ("model.pt", "train.json", "pruning.npz"):
        assert not (out / name).exists(), name
    # Only the epoch checkpoint and, at most, hidden temporary files of atomic writes remain.
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == ["resume.pt"]
