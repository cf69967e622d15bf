"""Report captions are filled from the config, so they say what the run did: each captions/*.rst is rendered here as
Snakemake renders it (Jinja, then reStructuredText) for the paper's config and the demo's."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jinja2
import pytest
import yaml
from docutils.core import publish_parts
from snakemake.utils import update_config, validate

from advprune.report.captions import caption_facts

REPO = Path(__file__).resolve().parents[1]
CAPTIONS = sorted((REPO / "captions").glob("*.rst"))
# The links Snakemake defines for every caption: its panels and the report's categories.
LINKS = "\n\n" + "\n".join(f".. _{name}: #" for name in ("Workflow", "Statistics", "Claims", "Figures", "Tables",
                                                             "Provenance"))  # fmt: skip


def config_of(*overlays: str) -> dict[str, Any]:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for overlay in overlays:
        update_config(config, yaml.safe_load((REPO / overlay).read_text()))
    validate(config, str(REPO / "schemas/config.schema.yaml"))  # fills the schema's defaults, as the workflow does
    return config


CONFIGS = {"paper": config_of(), "demo": config_of("profiles/demo/demo.yaml")}


def render(path: Path, config: dict[str, Any]) -> str:
    """The caption's text after Jinja (undefined names fail) and docutils (any error or warning fails)."""
    name = path.stem
    snakemake = SimpleNamespace(config=config, params=SimpleNamespace(caption=caption_facts(config, name)))
    text = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(path.read_text() + LINKS)
    html = publish_parts(text.render(snakemake=snakemake), writer="html",
                         settings_overrides={"report_level": 2, "halt_level": 2})["body"]  # fmt: skip
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("path", CAPTIONS, ids=lambda p: p.stem)
def test_every_caption_renders_for_every_config(path: Path, config: str) -> None:
    assert render(path, CONFIGS[config]).strip()


def test_captions_state_the_runs_own_grid() -> None:
    """fig8's subsample size, table1's seeds and AutoAttack points, and the datasets, differ between the two configs
    and each caption states its own."""
    paper, demo = CONFIGS["paper"], CONFIGS["demo"]
    assert "seeded 5000-point subsamples" in render(REPO / "captions/fig8.rst", paper)
    assert "seeded 500-point subsamples" in render(REPO / "captions/fig8.rst", demo)
    assert "5000-point" not in render(REPO / "captions/fig8.rst", demo).split("Paper:")[0]
    table1 = render(REPO / "captions/table1.rst", demo)
    assert "first 100 test points" in table1 and "2 seeds (0-1) per cell" in table1
    assert "digits (MNIST settings) and digits (CIFAR-10 settings)" in table1
    table1 = render(REPO / "captions/table1.rst", paper)
    assert "first 1000 test points" in table1 and "30 seeds (0-29) per cell" in table1
    assert "MNIST and CIFAR-10" in table1
    assert "keep 0.4, 0.8, 1" in table1
    fig1 = render(REPO / "captions/fig1.rst", paper)
    assert "MNIST: 1, 2, 3, 5, 7, 9; CIFAR-10: 1, 3, 5, 7, 9, 11, 13" in fig1
    capped = config_of("profiles/cpu/cpu.yaml")
    assert f"{capped['seeds_max']} seeds (0-{capped['seeds_max'] - 1}) per cell" in render(REPO / "captions/table1.rst",
                                                                                             capped)  # fmt: skip
    claims = render(REPO / "captions/claims.rst", demo)
    assert "This run: 20 models on digits (MNIST settings) and digits (CIFAR-10 settings)" in claims


def test_the_report_opens_on_the_verdicts_and_links_only_readme_sections_that_exist() -> None:
    text = render(REPO / "captions/workflow.rst", CONFIGS["demo"])
    assert text.strip().split(". ")[1].startswith("Start with the verdicts: Claims")
    assert "digits-mnist for mnist, digits-cifar for cifar10" in text and "first 100 test points" in text
    headings = {line.lstrip("#").strip() for line in (REPO / "README.md").read_text().splitlines()
                if line.startswith("#")}  # fmt: skip
    named = re.findall(r'section "([^"]+)"', (REPO / "captions/workflow.rst").read_text())
    missing = [n for n in named if not any(h == n or h.startswith(f"{n} (") for h in headings)]
    assert named and not missing, missing
