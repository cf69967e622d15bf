"""`python -m advprune bench`: its data, its record as `cost` timings, and `cost --timings` reading it.

The tiny run itself (every measuring code path, on the CPU) runs in tests/test_device_check.py, through the script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from advprune import bench

REPO = Path(__file__).resolve().parents[1]


def record(mnist_per_k: dict[int, float], aa_per_1000: float) -> dict:
    """A bench record with MNIST measured at the given seconds per model-epoch per k."""
    jobs = [{"k": k, "epoch_seconds": [s * k], "seconds_per_model_epoch": s, "throughput_vs_reference": 1.0}
            for k, s in mnist_per_k.items()]
    return {"schema": bench.SCHEMA, "size": "full", "device": "Test GPU", "created_utc": "2026-01-01T00:00:00Z",
            "shapes": {"mnist": {"jobs": jobs, "autoattack": {"n": 1000, "seconds": aa_per_1000,
                                                              "seconds_per_1000": aa_per_1000}}}}


def test_synthetic_data_have_the_real_shapes_and_a_learnable_label():
    for shape, size in (("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))):
        x, y = bench.synthetic(shape, 500, seed=0)
        assert x.shape == (500, *size) and x.dtype == np.uint8 and set(np.unique(y)) <= set(range(10))
        # The label is in the image: the nearest class mean (from another draw) predicts it far above chance.
        x2, y2 = bench.synthetic(shape, 500, seed=1)
        means = np.stack([x2[y2 == c].reshape((y2 == c).sum(), -1).mean(0) for c in range(10)])
        guess = np.argmin(((x.reshape(500, -1)[:, None] - means[None]) ** 2).sum(-1), axis=1)
        assert (guess == y).mean() > 0.9


def test_timings_take_the_asked_k_and_refuse_an_unmeasured_one():
    measured = record({1: 2.0, 8: 0.4}, 20.0)
    assert bench.timings(measured, 8)["datasets"] == {"mnist": {"epoch_seconds": 0.4,
                                                                "autoattack_seconds_per_1000": 20.0}}
    with pytest.raises(ValueError, match="k = 1, 8 .* not 4"):
        bench.timings(measured, 4)


def cost(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "advprune", "cost", "fig3", *args], cwd=REPO, capture_output=True,
                          text=True)


def test_cost_reads_a_bench_file_as_it_reads_the_same_numbers_in_timings_layout(tmp_path):
    (tmp_path / "bench.json").write_text(json.dumps(record({1: 2.0, 4: 0.5}, 20.0)))
    (tmp_path / "same.yaml").write_text(yaml.safe_dump({"device": "x", "datasets": {
        "mnist": {"epoch_seconds": 0.5, "autoattack_seconds_per_1000": 20.0}}}))
    from_bench = cost("--timings", str(tmp_path / "bench.json"), "--jobs-per-gpu", "4")
    oracle = cost("--timings", str(tmp_path / "same.yaml"))
    assert from_bench.returncode == oracle.returncode == 0, from_bench.stderr + oracle.stderr
    table = [line for line in from_bench.stdout.splitlines() if line.startswith("| fig3")]
    assert table and table == [line for line in oracle.stdout.splitlines() if line.startswith("| fig3")]
    assert "Test GPU" in from_bench.stdout and "training at 4 jobs per GPU" in from_bench.stdout


def test_cost_refuses_jobs_per_gpu_without_a_bench_file():
    result = cost("--jobs-per-gpu", "4")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "advprune bench" in result.stderr


def test_max_seconds_stops_the_jobs_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "advprune", "bench", "--tiny", "--device", "cpu", "--shapes",
                             "mnist", "--max-seconds", "1", "--out", str(tmp_path / "b.json")], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    errors = [line for line in result.stderr.splitlines() if line.startswith("advprune bench: error:")]
    assert result.returncode == 2 and len(errors) == 1 and "out of time" in errors[0], result.stderr
    if (tmp_path / "b.json").exists():  # whatever finished before the stop, marked unfinished
        assert json.loads((tmp_path / "b.json").read_text())["complete"] is False
