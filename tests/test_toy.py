"""The toy model of section 5.2: its statistics against the paper's argument, the trained classifiers, pruning,
determinism, bad parameters, and one real Snakemake run of the artefact."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from advprune.cli import main
from advprune.pruning import kept_indices
from advprune.toy import (
    accuracy,
    draw,
    expected_fragile_share,
    simulate,
    squared_loss,
    train_linear,
)
from advprune.toy_parameters import ToyParameters
from workflow_helpers import REPO

# Small and fast: 2 seeds, 3 keeps; the default d, p's and eps of config.yaml.
SMALL = ToyParameters(n=3000, keep=(0.3, 0.8, 1.0), seeds=(0, 1))


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    return simulate(SMALL)


def test_config_yaml_holds_the_defaults():
    """The CLI's defaults are config.yaml's artefacts.toy, so `advprune toy` by hand matches the workflow."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    assert ToyParameters.from_config(config["artefacts"]["toy"]) == ToyParameters()


def test_data_follow_the_model():
    params = ToyParameters()
    data = draw(params, 100_000, np.random.default_rng(0))
    se = 4 * 0.5 / math.sqrt(100_000)  # 4 standard errors of a proportion, at most
    assert abs(data.from_fragile_set.mean() - (1 - params.p_R)) < se
    x1_right = data.x[:, 0] == data.y
    assert abs(x1_right[~data.from_fragile_set].mean() - params.p_robust) < 2 * se
    assert abs(x1_right[data.from_fragile_set].mean() - params.p_fragile) < 2 * se
    assert abs((data.y[:, None] * data.x[:, 1:]).mean() - params.eta) < 0.003
    assert abs(data.x[:, 1:].std() - math.sqrt(1 + params.eta**2)) < 0.003


@pytest.mark.parametrize("strategy", ["high", "low", "low+high", "random"])
@pytest.mark.parametrize("keep", [0.3, 0.6, 0.85, 0.95])
def test_paper_classifier_matches_the_analytic_expectation(strategy, keep):
    """Under the paper's w = [1, 0, ..., 0] the kept share of D_fragile points is the closed form, within 4 s.e."""
    params = ToyParameters()
    data = draw(params, 100_000, np.random.default_rng(1))
    w = np.zeros(params.d + 1)
    w[0] = 1.0
    kept = kept_indices(squared_loss(w, data), keep, strategy, seed=0)
    share = data.from_fragile_set[kept].mean()
    expected = expected_fragile_share(params, strategy, keep)
    assert abs(share - expected) < 4 * math.sqrt(expected * (1 - expected) / len(kept))


def test_expectation_by_hand():
    params = ToyParameters()  # q = 0.5 * 0.05 + 0.5 * 0.25 = 0.15
    assert params.p_mislabelled_x1 == pytest.approx(0.15)
    # keep 0.85 after high-loss pruning: exactly the x1 = y points, 0.5 * 0.75 / 0.85 of them fragile.
    assert expected_fragile_share(params, "high", 0.85) == pytest.approx(0.375 / 0.85)
    # low-loss pruning down to 0.15 keeps exactly the x1 != y points: 0.125 / 0.15 fragile.
    assert expected_fragile_share(params, "low", 0.15) == pytest.approx(0.125 / 0.15)
    assert expected_fragile_share(params, "random", 0.3) == 0.5
    assert expected_fragile_share(params, "high", 1.0) == pytest.approx(0.5)


def test_robust_training_learns_x1_and_standard_training_does_not(runs):
    per_classifier = runs.drop_duplicates(["seed", "classifier"]).set_index(["classifier", "seed"])
    robust, standard = per_classifier.loc["robust"], per_classifier.loc["standard"]
    assert (robust["x1_weight_share"] > 0.9).all()
    assert (standard["x1_weight_share"] < 0.1).all()
    # The paper: the robust classifier's accuracy is p_R p_robust + (1 - p_R) p_fragile, clean and robust alike...
    expected = SMALL.p_R * SMALL.p_robust + (1 - SMALL.p_R) * SMALL.p_fragile
    assert np.allclose(robust["clean_acc"], expected, atol=0.03)
    assert np.allclose(robust["robust_acc"], robust["clean_acc"], atol=0.01)
    # ... the fragile-feature classifier is > 99% accurate and below 1% under attack.
    assert (standard["clean_acc"] > 0.99).all() and (standard["robust_acc"] < 0.01).all()


def test_exact_robust_accuracy_is_the_worst_case():
    """The closed-form adversary (delta = -eps y sign(w)) is no weaker than random sign perturbations."""
    params = ToyParameters()
    data = draw(params, 2000, np.random.default_rng(2))
    w = train_linear(data, 0.0, 100, 1.0)
    worst = accuracy(w, data, params.eps)
    rng = np.random.default_rng(3)
    for _ in range(5):
        delta = params.eps * rng.choice([-1.0, 1.0], size=data.x.shape)
        assert worst <= accuracy(w, dataclasses.replace(data, x=data.x + delta))


def test_high_loss_pruning_raises_the_robust_share_and_low_loss_lowers_it(runs):
    robust = runs[(runs["classifier"] == "robust") & (runs["keep"] < 1)]
    by = robust.groupby(["strategy", "keep"])["fragile_share"].mean()
    before = runs["fragile_share_before"].mean()
    for keep in (0.3, 0.8):
        assert by[("high", keep)] < before - 0.03  # expected: 0.441 against 0.5
        assert by[("low", keep)] > before + 0.01
        assert abs(by[("random", keep)] - before) < 0.03
    # Against the paper's expectation, within sampling error (n = 3000, two seeds).
    assert (robust["fragile_share"] - robust["expected_fragile_share"]).abs().max() < 0.04


def test_same_seed_same_rows_other_seed_other_rows():
    one = ToyParameters(n=500, steps=50, keep=(0.5,), seeds=(7,))
    pd.testing.assert_frame_equal(simulate(one), simulate(one))
    assert not simulate(one).equals(simulate(dataclasses.replace(one, seeds=(8,))))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"p_fragile": 0.95}, "p_fragile"),
        ({"p_fragile": 0.5}, "p_fragile"),
        ({"p_R": 1.0}, "p_R"),
        ({"eps_over_eta": 3.0}, "eps_over_eta"),  # eps = 0.9 > 1 - 2q = 0.7: robust training would learn w = 0
        ({"keep": (0.5, 1.2)}, "keep"),
        ({"strategies": ("median",)}, "strategies"),
        ({"seeds": (1, 1)}, "seeds"),
    ],
)
def test_bad_parameters_are_refused_naming_them(change, named):
    with pytest.raises(ValueError, match=named):
        dataclasses.replace(ToyParameters(), **change).check()


def test_cli_refuses_bad_input_in_one_line(tmp_path, capsys):
    code = main(["toy", "--p-fragile", "0.96", "--out", str(tmp_path / "t.pdf"), "--runs", str(tmp_path / "t.csv")])
    stderr = capsys.readouterr().err
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1
    assert stderr.startswith("advprune toy: error:") and "p_fragile" in stderr
    assert not (tmp_path / "t.pdf").exists()


@pytest.mark.workflow
@pytest.mark.slow
def test_snakemake_builds_the_toy_artefact(demo):
    """The demo's toy artefact, built by Snakemake from config.yaml's artefacts.toy (the demo changes none of it)."""
    directory, _ = demo
    spec = yaml.safe_load((REPO / "config.yaml").read_text())["artefacts"]["toy"]
    n_keeps, n_strategies, n_seeds = len(spec["keep"]), len(spec["strategies"]), spec["seeds"]
    assert 1.0 in spec["keep"] and 0.8 in spec["keep"] and "high" in spec["strategies"]
    assert (directory / "figures/toy.pdf").read_bytes().startswith(b"%PDF")
    assert (directory / "figures/toy.tex").stat().st_size > 0
    assert (directory / "figures/toy.md").read_text().startswith("Toy model of section 5.2")

    table = pd.read_csv(directory / "figures/toy.csv")
    runs = pd.read_csv(directory / "results/artefacts/toy.csv")
    assert len(table) == 2 * n_strategies * n_keeps and set(table["seeds"]) == {n_seeds}  # 2 classifiers
    assert len(runs) == n_seeds * len(table)
    # The table is the mean of the per-seed rows, and keep 1.0 is the share before pruning.
    high = table[(table["classifier"] == "robust") & (table["pruning"] == "high loss")].set_index("keep")
    seeds = runs[(runs["classifier"] == "robust") & (runs["strategy"] == "high")].groupby("keep")["fragile_share"]
    assert np.allclose(high["fragile share after (mean)"], seeds.mean().loc[high.index], atol=1e-4)
    full = table[table["keep"] == 1.0]
    assert np.allclose(full["fragile share after (mean)"], full["fragile share before"], atol=1e-4)
    assert (high.loc[0.8, "fragile share after (mean)"] < high.loc[1.0, "fragile share before"] - 0.05)
    robust = table[table["classifier"] == "robust"]
    assert robust["after - argument"].abs().max() < 0.05
    assert table.loc[table["classifier"] == "standard", "paper's argument"].isna().all()

    provenance = json.loads((directory / "figures/toy.provenance.json").read_text())
    assert provenance["parameters"]["n"] == spec["n"] and provenance["parameters"]["seeds"] == list(range(n_seeds))
    assert {"method_version", "versions", "commit", "dirty"} <= set(provenance["built_with"])
    assert "numpy" in provenance["built_with"]["versions"] and provenance["artefact"] == "toy"
    assert "figures/toy.md" in provenance["outputs"] and provenance["models"] == []


@pytest.mark.workflow
def test_the_toy_rule_passes_the_configs_values_on(demo, tmp_path):
    """Every key of artefacts.toy reaches `advprune build toy` (the registry entry's options): a changed value reruns
    the toy alone, with that value on its command line."""
    from workflow_helpers import planned_jobs, snakemake, write_config_overlay

    directory, _ = demo
    overlay = write_config_overlay(tmp_path, {"artefacts": {"toy": {"steps": 7, "keep": [0.5, 1.0], "seeds": 2}}})
    args = ("--profile", "profiles/demo", "--configfile", "profiles/demo/demo.yaml", str(overlay))
    assert planned_jobs(directory, *args) == {"simulate_toy": 1, "all": 1}
    result = snakemake(directory, "-n", "-p", "toy", *args)  # a target after --configfile would be a file
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = (result.stdout + result.stderr).splitlines()
    (command,) = [line for line in lines if "python -m advprune build toy" in line]
    spec = yaml.safe_load((REPO / "config.yaml").read_text())["artefacts"]["toy"]
    assert f"--d {spec['d']} --p-R {spec['p_R']} " in command
    assert "--steps 7 " in command and "--keep 0.5 1.0 " in command and "--seeds 0 1 " in command


def test_the_schema_the_config_and_the_command_take_the_fields_of_toy_parameters():
    """ToyParameters owns the toy's options: the config schema's `toy`, config.yaml's `artefacts.toy` and `advprune
    build toy` name its fields, and config.yaml's values are its defaults."""
    fields = [field.name for field in dataclasses.fields(ToyParameters)]
    schema = yaml.safe_load((REPO / "schemas/config.schema.yaml").read_text())["$defs"]["toy"]
    assert schema["required"] == fields and list(schema["properties"]) == fields
    config = yaml.safe_load((REPO / "config.yaml").read_text())["artefacts"]["toy"]
    assert ToyParameters.from_config(config) == ToyParameters()
    from advprune.artefacts import BY_NAME

    assert list(BY_NAME["toy"].options) == fields


def test_the_planner_checks_the_toy_through_its_kind():
    """advprune.plan.check_config asks each artefact's kind what only it knows (kinds.Artefact.check_config): the
    toy's parameters are refused naming artefacts.toy; its keeps, a simulation's fractions, are not held to the
    smallest keep a model's directory can name, as the model grids' keeps are."""
    import copy

    from advprune import plan

    config = plan.load_config([REPO / "config.yaml"])
    tiny = copy.deepcopy(config)
    tiny["artefacts"]["toy"]["keep"] = [1e-5, 1.0]
    plan.check_config(tiny)
    bad = copy.deepcopy(config)
    bad["artefacts"]["toy"]["p_R"] = 1.5
    with pytest.raises(ValueError, match=r"^artefacts\.toy\.p_R: must be in \(0, 1\)"):
        plan.check_config(bad)
    grid = copy.deepcopy(config)
    grid["artefacts"]["fig2"]["keep"] = [1e-5]
    with pytest.raises(ValueError, match=r"^artefacts\.fig2\.keep: keep 1e-05 is below"):
        plan.check_config(grid)
