"""Extending the workflow without editing the package: a plugin is a Python file that registers new pruning
strategies (`advprune.pruning.register_strategy`) and datasets (`advprune.datasets.register_dataset` plus
`advprune.settings.register_dataset` for their training settings).

The workflow's config lists plugin files under `plugins:`; the workflow loads them before it checks the config and
exports them in ADVPRUNE_PLUGINS, which every `python -m advprune` job loads at start, so planning and the jobs see
the same registries. A plugin is code: editing one does not rerun finished models (bump METHOD_VERSION for that).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Iterable

ENVIRONMENT_VARIABLE = "ADVPRUNE_PLUGINS"

_loaded: set[Path] = set()


def load(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Run each plugin file once per process; returns their absolute paths."""
    resolved = []
    for path in paths:
        path = Path(path).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"plugin {path} not found")
        if path not in _loaded:
            # A unique module name per file: two plugins called extend.py in different folders must not collide.
            name = f"advprune_plugin_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
            except Exception as error:
                raise ValueError(f"plugin {path} failed to load: {type(error).__name__}: {error}") from error
            _loaded.add(path)
        resolved.append(path)
    return resolved


def load_from_environment() -> list[Path]:
    """The plugins a workflow job was given (ADVPRUNE_PLUGINS, os.pathsep-separated absolute paths)."""
    value = os.environ.get(ENVIRONMENT_VARIABLE, "")
    return load(part for part in value.split(os.pathsep) if part)


def environment_value(paths: Iterable[Path]) -> str:
    return os.pathsep.join(str(path) for path in paths)
