"""The README documents what the code writes: the config reference and every key of train.json and metrics.json."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from advprune import datasets, settings
from advprune.evaluation import evaluate_checkpoint
from advprune.training import Run, Trainer

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def documented_keys() -> set[str]:
    """Keys named in the first column of the README's key tables (`a`, `b` | meaning)."""
    keys = set()
    for line in README.splitlines():
        if line.startswith("| `"):
            keys |= set(re.findall(r"`([a-z_0-9]+)`", line.split("|")[1]))
    return keys


def test_config_reference_is_current():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts/config_reference.py"), "--check", str(REPO / "README.md")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """A real (short) training run and evaluation, to read the keys they write."""
    root = tmp_path_factory.mktemp("readme")
    data_file = datasets.prepare("digits-mnist", root / "data")
    arrays = datasets.load_canonical(data_file)
    resolved = settings.resolve("digits-mnist", overrides=["epochs=2"])
    run = Run.create("digits-mnist", "low+high", 0.5, 1, 0, resolved["epochs"])
    trainer = Trainer(run, resolved, arrays.x_train, arrays.y_train, out_dir=root / "run",
                      device=torch.device("cpu"), dataset_sha256=datasets.file_sha256(data_file), show_progress=False)
    summary = trainer.fit()
    metrics = evaluate_checkpoint(root / "run/model.pt", n_examples=5, data_root=root / "data",
                                  device=torch.device("cpu"))
    return summary, metrics


def test_every_train_json_key_is_documented(outputs):
    summary, _ = outputs
    history_keys = set(summary["history"][0])
    assert set(summary) - documented_keys() == set()
    history_row = next(line for line in README.splitlines() if line.startswith("| `history`"))
    assert {key for key in history_keys if f"`{key}`" not in history_row} == set()


def test_every_metrics_json_key_is_documented(outputs):
    _, metrics = outputs
    json.dumps(metrics)  # what `evaluate` writes must be plain JSON
    assert set(metrics) - documented_keys() == set()


def test_every_image_the_readme_shows_is_committed():
    """The README's images (the demo's table and figure) are files of the repository, under docs/."""
    images = re.findall(r'<img src="([^"]+)"', README) + re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert images
    tracked = set(subprocess.run(["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True).stdout.split())
    for image in images:
        assert (REPO / image).is_file() and image in tracked, image
