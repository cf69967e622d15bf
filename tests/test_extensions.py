"""Extensibility: a plugin file adds a pruning strategy and a dataset through the registries, and the workflow plans
and runs them from config alone (examples/plugin.py, the README's example)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from workflow_helpers import copy_workflow, planned_jobs, snakemake, write_config_overlay

from advprune import cli, datasets, plan, pruning, settings

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "examples/plugin.py"


def advprune(*args: str, plugins: str, cwd: Path) -> subprocess.CompletedProcess:
    """A separate process, so the registries of this test process stay as shipped."""
    env = {**os.environ, "ADVPRUNE_PLUGINS": plugins}
    return subprocess.run([sys.executable, "-m", "advprune", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_a_plugin_adds_a_dataset_with_settings_and_a_strategy(tmp_path):
    result = advprune("settings", "--dataset", "digits-noisy", plugins=str(PLUGIN), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"model": "digits_mlp"' in result.stdout  # based on digits-mnist's section
    result = advprune("prepare", "--dataset", "digits-noisy", "--root", "data", plugins=str(PLUGIN), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    arrays = datasets.load_canonical(tmp_path / "data/digits-noisy.npz")
    assert arrays.x_train.shape == (1400, 8, 8, 1) and arrays.x_test.shape == (397, 8, 8, 1)
    # Without the plugin the names are unknown, and the error says which ones are known.
    result = advprune("settings", "--dataset", "digits-noisy", plugins="", cwd=tmp_path)
    assert result.returncode == 2 and "no settings for dataset 'digits-noisy'" in result.stderr


def test_a_new_dataset_inherits_the_default_job_resources():
    """config.yaml's job_resources: a dataset it does not name (a plugin's) gets `default`; a named one takes from
    `default` what it does not set (a site's config file may set runtime alone)."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    default = config["job_resources"]["default"]
    assert plan.job_resources(config, "digits-noisy") == default
    config["job_resources"]["digits-noisy"] = {"train_model": {"runtime": 7}}
    resources = plan.job_resources(config, "digits-noisy")
    assert resources["train_model"] == {"mem_mb": default["train_model"]["mem_mb"], "runtime": 7}
    assert resources["evaluate_model"] == default["evaluate_model"]
    assert plan.job_resources(config, "cifar10")["train_model"]["mem_mb"] > default["train_model"]["mem_mb"]


def test_the_example_strategy_keeps_both_tails():
    namespace: dict = {}
    source = PLUGIN.read_text().split("pruning.register_strategy")[0]  # the function, without registering it
    exec(compile(source, str(PLUGIN), "exec"), namespace)
    scores = np.arange(10, dtype=float)
    dropped = namespace["drop_middle"](scores, 4, np.random.default_rng(0))
    assert sorted(dropped) == [3, 4, 5, 6]


@pytest.mark.parametrize(
    ("plugin_text", "message"),
    [
        (None, "not found"),
        ("raise RuntimeError('broken on purpose')", "failed to load: RuntimeError: broken on purpose"),
        ("from advprune import pruning\npruning.register_strategy('random', None, needs_scores=False)",
         "pruning strategy 'random' is already registered"),
        ("from advprune import pruning\npruning.register_strategy('my_rule', None, needs_scores=False)",
         "strategy name 'my_rule' must be"),
    ],
)  # fmt: skip
def test_bad_plugins_fail_with_one_line_naming_them(tmp_path, monkeypatch, capsys, plugin_text, message):
    # In this process: none of these plugins registers anything, so the shipped registries stay as they are.
    path = tmp_path / "plugin.py"
    if plugin_text is not None:
        path.write_text(plugin_text)
    monkeypatch.setenv("ADVPRUNE_PLUGINS", str(path))
    assert cli.main(["settings", "--dataset", "digits-mnist"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error and str(path) in error, error


def test_registries_refuse_duplicates_without_changing():
    before = dict(pruning.STRATEGIES), set(datasets.DATASETS), settings.known_datasets()
    with pytest.raises(ValueError, match="already registered"):
        pruning.register_strategy("low", pruning.drop_low, needs_scores=True)
    with pytest.raises(ValueError, match="already registered"):
        datasets.register_dataset(datasets.DATASETS["mnist"])
    with pytest.raises(ValueError, match="already exist"):
        settings.register_dataset("mnist", {})
    with pytest.raises(ValueError, match="no settings for dataset 'nope'"):
        settings.register_dataset("brand-new", {}, based_on="nope")
    assert (dict(pruning.STRATEGIES), set(datasets.DATASETS), settings.known_datasets()) == before


@pytest.mark.workflow
@pytest.mark.slow
def test_the_workflow_plans_and_runs_a_plugin_strategy_and_dataset_from_config(tmp_path):
    directory = copy_workflow(tmp_path / "workflow")
    shutil.copy(PLUGIN, directory / "extend.py")
    overlay = write_config_overlay(directory, {
        "plugins": ["extend.py"],
        "datasets": {"mnist": "digits-noisy"},
        "artefacts": {"fig3": {"strategies": ["middle", "random"], "keep": [0.5, 1.0], "prune_epoch": 1, "seeds": 1}},
        # What is tested is that the plugin's names plan and run: 4 epochs (the fewest that the demo's other
        # artefacts, pruning after epoch 3, accept) and AutoAttack on 20 points cost a fraction of the demo's 10
        # epochs and 100 points. An override for the plugin's dataset is itself config the plugin makes valid.
        "training_overrides": {"digits-noisy": ["epochs=4"]},
        "n_examples": 20,
    })  # fmt: skip
    configs = ["--profile", "profiles/demo", "--configfile", "profiles/demo/demo.yaml", str(overlay)]
    target = "results/artefacts/fig3.csv"
    # Planned from config alone: the new dataset is prepared, and both strategies and the full model train on it,
    # the two pruned ones forking from one prefix (the seed's first epoch).
    assert planned_jobs(directory, target, *configs) == {
        "prepare_dataset": 1, "train_prefix": 1, "train_model": 3, "evaluate_model": 3, "artefact_table": 1,
    }  # fmt: skip
    result = snakemake(directory, target, *configs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = pd.read_csv(directory / target)
    assert set(table["dataset"]) == {"digits-noisy"}
    assert sorted(table["strategy"]) == ["full", "middle", "random"]
    middle = table[table["strategy"] == "middle"].iloc[0]
    assert (middle["n_train"], middle["n_kept"]) == (1400, 700) and 0 <= middle["aa_acc_pct"] <= 100
    assert (table["n_examples"] == 20).all()
    # Without the plugin the same config is refused before anything runs, naming the key.
    no_plugin = directory / "no-plugin.yaml"
    no_plugin.write_text("plugins: []\n")
    result = snakemake(directory, "-n", target, *configs, str(no_plugin))
    assert result.returncode != 0 and "datasets.mnist" in result.stdout + result.stderr


def test_fig8_and_table2_take_a_plugin_dataset_and_strategy(tmp_path):
    """docs/extending.md promises that a plugin's dataset and strategy need no edit in src/: fig8's and table2's
    variants named by a plugin dataset parse and are labelled, and their captions name a plugin strategy (they raised
    "dataset variant ... one of mnist, ..." and KeyError: 'middle')."""
    script = f"""
import json
from advprune import artefacts, plan
from advprune.report.labels import parse_variant, variant_label
config = plan.load_config([{str(REPO / 'config.yaml')!r}, {str(REPO / 'profiles/demo/demo.yaml')!r}], {{
    "plugins": [{str(PLUGIN)!r}], "datasets": {{"mnist": "digits-noisy"}},
    "artefacts": {{name: {{"pruned_model": {{"strategy": "middle"}}}} for name in ("fig8", "table2")}}}})
facts = {{name: artefacts.get(name).caption_facts(config) for name in ("fig8", "table2")}}
print(json.dumps([parse_variant("digits-noisy pruned"), variant_label("digits-noisy pruned"), facts]))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "ADVPRUNE_PLUGINS": ""})
    assert result.returncode == 0, result.stderr[-2000:]
    parsed, label, facts = json.loads(result.stdout)
    assert parsed == ["digits-noisy", True] and label == "digits-noisy, pruned"
    assert all("middle" in json.dumps(facts[name]) for name in ("fig8", "table2")), facts
