"""`python -m advprune cost`: models and estimated GPU time of workflow targets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from advprune.costs import estimate, missing_timings
from advprune.identity import ModelKey

REPO = Path(__file__).resolve().parents[1]
TIMINGS = {"device": "test", "datasets": {"cifar10": {"epoch_seconds": 10.0, "autoattack_seconds_per_1000": 100.0}}}


def test_pruned_run_costs_its_share_of_a_full_one():
    full = ModelKey.create("cifar10", "random", 1.0, None, 0)
    pruned = ModelKey.create("cifar10", "random", 0.4, 3, 0)
    cost = estimate([full, pruned], TIMINGS, n_examples=500)
    # 15 epochs x 10 s = 150 s full; pruned after 3: (3 + 12 * 0.4) / 15 = 0.52 of it = 78 s -> 228 s.
    assert cost.training_hours == pytest.approx(228 / 3600)
    # 2 evaluations x 100 s per 1000 points x 500 points = 100 s.
    assert cost.evaluation_hours == pytest.approx(100 / 3600)
    assert cost.per_dataset == {"cifar10": 2}


def test_a_dataset_without_timings_has_epochs_but_no_hours():
    keys = [ModelKey.create("mnist", "random", 1.0, None, 0), ModelKey.create("cifar10", "random", 1.0, None, 0)]
    cost = estimate(keys, TIMINGS, n_examples=1000)
    assert cost.training_hours is cost.evaluation_hours is cost.total_hours is None
    assert cost.epochs_from_scratch == 10 + 15 and cost.per_dataset == {"mnist": 1, "cifar10": 1}
    assert missing_timings(keys, TIMINGS) == ["mnist"]


def test_cost_command_on_the_demo_config_prints_the_whole_table():
    """The demo's digits have no timings (they are not the paper's datasets): epochs for every target, hours n/a,
    and a line that says why, not a table cut off by an error."""
    result = subprocess.run([sys.executable, "-m", "advprune", "cost", "--configfile", "config.yaml",
                             "profiles/demo/demo.yaml"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rows = [line.split("|") for line in result.stdout.splitlines() if line.startswith("| ") and "target" not in line]
    assert rows[-1][1].strip() == "all" and len(rows) >= 10
    assert all(row[4].strip() == "n/a" for row in rows if row[2].strip() != "0")
    assert all(float(row[7]) >= float(row[8]) for row in rows)
    assert "n/a: no timings for digits-cifar, digits-mnist" in result.stdout


def test_cost_command_on_the_paper_config():
    result = subprocess.run([sys.executable, "-m", "advprune", "cost", "fig4", "all"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in result.stdout.splitlines()
            if line.startswith("| fig4") or line.startswith("| all")}
    assert rows == {"fig4": "85", "all": "780"}  # the counts of tests/test_workflow.py's hand-worked plan


def test_cost_of_claims_and_toy_and_a_bad_name():
    result = subprocess.run([sys.executable, "-m", "advprune", "cost", "claims", "toy"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in result.stdout.splitlines()
            if line.startswith("| ")}
    # claims: the union of table1 (300), fig2 (100), fig3 (85), fig4 (85) and fig5 (300) models, shared ones once;
    # the toy trains nothing.
    assert rows["toy"] == "0" and 300 < int(rows["claims"]) < 780
    result = subprocess.run([sys.executable, "-m", "advprune", "cost", "fig4", "bogus"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == "" and "unknown target 'bogus'" in result.stderr


def test_forks_of_one_prefix_train_its_epochs_once():
    """Pruned models of one seed, pruning epoch and schedule fork from one prefix (advprune.prefix): its e epochs
    are trained once; another schedule, seed or epoch has its own prefix, and e = 0 none."""
    low_high = ModelKey.create("cifar10", "low+high", 0.4, 3, 0)
    random = ModelKey.create("cifar10", "random", 0.4, 3, 0)
    fixed = ModelKey.create("cifar10", "random", 0.4, 3, 0, schedule="fixed")
    at_zero = ModelKey.create("cifar10", "random", 0.4, 0, 0)
    cost = estimate([low_high, random, fixed, at_zero], TIMINGS, n_examples=500)
    # From scratch: 3 x (3 + 12 x 0.4) + 15 x 0.4 = 29.4 epochs; the first two share their 3 epochs: 3 saved.
    assert cost.epochs_from_scratch == pytest.approx(29.4)
    assert cost.epochs == pytest.approx(26.4) and cost.epochs_saved == pytest.approx(3)
    assert cost.training_hours == pytest.approx(26.4 * 10 / 3600)


def test_cost_command_reports_the_epochs_saved():
    result = subprocess.run([sys.executable, "-m", "advprune", "cost", "fig3"], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("| fig3")).split("|")
    # fig3: 5 seeds x (16 pruned models at e=3 + the full one); each seed's 16 forks share one prefix: 15 x 3 saved.
    assert [cell.strip() for cell in row[7:10]] == ["570", "345", "225 (39%)"]


def _profile_configfiles(profile: Path) -> list[str]:
    import yaml

    return [str(path) for path in yaml.safe_load((profile / "config.yaml").read_text()).get("configfiles", [])]


@pytest.mark.parametrize("profile", sorted(path.name for path in (REPO / "profiles").iterdir() if path.is_dir()))
def test_cost_works_on_every_shipped_profiles_config(profile: str):
    """`cost` reads a config as the workflow does (plan.load_config -> prepare_config: schema, plugins, checks), on
    the config files each shipped profile layers."""
    configfiles = ["config.yaml", *(name for name in _profile_configfiles(REPO / "profiles" / profile)
                                    if name != "config.yaml")]  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "advprune", "cost", "--configfile", *configfiles, "all"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert any(line.startswith("| all") for line in result.stdout.splitlines()), result.stdout


def test_cost_refuses_a_config_the_schema_refuses(tmp_path: Path):
    """The schema is part of reading a config: a precision the schema does not know is refused in one line naming
    it (before one loader, `cost` skipped the schema and planned fp16 models)."""
    overlay = tmp_path / "bad.yaml"
    overlay.write_text("precision: fp16\n")
    result = subprocess.run([sys.executable, "-m", "advprune", "cost", "--configfile", "config.yaml", str(overlay)],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    assert "fp16" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
