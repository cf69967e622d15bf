"""Where a number came from: the project's code (git commit, and whether the tree had uncommitted changes), the
method version, a hash of the resolved configuration, the dataset file's sha256, library versions, the device and
how many jobs shared it.

Every per-model result (train.json, the AutoAttack metrics) carries a `provenance` record; every artefact gets a
`<name>.provenance.json` beside its files that repeats the code state of its own build and lists the models it was
built from with theirs, so a mixed build (two commits, a dirty tree, two configurations) is visible at a glance.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any, Iterable, Mapping

from advprune import METHOD_VERSION
from advprune.runtime import library_versions, write_json

SCHEMA = "advprune.provenance/1"
REPORT_LIBRARIES = ("pandas", "seaborn", "matplotlib", "scikit-learn")  # versioned in artefact records too

# Per-model fields an artefact's record lists for each of its models (tidy-table column names).
MODEL_FIELDS = (
    "run_dir", "method_version", "train_commit", "train_dirty", "eval_commit", "eval_dirty", "config_sha256",
    "dataset_sha256", "device", "jobs_on_device",
)  # fmt: skip
# Per-model field -> the key of its distinct values in an artefact's `models_summary`.
SUMMARISED = {
    "method_version": "method_versions", "train_commit": "train_commits", "eval_commit": "eval_commits",
    "config_sha256": "config_hashes", "dataset_sha256": "dataset_hashes", "device": "devices",
    "jobs_on_device": "jobs_on_device",
}  # fmt: skip


def project_root() -> Path:
    """The checkout this package runs from (src/advprune/provenance.py -> the project)."""
    return Path(__file__).resolve().parents[2]


# Tracked paths that no computation reads as code or settings: prose, and the records docs/results holds (publish
# reads a record's models.csv as data, and says which models it holds by their own commits).
NOT_CODE = (":(exclude)docs", ":(exclude,glob)**/*.md", ":(exclude)tests")


@functools.cache
def code_state() -> dict[str, Any]:
    """{"commit", "dirty"} of the project's git checkout; both None where the code is not in one (an installed
    package, a copied workflow). Dirty means tracked files that can change a result differ from the commit: untracked
    files, documentation and the records published under docs/ do not count (publishing a record writes into docs/
    before it builds the record's tables, which would otherwise always call its own build dirty)."""
    root = project_root()

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root:
            raise ValueError("the package sits inside some other repository")
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", *NOT_CODE))
    except (OSError, ValueError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def config_sha256(config: Mapping[str, Any]) -> str:
    """A stable hash of a resolved configuration (key order and float formatting do not matter)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def run_record(
    *, config: Mapping[str, Any], dataset_sha256: str, device: str, jobs_on_device: int, gpu: str | None = None
) -> dict[str, Any]:
    """The provenance of one per-model result; `config` is what was resolved for it (training settings, or the
    evaluation's parameters)."""
    return {
        "schema": SCHEMA,
        **code_state(),
        "method_version": METHOD_VERSION,
        "config_sha256": config_sha256(config),
        "dataset_sha256": dataset_sha256,
        "versions": library_versions(),
        "device": device,
        "jobs_on_device": jobs_on_device,
        "gpu": gpu,  # which GPU (its CUDA_VISIBLE_DEVICES name) where advprune.gpu_slots placed the job
        "created_utc": _now(),
    }


def model_fields(train: Mapping[str, Any], metrics: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A model's provenance as tidy-table columns, from its train.json (and metrics) records; None where a record
    predates provenance."""
    trained, evaluated = train.get("provenance") or {}, (metrics or {}).get("provenance") or {}
    return {
        "train_commit": trained.get("commit"),
        "train_dirty": trained.get("dirty"),
        "eval_commit": evaluated.get("commit"),
        "eval_dirty": evaluated.get("dirty"),
        "config_sha256": trained.get("config_sha256"),
        "dataset_sha256": train.get("dataset_sha256"),
    }


def sidecar_path(output: str | Path) -> Path:
    """figures/table1.pdf -> figures/table1.provenance.json"""
    output = Path(output)
    return output.with_name(f"{output.stem}.provenance.json")


def _file_entry(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    return {"path": str(path), "sha256": digest}


def _plain(value: Any) -> Any:
    """JSON-ready: numpy/pandas scalars to Python, missing values (NaN, pd.NA) to None."""
    if value is None:
        return None
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        value = value.item()
    try:
        if value != value:  # NaN
            return None
    except (TypeError, ValueError):  # pd.NA refuses comparison
        return None
    return value


def artefact_record(
    name: str,
    *,
    outputs: Iterable[str | Path],
    inputs: Iterable[str | Path] = (),
    parameters: Mapping[str, Any] | None = None,
    models: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The provenance of one artefact: its own build, its inputs (with sha256), and the models it was built from."""
    models = [{field: _plain(model.get(field)) for field in MODEL_FIELDS} for model in models]
    summary = {
        key: sorted({m[field] for m in models if m[field] is not None}, key=str) for field, key in SUMMARISED.items()
    }
    summary["n_models"] = len(models)
    summary["any_dirty"] = any(bool(m["train_dirty"]) or bool(m["eval_dirty"]) for m in models)
    return {
        "schema": SCHEMA,
        "artefact": name,
        "outputs": [str(p) for p in outputs],
        "built_with": {
            **code_state(), "method_version": METHOD_VERSION, "versions": library_versions(REPORT_LIBRARIES)
        },
        "created_utc": _now(),
        "parameters": {k: _plain(v) if not isinstance(v, (list, dict)) else v for k, v in (parameters or {}).items()},
        "inputs": [_file_entry(Path(p)) for p in inputs],
        "models_summary": summary,
        "models": models,
    }


def write_artefact_record(main_output: str | Path, name: str, **fields: Any) -> Path:
    path = sidecar_path(main_output)
    write_json(path, artefact_record(name, **fields))
    return path
