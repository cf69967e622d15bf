"""The traps a new user met in the first hour (issue 17), each shown gone: command-line help and arguments, a foreign
checkpoint, the Slurm profile's placeholders, scripts/setup.sh's choice of Python, training and evaluation logs
one can tail, and a moved checkout that replans nothing."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from test_bad_input import assert_refused, run_cli

from advprune import cli
from workflow_helpers import copy_workflow, planned_jobs, snakemake

REPO = Path(__file__).resolve().parents[1]
TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


# -- command line -----------------------------------------------------------------------------------------------------
def _subcommands(parser: argparse.ArgumentParser | None = None,
                 prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every command's parser by its words, `build fig8` (an artefact of `build`) included."""
    parser = parser or cli.build_parser()
    action = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    found = {}
    for name, sub in (action.choices if action else {}).items():
        found[prefix + name] = sub
        found |= _subcommands(sub, f"{prefix}{name} ")
    return found


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_option_has_help_and_help_shows_its_default(command: str) -> None:
    parser = _subcommands()[command]
    text = " ".join(parser.format_help().split())
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"advprune {command}: {action.dest} has no help text"
        default = action.default
        if action.required or default in (None, False) or default == []:
            continue
        shown = " ".join(map(str, default)) if isinstance(default, list) else str(default)
        assert f"(default: {shown})" in text, f"advprune {command} --help does not show {action.dest}'s default"


def test_cost_takes_a_target_after_several_config_files() -> None:
    # As one writes it for Snakemake: the target after the files must not be read as a third config file.
    result = run_cli("cost", "--configfile", REPO / "config.yaml", REPO / "profiles/cpu/cpu.yaml", "fig3")
    assert result.code == 0, result.stderr
    rows = [line.split("|")[1].strip() for line in result.stdout.splitlines() if line.startswith("| ")]
    assert rows[1:] == ["fig3"]  # the header, then only the target asked for
    assert_refused(run_cli("cost", "--configfile", "fig3"), "names no file")


def test_a_missing_prune_epoch_says_what_to_pass(data_root: Path, tmp_path: Path) -> None:
    result = run_cli("train", "--dataset", "digits-mnist", "--keep", "0.4", "--seed", "0", "--out", tmp_path / "run",
                     "--data-root", data_root, "--device", "cpu")
    line = assert_refused(result, "pass --prune-epoch E", "[0, 9]")
    assert "None" not in line


@pytest.mark.parametrize("content", ["bytes", "pickle"])
def test_a_foreign_pt_file_is_not_an_advprune_checkpoint(content: str, data_root: Path, tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    if content == "bytes":
        path.write_bytes(os.urandom(256))
    else:  # a pickle weights_only refuses: torch's message is a page of advice to rerun with weights_only=False
        torch.save(argparse.Namespace(weights=[1.0]), path)
    result = run_cli("evaluate", "--checkpoint", path, "--out", tmp_path / "m.json", "--data-root", data_root,
                     "--device", "cpu")
    line = assert_refused(result, "not an advprune checkpoint")
    assert "weights_only" not in line


# -- scripts/setup.sh ---------------------------------------------------------------------------------------------
def _fake_python(directory: Path, name: str, version: tuple[int, int]) -> None:
    """A stand-in interpreter: answers the version check, and records that it was asked to create the venv."""
    script = directory / name
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = -c ]; then exec {sys.executable} -c "import sys; sys.version_info = {version + (0,)!r}'
        '; exec(sys.argv[1])" "$2"; fi\n'
        f'echo {name} > "$(dirname "$0")/chosen"; exit 3\n'
    )
    script.chmod(0o755)


def _setup(tmp_path: Path, pythons: dict[str, tuple[int, int]]) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, version in pythons.items():
        _fake_python(bin_dir, name, version)
    for tool in ("sh", "dirname", "cat", "sha256sum", "cut"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    env = {"PATH": str(bin_dir), "VENV": str(tmp_path / "venv"), "HOME": str(tmp_path)}
    return subprocess.run([shutil.which("bash"), str(REPO / "scripts/setup.sh")], env=env, capture_output=True,
                          text=True, timeout=60)


def test_setup_takes_any_python_from_3_11(tmp_path: Path) -> None:
    result = _setup(tmp_path, {"python3": (3, 10), "python3.13": (3, 13)})
    assert (tmp_path / "bin/chosen").read_text().strip() == "python3.13", result.stderr


def test_setup_says_which_python_it_needs(tmp_path: Path) -> None:
    result = _setup(tmp_path, {"python3": (3, 10)})
    assert result.returncode == 2 and not (tmp_path / "bin/chosen").exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs Python 3.11 or newer" in lines[0] and "PYTHON=" in lines[0], result.stderr


# -- the Slurm profile ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("slurm-profile"))


@pytest.mark.workflow  # the fast lane starts no Snakemake
def test_the_slurm_profile_refuses_its_placeholders(workflow_copy: Path) -> None:
    result = snakemake(workflow_copy, "--profile", "profiles/slurm", "--configfile", "profiles/demo/demo.yaml", "-n",
                       timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "still has placeholders" in output and "slurm_account=CHANGE_ME_account" in output, output[-3000:]
    assert "set-resources: train_model: slurm_partition=CHANGE_ME_gpu" in output


@pytest.mark.workflow
def test_the_slurm_profile_with_site_values_plans(workflow_copy: Path) -> None:
    filled = workflow_copy / "profiles/slurm-site"
    filled.mkdir()
    text = (workflow_copy / "profiles/slurm/config.yaml").read_text().replace("CHANGE_ME_", "site_")
    (filled / "config.yaml").write_text(text)
    assert "CHANGE_ME" not in yaml.safe_dump(yaml.safe_load(text))
    jobs = planned_jobs(workflow_copy, "results/models.csv", "--profile", "profiles/slurm-site", "--configfile",
                        "profiles/demo/demo.yaml")  # the target first: Snakemake's --configfile would take it
    assert jobs["train_model"] > 0 and jobs["evaluate_model"] == jobs["train_model"]


# -- the demo: logs one can tail, and a checkout moved with its results --------------------------------------------
@pytest.mark.workflow
def test_demo_training_logs_have_a_timestamped_line_per_epoch(demo) -> None:
    directory, _ = demo
    logs = sorted((directory / "logs/train_model").rglob("*.log"))
    assert logs
    for log in logs:
        relative = log.relative_to(directory / "logs/train_model").with_suffix("")
        dataset, precision, run, seed = relative.parts
        summary = json.loads((directory / "results/models" / dataset / precision / run / seed / "train.json").read_text())
        text = log.read_text()
        epochs = re.findall(rf"^{TIMESTAMP} INFO advprune\.training: epoch (\d+)/(\d+): lr \S+, loss \S+, "
                            r"train acc \S+, PGD acc \S+, \d+ points, \S+ s$", text, flags=re.M)
        logged = [row["epoch"] for row in summary["history"]]
        if summary["forked_from"] is not None:  # its first epochs are its prefix's, logged by the prefix's job
            assert f"from {summary['forked_from']['prefix']} after epoch {summary['forked_from']['epoch']}" in text
            logged = [epoch for epoch in logged if epoch > summary["forked_from"]["epoch"]]
        assert [int(e) for e, _ in epochs] == logged, log
        pruned = re.findall(rf"^{TIMESTAMP} INFO advprune\.training: pruned after epoch (\d+): \S+ keeps (\d+) of",
                            text, flags=re.M)
        if summary["prune_epoch"] is None:
            assert pruned == [], log
        else:
            assert pruned == [(str(summary["prune_epoch"]), str(summary["n_kept"]))], log
        assert "\r" not in text  # no progress bar in a log file
    for log in sorted((directory / "logs/train_prefix").rglob("*.log")):  # a prefix logs its e epochs
        epoch = int(log.parent.name.rpartition("_e")[2])
        epochs = re.findall(rf"^{TIMESTAMP} INFO advprune\.training: epoch (\d+)/\d+: ", log.read_text(), flags=re.M)
        assert [int(e) for e in epochs] == list(range(1, epoch + 1)), log


@pytest.mark.workflow
def test_demo_evaluation_logs_have_a_line_per_attack(demo) -> None:
    directory, _ = demo
    logs = sorted((directory / "logs/evaluate_model").rglob("*.log"))
    assert logs
    for log in logs:
        attacks = re.findall(rf"^{TIMESTAMP} INFO advprune\.autoattack_eval: AutoAttack (\S+): robust accuracy "
                             r"[0-9.]+% \(\d+ of \d+ points\)", log.read_text(), flags=re.M)
        assert attacks and attacks == ["apgd-ce", "apgd-t", "fab-t", "square"][: len(attacks)], log


@pytest.mark.workflow
def test_a_moved_checkout_with_its_results_plans_nothing(demo, tmp_path: Path) -> None:
    """Rules list code files as inputs; Snakemake records input paths, so they must not be absolute."""
    directory, _ = demo
    moved = tmp_path / "elsewhere"
    shutil.copytree(directory, moved, symlinks=True)  # copy2: modification times kept, as `cp -a` or rsync -a would
    assert planned_jobs(moved, "--profile", "profiles/demo") == {}


def test_a_collapse_is_logged_when_the_pgd_check_flags_it(data_root: Path, tmp_path: Path, monkeypatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """The drop rule cannot be provoked on the digits (tests/test_collapse.py), so the PGD check is scripted:
    0.60 then 0.30 is a fall of 30 points, more than the 20 the rule allows."""
    from advprune import datasets, settings
    from advprune.identity import ModelKey
    from advprune.training import Trainer

    accuracies = iter([0.6, 0.3])
    monkeypatch.setattr("advprune.training.pgd_accuracy", lambda *a, **k: torch.tensor(next(accuracies)))
    resolved = settings.resolve("digits-mnist", overrides=["epochs=2", "monitor.n_points=16"])
    path = datasets.canonical_path(data_root, "digits-mnist")
    arrays = datasets.load_canonical(path)
    key = ModelKey.from_settings("digits-mnist", "random", 0.5, 1, 0, resolved)
    trainer = Trainer(key, resolved, arrays.x_train, arrays.y_train,
                      out_dir=tmp_path / "run", device=torch.device("cpu"), dataset_sha256=datasets.file_sha256(path),
                      show_progress=False)
    with caplog.at_level("INFO", logger="advprune"):
        summary = trainer.fit()
    messages = [(record.levelname, record.getMessage()) for record in caplog.records]
    assert [m.split(":")[0] for _, m in messages if m.startswith("epoch ")] == ["epoch 1/2", "epoch 2/2"]
    assert ("WARNING", "collapse: PGD accuracy fell from 0.600 to 0.300 at epoch 2 (by more than 0.2): catastrophic "
            "overfitting") in messages
    assert summary["collapsed"] and summary["collapse_epoch"] == 2
    assert any(level == "WARNING" and m.startswith("collapsed at epoch 2") for level, m in messages)
    assert any(m.startswith("pruned after epoch 1: random keeps 719 of 1437 points") for _, m in messages)
