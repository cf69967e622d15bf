"""The tidy table: one row per trained model, built from its `train.json` and its evaluation
(`autoattack-n<N>.json`, identity.EVALUATION_FILE).

Every figure and table is drawn from this table only. Accuracies become percent here, once; times stay in seconds
with `time_minutes` beside them. Column order is fixed (`COLUMNS`) and rows are sorted, so the CSV is stable.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from advprune import provenance
from advprune.datasets import file_sha256
from advprune.identity import FULL, normalise_keep
from advprune.runtime import atomic_path, read_json

ATTACKS = ("apgd-ce", "apgd-t", "fab-t", "square")


def attack_column(attack: str) -> str:
    return f"aa_after_{attack.replace('-', '_')}_pct"


# From the results' `provenance` records (advprune.provenance.model_fields).
PROVENANCE_COLUMNS = ["train_commit", "train_dirty", "eval_commit", "eval_dirty", "config_sha256", "dataset_sha256"]

COLUMNS = [
    "dataset", "strategy", "keep", "prune_epoch", "seed", "schedule_after_pruning", "precision", "method_version",
    "n_train", "n_kept", "train_seconds", "scoring_seconds", "time_seconds", "time_minutes",
    "clean_acc_pct", "aa_acc_pct", *(attack_column(a) for a in ATTACKS), "n_examples", "eval_seconds",
    "collapsed", "collapse_epoch", "final_pgd_acc_pct", "device", "jobs_on_device", "run_dir",
    *PROVENANCE_COLUMNS,
]  # fmt: skip

# Nullable integers: full-data runs have no pruning epoch and most runs no collapse epoch, and the CSV should
# still say "3", not "3.0".
DTYPES = {
    **{c: "Int64" for c in ("prune_epoch", "seed", "method_version", "n_train", "n_kept", "n_examples",
                            "collapse_epoch", "jobs_on_device")},
    **{c: "float64" for c in ("keep", "train_seconds", "scoring_seconds", "time_seconds", "time_minutes",
                              "clean_acc_pct", "aa_acc_pct", *(attack_column(a) for a in ATTACKS), "eval_seconds",
                              "final_pgd_acc_pct")},
    **{c: "object" for c in ("dataset", "strategy", "schedule_after_pruning", "precision", "device", "run_dir",
                             "train_commit", "eval_commit", "config_sha256", "dataset_sha256")},
    "collapsed": "bool",
    "train_dirty": "boolean",
    "eval_dirty": "boolean",
}  # fmt: skip

SORT_KEYS = ["dataset", "strategy", "keep", "prune_epoch", "schedule_after_pruning", "precision", "seed", "run_dir"]

NUMBER = (int, float)


class RunRecordError(ValueError):
    """A train.json or evaluation file that lacks a key or holds a value of the wrong kind."""


def _get(record: dict[str, Any], key: str, kinds: tuple[type, ...], path: Path, nullable: bool = False) -> Any:
    if key not in record:
        raise RunRecordError(f"{path}: missing key {key!r}")
    value = record[key]
    if value is None and nullable:
        return None
    # bool is an int subclass; a flag where a number belongs (or the reverse) is a bug upstream.
    if value is None or not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join(k.__name__ for k in kinds) + (" or null" if nullable else "")
        raise RunRecordError(f"{path}: key {key!r} is {value!r}, expected {expected}")
    return value


INT64_MAX = 2**63 - 1


def _bounded(record: dict[str, Any], key: str, path: Path, low: float, high: float = math.inf, *,
             kinds: tuple[type, ...] = NUMBER, nullable: bool = False) -> Any:
    """A finite number (or integer) in [low, high]: JSON lets `Infinity`, NaN and any integer through, and a table
    built from them shows 'inf ± nan'."""
    value = _get(record, key, kinds, path, nullable)
    if value is not None and not (low <= value <= high and math.isfinite(value)):
        shown = f"[{low:g}, {high:g}]" if high != math.inf else f">= {low:g}"
        raise RunRecordError(f"{path}: key {key!r} is {value!r}, expected a finite number {shown}")
    return value


def _fraction(record: dict[str, Any], key: str, path: Path, at_most: float = 1.0) -> float:
    value = _get(record, key, NUMBER, path)
    if not 0.0 <= value <= at_most:
        if at_most < 1.0:
            raise RunRecordError(f"{path}: key {key!r} is {value!r}, above the clean accuracy {at_most!r} of the same "
                                 "points (clean_acc_subset): no attack raises accuracy")
        raise RunRecordError(f"{path}: key {key!r} is {value!r}, expected an accuracy fraction in [0, 1]")
    return float(value)


CHECKPOINT = "model.pt"  # beside train.json: the model a run directory's metrics must have measured


def _check_measured_model(metrics: dict[str, Any], metrics_path: Path, checkpoint: Path) -> None:
    """Metrics pair with a model only if they name its sha256: a model trained again over the directory (--overwrite)
    keeps the old model's metrics beside it. Metrics written before the field existed carry none and are accepted
    unchecked: only files written since the field was added are checked (README)."""
    if "checkpoint_sha256" not in metrics:
        return
    recorded = _get(metrics, "checkpoint_sha256", (str,), metrics_path)
    if not checkpoint.is_file():
        raise RunRecordError(f"{metrics_path}: names checkpoint_sha256 {recorded[:12]}..., but {checkpoint} is missing")
    actual = file_sha256(checkpoint)
    if recorded != actual:
        raise RunRecordError(
            f"{metrics_path}: measured the checkpoint with sha256 {recorded[:12]}..., but {checkpoint} has sha256 "
            f"{actual[:12]}... (checkpoint_sha256 differs: the model was trained again after its evaluation); "
            "evaluate it again (evaluate --overwrite, or let the workflow rerun the evaluation)"
        )


# The provenance fields a row reads (advprune.provenance.model_fields), with their kinds; older records lack them.
PROVENANCE_KINDS = {"commit": (str,), "dirty": (bool,), "config_sha256": (str,)}


def _check_provenance(record: dict[str, Any], path: Path) -> None:
    if record.get("provenance") is None:
        return
    provenance = _get(record, "provenance", (dict,), path)
    for key, kinds in PROVENANCE_KINDS.items():
        if key in provenance:
            _get(provenance, key, kinds, Path(f"{path}: provenance"), nullable=True)
    if "dataset_sha256" in record:
        _get(record, "dataset_sha256", (str,), path, nullable=True)


def _row(train_path: Path, metrics_path: Path, n_examples: int | None = None) -> dict[str, Any]:
    train, metrics = read_json(train_path), read_json(metrics_path)
    for path, record in ((train_path, train), (metrics_path, metrics)):
        if not isinstance(record, dict):
            raise RunRecordError(f"{path}: expected a JSON object, got {type(record).__name__}")
    _check_measured_model(metrics, metrics_path, train_path.parent / CHECKPOINT)
    for path, record in ((train_path, train), (metrics_path, metrics)):
        _check_provenance(record, path)

    dataset = _get(train, "dataset", (str,), train_path)
    if _get(metrics, "dataset", (str,), metrics_path) != dataset:
        raise RunRecordError(
            f"{metrics_path}: key 'dataset' is {metrics['dataset']!r} but {train_path} says {dataset!r}"
        )
    strategy = _get(train, "strategy", (str,), train_path)
    keep = _get(train, "keep", NUMBER, train_path)
    if not (0 < keep <= 1):
        raise RunRecordError(f"{train_path}: key 'keep' is {keep!r}, expected a fraction in (0, 1]")
    keep = normalise_keep(keep)  # as the model's directory writes it
    if (strategy == FULL) != (keep == 1.0):
        raise RunRecordError(f"{train_path}: keys 'strategy' {strategy!r} and 'keep' {keep} disagree (full <=> 1.0)")

    history = _get(train, "history", (list,), train_path)
    if not history or not isinstance(history[-1], dict):
        raise RunRecordError(f"{train_path}: key 'history' must be a non-empty list of per-epoch objects")
    after = _get(metrics, "robust_acc_after", (dict,), metrics_path)
    train_seconds = float(_bounded(train, "train_seconds", train_path, 0))
    scoring_seconds = float(_bounded(train, "scoring_seconds", train_path, 0))
    n_train = _bounded(train, "n_train", train_path, 1, INT64_MAX, kinds=(int,))
    examples = _bounded(metrics, "n_examples", metrics_path, 1, INT64_MAX, kinds=(int,))
    if n_examples is not None and examples != n_examples:
        raise RunRecordError(f"{metrics_path}: key 'n_examples' is {examples}, but the file holds the evaluation on "
                             f"{n_examples} points")
    # Robust accuracy is measured on the first n test points, whose clean accuracy (older files lack it) bounds it.
    clean_subset = _fraction(metrics, "clean_acc_subset", metrics_path) if "clean_acc_subset" in metrics else 1.0

    row = {
        "dataset": dataset,
        "strategy": strategy,
        "keep": keep,
        "prune_epoch": _bounded(train, "prune_epoch", train_path, 0, INT64_MAX, kinds=(int,), nullable=True),
        "seed": _bounded(train, "seed", train_path, 0, 2**32 - 1, kinds=(int,)),  # what every generator accepts
        "schedule_after_pruning": _get(train, "schedule_after_pruning", (str,), train_path, nullable=True),
        "precision": _get(train, "precision", (str,), train_path),
        "method_version": _bounded(train, "method_version", train_path, 1, INT64_MAX, kinds=(int,)),
        "n_train": n_train,
        "n_kept": _bounded(train, "n_kept", train_path, 1, n_train, kinds=(int,)),
        "train_seconds": train_seconds,
        "scoring_seconds": scoring_seconds,
        # The paper's "Time" includes scoring (docs/method.md, Evaluation).
        "time_seconds": train_seconds + scoring_seconds,
        "time_minutes": (train_seconds + scoring_seconds) / 60.0,
        "clean_acc_pct": 100.0 * _fraction(metrics, "clean_acc", metrics_path),
        "aa_acc_pct": 100.0 * _fraction(metrics, "autoattack_acc", metrics_path, clean_subset),
        # An attack that did not run (nothing left to attack) has no entry: NaN, not an error.
        **{
            attack_column(a): 100.0 * _fraction({f"robust_acc_after.{a}": after[a]}, f"robust_acc_after.{a}",
                                                metrics_path, clean_subset) if a in after else math.nan
            for a in ATTACKS
        },
        "n_examples": examples,
        "eval_seconds": float(_bounded(metrics, "eval_seconds", metrics_path, 0)),
        "collapsed": _get(train, "collapsed", (bool,), train_path),
        "collapse_epoch": _bounded(train, "collapse_epoch", train_path, 1, INT64_MAX, kinds=(int,), nullable=True),
        "final_pgd_acc_pct": 100.0 * _fraction(history[-1], "pgd_acc", train_path),
        "device": _get(train, "device", (str,), train_path),
        "jobs_on_device": _bounded(train, "jobs_on_device", train_path, 1, INT64_MAX, kinds=(int,)),
        "run_dir": str(train_path.parent),
        **provenance.model_fields(train, metrics),
    }
    return row



def _missing_text_as_none(df: pd.DataFrame) -> pd.DataFrame:
    """One missing value for text columns (JSON null and an empty CSV field alike), so tables compare equal."""
    text = [c for c, t in DTYPES.items() if t == "object"]
    return df.assign(**{c: df[c].where(df[c].notna(), None) for c in text})


def collect(pairs: list[tuple[Path, Path]], n_examples: int | None = None) -> pd.DataFrame:
    """One row per (train.json, evaluation file) pair, columns `COLUMNS`, rows sorted by `SORT_KEYS`; with `n_examples`,
    every metrics file must be the evaluation on that many points (autoattack-n<N>.json)."""
    rows = [_row(Path(train), Path(metrics), n_examples) for train, metrics in pairs]
    df = _missing_text_as_none(pd.DataFrame(rows, columns=COLUMNS).astype(DTYPES))
    check_table(df, "the run directories given")
    return df.sort_values(SORT_KEYS, na_position="first", kind="stable").reset_index(drop=True)


def write_table(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def read_table(path: Path) -> pd.DataFrame:
    """Read a table written by `write_table`, with the dtypes `collect` gives it; a value no model can have, or a model
    in two rows, is refused naming the file (a table is also written, combined and edited by hand)."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=True)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: empty, not a tidy run table") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not a tidy run table, missing columns {missing}")
    df = df[COLUMNS]
    for column, dtype in DTYPES.items():
        values = df[column] if dtype == "object" else _parsed(df[column], dtype, column, path)
        df[column] = values.astype(dtype)
    # As the models' directories write them (collect wrote them so; a hand-edited table's 0.30000000000000004 is
    # 0.3): the report compares keeps with ==, never "close to".
    df["keep"] = df["keep"].map(normalise_keep)
    df = _missing_text_as_none(df)
    check_table(df, path)
    return df


def _parsed(values: pd.Series, dtype: str, column: str, path: Path) -> pd.Series:
    """A CSV column of text as `dtype`, or ValueError naming the first value that is not one (and its line)."""
    if dtype in ("bool", "boolean"):
        parsed = values.map({"True": True, "False": False, "true": True, "false": False}, na_action="ignore")
        if dtype == "bool" and values.isna().any():  # not nullable: pandas would read an empty field as True
            raise ValueError(f"{path}: column {column!r} is empty on line {values.isna().idxmax() + 2}, expected "
                             "True or False")
    else:
        parsed = pd.to_numeric(values, errors="coerce")
        if dtype == "Int64":
            parsed = parsed.where(parsed.isna() | (parsed == parsed.round()))
    bad = values.notna() & parsed.isna()
    if bad.any():
        row = bad.idxmax()
        kind = {"bool": "True or False", "boolean": "True or False", "Int64": "an integer"}.get(dtype, "a number")
        raise ValueError(f"{path}: column {column!r} holds {values[row]!r} on line {row + 2}, expected {kind}")
    return parsed


# Accuracies in percent, in [0, 100]; only an attack's may be empty (no point was left for it to attack).
PERCENT_COLUMNS = ("clean_acc_pct", "aa_acc_pct", "final_pgd_acc_pct", *(attack_column(a) for a in ATTACKS))
MAY_BE_EMPTY = {attack_column(a) for a in ATTACKS}
# One model: a table holds it once (two rows of it would count its run twice in every mean and test).
MODEL_COLUMNS = ["dataset", "strategy", "keep", "prune_epoch", "seed", "schedule_after_pruning", "precision",
                 "method_version", "n_examples"]


def check_table(df: pd.DataFrame, where: Path | str) -> None:
    """ValueError naming the first row of `df` (a tidy run table) that no model can have, or a model in two rows."""

    def refuse(mask: pd.Series, problem: str) -> None:
        if mask.any():
            row = df[mask].iloc[0]
            model = ", ".join(f"{c}={row[c]}" for c in ("dataset", "strategy", "keep", "seed"))
            raise ValueError(f"{where}: {problem} ({int(mask.sum())} row(s); the first: {model}, {row['run_dir']})")

    refuse(~df["keep"].between(0, 1, inclusive="right"), "keep outside (0, 1]")
    refuse((df["strategy"] == FULL) != (df["keep"] == 1.0), "strategy 'full' and keep 1.0 disagree")
    refuse((df["strategy"] == FULL) != df["prune_epoch"].isna(), "a pruned run without its prune_epoch, or full data "
           "with one")
    refuse(df["prune_epoch"].notna() & (df["prune_epoch"] < 0), "prune_epoch negative")
    refuse(df["seed"].isna() | (df["seed"] < 0), "seed missing or negative")
    refuse(df["n_examples"].isna() | (df["n_examples"] < 1), "n_examples missing or below 1")
    for column in PERCENT_COLUMNS:
        empty = df[column].isna()
        refuse(~empty & ~df[column].between(0, 100), f"{column} outside [0, 100]")
        if column not in MAY_BE_EMPTY:
            refuse(empty, f"{column} empty")
    for column in ("train_seconds", "scoring_seconds", "time_seconds", "eval_seconds"):
        refuse(df[column].isna() | (df[column] < 0) | ~df[column].abs().lt(math.inf), f"{column} not a time")
    refuse(df.duplicated(MODEL_COLUMNS, keep=False), "a model in two rows (the same dataset, strategy, keep, epoch, "
           "seed, schedule, precision, method version and test points)")
