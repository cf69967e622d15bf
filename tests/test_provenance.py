"""Provenance records: the code state read from git, stable config hashes, and an artefact's list of its models."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from advprune import METHOD_VERSION, provenance

REPO = Path(__file__).resolve().parents[1]


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def fake_checkout(tmp_path, monkeypatch):
    """A throwaway git repository standing in for the project checkout."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "code.py").write_text("x = 1\n")
    git(root, "init", "-q")
    git(root, "add", "code.py")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "start")
    monkeypatch.setattr(provenance, "project_root", lambda: root)
    provenance.code_state.cache_clear()
    yield root
    provenance.code_state.cache_clear()


def test_code_state_names_the_commit_and_sees_edits_to_tracked_files(fake_checkout):
    head = git(fake_checkout, "rev-parse", "HEAD")
    assert provenance.code_state() == {"commit": head, "dirty": False}

    (fake_checkout / "new_untracked.txt").write_text("results are not code\n")
    provenance.code_state.cache_clear()
    assert provenance.code_state() == {"commit": head, "dirty": False}

    (fake_checkout / "code.py").write_text("x = 2\n")
    provenance.code_state.cache_clear()
    assert provenance.code_state() == {"commit": head, "dirty": True}


def test_code_state_is_not_dirtied_by_documents_or_published_records(fake_checkout):
    """Publishing a record writes into docs/ before it builds the record's claims: those writes, prose and tests do not
    make the build dirty; a change to code or a setting does."""
    for path in ("docs/results/rec/models.csv", "docs/method.md", "README.md", "tests/test_x.py", "config.yaml"):
        (fake_checkout / path).parent.mkdir(parents=True, exist_ok=True)
        (fake_checkout / path).write_text("a\n")
    git(fake_checkout, "add", ".")
    git(fake_checkout, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "more")
    head = git(fake_checkout, "rev-parse", "HEAD")
    for path in ("docs/results/rec/models.csv", "docs/method.md", "README.md", "tests/test_x.py"):
        (fake_checkout / path).write_text("b\n")
    provenance.code_state.cache_clear()
    assert provenance.code_state() == {"commit": head, "dirty": False}
    (fake_checkout / "config.yaml").write_text("b\n")
    provenance.code_state.cache_clear()
    assert provenance.code_state() == {"commit": head, "dirty": True}


def test_code_state_outside_a_checkout_is_unknown_not_wrong(tmp_path, monkeypatch):
    outer = tmp_path / "outer"
    (outer / "copy").mkdir(parents=True)
    git(outer, "init", "-q")  # a copy of the workflow inside some other repository must not take its commit
    monkeypatch.setattr(provenance, "project_root", lambda: outer / "copy")
    provenance.code_state.cache_clear()
    try:
        assert provenance.code_state() == {"commit": None, "dirty": None}
    finally:
        provenance.code_state.cache_clear()


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="not a git checkout")
def test_this_checkout_reports_its_own_head():
    provenance.code_state.cache_clear()
    assert provenance.code_state()["commit"] == git(REPO, "rev-parse", "HEAD")


def test_config_hash_ignores_key_order_but_not_values():
    a = {"eps": 0.3, "monitor": {"n_points": 512, "pgd_steps": 10}}
    b = {"monitor": {"pgd_steps": 10, "n_points": 512}, "eps": 0.3}
    assert provenance.config_sha256(a) == provenance.config_sha256(b)
    assert provenance.config_sha256(a) != provenance.config_sha256({**a, "eps": 0.31})


def test_run_record_holds_every_field_the_issue_names(fake_checkout):
    record = provenance.run_record(config={"eps": 0.1}, dataset_sha256="ab" * 32, device="cpu (x", jobs_on_device=3)
    assert record["commit"] == git(fake_checkout, "rev-parse", "HEAD") and record["dirty"] is False
    assert record["method_version"] == METHOD_VERSION
    assert record["config_sha256"] == provenance.config_sha256({"eps": 0.1})
    assert record["dataset_sha256"] == "ab" * 32
    assert {"torch", "pyautoattack", "numpy"} <= set(record["versions"])
    assert (record["device"], record["jobs_on_device"]) == ("cpu (x", 3)


def test_artefact_record_lists_its_models_and_flags_a_mixed_build(tmp_path):
    table = tmp_path / "fig2.csv"
    table.write_text("a,b\n1,2\n")
    models = [
        {"run_dir": "results/m/a", "train_commit": "c1", "train_dirty": False, "eval_commit": "c1", "eval_dirty": False,
         "config_sha256": "h1", "dataset_sha256": "d", "device": "gpu", "jobs_on_device": 1, "method_version": 1},
        {"run_dir": "results/m/b", "train_commit": "c2", "train_dirty": True, "eval_commit": "c2", "eval_dirty": False,
         "config_sha256": "h1", "dataset_sha256": "d", "device": "gpu", "jobs_on_device": 4, "method_version": 1},
    ]  # fmt: skip
    path = provenance.write_artefact_record(
        tmp_path / "fig2.pdf", "fig2", outputs=[tmp_path / "fig2.pdf"], inputs=[table], models=models,
        parameters={"table": table, "seed": 0},
    )
    assert path == tmp_path / "fig2.provenance.json"
    record = json.loads(path.read_text())
    assert record["artefact"] == "fig2" and [m["run_dir"] for m in record["models"]] == ["results/m/a", "results/m/b"]
    assert record["inputs"][0]["sha256"] == provenance.hashlib.sha256(table.read_bytes()).hexdigest()
    summary = record["models_summary"]
    assert summary["n_models"] == 2 and summary["train_commits"] == ["c1", "c2"] and summary["any_dirty"] is True
    assert summary["jobs_on_device"] == [1, 4] and summary["config_hashes"] == ["h1"]
    assert record["parameters"] == {"table": str(table), "seed": 0}
