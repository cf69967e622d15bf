"""The AutoAttack adapter against pyautoattack itself: one `run_standard_evaluation` call is the oracle.

`advprune.autoattack_eval.run_autoattack` runs the standard attacks one call at a time (each on the points still
robust, with its own per-attack resume state) and claims to equal one `AutoAttack.run_standard_evaluation`. Here both
run on the same model, points, eps, seed and batch size (48 points in batches of 16), and must agree on:
  - the robust flags after every attack (pyautoattack's own flags, read when it marks an attack done),
  - the accuracy after every attack (as pyautoattack logs it, and as its per-batch 'successfully perturbed' counts add
    up), the final flags and the adversarial examples themselves, bit for bit (CPU, one thread),
  - the whole log, but for the wall-clock times in it.
A resume test kills (SIGKILL) a process evaluating the same points twice, mid-evaluation, and finishes in-process from
the state file: the result equals the uninterrupted run's. (tests/test_resume.py covers resume on one batch of 8 and
through the `evaluate` command; here the state is taken across several batches per attack.)

The model is digits_mlp after one epoch of RS-FGSM on digits-mnist, at digits-mnist's own eps (0.12). Measured: 40 of
the 48 points are classified correctly, APGD-CE leaves 28 (so every later attack spans two batches), APGD-T breaks 5
more; FAB-T and Square break none (they seldom do after APGD-T), but run on two batches each.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from advprune import autoattack_eval, datasets, settings
from advprune.autoattack_eval import STANDARD_ATTACKS, run_autoattack
from advprune.evaluation import _to_tensors
from advprune.identity import ModelKey
from advprune.training import Trainer
from pyautoattack import AutoAttack
from pyautoattack.state import EvaluationState

pytestmark = pytest.mark.slow  # each AutoAttack run here takes 10-20 s on a busy 2-core machine

CPU = torch.device("cpu")
DATASET = "digits-mnist"
N, BATCH, SEED = 48, 16, 0
_TIME = re.compile(r"\(total time [0-9.]+ s\)")
_PER_BATCH = re.compile(r"^(\S+) - (\d+)/(\d+) - (\d+) out of (\d+) successfully perturbed$")


@pytest.fixture(scope="module")
def points(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("oracle")
    arrays = datasets.load_canonical(datasets.prepare(DATASET, root / "data"), datasets.get_dataset(DATASET))
    resolved = settings.resolve(DATASET, overrides=["epochs=1", "monitor.n_points=64"])
    run = ModelKey.from_settings(DATASET, "random", 1.0, None, SEED, resolved)
    trainer = Trainer(run, resolved, arrays.x_train, arrays.y_train, out_dir=root / "run", device=CPU,
                      dataset_sha256="-", show_progress=False)
    trainer.fit()
    model = trainer.model.eval()
    x, y = _to_tensors(arrays.x_test[:N], arrays.y_test[:N], CPU)  # as `evaluate` makes them
    return {"root": root, "model": model, "x": x, "y": y, "eps": resolved["eps"]}


def _adapter(points: dict[str, Any], state_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """run_autoattack, observing the flags and adversarial examples it saves after each attack (the state it
    resumes from); the observer passes everything on unchanged."""
    flags, x_adv = {}, {}
    save = autoattack_eval._save_state

    def observe(path, fingerprint, robust, adv, after, done, *rest):
        flags[done[-1]], x_adv[done[-1]] = robust.clone(), adv.clone()
        return save(path, fingerprint, robust, adv, after, done, *rest)

    with monkeypatch.context() as patch:
        patch.setattr(autoattack_eval, "_save_state", observe)
        result = run_autoattack(points["model"], points["x"], points["y"], eps=points["eps"], device=CPU,
                                batch_size=BATCH, seed=SEED, state_path=state_path)
    assert not state_path.exists()
    return {"result": result, "flags": flags, "x_adv": x_adv}


@pytest.fixture(scope="module")
def adapter(points: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        return _adapter(points, tmp_path_factory.mktemp("adapter") / "aa.partial.pt", monkeypatch)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelno, record.getMessage()))


@pytest.fixture(scope="module")
def reference(points: dict[str, Any]) -> dict[str, Any]:
    """One standard `run_standard_evaluation` call, its log captured and its flags read after each attack."""
    logger = logging.getLogger("auto-attack")
    saved = logger.level, logger.handlers[:], logger.propagate
    records = _Records()
    logger.setLevel(logging.DEBUG)
    logger.handlers, logger.propagate = [records], False
    flags: dict[str, torch.Tensor] = {}
    mark_done = EvaluationState.add_run_attack

    def observe(state: EvaluationState, attack: str) -> None:
        flags[attack] = state.robust_flags.clone()
        mark_done(state, attack)

    try:
        with pytest.MonkeyPatch.context() as monkeypatch:
            monkeypatch.setattr(EvaluationState, "add_run_attack", observe)
            attack = AutoAttack(points["model"], norm="Linf", eps=points["eps"], version="standard", device=CPU,
                                seed=SEED)
            x_adv, y_adv = attack.run_standard_evaluation(points["x"], points["y"], batch_size=BATCH)
    finally:
        logger.setLevel(saved[0])
        logger.handlers, logger.propagate = saved[1], saved[2]
    return {"x_adv": x_adv, "y_adv": y_adv, "flags": flags, "log": [m for _, m in records.records],
            "warnings": [m for level, m in records.records if level >= logging.WARNING]}


def _assert_equal(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    differ = actual != expected
    assert not differ.any(), (
        f"{what}: {differ.flatten(1).any(1).sum().item()} of {len(actual)} points differ, "
        f"by up to {(actual - expected).abs().max().item():.3g}")


def _after_from_log(log: list[str]) -> dict[str, int]:
    """Robust points after each attack, from 'robust accuracy after APGD-CE: 58.33% ...' (exact for N = 48)."""
    after = {}
    for message in log:
        if match := re.match(r"^robust accuracy after (\S+): ([0-9.]+)%", message):
            after[match[1].lower()] = round(float(match[2]) / 100 * N)
    return after


def _per_batch(log: list[str]) -> dict[str, list[tuple[int, int]]]:
    """{attack: [(broken, batch size), ...]} from pyautoattack's per-batch lines."""
    batches: dict[str, list[tuple[int, int]]] = {}
    for message in log:
        if match := _PER_BATCH.match(message):
            batches.setdefault(match[1], []).append((int(match[4]), int(match[5])))
    return batches


def test_the_points_exercise_every_attack_over_several_batches(points, reference):
    """The comparison below means something only if every attack has robust points, in more than one batch."""
    with torch.no_grad():
        clean = points["model"](points["x"]).argmax(1) == points["y"]
    assert 0 < N - clean.sum() < N  # some points are misclassified before any attack
    batches = _per_batch(reference["log"])
    assert list(batches) == STANDARD_ATTACKS
    assert all(len(batches[name]) >= 2 for name in STANDARD_ATTACKS), batches
    assert len(batches["apgd-ce"]) == 3  # 40 clean-correct points: 16 + 16 + 8
    broken = {name: sum(k for k, _ in batches[name]) for name in STANDARD_ATTACKS}
    assert broken["apgd-ce"] > 0 and broken["apgd-t"] > 0, broken
    assert reference["flags"]["square"].any()  # points survive every attack


def test_adapter_equals_one_run_standard_evaluation(points, adapter, reference):
    result = adapter["result"]
    y, ref_flags = points["y"], reference["flags"]
    with torch.no_grad():
        clean = points["model"](points["x"]).argmax(1) == y
    ref_after_log = _after_from_log(reference["log"])
    batches = _per_batch(reference["log"])
    remaining = clean.sum().item()
    assert list(ref_flags) == list(adapter["flags"]) == STANDARD_ATTACKS
    for name in STANDARD_ATTACKS:
        # The same points survive each attack ...
        assert torch.equal(adapter["flags"][name], ref_flags[name]), name
        # ... and the accuracy after it agrees three ways: pyautoattack's log line, its per-batch counts, the flags.
        remaining -= sum(k for k, _ in batches[name])
        assert ref_after_log[name] == remaining == ref_flags[name].sum().item(), name
        assert result.robust_acc_after[name] == remaining / N, name
    assert result.clean_acc == clean.sum().item() / N
    assert (result.attacks_run, result.attacks_skipped) == (STANDARD_ATTACKS, [])

    # The final flags, AutoAttack's (y_adv is its prediction at x_adv) and a re-check of its examples; and the
    # adversarial examples themselves, bit for bit.
    final = ref_flags["square"]
    assert torch.equal(reference["y_adv"] == y, final)
    with torch.no_grad():
        assert torch.equal(points["model"](reference["x_adv"]).argmax(1) == y, final)
    _assert_equal(adapter["x_adv"]["square"], reference["x_adv"], "x_adv")
    assert result.robust_acc == final.sum().item() / N
    assert result.max_perturbation == (reference["x_adv"] - points["x"]).abs().max().item()
    assert 0 < result.max_perturbation <= points["eps"] + 1e-6

    # One run's log: pyautoattack's lines, in its order, but for the times.
    assert [_TIME.sub("(total time - s)", m) for m in result.log] == [
        _TIME.sub("(total time - s)", m) for m in reference["log"]]
    assert result.warnings == reference["warnings"]


def _worker_command(points_file: Path, state_path: Path, out: Path) -> list[str]:
    """A process evaluating the saved model and points with a state file, as `evaluate` does."""
    code = (
        "import sys, json, torch\n"
        "from pathlib import Path\n"
        "from advprune.autoattack_eval import run_autoattack\n"
        "from advprune.models import build_model\n"
        "torch.set_num_threads(1)\n"
        "saved = torch.load(sys.argv[1], weights_only=True)\n"
        "model = build_model('digits_mlp', in_channels=1, num_classes=10, image_size=8)\n"
        "model.load_state_dict(saved['model'])\n"
        "r = run_autoattack(model, saved['x'], saved['y'], eps=saved['eps'], device=torch.device('cpu'),\n"
        f"                  batch_size={BATCH}, seed={SEED}, state_path=Path(sys.argv[2]))\n"
        "Path(sys.argv[3]).write_text(json.dumps(r.robust_acc_after))\n"
    )
    return [sys.executable, "-c", code, str(points_file), str(state_path), str(out)]


def _kill_after(process: subprocess.Popen, state_path: Path, attacks_done: int, timeout: float = 300) -> list[str]:
    """SIGKILL `process` as soon as its state file records at least `attacks_done` finished attacks."""
    deadline, seen = time.monotonic() + timeout, None
    while True:
        assert process.poll() is None, f"finished before it could be killed: {process.communicate()}"
        assert time.monotonic() < deadline, f"{state_path} did not reach {attacks_done} attacks in {timeout} s"
        if state_path.exists():
            stamp = state_path.stat().st_mtime_ns
            if stamp != seen:  # written atomically (a rename), so a file that exists is whole
                seen = stamp
                done = torch.load(state_path, weights_only=True)["attacks_done"]
                if len(done) >= attacks_done:
                    break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    return torch.load(state_path, weights_only=True)["attacks_done"]


def test_killed_twice_across_batches_resumes_to_the_uninterrupted_result(points, adapter, tmp_path, monkeypatch):
    points_file, state_path, out = tmp_path / "points.pt", tmp_path / "aa.partial.pt", tmp_path / "result.json"
    torch.save({"model": points["model"].state_dict(), "x": points["x"], "y": points["y"], "eps": points["eps"]},
               points_file)
    command = _worker_command(points_file, state_path, out)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    # Killed while APGD-T works through its batches (APGD-CE's three batches are saved) ...
    first = _kill_after(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE),
                        state_path, 1)
    # ... then the same command continues from the state and is killed again, one or more attacks later.
    second = _kill_after(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE),
                         state_path, len(first) + 1)
    assert first == STANDARD_ATTACKS[: len(first)] and len(first) >= 1
    assert second == STANDARD_ATTACKS[: len(second)] and len(first) < len(second) < len(STANDARD_ATTACKS)
    assert not out.exists()
    saved = torch.load(state_path, weights_only=True)
    for name in second:  # what the killed processes saved is what the uninterrupted run had at that point
        assert saved["robust_acc_after"][name] == adapter["result"].robust_acc_after[name]
    assert torch.equal(saved["robust"], adapter["flags"][second[-1]])

    # Finished in this process: only the attacks not yet done run, and the result is the uninterrupted one.
    resumed = _adapter(points, state_path, monkeypatch)
    assert list(resumed["flags"]) == STANDARD_ATTACKS[len(second):]
    for name in resumed["flags"]:
        assert torch.equal(resumed["flags"][name], adapter["flags"][name]), name
    _assert_equal(resumed["x_adv"]["square"], adapter["x_adv"]["square"], "x_adv")
    result, uninterrupted = resumed["result"], adapter["result"]
    assert result.robust_acc_after == uninterrupted.robust_acc_after
    assert (result.robust_acc, result.clean_acc) == (uninterrupted.robust_acc, uninterrupted.clean_acc)
    assert (result.attacks_run, result.attacks_skipped) == (STANDARD_ATTACKS, [])
    assert result.max_perturbation == uninterrupted.max_perturbation
    assert result.resumed_seconds > 0 and result.seconds >= result.resumed_seconds
    assert [_TIME.sub("", m) for m in result.log] == [_TIME.sub("", m) for m in uninterrupted.log]
