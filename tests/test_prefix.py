"""Pruned models fork from a shared full-data prefix (advprune.prefix), and a fork is the model trained from scratch.

On the CPU, bit for bit: the weights, the optimiser state, the kept set and train.json less its timings and the
`forked_from` record, on both recipes (digits-mnist: Adam, piecewise learning rate; digits-cifar: SGD, cyclic learning
rate and momentum, crops and flips), on `mnist_net` at MNIST's real shape, under both schedules after pruning and for
several pruning epochs. Runs are in-process with one thread (tests/conftest.py), 3 epochs of the digits sets.
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

from advprune import datasets, plan, settings
from advprune.checkpoint import load_checkpoint, save_checkpoint
from advprune.identity import FULL, ModelKey
from advprune.prefix import (
    FORK_RECORD, PREFIX_FILE, DamagedPrefix, ForeignPrefix, PrefixKey, build_prefix, prefix_trainer,
    started_from_prefix,
)
from advprune.training import Trainer

CPU = torch.device("cpu")
SIZES = ["epochs=3", "monitor.n_points=64"]
TIMINGS = {"train_seconds", "scoring_seconds", "monitor_seconds"}  # and each epoch's seconds, and when it was written


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("digits")
    data = {}
    for name in ("digits-mnist", "digits-cifar"):
        path = datasets.prepare(name, root)
        arrays = datasets.load_canonical(path, datasets.get_dataset(name))
        data[name] = (arrays.x_train, arrays.y_train, datasets.file_sha256(path))
    return data


@pytest.fixture(scope="module")
def mnist_shape() -> dict[str, Any]:
    """MNIST's real shape (28x28x1, mnist_net, MNIST's settings) on 64 images of noise."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(64, 28, 28, 1), dtype=np.uint8)
    y = np.arange(64) % 10
    return {"mnist": (x, y, "0" * 64)}


def _trainer(data, dataset: str, key: ModelKey, resolved: dict, out: Path) -> Trainer:
    x, y, sha = data[dataset]
    return Trainer(key, resolved, x, y, out_dir=out, device=CPU, dataset_sha256=sha, show_progress=False)


def _prefix(data, dataset: str, key: ModelKey, resolved: dict, out: Path) -> Path:
    x, y, sha = data[dataset]
    trainer = prefix_trainer(PrefixKey.of(key), resolved, x, y, out_dir=out, device=CPU, dataset_sha256=sha,
                             show_progress=False)  # fmt: skip
    return build_prefix(trainer, key.prune_epoch)


def _without_timings(summary: dict[str, Any]) -> dict[str, Any]:
    summary = {k: v for k, v in summary.items() if k not in TIMINGS | {"forked_from"}}
    summary["history"] = [{k: v for k, v in row.items() if k != "seconds"} for row in summary["history"]]
    summary["provenance"] = {k: v for k, v in summary["provenance"].items() if k != "created_utc"}
    return summary


def assert_same_model(scratch: Path, fork: Path) -> None:
    """The same model: train.json less timings and forked_from, weights, optimiser state and kept set."""
    a, b = (json.loads((d / "train.json").read_text()) for d in (scratch, fork))
    assert _without_timings(a) == _without_timings(b)
    assert [row["weights_sha256"] for row in a["history"]] == [row["weights_sha256"] for row in b["history"]]
    ca, cb = (load_checkpoint(d / "model.pt") for d in (scratch, fork))
    assert ca["model_state"].keys() == cb["model_state"].keys()
    for name in ca["model_state"]:
        assert torch.equal(ca["model_state"][name], cb["model_state"][name]), name
    assert str(ca["optimizer_state"]) == str(cb["optimizer_state"])
    with np.load(scratch / "pruning.npz") as pa, np.load(fork / "pruning.npz") as pb:
        np.testing.assert_array_equal(pa["kept"], pb["kept"])
        np.testing.assert_array_equal(pa["scores"], pb["scores"])


def _scratch_and_forks(data, dataset, overrides, schedule, epoch, tmp_path, strategies=("low+high",)):
    resolved = settings.resolve(dataset, overrides=overrides, schedule_after_pruning=schedule)
    prefix = None
    for strategy in strategies:
        key = ModelKey.from_settings(dataset, strategy, 0.5, epoch, 0, resolved)
        _trainer(data, dataset, key, resolved, tmp_path / f"{strategy}-scratch").fit()
        prefix = prefix or _prefix(data, dataset, key, resolved, tmp_path / "prefix")
        fork = _trainer(data, dataset, key, resolved, tmp_path / f"{strategy}-fork")
        fork.fork_from(prefix)
        summary = fork.fit()
        assert summary["forked_from"]["epoch"] == epoch and summary["resumed_at_epochs"] == []
        assert summary["forked_from"]["weights_sha256"] == summary["history"][epoch - 1]["weights_sha256"]
        assert_same_model(tmp_path / f"{strategy}-scratch", tmp_path / f"{strategy}-fork")
    return prefix


@pytest.mark.parametrize("schedule", ["rescale", "fixed"])
@pytest.mark.parametrize("epoch", [1, 2])
@pytest.mark.parametrize("dataset", ["digits-mnist", "digits-cifar"])
def test_fork_is_the_model_trained_from_scratch(digits, dataset, epoch, schedule, tmp_path):
    """Two strategies fork from one prefix (a score-based one and random), each equal to its run from scratch."""
    _scratch_and_forks(digits, dataset, SIZES, schedule, epoch, tmp_path, strategies=("low+high", "random"))


@pytest.mark.parametrize("schedule", ["rescale", "fixed"])
def test_fork_is_the_model_trained_from_scratch_at_mnist_shape(mnist_shape, schedule, tmp_path):
    sizes = ["epochs=3", "monitor.n_points=16", "monitor.pgd_steps=2", "score_batch_size=32"]
    _scratch_and_forks(mnist_shape, "mnist", sizes, schedule, 2, tmp_path)


def test_a_prefix_is_the_full_data_models_first_epochs(digits, tmp_path):
    """Under `rescale`, the prefix is the full-data model of its seed stopped after e epochs."""
    resolved = settings.resolve("digits-mnist", overrides=SIZES)
    full = ModelKey.from_settings("digits-mnist", "random", 1.0, None, 0, resolved)
    summary = _trainer(digits, "digits-mnist", full, resolved, tmp_path / "full").fit()
    key = ModelKey.from_settings("digits-mnist", "random", 0.5, 2, 0, resolved)
    prefix = load_checkpoint(_prefix(digits, "digits-mnist", key, resolved, tmp_path / "prefix"))
    assert [row["weights_sha256"] for row in prefix["state"]["history"]] == [
        row["weights_sha256"] for row in summary["history"][:2]]
    assert not (tmp_path / "prefix/resume.pt").exists()


def test_epoch_zero_has_no_prefix(digits):
    resolved = settings.resolve("digits-mnist", overrides=SIZES)
    assert PrefixKey.of(ModelKey.from_settings("digits-mnist", "random", 0.5, 0, 0, resolved)) is None
    assert PrefixKey.of(ModelKey.from_settings("digits-mnist", "random", 1.0, None, 0, resolved)) is None
    x, y, sha = digits["digits-mnist"]
    with pytest.raises(ValueError, match="pruning at epoch 0 shares nothing"):
        prefix_trainer(PrefixKey("digits-mnist", "fp32", "rescale", 0, 0), resolved, x, y, out_dir=Path("unused"),
                       device=CPU, dataset_sha256=sha)  # fmt: skip


def test_an_interrupted_prefix_resumes_to_the_same_prefix(digits, tmp_path):
    resolved = settings.resolve("digits-cifar", overrides=SIZES)
    key = ModelKey.from_settings("digits-cifar", "random", 0.5, 2, 0, resolved)
    whole = load_checkpoint(_prefix(digits, "digits-cifar", key, resolved, tmp_path / "whole"))
    x, y, sha = digits["digits-cifar"]
    options = dict(out_dir=tmp_path / "killed", device=CPU, dataset_sha256=sha, show_progress=False)
    prefix_trainer(PrefixKey.of(key), resolved, x, y, **options).fit(stop_at=1)  # killed after epoch 1
    assert (tmp_path / "killed/resume.pt").exists() and not (tmp_path / f"killed/{PREFIX_FILE}").exists()
    resumed = load_checkpoint(build_prefix(prefix_trainer(PrefixKey.of(key), resolved, x, y, **options), 2))
    assert resumed["state"]["resumed_at_epochs"] == [1]
    assert [row["weights_sha256"] for row in resumed["state"]["history"]] == [
        row["weights_sha256"] for row in whole["state"]["history"]]
    # Killed after the last epoch's checkpoint, before it became prefix.pt: finished without training.
    (tmp_path / f"killed/{PREFIX_FILE}").rename(tmp_path / "killed/resume.pt")
    again = load_checkpoint(build_prefix(prefix_trainer(PrefixKey.of(key), resolved, x, y, **options), 2))
    assert again["state"]["history"] == resumed["state"]["history"]


def test_a_damaged_prefix_is_refused_in_one_line_and_rebuilt(digits, tmp_path, caplog):
    resolved = settings.resolve("digits-mnist", overrides=SIZES)
    key = ModelKey.from_settings("digits-mnist", "random", 0.5, 1, 0, resolved)
    prefix = _prefix(digits, "digits-mnist", key, resolved, tmp_path / "prefix")
    good = prefix.read_bytes()
    prefix.write_bytes(good[: len(good) // 2])  # a truncated file
    fork = _trainer(digits, "digits-mnist", key, resolved, tmp_path / "fork")
    with pytest.raises(DamagedPrefix) as refused:
        fork.fork_from(prefix)
    assert "\n" not in str(refused.value) and "damaged prefix" in str(refused.value)
    assert not prefix.exists() and not (tmp_path / "fork/resume.pt").exists()  # never used; removed to be rebuilt
    # The prefix job meets a damaged file in its place: refused, said so, and rebuilt.
    prefix.write_bytes(b"not a checkpoint")
    rebuilt = _prefix(digits, "digits-mnist", key, resolved, tmp_path / "prefix")
    assert "refused" in caplog.text and "rebuilding" in caplog.text
    (tmp_path / "good.pt").write_bytes(good)
    assert _weights(load_checkpoint(rebuilt)) == _weights(load_checkpoint(tmp_path / "good.pt"))


def _weights(checkpoint: dict[str, Any]) -> list[str]:
    return [row["weights_sha256"] for row in checkpoint["state"]["history"]]


def test_a_prefix_of_another_run_is_refused_and_left_alone(digits, tmp_path):
    resolved = settings.resolve("digits-mnist", overrides=SIZES)
    seed1 = ModelKey.from_settings("digits-mnist", "random", 0.5, 1, 1, resolved)
    prefix = _prefix(digits, "digits-mnist", seed1, resolved, tmp_path / "prefix")
    seed0 = ModelKey.from_settings("digits-mnist", "random", 0.5, 1, 0, resolved)
    with pytest.raises(ForeignPrefix, match="another run"):
        _trainer(digits, "digits-mnist", seed0, resolved, tmp_path / "fork").fork_from(prefix)
    assert prefix.exists()
    other_epoch = ModelKey.from_settings("digits-mnist", "random", 0.5, 2, 1, resolved)
    with pytest.raises(ForeignPrefix, match="after epoch 1"):
        _trainer(digits, "digits-mnist", other_epoch, resolved, tmp_path / "fork2").fork_from(prefix)


def test_a_killed_fork_resumes_from_its_own_state(digits, tmp_path):
    """A fork's first checkpoint is its own resume.pt: killed, it resumes without its prefix (deleted here)."""
    resolved = settings.resolve("digits-mnist", overrides=SIZES)
    key = ModelKey.from_settings("digits-mnist", "low+high", 0.5, 1, 0, resolved)
    _trainer(digits, "digits-mnist", key, resolved, tmp_path / "scratch").fit()
    prefix = _prefix(digits, "digits-mnist", key, resolved, tmp_path / "prefix")
    _trainer(digits, "digits-mnist", key, resolved, tmp_path / "fork").fork_from(prefix)  # killed at once
    prefix.unlink()
    assert started_from_prefix(tmp_path / "fork")
    resumed = _trainer(digits, "digits-mnist", key, resolved, tmp_path / "fork")
    assert resumed.try_resume()
    summary = resumed.fit()
    assert summary["resumed_at_epochs"] == [1] and summary["forked_from"]["epoch"] == 1
    summary_path = tmp_path / "fork/train.json"
    record = json.loads(summary_path.read_text())
    record["resumed_at_epochs"] = []
    summary_path.write_text(json.dumps(record))
    assert_same_model(tmp_path / "scratch", tmp_path / "fork")
    assert json.loads((tmp_path / f"fork/{FORK_RECORD}").read_text()) == summary["forked_from"]


def test_started_from_prefix_reads_a_models_files(tmp_path):
    """What the workflow plans a model's prefix input by: a model trained from scratch keeps its inputs."""
    assert started_from_prefix(tmp_path / "new") is None  # not begun: the plan decides (plan.prefixes_of)
    (tmp_path / "old").mkdir()
    (tmp_path / "old/train.json").write_text(json.dumps({"seed": 0}))  # trained before prefixes
    assert not started_from_prefix(tmp_path / "old")
    (tmp_path / "forked").mkdir()
    (tmp_path / "forked/train.json").write_text(json.dumps({"forked_from": {"epoch": 1}}))
    assert started_from_prefix(tmp_path / "forked")
    (tmp_path / "partial").mkdir()
    save_checkpoint(tmp_path / "partial/resume.pt", {})  # a run from scratch, interrupted
    assert not started_from_prefix(tmp_path / "partial")


def test_only_prefixes_that_two_models_share_are_planned():
    """A prefix of one model would be a job that saves nothing: that model trains from scratch. Two models of one
    seed, schedule and pruning epoch share one; the full-data model and pruning at epoch 0 have none."""
    alone = ModelKey.create("digits-mnist", "random", 0.4, 1, 0)
    pair = [ModelKey.create("digits-mnist", strategy, 0.4, 3, 0) for strategy in ("random", "low+high")]
    other_seed = ModelKey.create("digits-mnist", "low+high", 0.4, 3, 1)
    fixed = ModelKey.create("digits-mnist", "random", 0.4, 3, 0, schedule="fixed")
    at_zero = [ModelKey.create("digits-mnist", strategy, 0.4, 0, 0) for strategy in ("random", "low+high")]
    full = ModelKey.create("digits-mnist", FULL, 1.0, None, 0)
    keys = [alone, *pair, other_seed, fixed, *at_zero, full]
    assert plan.prefixes_of(keys) == [PrefixKey("digits-mnist", "fp32", "rescale", 3, 0)]
    assert plan.prefixes_of([alone, *pair[:1]]) == []
    assert plan.prefixes_of([*keys, ModelKey.create("digits-mnist", "high", 0.6, 1, 0)]) == [
        PrefixKey("digits-mnist", "fp32", "rescale", 1, 0), PrefixKey("digits-mnist", "fp32", "rescale", 3, 0),
    ]  # fmt: skip


def test_the_prefix_command_holds_its_directory(data_root, tmp_path, monkeypatch, capsys):
    """As `train`: by hand, a second writer is refused in one line; a workflow job waits for the one that holds the
    directory (a job of a killed Snakemake), then keeps the prefix it finished instead of training it again."""
    import threading

    from advprune import cli as advprune_cli
    from advprune.locks import ExclusiveLock

    def argv(out: Path) -> list[str]:
        return ["prefix", "--dataset", "digits-mnist", "--seed", "0", "--data-root", str(data_root), "--device", "cpu",
                "--prune-epoch", "1", "--out", str(out), "--no-progress", *(w for s in SIZES for w in ("--set", s))]

    out = tmp_path / "prefix"
    out.mkdir()
    orphan = ExclusiveLock(out / ".train.lock")
    assert orphan.try_acquire()
    assert advprune_cli.main(argv(out)) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "another `advprune prefix` is writing" in err[0], err
    assert not (out / PREFIX_FILE).exists()

    # The orphan's work: a prefix that appears, finished, while the workflow's job waits.
    finished = tmp_path / "finished"
    assert advprune_cli.main(argv(finished)) == 0
    assert "epoch 1/" in capsys.readouterr().err  # what training says, and the job below must not
    threading.Timer(1.0, lambda: (os.link(finished / PREFIX_FILE, out / PREFIX_FILE), orphan.release())).start()
    monkeypatch.setenv(advprune_cli.WORKFLOW_JOB, "1")
    assert advprune_cli.main(argv(out)) == 0
    err = capsys.readouterr().err
    assert "waiting for another `advprune prefix`" in err and "epoch 1/" not in err, err
    assert (out / PREFIX_FILE).samefile(finished / PREFIX_FILE)


def test_the_command_line_forks(data_root, tmp_path):
    """`advprune prefix` then `advprune train --fork-from`: the model `advprune train` trains from scratch."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    common = ["--dataset", "digits-mnist", "--seed", "0", "--data-root", str(data_root), "--device", "cpu",
              "--schedule-after-pruning", "fixed", *(w for s in SIZES for w in ("--set", s))]  # fmt: skip
    run = ["--strategy", "low+high", "--keep", "0.5", "--prune-epoch", "2"]

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "advprune", *args], env=env, capture_output=True, text=True,
                              timeout=600)  # fmt: skip

    prefix = cli("prefix", *common, "--prune-epoch", "2", "--out", str(tmp_path / "prefix"))
    assert prefix.returncode == 0, prefix.stderr
    assert prefix.stdout.strip() == str(tmp_path / "prefix" / PREFIX_FILE)
    fork = cli("train", *common, *run, "--fork-from", str(tmp_path / "prefix" / PREFIX_FILE),
               "--out", str(tmp_path / "fork"))
    scratch = cli("train", *common, *run, "--fork-from=", "--out", str(tmp_path / "scratch"))
    assert fork.returncode == 0 and scratch.returncode == 0, fork.stderr + scratch.stderr
    assert "forking" in fork.stderr
    assert_same_model(tmp_path / "scratch", tmp_path / "fork")
    refused = cli("train", *common, "--strategy", "random", "--keep", "1.0", "--fork-from", "x.pt", "--out",
                  str(tmp_path / "full"))  # fmt: skip
    assert refused.returncode != 0 and "--fork-from: only a pruned run" in refused.stderr
