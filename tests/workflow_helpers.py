"""Run the real Snakemake workflow in a scratch copy of the project, and read what it plans."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "rules", "schemas", "report", "profiles", "envs", "config.yaml", "src")


def copy_workflow(destination: Path) -> Path:
    """A private copy, so runs and edits in a test never touch the checkout (src is copied for the rules that list
    report code as input; jobs still import the installed advprune)."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, destination / name)
    return destination


def snakemake(
    directory: Path, *args: str, timeout: float = 900, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Real Snakemake in `directory`; `env` adds environment variables."""
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=directory, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


def planned_jobs(directory: Path, *args: str, env: dict | None = None) -> dict[str, int]:
    """Job counts per rule from a dry run (`snakemake -n`), {} when nothing is to be done."""
    result = snakemake(directory, "-n", *args, "--quiet", "rules", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = {}
    in_stats = False
    for line in result.stdout.splitlines():
        if line.startswith("Job stats:"):
            in_stats = True
        elif in_stats:
            match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
            if match and match[1] != "total":
                counts[match[1]] = int(match[2])
            elif line.strip().startswith("total"):
                break
    return counts


def write_config_overlay(directory: Path, overlay: dict) -> Path:
    path = directory / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return path
