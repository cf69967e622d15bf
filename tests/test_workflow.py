"""The Snakemake workflow: lint, what it plans for the paper, bad config, and a real run of the offline demo.

The demo is run once per session (the `demo` fixture of tests/conftest.py) and shared with tests/test_toy.py; every
test here leaves it as it found it (checked after each test), so they pass in any order.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from workflow_helpers import (
    REPO,
    copy_workflow,
    dry_run_args,
    job_counts,
    planned_jobs,
    restored,
    snakemake,
    snakemake_many,
    write_config_overlay,
)

from advprune import METHOD_VERSION, artefacts
from advprune.report.claims import load_claims

pytestmark = [pytest.mark.workflow, pytest.mark.slow]


@pytest.fixture(scope="module")
def paper_workflow(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("paper"))


def test_lint_is_clean(paper_workflow):
    result = snakemake(paper_workflow, "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


# Planned trainings and evaluations per target under the paper's config.yaml, worked out by hand from SPEC's grids
# (5 seeds unless stated; keep 1.0 is the one full-data model per dataset and seed):
#   fig1  random, keep {0.9, 0.7} x e {1,2,3,5,7,9} (MNIST) + {1,3,5,7,9,11,13} (CIFAR-10) = 2 x 13 cells x 5 = 130
#   fig2  random e=1, keep 0.1..0.9 (9 pruned) + full = 10 cells x 2 datasets x 5                       = 100
#   table1 {low+high, random} x keep {0.4, 0.8} + full = 5 cells x 2 datasets x 30 seeds               = 300
#   fig3  MNIST, 4 strategies x keep {0.2, 0.4, 0.6, 0.8} + full = 17 cells x 5                        =  85
#   fig4  the same on CIFAR-10                                                                          =  85
#   fig5  random e=3, keep {0.2, 0.4, 0.6, 0.8} + full = 5 cells x 2 datasets x 30 seeds               = 300
#   fig7  {random, low+high} e=1 x 4 pruned keeps + full = 9 cells x 2 datasets x 5                    =  90
#   ablation_schedule  CIFAR-10, {low+high, random} x {0.4, 0.8} x {rescale, fixed} x 5                =  40
#   fig8 / table2: one model (MNIST low+high keep 0.6 e=3 seed 0), trained but not AutoAttacked           =   1 / 0
#   all: the union, per dataset (shared cells counted once, at their largest seed count):
#     full 30 | random e=1: keeps 0.1-0.9 x 5 = 45 (fig1's and fig7's e=1 cells are fig2's)
#     random e=3: fig5's 4 keeps x 30 = 120, + fig1's keeps 0.7/0.9 x 5 = 10 (table1, fig3/4 cells are fig5's)
#     random, fig1's other epochs: MNIST {2,5,7,9} x 2 keeps x 5 = 40 | CIFAR-10 {5,7,9,11,13} x 2 x 5 = 50
#     low+high e=3: table1's {0.4, 0.8} x 30 = 60, + fig3/4's {0.2, 0.6} x 5 = 10 | low+high e=1: 4 x 5 = 20
#     high and low e=3: 2 x 4 keeps x 5 = 40 | CIFAR-10 only: the ablation's fixed-schedule cells 2 x 2 x 5 = 20
#     MNIST 30+45+130+40+70+20+40 = 375, CIFAR-10 30+45+130+50+70+20+40+20 = 405, in all 780 (fig8's model is fig3's).
PAPER_PLAN = {
    "figures/fig1.pdf": (130, 130),
    "figures/fig2.pdf": (100, 100),
    "figures/table1.pdf": (300, 300),
    "figures/fig3.pdf": (85, 85),
    "figures/fig4.pdf": (85, 85),
    "figures/fig5.pdf": (300, 300),
    "figures/fig7.pdf": (90, 90),
    "figures/ablation_schedule.pdf": (40, 40),
    "figures/fig8.pdf": (1, 0),
    "figures/table2.pdf": (1, 0),
    "all": (780, 780),
}


@pytest.fixture(scope="module")
def paper_plans(paper_workflow):
    """One dry run per target, two at a time (each is a single-threaded process of seconds)."""
    results = snakemake_many(paper_workflow, [dry_run_args(target) for target in PAPER_PLAN])
    return dict(zip(PAPER_PLAN, results))


@pytest.mark.parametrize("target", PAPER_PLAN)
def test_paper_plan_counts(paper_plans, target):
    trainings, evaluations = PAPER_PLAN[target]
    jobs = job_counts(paper_plans[target])
    assert jobs.get("train_model", 0) == trainings
    assert jobs.get("evaluate_model", 0) == evaluations


# Prefixes (advprune.prefix): one per (dataset, schedule, pruning epoch e >= 1, seed) of `all`'s pruned models; in the
# paper's plan each serves two models or more, so every one is planned (plan.prefixes_of).
#   MNIST: e=1 x 5 seeds + e=3 x 30 + fig1's e {2,5,7,9} x 5 = 55, kept (config keep_prefixes)
#   CIFAR-10: e=1 x 5 + e=3 x 30 + fig1's e {5,7,9,11,13} x 5 + the ablation's fixed schedule e=3 x 5 = 65, deleted
#   once their forks are trained (train_prefix_temporary).
def test_paper_plan_trains_each_prefix_once(paper_plans):
    jobs = job_counts(paper_plans["all"])
    assert (jobs["train_prefix"], jobs["train_prefix_temporary"]) == (55, 65)


def test_a_prefix_is_planned_only_where_two_models_of_the_plan_share_it(paper_workflow, tmp_path):
    """In the demo, random keep 0.4 at e=1 is the only model of its prefix: it trains from scratch (no prefix job,
    `--fork-from=` empty); at e=3 it shares one with low+high and forks. Another artefact's model at e=1 makes the
    first fork too, the target unchanged: the configured plan decides, not the target, so asking for one more
    target never changes how a model trains."""
    models = "results/models/digits-mnist/fp32/{}/seed0"
    alone, shared = models.format("random_keep0.4_e1_rescale"), models.format("random_keep0.4_e3_rescale")
    targets = [f"{alone}/train.json", f"{shared}/train.json"]

    def plan_of(*args):
        result = snakemake(paper_workflow, "--profile", "profiles/demo", *targets, *args, "-n", "-p")
        lines = (result.stdout + result.stderr).splitlines()
        commands = [line for line in lines if line.startswith("Shell command: python -m advprune train ")]
        forks = {re.search(r" --out (\S+)", line)[1]: re.search(r" --fork-from=(\S*)", line)[1] for line in commands}
        return job_counts(result), forks

    prefix = "results/prefixes/digits-mnist/fp32/rescale_e{}/seed0/prefix.pt"
    jobs, forks = plan_of()
    assert jobs == {"prepare_dataset": 1, "train_prefix": 1, "train_model": 2}
    assert forks == {alone: "", shared: prefix.format(3)}
    overlay = write_config_overlay(tmp_path, {"artefacts": {"fig2": {"strategies": ["random", "low+high"]}}})
    jobs, forks = plan_of("--configfile", "profiles/demo/demo.yaml", str(overlay))
    assert jobs == {"prepare_dataset": 1, "train_prefix": 2, "train_model": 2}
    assert forks == {alone: prefix.format(1), shared: prefix.format(3)}


BAD_CONFIGS = {
    "keep>1": (lambda c: c["artefacts"]["fig2"]["keep"].__setitem__(0, 1.5), "['artefacts']['fig2']['keep']"),
    "keep=0": (lambda c: c["artefacts"]["fig2"]["keep"].__setitem__(0, 0.0), "['artefacts']['fig2']['keep']"),
    "prune-epoch": (lambda c: c["artefacts"]["fig1"]["prune_epoch"]["mnist"].append(10), "artefacts.fig1.prune_epoch"),
    "strategy": (lambda c: c["artefacts"]["fig3"]["strategies"].append("median"), "artefacts.fig3.strategies"),
    "duplicate-seed": (lambda c: c["artefacts"]["fig5"].__setitem__("seeds", [0, 1, 1]),
                       "['artefacts']['fig5']['seeds']"),
    "negative-seeds": (lambda c: c["artefacts"]["fig5"].__setitem__("seeds", -2), "['artefacts']['fig5']['seeds']"),
    "n-examples": (lambda c: c.__setitem__("n_examples", 0), "['n_examples']"),
    "dataset": (lambda c: c["datasets"].__setitem__("mnist", "imagenet"), "datasets.mnist"),
    "eps": (lambda c: c.__setitem__("training_overrides", {"mnist": ["eps=-1"]}), "eps"),
    "precision": (lambda c: c.__setitem__("precision", "fp16"), "['precision']"),
    "keep-prefixes": (lambda c: c.__setitem__("keep_prefixes", {"mnist": "yes"}), "['keep_prefixes']"),
}  # fmt: skip


@pytest.fixture(scope="module")
def bad_config_runs(paper_workflow, tmp_path_factory):
    """A dry run per bad config (each its own overlay file), two at a time."""
    overlays = tmp_path_factory.mktemp("bad_configs")
    calls = []
    for name, (edit, _) in BAD_CONFIGS.items():
        config = yaml.safe_load((paper_workflow / "config.yaml").read_text())
        edit(config)
        calls.append(("-n", "--configfile", str(write_config_overlay(overlays, config, f"{name}.yaml"))))
    return dict(zip(BAD_CONFIGS, snakemake_many(paper_workflow, calls)))


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_bad_config_is_rejected_naming_the_key(bad_config_runs, case):
    result, named = bad_config_runs[case], BAD_CONFIGS[case][1]
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert named in output, output[-2000:]
    assert "Traceback" not in output


# -- the offline demo, run for real (once per session: the `demo` fixture of tests/conftest.py) ------------------


ARTEFACT_NAMES = ("fig1", "fig2", "fig3", "fig4", "fig5", "fig7", "fig8", "table1", "table2", "ablation_schedule", "toy")
DEMO_ARTEFACTS = [f"figures/{name}.pdf" for name in ARTEFACT_NAMES]


@pytest.mark.slow
def test_demo_renders_every_artefact(demo):
    # Its wall time is printed by the fixture (`demo run: N s`), not asserted: a timed test fails on a loaded machine.
    directory, _ = demo
    for artefact in DEMO_ARTEFACTS:
        assert (directory / artefact).read_bytes().startswith(b"%PDF"), artefact
        assert (directory / artefact).with_suffix(".png").read_bytes().startswith(b"\x89PNG"), artefact
    for table in ("table1", "table2", "ablation_schedule", "toy"):
        for extension in ("csv", "tex", "md"):
            assert (directory / f"figures/{table}.{extension}").stat().st_size > 0


@pytest.mark.slow
def test_demo_tidy_table(demo):
    directory, _ = demo
    models = pd.read_csv(directory / "results/models.csv")
    # 20 distinct models in profiles/demo/demo.yaml: per digits variant, full + random and low+high at keep 0.4
    # (e=3) + random keep 0.4 at e=1 = 4 cells x 2 seeds = 8, twice, plus the ablation's fixed-schedule cells on
    # digits-cifar (2 cells x 2 seeds) = 20.
    assert len(models) == 20
    assert set(models["dataset"]) == {"digits-mnist", "digits-cifar"}
    pruned = models[models["strategy"] != "full"]
    assert (pruned["n_kept"] < pruned["n_train"]).all()
    full = models[models["strategy"] == "full"]
    assert (full["n_kept"] == full["n_train"]).all()
    assert models["clean_acc_pct"].between(0, 100).all() and models["aa_acc_pct"].between(0, 100).all()
    assert (models["aa_acc_pct"] <= models["clean_acc_pct"] + 1e-9).sum() >= len(models) - 2


# The README (deviation 13) states the digits stand-ins' full-data AutoAttack accuracy (seed 0, n=100); every seed's
# full-data model of the demo must be within ROBUST_BAND points of it (the README's testing section says so).
ROBUST_BAND = 10.0


def readme_full_data_robust_accuracy() -> dict[str, float]:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"eps 0\.12\s+with MNIST's recipe and 0\.1 with CIFAR-10's, where full-data AutoAttack "
                      r"accuracy was (\d+(?:\.\d+)?)% and (\d+(?:\.\d+)?)% on seed 0", readme)
    assert match, "README, deviation 13: the sentence with the demo's full-data AutoAttack accuracy is gone"
    return {"digits-mnist": float(match[1]), "digits-cifar": float(match[2])}


def test_demo_robust_accuracy_is_in_the_readme_band(demo):
    directory, _ = demo
    models = pd.read_csv(directory / "results/models.csv")
    full = models[models["strategy"] == "full"]
    for dataset, stated in readme_full_data_robust_accuracy().items():
        measured = full.loc[full["dataset"] == dataset, "aa_acc_pct"]
        assert len(measured) == 2, dataset  # both seeds
        assert ((measured - stated).abs() <= ROBUST_BAND).all(), (
            f"{dataset}: full-data AutoAttack accuracy {measured.tolist()} %, the README states {stated} % "
            f"(+- {ROBUST_BAND})")


# Table 1's cells by hand, in the paper's terms (p = fraction pruned = 1 - keep, "loss" = low+high), and its metrics.
TABLE1_COLUMNS = {"loss p=0.6": ("low+high", 0.4), "random p=0.6": ("random", 0.4), "full": ("full", 1.0)}
TABLE1_METRICS = ("clean_acc_pct", "aa_acc_pct", "time_minutes")


def test_table1_cells_are_the_means_of_the_model_rows(demo):
    """figures/table1.csv holds, per dataset, metric and cell, the mean ± sd (n) and collapsed count of its models in
    results/models.csv, recomputed here from the rows (table1 in the demo: prune epoch 3, the rescaled schedule,
    keep 0.4 and full data); table1.md shows them to one decimal (two for minutes)."""
    directory, _ = demo
    table = pd.read_csv(directory / "figures/table1.csv")
    models = pd.read_csv(directory / "results/models.csv")
    pruned = (models["prune_epoch"] == 3) & (models["schedule_after_pruning"] == "rescale")
    models = models[pruned | (models["strategy"] == "full")]
    assert len(table) == 2 * len(TABLE1_METRICS) * len(TABLE1_COLUMNS)
    markdown = (directory / "figures/table1.md").read_text()
    for _, values in table.iterrows():
        strategy, keep = TABLE1_COLUMNS[values["cell"]]
        runs = models[(models["dataset"] == values["dataset"]) & (models["strategy"] == strategy)
                      & np.isclose(models["keep"], keep)]  # fmt: skip
        metric = runs[values["metric"]]
        assert values["n"] == len(runs) == 2, (values["dataset"], values["cell"])
        assert values["mean"] == pytest.approx(metric.mean()) and values["sd"] == pytest.approx(metric.std(ddof=1))
        assert values["n_failed"] == int(runs["collapsed"].sum())
        digits = 2 if values["metric"] == "time_minutes" else 1
        assert f"| {metric.mean():.{digits}f} ± {metric.std(ddof=1):.{digits}f}" in markdown


# The models behind each artefact of the demo, counted by hand from profiles/demo/demo.yaml (both digits variants
# unless stated, 2 seeds): fig1 random keep 0.4 at e=1 and e=3 (no full-data model); fig2 random e=1 + full;
# table1 low+high and random e=3 + full; fig3 (digits-mnist) / fig4 (digits-cifar) the same three cells on one
# dataset; fig5 random e=3 + full; fig7 random and low+high e=3 + full; the ablation (digits-cifar) low+high and random
# e=3 under both schedules.
FIGURE_MODELS = {"fig1": 8, "fig2": 8, "table1": 12, "fig3": 6, "fig4": 6, "fig5": 8, "fig7": 12,
                 "ablation_schedule": 8}  # fmt: skip


@pytest.mark.parametrize("name", FIGURE_MODELS)
def test_every_figure_plots_rows_of_the_models_table(demo, name):
    """What a figure or table is drawn from (results/artefacts/<name>.csv) is rows of results/models.csv, value for
    value, and its provenance lists exactly those models."""
    directory, _ = demo
    models = pd.read_csv(directory / "results/models.csv").set_index("run_dir")
    drawn = pd.read_csv(directory / f"results/artefacts/{name}.csv").set_index("run_dir")
    assert len(drawn) == FIGURE_MODELS[name] and drawn.index.is_unique
    assert set(drawn.index) <= set(models.index), sorted(set(drawn.index) - set(models.index))
    # Value for value (an artefact without full-data rows reads prune_epoch as integers, models.csv as floats).
    pd.testing.assert_frame_equal(drawn.sort_index(), models.loc[drawn.index, drawn.columns].sort_index(),
                                  check_exact=True, check_dtype=False)
    provenance = json.loads((directory / f"figures/{name}.provenance.json").read_text())
    assert sorted(model["run_dir"] for model in provenance["models"]) == sorted(drawn.index)


@pytest.mark.slow
def test_demo_evaluations_run_all_four_attacks(demo):
    directory, _ = demo
    evaluations = sorted(directory.glob("results/models/*/*/*/*/autoattack-n100.json"))
    assert len(evaluations) == 20
    for path in evaluations:
        metrics = json.loads(path.read_text())
        assert set(metrics["robust_acc_after"]) == {"apgd-ce", "apgd-t", "fab-t", "square"}, path


@pytest.mark.slow
def test_nothing_to_do_after_the_demo(demo):
    directory, _ = demo
    assert planned_jobs(directory, "--profile", "profiles/demo") == {}


@pytest.mark.slow
def test_editing_plotting_code_reruns_only_figures(demo):
    directory, _ = demo
    figures_code = directory / "src/advprune/report/figures.py"
    with restored(figures_code):
        # A real edit: Snakemake 9 ignores a newer modification time when the content's checksum is unchanged.
        figures_code.write_text(figures_code.read_text() + "\n# an edit to the plotting code\n")
        jobs = planned_jobs(directory, "--profile", "profiles/demo")
    # The code inputs are the modules each rule's builder imports (advprune.imports): figures.py is the figures'
    # alone; the tables, fig8/table2, the toy and the claims do not import it.
    assert jobs == {f"draw_{name}": 1 for name in ("fig1", "fig2", "fig3", "fig4", "fig5", "fig7")} | {"all": 1}
    assert planned_jobs(directory, "--profile", "profiles/demo") == {}  # restored: nothing to do again


@pytest.mark.slow
def test_editing_the_shared_output_code_rebuilds_every_artefact_and_no_model(demo):
    """save_artefact lives in report/output.py, which every builder imports: editing it replans every artefact (and
    every training and evaluation stays done)."""
    directory, _ = demo
    output_code = directory / "src/advprune/report/output.py"
    with restored(output_code):
        text = output_code.read_text()
        assert "def save_figure(" in text
        output_code.write_text(text.replace("def save_figure(", "def save_figure(  # an edit\n", 1))
        jobs = planned_jobs(directory, "--profile", "profiles/demo")
    drawn = {artefact.rule: 1 for artefact in artefacts.ARTEFACTS}
    assert jobs == drawn | {"all": 1}
    assert planned_jobs(directory, "--profile", "profiles/demo") == {}


@pytest.mark.slow
def test_editing_one_registry_entry_reruns_that_artefact_only(demo):
    """The registry is no code input (or every edit of it would redraw everything); each rule's own entry is its
    params.entry. A comment in the registry changes nothing; a changed entry reruns its artefact."""
    directory, _ = demo
    registry = directory / "src/advprune/artefacts.py"
    env = {"PYTHONPATH": str(directory / "src")}  # Snakemake itself reads the copy's registry
    with restored(registry):
        registry.write_text(registry.read_text() + "\n# an edit beside the entries\n")
        assert planned_jobs(directory, "--profile", "profiles/demo", env=env) == {}
        entry = '_figure("fig5", "build_fig5")'
        assert entry in registry.read_text()
        registry.write_text(registry.read_text().replace(entry, '_figure("fig5", "build_fig5", one_schedule=False)'))
        assert planned_jobs(directory, "--profile", "profiles/demo", env=env) == {"draw_fig5": 1, "all": 1}


NEW_FIGURE = {
    # 1. the registry entry, with its grid: the demo's mnist models of fig2, so nothing trains
    "src/advprune/artefacts.py": ('    _figure("fig7", "build_fig7"),\n', '    _figure("fig7", "build_fig7"),\n'
        '    _figure("fig_time", "build_fig_time", default_config={"roles": ["mnist"], "strategies": ["random"],\n'
        '            "keep": [0.4, 1.0], "prune_epoch": 1, "seeds": 2}),\n'),
    # 2. its drawing function
    "src/advprune/report/figures.py": ("", "\n\ndef build_fig_time(df: pd.DataFrame) -> Figure:\n"
        '    return _strategy_figure(_drawn_rows(df, "fig_time"), ["time_minutes"], "Time vs keep")\n'),
    # 3. its caption
    "captions/fig_time.rst": (None, "Training time vs keep on {{ snakemake.params.caption.datasets }}.\n"),
}  # fmt: skip


@pytest.mark.slow
def test_a_new_figure_is_three_files_and_builds_from_finished_models(demo, tmp_path):
    """docs/extending.md's recipe, followed in a copy of the finished demo: the entry, its drawing function and its
    caption, and `snakemake fig_time` draws it from the models already there."""
    import shutil

    source, _ = demo
    directory = tmp_path / "demo"
    shutil.copytree(source, directory, symlinks=True)  # the shared demo is left as it is
    for name, (old, new) in NEW_FIGURE.items():
        path = directory / name
        if old is None:
            path.write_text(new)
        elif old:
            assert old in path.read_text(), name
            path.write_text(path.read_text().replace(old, new, 1))
        else:
            path.write_text(path.read_text() + new)
    env = {"PYTHONPATH": str(directory / "src")}
    assert planned_jobs(directory, "--profile", "profiles/demo", "fig_time", env=env) == {
        "artefact_table": 1, "draw_fig_time": 1, "fig_time": 1}
    result = snakemake(directory, "--profile", "profiles/demo", "fig_time", env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (directory / "figures/fig_time.pdf").read_bytes().startswith(b"%PDF")
    record = json.loads((directory / "figures/fig_time.provenance.json").read_text())
    assert len(record["models"]) == 4  # random keep 0.4 (e = 1) and the full model, 2 seeds, on digits-mnist


@pytest.mark.slow
def test_the_paper_plan_trains_and_evaluates_with_the_commands_of_before_the_registry(paper_workflow, tmp_path):
    """The registry and one model identity changed how commands are built, not what they are: every training and
    evaluation of the paper's plan has the shell command (its params) of commit 7fd08b2, so finished models, such as
    the MNIST record's, are not replanned."""
    import subprocess

    before = tmp_path / "before"
    before.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "7fd08b2"], capture_output=True)
    if archive.returncode != 0:
        pytest.skip("commit 7fd08b2 is not in this clone (shallow?): nothing to compare with")
    subprocess.run(["tar", "-x", "-C", str(before)], input=archive.stdout, check=True)

    def commands(directory, env=None):
        result = snakemake(directory, "-n", "-p", "all", env=env)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        lines = [line.removeprefix("Shell command: ") for line in (result.stdout + result.stderr).splitlines()]
        return sorted(line for line in lines
                      if line.startswith(("python -m advprune train", "python -m advprune evaluate")))  # fmt: skip

    old = commands(before, env={"PYTHONPATH": str(before / "src")})
    assert len(old) > 1000  # every model of the paper, trained and evaluated
    # Since prefixes, a training's command also names the prefix it forks from: `--fork-from=<its input>`, a word of
    # the shell command only, not of its params (which Snakemake compares), and empty for a model trained from
    # scratch (so a finished model keeps its inputs and is not replanned: test_a_demo_trained_before_prefixes_...).
    # Without it, every command is the one of before; and every pruned model with e >= 1 forks from its own prefix
    # (each of the paper's prefixes serves two models or more: test_paper_plan_trains_each_prefix_once).
    new = commands(paper_workflow)
    fork = re.compile(r" --fork-from=(\S*)")
    assert sorted(fork.sub("", line) for line in new) == old
    for line in new:
        if line.startswith("python -m advprune train"):
            epoch, seed = re.search(r"--prune-epoch (\d+)", line), re.search(r"--seed (\d+)", line)
            forks = epoch is not None and int(epoch[1]) > 0
            prefix = fork.search(line)[1]
            assert bool(prefix) == forks, line
            assert not forks or prefix.endswith(f"_e{epoch[1]}/seed{seed[1]}/prefix.pt"), line


@pytest.mark.slow
def test_adding_a_seed_trains_only_that_seed(demo, tmp_path):
    directory, _ = demo
    overlay = write_config_overlay(tmp_path, {"artefacts": {"fig2": {"seeds": [0, 1, 2]}}})
    jobs = planned_jobs(directory, "--profile", "profiles/demo", "--configfile", "profiles/demo/demo.yaml",
                        str(overlay))
    # fig2 in the demo: random keep 0.4 (e=1) and the full model, on two digits variants -> 4 new models, nothing
    # else: the full-data model of the other seeds is not retrained, and no prefix, as the new seed's random keep
    # 0.4 at e=1 is the only model of its prefix (fig1 has seeds 0 and 1 only): it trains from scratch.
    assert jobs["train_model"] == 4
    assert jobs["evaluate_model"] == 4
    assert jobs.get("train_prefix", 0) + jobs.get("train_prefix_temporary", 0) == 0


@pytest.mark.slow
def test_adding_a_strategy_trains_only_its_models_from_the_existing_prefixes(demo, tmp_path):
    """A cell added at a pruning epoch whose prefixes are kept (digits-mnist) forks from them; where they were
    deleted (digits-cifar, keep_prefixes false in the demo), its models train from scratch: a rebuilt prefix would
    retrain the forks already trained from it. Never a full model, never a finished fork."""
    directory, _ = demo
    overlay = write_config_overlay(tmp_path, {"artefacts": {"table1": {"strategies": ["low+high", "random", "high"]}}})
    command = ["--profile", "profiles/demo", "--configfile", "profiles/demo/demo.yaml", str(overlay)]
    jobs = planned_jobs(directory, *command)
    # table1: high keep 0.4 (e=3) x 2 seeds x 2 digits variants.
    assert jobs["train_model"] == 4 and jobs["evaluate_model"] == 4
    assert jobs.get("train_prefix", 0) + jobs.get("train_prefix_temporary", 0) == 0
    assert sorted(directory.glob("results/prefixes/digits-mnist/fp32/*/*/prefix.pt"))  # kept
    assert not sorted(directory.glob("results/prefixes/digits-cifar/fp32/*/*/prefix.pt"))  # deleted
    # The commands: the digits-mnist ones fork, the digits-cifar ones start from scratch.
    result = snakemake(directory, "-n", "--printshellcmds", *command)
    assert result.returncode == 0, result.stderr[-3000:]
    trains = [line for line in result.stdout.splitlines() if "python -m advprune train " in line]
    assert len(trains) == 4 and all("high_keep0.4_e3_rescale" in line for line in trains)
    forks = sorted(re.search(r"--fork-from=(\S*)", line).group(1) for line in trains)
    assert forks == ["", "", "results/prefixes/digits-mnist/fp32/rescale_e3/seed0/prefix.pt",
                     "results/prefixes/digits-mnist/fp32/rescale_e3/seed1/prefix.pt"], trains


@pytest.mark.slow
def test_a_demo_trained_before_prefixes_replans_no_model(tmp_path):
    """Models trained by the workflow of before prefixes (commit a8d1d28) are neither retrained nor re-evaluated by
    this one: their rule's params and inputs are as recorded (no prefix input for a model trained from scratch)."""
    import shutil
    import subprocess

    before = tmp_path / "before"
    before.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "a8d1d28"], capture_output=True)
    if archive.returncode != 0:
        pytest.skip("commit a8d1d28 is not in this clone (shallow?): nothing to compare with")
    subprocess.run(["tar", "-x", "-C", str(before)], input=archive.stdout, check=True)
    # A pruned model at e=3 (it would fork now), one at e=1, and the full-data model, trained and one evaluated.
    runs = ["random_keep0.4_e3_rescale", "low+high_keep0.4_e3_rescale", "random_keep0.4_e1_rescale", "full"]
    targets = [f"results/models/digits-mnist/fp32/{run}/seed0/train.json" for run in runs]
    targets.append("results/models/digits-mnist/fp32/full/seed0/autoattack-n100.json")
    result = snakemake(before, "--profile", "profiles/demo", *targets, env={"PYTHONPATH": str(before / "src")})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    after = copy_workflow(tmp_path / "after")
    for name in ("data", "results", ".snakemake"):
        shutil.move(before / name, after / name)
    assert planned_jobs(after, "--profile", "profiles/demo", *targets) == {}
    # Adding its seed 0 e=3 cells' sibling now forks from a new prefix; the old models stay.
    sibling = "results/models/digits-mnist/fp32/high_keep0.4_e3_rescale/seed0/train.json"
    assert planned_jobs(after, "--profile", "profiles/demo", *targets, sibling) == {"train_prefix": 1,
                                                                                    "train_model": 1}


@pytest.mark.slow
def test_changing_a_training_setting_retrains_exactly_the_models_it_affects(demo, tmp_path):
    directory, _ = demo
    overlay = write_config_overlay(tmp_path, {"training_overrides": {"digits-cifar": ["monitor.pgd_steps=5"]}})
    jobs = planned_jobs(directory, "--profile", "profiles/demo", "--configfile", "profiles/demo/demo.yaml",
                        str(overlay))
    # Every digits-cifar model of the demo: 4 cells x 2 seeds + the ablation's 2 fixed-schedule cells x 2 seeds.
    assert jobs["train_model"] == 12
    assert jobs["evaluate_model"] == 12


@pytest.mark.slow
def test_partial_results_build_from_finished_models(demo):
    directory, _ = demo
    missing = next(directory.glob("results/models/digits-mnist/fp32/full/seed1/autoattack-n100.json"))
    with restored(missing):  # the shared demo gets the file back, as it was
        missing.unlink()
        jobs = planned_jobs(directory, "results/artefacts/fig2.csv", "--profile", "profiles/demo",
                            "--config", "partial=True")
    assert "evaluate_model" not in jobs and "train_model" not in jobs
    assert jobs["artefact_table"] == 1


@pytest.mark.slow
def test_html_report_holds_every_artefact(demo, tmp_path):
    directory, _ = demo
    result = snakemake(directory, "--profile", "profiles/demo", "--report", str(tmp_path / "report.html"))
    assert result.returncode == 0, result.stderr[-3000:]
    # Captions keep their source's line breaks, as "\\n" inside the report's JSON: compare with single spaces.
    html = " ".join((tmp_path / "report.html").read_text().replace("\\n", " ").split())
    for name in ARTEFACT_NAMES:
        assert f"{name}.pdf" in html and f"{name}.provenance.json" in html, name
    assert "Beyond the paper" in html  # a caption (captions/ablation_schedule.rst) made it in
    assert "claims.csv" in html and "rules (v2) were fixed in" in html  # the claims table and its caption
    # Captions are filled from the demo's config by Snakemake itself: its 20 models, fig8's 500-point subsamples.
    assert "This run: 20 models on digits (MNIST settings) and digits (CIFAR-10 settings)" in html
    assert "seeded 500-point subsamples" in html and "Start with the verdicts" in html


@pytest.mark.slow
def test_demo_claims_table_has_every_claim_with_a_verdict(demo):
    directory, _ = demo
    claims = pd.read_csv(directory / "figures/claims.csv")
    assert len(claims) == len(load_claims())
    assert set(claims["verdict"]) <= {"reproduced", "not reproduced", "inconclusive", "not measured"}
    # The demo trains table1's keep 0.4 and full cells with 2 seeds: those claims are measured, with an interval.
    measured = claims.set_index("id").loc[["mnist-loss-beats-random", "cifar10-loss-worse-than-random"]]
    assert measured["verdict"].isin(["reproduced", "not reproduced", "inconclusive"]).all()
    assert (measured["ci_low"] <= measured["ours"]).all() and (measured["ours"] <= measured["ci_high"]).all()
    assert set(measured["dataset"]) == {"digits-mnist", "digits-cifar"}
    # ... but not the low-loss strategy of fig3/fig4, and says so.
    assert claims.set_index("id").loc["mnist-low-loss-hurts-most", "verdict"] == "not measured"
    assert "| claim | reading | dataset | ours | CI | interval |" in (directory / "figures/claims.md").read_text()


@pytest.mark.slow
def test_demo_provenance_is_on_every_result_and_artefact(demo):
    directory, _ = demo
    for train_json in directory.glob("results/models/*/*/*/*/train.json"):
        record = json.loads(train_json.read_text())["provenance"]
        assert record["config_sha256"] and record["dataset_sha256"] and record["versions"]["torch"]
        assert {"commit", "dirty", "method_version", "device", "jobs_on_device"} <= set(record)
    models = pd.read_csv(directory / "results/models.csv")
    for name in ARTEFACT_NAMES + ("claims",):
        record = json.loads((directory / f"figures/{name}.provenance.json").read_text())
        assert record["artefact"] == name and record["built_with"]["method_version"] == METHOD_VERSION
        assert all(entry["sha256"] for entry in record["inputs"]), name
        listed = {model["run_dir"] for model in record["models"]}
        if name == "toy":  # a simulation: parameters, no models
            assert not listed and record["parameters"]["seeds"]
        else:
            assert listed and listed <= set(models["run_dir"]), name
    table1 = json.loads((directory / "figures/table1.provenance.json").read_text())
    assert table1["models_summary"]["n_models"] == len(pd.read_csv(directory / "results/artefacts/table1.csv"))


@pytest.mark.slow
def test_finished_models_survive_unrelated_code_edits(demo):
    directory, _ = demo
    edits = {
        directory / "src/advprune/training.py": lambda text: text + "\n# an unrelated edit to the training code\n",
        directory / "rules/train.smk": lambda text: text.replace("--no-progress", "--no-progress "),
    }
    version = directory / "src/advprune/__init__.py"
    with restored(*edits, version):
        for path, edit in edits.items():
            path.write_text(edit(path.read_text()))
        assert planned_jobs(directory, "--profile", "profiles/demo") == {}
        # Rerunning is explicit: a forced rule, or a new method version.
        forced = planned_jobs(directory, "--profile", "profiles/demo", "--forcerun", "train_model")
        assert forced["train_model"] == 20
        version.write_text(version.read_text().replace(f"METHOD_VERSION = {METHOD_VERSION}",
                                                       f"METHOD_VERSION = {METHOD_VERSION + 1}"))
        bumped = planned_jobs(directory, "--profile", "profiles/demo", env={"PYTHONPATH": str(directory / "src")})
        assert bumped["train_model"] == 20 and bumped["evaluate_model"] == 20
    assert planned_jobs(directory, "--profile", "profiles/demo") == {}


def test_the_snakefile_plans_with_its_own_checkouts_package(tmp_path):
    """A second checkout (a `git worktree` sharing .venv, whose editable install names the first checkout) plans with
    its own src/, as its jobs run it: the MNIST run's Snakemake once imported the main checkout's package and every
    call failed when that changed."""
    copy = copy_workflow(tmp_path / "other")
    kinds = copy / "src/advprune/kinds.py"
    kinds.write_text(kinds.read_text() + '\nraise ImportError("the second checkout\'s own kinds.py")\n')
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-m", "snakemake", *dry_run_args("--profile", "profiles/demo")],
                            cwd=copy, capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert result.returncode != 0 and "the second checkout's own kinds.py" in result.stdout + result.stderr
