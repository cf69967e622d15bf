"""Which files of the package a module imports, read from the source (`ast`), not by importing it.

The workflow makes each drawing rule depend on exactly these files (advprune.artefacts.Artefact.code_modules), so
editing a module reruns the jobs whose code imports it and no others. Every import statement counts, those inside
functions too, and each package on the way (`advprune/__init__.py`): a lazy import runs as surely as any other.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Iterable

PACKAGE = "advprune"


def _module_file(src: Path, module: str) -> Path | None:
    """`advprune.report.figures` -> src/advprune/report/figures.py (or .../__init__.py); None if no such module."""
    base = src.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """The module names an import statement of `module` may load (a `from X import y` may name a module y)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package of `module`
                parts = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


@functools.lru_cache(maxsize=None)
def _imports_of(path: Path, module: str) -> frozenset[str]:
    """The modules one file may import, parsed once per process: the Snakefile asks for many rules' files, which
    share most of their modules (the package does not change while the DAG is built)."""
    return frozenset(_imported(ast.parse(path.read_text(), str(path)), module, path.name == "__init__.py"))


def module_files(src: Path, modules: Iterable[str]) -> list[Path]:
    """Every file of the package under `src` that importing `modules` loads, theirs included, sorted."""
    roots = list(modules)
    src, found, todo = Path(src), {}, list(roots)
    while todo:
        module = todo.pop()
        if module in found or not (module == PACKAGE or module.startswith(PACKAGE + ".")):
            continue
        path = _module_file(src, module)
        if path is None:
            if module in roots:
                raise ValueError(f"no module {module!r} under {src}")
            continue  # `from advprune.x import name`: a name, not a module
        found[module] = path
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # its packages' __init__.py
        todo += _imports_of(path, module)
    return sorted(set(found.values()))
