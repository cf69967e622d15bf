"""Property test of config validation: a valid config mutated at one key is either refused with a message that names
the key, or is still valid and plans; never another exception (KeyError, TypeError, ... tracebacks in Snakemake).

Validation runs in-process exactly as rules/common.smk does it: the JSON schema through Snakemake, then
advprune.plan.check_config.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config
from snakemake.utils import validate as snakemake_validate

from advprune import plan
from advprune.artefacts import names
from advprune.identity import MODEL_ROOT, run_pattern
from advprune.kinds import DataArtefact, ModelGrid
from workflow_helpers import hypothesis_profile

REPO = Path(__file__).resolve().parents[1]
SCHEMA = str(REPO / "schemas/config.schema.yaml")


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _paper() -> dict[str, Any]:
    return _load(REPO / "config.yaml")


def _demo() -> dict[str, Any]:
    config = _paper()
    update_config(config, _load(REPO / "profiles/demo/demo.yaml"))
    return config


BASES = {"paper": _paper(), "demo": _demo()}


def check(config: dict[str, Any]) -> None:
    """What rules/common.smk runs when the workflow loads (no `workflow` global here: snakemake's validate then
    resolves the schema path as given)."""
    snakemake_validate(config, SCHEMA)
    plan.check_config(config)


@pytest.mark.parametrize("base", sorted(BASES))
def test_base_configs_are_valid(base: str) -> None:
    config = copy.deepcopy(BASES[base])
    check(config)
    assert plan.all_models(config)


# -- mutations ----------------------------------------------------------------------------------------------------------
Path_ = tuple  # a path of dict keys and list indices from the config's root


def _paths(node: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every key (and list item) of the config, depth first."""
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((*prefix, key))
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.append((*prefix, index))
            out.extend(_paths(value, (*prefix, index)))
    return out


def _get(config: dict[str, Any], path: Path_) -> Any:
    node = config
    for part in path:
        node = node[part]
    return node


def _named(path: Path_) -> str:
    """The key a message must name: the last dict key of the path (a list index names its list's key)."""
    return next(str(part) for part in reversed(path) if isinstance(part, str))


WRONG_TYPES = ["text", 2.5, -1, 0, None, True, [], {}, ["x"], {"x": 1}, 1e6]
OUT_OF_RANGE = [0, 0.0, -0.5, 1.5, 2, -1, -3]
UNKNOWN_NAMES = ["imagenet", "median", "svhn", "", "MNIST", "low high"]
BAD_OVERRIDES = ["eps=-1", "epochs=0", "epochs=-2", "alpha=0", "eps=abc", "eps=2", "batch_size=0", "lr_max=-1",
                 "monitor.pgd_steps=0", "monitor.nothing=1", "eps.x=1", "training_attack.x=1", "nothing=1",
                 "optimizer=rmsprop", "epochs=1.5", "precision=fp16", "monitor=3", "eps=1/0", "epochs=2",
                 "epochs=1", "eps=[1]", ".=1", "a..b=1", "monitor.pgd_steps=", "eps"]


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, dict[str, Any], Path_, str]:
    base = draw(st.sampled_from(sorted(BASES)))
    config = copy.deepcopy(BASES[base])
    kind = draw(st.sampled_from(
        ["wrong_type", "out_of_range", "unknown_name", "seeds", "extra_key", "delete", "override", "prune_epoch",
         "tiny_keep", "data_root", "override_dataset"]
    ))
    if kind == "tiny_keep":  # issue 25: a keep whose directory name is in exponent notation
        name = draw(st.sampled_from(list(names(ModelGrid))))
        keep = draw(st.sampled_from([1e-5, 0.00009, 1e-9, 0.0001, 0.00015]))
        config["artefacts"][name]["keep"] = [keep]
        return base, config, ("artefacts", name, "keep"), f"keep {keep!r}"
    if kind == "data_root":
        value = draw(st.sampled_from(["", " ", "data/{x}", "{dataset}", "data}", "a\nb", "data dir", "./data"]))
        config["data_root"] = value
        return base, config, ("data_root",), f"data_root {value!r}"
    if kind == "override_dataset":  # a misspelt dataset, or a setting that is no model
        dataset = draw(st.sampled_from(["digits_mnist", "MNIST", "cifar", "digits-mnist", "mnist"]))
        value = draw(st.sampled_from(["epochs=2", "model=resnet18", "model=digits_mlp"]))
        config["training_overrides"] = {dataset: [value]}
        return base, config, ("training_overrides", dataset), f"override {dataset}: {value}"
    if kind == "override":
        dataset = draw(st.sampled_from(sorted(set(config["datasets"].values()))))
        value = draw(st.sampled_from(BAD_OVERRIDES))
        config["training_overrides"] = {dataset: [value]}
        return base, config, ("training_overrides", dataset, 0), f"override {value!r}"
    if kind == "prune_epoch":
        name = draw(st.sampled_from(list(names(ModelGrid)) + ["fig8.pruned_model", "table2.pruned_model"]))
        where = name.split(".")
        spec = _get(config, ("artefacts", *where))
        epoch = draw(st.sampled_from([-1, 10, 15, 16, 100]))
        shape = draw(st.sampled_from(["int", "list", "map", "map_missing_role", "map_unknown_role"]))
        if "pruned_model" in name or shape == "int":
            spec["prune_epoch"] = epoch
        elif shape == "list":
            spec["prune_epoch"] = [1, epoch]
        elif shape == "map":
            spec["prune_epoch"] = {role: [1, epoch] for role in ("mnist", "cifar10")}
        elif shape == "map_missing_role":
            spec["prune_epoch"] = {"mnist": [1]} if "cifar10" in spec.get("roles", []) else {"cifar10": [1]}
        else:
            spec["prune_epoch"] = {"mnist": [1], "cifar10": [1], "imagenet": [1]}
        return base, config, ("artefacts", *where, "prune_epoch"), f"prune_epoch {shape} {epoch}"
    if kind == "seeds":
        name = draw(st.sampled_from(list(names(ModelGrid))))
        value = draw(st.sampled_from([[0, 1, 1], [3, 3], [-1], [0, -2], -2, 0, [], [0.5], "5"]))
        config["artefacts"][name]["seeds"] = value
        return base, config, ("artefacts", name, "seeds"), f"seeds {value!r}"
    if kind == "unknown_name":
        choice = draw(st.sampled_from(["strategies", "roles", "datasets", "pruned_role", "pruned_strategy"]))
        value = draw(st.sampled_from(UNKNOWN_NAMES))
        if choice == "datasets":
            role = draw(st.sampled_from(["mnist", "cifar10"]))
            config["datasets"][role] = value
            return base, config, ("datasets", role), f"dataset {value!r}"
        if choice.startswith("pruned"):
            name = draw(st.sampled_from(list(names(DataArtefact))))
            key = "role" if choice == "pruned_role" else "strategy"
            config["artefacts"][name]["pruned_model"][key] = value
            return base, config, ("artefacts", name, "pruned_model", key), f"{key} {value!r}"
        name = draw(st.sampled_from(list(names(ModelGrid))))
        config["artefacts"][name][choice].append(value)
        return base, config, ("artefacts", name, choice), f"{choice} + {value!r}"
    if kind == "extra_key":
        paths = [()] + [p for p in _paths(config) if isinstance(_get(config, p), dict)]
        path = draw(st.sampled_from(paths))
        key = draw(st.sampled_from(["unknown_key", "kep", "seed_count"]))
        _get(config, path)[key] = 1
        return base, config, (*path, key), f"extra {key}"

    paths = [p for p in _paths(config)
             if isinstance(p[-1], str) or kind != "delete"]  # deleting a list item leaves a shorter valid list
    path = draw(st.sampled_from(paths))
    parent = _get(config, path[:-1])
    if kind == "delete":
        del parent[path[-1]]
        return base, config, path, "delete"
    if kind == "wrong_type":
        value = draw(st.sampled_from(WRONG_TYPES))
    else:
        value = draw(st.sampled_from(OUT_OF_RANGE))
    parent[path[-1]] = value
    return base, config, path, f"{kind} {value!r}"


def _dotted(path: Path_) -> str:
    return ".".join(str(part) for part in path if isinstance(part, str))


# How many examples, and whether they are drawn afresh, is the profile's (tests/conftest.py): 150 in every profile,
# derandomised on CI (CI=true), a fresh draw locally; HYPOTHESIS_PROFILE=explore draws ten times as many.
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_config_is_refused_naming_the_key_or_plans(case: tuple[str, dict[str, Any], Path_, str]) -> None:
    base, config, path, what = case
    try:
        check(config)
    except (WorkflowError, ValueError) as error:
        message = str(error)
        named = _named(path)
        assert named in message or _dotted(path) in message, (
            f"{base}: {what} at {_dotted(path)} refused without naming {named!r}: {message[:800]}"
        )
        return
    # Valid: it must plan without error, and every model of the plan is well formed: a path the workflow's rules
    # match (the {run} wildcard), under a usable data root.
    run = re.compile(run_pattern())
    for key in plan.all_models(config):
        assert key.directory.startswith(MODEL_ROOT)
        assert run.fullmatch(key.run), f"{base}: {what}: planned {key.run!r}, which no rule matches"
    assert config["data_root"].strip() and not set("{}\n") & set(config["data_root"]), f"{base}: {what}"


def test_ci_draws_the_same_examples_on_every_run() -> None:
    """Under the CI profile two runs of a property see the same configs, so a red build reproduces; the local
    profile draws afresh. This session uses the profile its environment asks for."""
    assert hypothesis_profile({"CI": "true"}) == "ci" and hypothesis_profile({}) == "dev"
    assert hypothesis_profile({"CI": "true", "HYPOTHESIS_PROFILE": "explore"}) == "explore"
    ci, dev = settings.get_profile("ci"), settings.get_profile("dev")
    assert ci.derandomize and ci.database is None and not dev.derandomize
    assert ci.max_examples == dev.max_examples == 150
    assert settings.default.derandomize == settings.get_profile(hypothesis_profile()).derandomize

    def draws(profile: settings) -> list[str]:
        seen: list[str] = []

        @settings(profile, max_examples=20, deadline=None)
        @given(mutated())
        def record(case: tuple[str, dict[str, Any], Path_, str]) -> None:
            seen.append(f"{case[0]} {_dotted(case[2])} {case[3]}")

        record()
        return seen

    assert draws(ci) == draws(ci)
    assert draws(dev) != draws(dev)  # 20 draws from thousands of mutations: equal only by a fluke


# -- no config value reaches a shell unquoted -------------------------------------------------------------------------
def _unquoted_text(command: str) -> str:
    """What bash would read outside single quotes (where $(...), ;, spaces are live): double-quoted text counts."""
    out, quote = [], None
    for char in command:
        if quote == "'":
            quote = None if char == "'" else quote
        elif char == "'" and quote is None:
            quote = "'"
        else:
            if char == '"':
                quote = None if quote == '"' else '"'
            out.append(char)
    assert quote is None, f"unbalanced quotes in {command!r}"
    return "".join(out)


def test_unquoted_text_helper() -> None:
    import shlex

    value = "a'b $(touch PWNED); c"
    assert "PWNED" not in _unquoted_text(f"python x {shlex.quote(value)} --out y")
    assert "PWNED" in _unquoted_text(f'python x "{value}"')
    assert "PWNED" in _unquoted_text("python x a $(touch PWNED)")
    with pytest.raises(AssertionError, match="unbalanced"):
        _unquoted_text(f"python x {value}")


@pytest.mark.workflow
def test_config_values_reach_the_shell_single_quoted(tmp_path: Path) -> None:
    """A dry run (`-n -p`: nothing runs) prints every shell command; hostile values appear only single-quoted."""
    from workflow_helpers import copy_workflow, snakemake, write_config_overlay

    directory = copy_workflow(tmp_path / "workflow")
    hostile_root = "data dir; touch PWNED"
    # Both overrides pass validation: the hostile text is a YAML comment after a valid value (`model` must name a
    # model of the registry since issue 25).
    overrides = ["eps=0.1 # $(touch PWNED)", "model=digits_mlp # '; touch PWNED; echo '$(touch PWNED)"]
    overlay = write_config_overlay(directory, {
        "data_root": hostile_root,
        "sources": {"digits-mnist": "src dir/$(touch PWNED)`touch PWNED`"},
        "training_overrides": {"digits-mnist": overrides},
    })
    result = snakemake(directory, "figures/table1.pdf", "figures/fig1.pdf", "figures/fig8.pdf", "results/models.csv",
                       "-n", "-p", "--configfile", "profiles/demo/demo.yaml", str(overlay))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    prefix = "Shell command: "
    commands = [line.strip()[len(prefix):] for line in output.splitlines() if line.strip().startswith(prefix)]
    # A command's word after `python -m advprune`, and an artefact's name after `build`.
    kinds = {command.split()[3 + (command.split()[3] == "build")] for command in commands}
    assert {"prepare", "train", "evaluate", "collect", "table1", "fig1", "fig8"} <= kinds, kinds
    hostile = [command for command in commands if "PWNED" in command]
    # The hostile values did reach the commands that take them: every prepare/train/evaluate command and fig8's.
    assert {command.split()[3 + (command.split()[3] == "build")] for command in hostile} >= {
        "prepare", "train", "evaluate", "fig8"}
    assert any("--source" in command for command in hostile)
    assert any("--set" in command and "model=" in command for command in hostile)
    for command in commands:
        assert "PWNED" not in _unquoted_text(command), command
    assert not list(directory.rglob("PWNED")), "a dry run executed something"
