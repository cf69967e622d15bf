"""scripts/device-check.sh in the mode CI runs (`--device cpu --tiny`), its refusals, and the wheel repacking it
relies on. The run is shared by this module's tests: it also tests `advprune bench --tiny` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts/device-check.sh"
sys.path.insert(0, str(REPO / "scripts"))
from repack_wheel import repack  # noqa: E402


def check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=900,
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(Path.home())})


@pytest.fixture(scope="module")
def cpu_check(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("device-check")
    result = check(str(out), "--device", "cpu", "--tiny")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return out


@pytest.mark.workflow
@pytest.mark.slow
def test_every_step_ran_and_left_its_files(cpu_check):
    steps = {line.split()[0]: int(line.split()[1]) for line in (cpu_check / "steps.txt").read_text().splitlines()}
    assert steps == {"pytest-gpu": 0, "workflow": 0, "bench": 0}
    for name in ("device-check.log", "summary.txt", "machine.txt", "pytest-gpu.xml", "bench.json", "workflow.log"):
        assert (cpu_check / name).stat().st_size > 0, name


@pytest.mark.workflow
@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine the GPU tests run instead of skipping")
def test_the_gpu_tests_were_collected_and_skipped_on_the_cpu(cpu_check):
    suite = ElementTree.parse(cpu_check / "pytest-gpu.xml").getroot().find("testsuite")
    assert int(suite.get("tests")) >= 10 and suite.get("skipped") == suite.get("tests")


@pytest.mark.workflow
@pytest.mark.slow
def test_two_models_were_trained_and_evaluated_through_the_workflow(cpu_check):
    for seed in (0, 1):
        run = cpu_check / f"workflow/results/models/digits-mnist/fp32/full/seed{seed}"
        train = json.loads((run / "train.json").read_text())
        metrics = json.loads((run / "autoattack-n10.json").read_text())
        assert train["device"].startswith("cpu") and train["seed"] == seed
        assert 0 <= metrics["autoattack_acc"] <= metrics["clean_acc_subset"] <= 1 and metrics["n_examples"] == 10


@pytest.mark.workflow
@pytest.mark.slow
def test_bench_record_adds_up(cpu_check):
    """Each derived number recomputed from the raw epoch seconds: per model-epoch = mean / k x full / measured
    points, throughput = reference / that."""
    record = json.loads((cpu_check / "bench.json").read_text())
    assert (record["schema"], record["size"], record["complete"]) == ("advprune.bench/1", "tiny", True)
    assert set(record["shapes"]) == {"mnist", "cifar10"}
    for shape, row in record["shapes"].items():
        scale = row["full_train_points"] / row["train_points"]
        reference = row["reference"]["epoch_seconds"] * scale
        assert row["reference"]["seconds_per_model_epoch"] == pytest.approx(reference)
        assert [job["k"] for job in row["jobs"]] == [1, 2]
        for job in row["jobs"]:
            assert len(job["epoch_seconds"]) == job["k"] and all(s > 0 for s in job["epoch_seconds"])
            per = np.mean(job["epoch_seconds"]) / job["k"] * scale
            assert job["seconds_per_model_epoch"] == pytest.approx(per)
            assert job["throughput_vs_reference"] == pytest.approx(reference / per)
        aa = row["autoattack"]
        assert aa["n"] == 4 and aa["seconds_per_1000"] == pytest.approx(aa["seconds"] * 250)
        assert 0 <= aa["robust_acc"] <= aa["clean_acc"] <= 1
    cost = subprocess.run([sys.executable, "-m", "advprune", "cost", "fig3", "--timings",
                           str(cpu_check / "bench.json"), "--jobs-per-gpu", "2"], capture_output=True, text=True,
                          cwd=REPO)
    assert cost.returncode == 0 and "| fig3 | 85 |" in cost.stdout, cost.stderr


@pytest.mark.parametrize("args, says", [
    ((), "usage"), (("--tiny",), "usage"), (("OUT", "--device", "tpu"), "--device must be cuda or cpu"),
    (("OUT", "--fast"), "unknown argument '--fast'"),
])
def test_bad_arguments_are_one_clear_line(tmp_path, args, says):
    result = check(*(str(tmp_path / a) if a == "OUT" else a for a in args))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and says in result.stderr, result.stderr


def test_repacked_wheel_lacks_the_dropped_folder_and_its_record_matches(tmp_path):
    wheel = tmp_path / "in" / "pkg-1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    files = {"pkg/__init__.py": "x = 1\n", "pkg/examples/big.bin": "0" * 1000, "pkg/examples/a/b.py": "",
             "pkg/examples_not/keep.py": "", "pkg-1.0.dist-info/METADATA": "Name: pkg\n"}
    record = "".join(f"{name},sha256=x,1\n" for name in files) + "pkg-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in {**files, "pkg-1.0.dist-info/RECORD": record}.items():
            z.writestr(name, text)
    with zipfile.ZipFile(repack(wheel, ["pkg/examples/"], tmp_path / "out")) as z:
        names = set(z.namelist())
        listed = {line.split(",")[0] for line in z.read("pkg-1.0.dist-info/RECORD").decode().splitlines()}
    assert names == {"pkg/__init__.py", "pkg/examples_not/keep.py", "pkg-1.0.dist-info/METADATA",
                     "pkg-1.0.dist-info/RECORD"}
    assert listed == names


def test_a_python_lacking_packages_without_wheels_is_one_clear_line(tmp_path):
    """/usr/bin/python3 here has no torch: without --wheels the check stops at once, naming what is missing."""
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no /usr/bin/python3 on this machine")
    result = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out"), "--device", "cpu"], capture_output=True,
                            text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHON": "/usr/bin/python3"})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "torch" in result.stderr and "--wheels" in result.stderr
