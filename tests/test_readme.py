"""The README and docs/ document what the code writes (the config reference, every key of train.json and
metrics.json), their links resolve, and the README's commands name real subcommands, options and profiles."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from advprune import cli, datasets, settings
from advprune.evaluation import evaluate_checkpoint
from advprune.identity import ModelKey
from advprune.training import Trainer

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
FORMATS = (REPO / "docs/file-formats.md").read_text()  # the key tables of train.json and metrics.json


def documented_keys() -> set[str]:
    """Keys named in the first column of docs/file-formats.md's key tables (`a`, `b` | meaning)."""
    keys = set()
    for line in FORMATS.splitlines():
        if line.startswith("| `"):
            keys |= set(re.findall(r"`([a-z_0-9]+)`", line.split("|")[1]))
    return keys


def test_config_reference_is_current():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts/config_reference.py"), "--check", str(REPO / "docs/configuration.md")],
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
    run = ModelKey.from_settings("digits-mnist", "low+high", 0.5, 1, 0, resolved)
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
    history_row = next(line for line in FORMATS.splitlines() if line.startswith("| `history`"))
    assert {key for key in history_keys if f"`{key}`" not in history_row} == set()


def test_every_metrics_json_key_is_documented(outputs):
    _, metrics = outputs
    json.dumps(metrics)  # what `evaluate` writes must be plain JSON
    assert set(metrics) - documented_keys() == set()


# -- links and commands -------------------------------------------------------------------------------------------
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def anchors(text: str) -> set[str]:
    """GitHub's anchors of a Markdown page's headings: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for line in text.splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", heading).replace(" ", "-"))
    return found


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
    return [target for target in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
            broken.append(target)
    assert not broken, f"{page.relative_to(REPO)}: broken links {broken}"


def test_the_link_checker_sees_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title\n\n[ok](#title) [gone](#nothing) [file](missing.md)\n")
    page = tmp_path / "a.md"
    assert relative_links(page) == ["#title", "#nothing", "missing.md"]
    assert "nothing" not in anchors(page.read_text()) and "title" in anchors(page.read_text())


def test_the_first_screen_reaches_the_demo_and_the_results() -> None:
    first_screen = "\n".join(README.splitlines()[:50])
    for text in ("docs/results/mnist-cpu", "bash scripts/setup.sh", "snakemake --profile profiles/demo"):
        assert text in first_screen, text


def test_reference_material_lives_under_docs() -> None:
    for heading in ("## Configuration", "## Provenance", "## Deviations", "## The toy model", "## Claims",
                    "### A training run's directory"):
        assert heading not in README, heading
    for page in ("configuration", "file-formats", "claims", "provenance", "deviations", "toy-model"):
        assert f"(docs/{page}.md)" in README, page


def _advprune_commands(text: str) -> list[list[str]]:
    """`python -m advprune ...` lines of the bash blocks, without comments, optional [...] parts and `...`."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = re.sub(r"\[[^]]*\]", "", line.split("#")[0])
            match = re.search(r"python -m advprune (.*)", line)
            if match:
                commands.append([word for word in shlex.split(match[1]) if word != "..."])
    return commands


@pytest.mark.parametrize("page", [REPO / "README.md", REPO / "docs/cli.md"], ids=["README", "docs/cli.md"])
def test_shown_advprune_commands_parse(page: Path) -> None:
    commands = _advprune_commands(page.read_text())
    assert commands
    for words in commands:
        args = cli.build_parser().parse_args(words)  # an unknown subcommand or option exits 2
        assert args.command == words[0]


def test_shown_snakemake_profiles_exist() -> None:
    profiles = set(re.findall(r"snakemake --profile (profiles/[\w-]+)", README))
    assert profiles >= {"profiles/demo", "profiles/workstation", "profiles/cpu", "profiles/slurm"}
    assert all((REPO / profile / "config.yaml").is_file() for profile in profiles)

def test_every_image_the_readme_shows_is_committed():
    """The README's images (the demo's table and figure) are files of the repository, under docs/."""
    images = re.findall(r'<img src="([^"]+)"', README) + re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert images
    tracked = set(subprocess.run(["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True).stdout.split())
    for image in images:
        assert (REPO / image).is_file() and image in tracked, image
