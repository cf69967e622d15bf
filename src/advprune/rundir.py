"""A run directory's finished files: where `train` writes them, the copy that no rerun can remove, and what counts as
a finished run.

`train` writes its three results (model.pt, train.json, pruning.npz) into `<out>/.finished/` and hard-links them from
there to `<out>/`, where the workflow declares them. Snakemake removes a job's declared outputs before it reruns the
job and after the job fails; a rerun after a killed Snakemake does both to a model that its orphaned job went on to
finish. `.finished/` is no rule's output, so no rerun touches it: the workflow's `train` job finds the finished run
there, links it back and ends without training (advprune.cli). A hard link costs no space (a copy where the
filesystem has none).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the workflow reads run directories without torch
    import numpy as np

    from advprune.checkpoint import RunState
    from advprune.identity import ModelKey

FINISHED = ".finished"
RESULTS = ("pruning.npz", "model.pt", "train.json")  # in the order they are written: train.json completes a run
TRAIN_SCHEMA = "advprune.train/1"


def finished_dir(out: str | os.PathLike) -> Path:
    return Path(out) / FINISHED


def is_finished(out: str | os.PathLike) -> bool:
    """`<out>/.finished/` holds a complete run (its train.json is written last, and removed first by a new run)."""
    return all((finished_dir(out) / name).is_file() for name in RESULTS)


def _link(source: Path, target: Path) -> bool:
    """Make `target` the file `source` is (a hard link, or a copy; replaced atomically); False if it was already."""
    from advprune.runtime import write_failure

    if target.exists() and os.path.samefile(source, target):
        return False
    tmp = target.with_name(f".{target.name}.{os.getpid()}.link")
    try:
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
        except OSError:  # a filesystem without hard links
            shutil.copy2(source, tmp)
        os.replace(tmp, target)
    except OSError as error:  # a full disk: one line naming the file; the finished copy in .finished/ is intact
        raise write_failure(target, error) from None
    finally:
        tmp.unlink(missing_ok=True)
    return True


def link_results(out: str | os.PathLike) -> list[str]:
    """Make each `<out>/<name>` the finished file; the names that were missing or other files."""
    out = Path(out)
    return [name for name in RESULTS if _link(finished_dir(out) / name, out / name)]


def keep_results(out: str | os.PathLike) -> None:
    """Link the results beside `.finished/` into it (a run finished before `.finished/` existed), so that no rerun can
    remove them either; train.json last, as it completes a run."""
    finished_dir(out).mkdir(exist_ok=True)
    for name in RESULTS:
        _link(Path(out) / name, finished_dir(out) / name)


def finished_identity(out: str | os.PathLike, keys: list[str]) -> dict[str, Any]:
    """The `keys` of the finished run's checkpoint (what `Trainer.identity_record` compares)."""
    from advprune.checkpoint import load_checkpoint, recorded_identity

    return recorded_identity(load_checkpoint(finished_dir(out) / "model.pt"), keys)


def refuse_finished(out: Path, *, count_kept_copy: bool = True) -> None:
    """Finished results are never replaced by accident. The checkpoint's own `complete` flag counts, not only
    train.json, which may have been deleted beside it; with `count_kept_copy`, so does `.finished/` when the files
    beside it are gone (the workflow's job passes False: there, Snakemake removed them to train this model anew)."""
    from advprune.checkpoint import load_checkpoint

    if (out / "train.json").exists():
        raise ValueError(f"{out} holds a finished run (train.json); pass --overwrite to train it again")
    model = out / "model.pt"
    # A run killed between writing its results and removing resume.pt still has its resume.pt; resuming checks that
    # it is the same run, and finishes it.
    if (out / "resume.pt").exists():
        return
    if model.exists() and load_checkpoint(model)["complete"]:
        raise ValueError(f"{out} holds a finished model ({model} is complete); pass --overwrite to train it again")
    if count_kept_copy and is_finished(out):
        raise ValueError(f"{out} holds a finished run (in {finished_dir(out)}/, kept when the files beside it are "
                         "removed); pass --overwrite to train it again")


def train_record(
    key: "ModelKey", settings: dict[str, Any], state: "RunState", *, n_train: int, n_kept: int,
    collapse_epoch: int | None, device: str, jobs_on_device: int, dataset_sha256: str, gpu: str | None,
) -> dict[str, Any]:
    """A finished run's train.json (its keys and their order are the README's and the tidy table's)."""
    from advprune import METHOD_VERSION
    from advprune.provenance import run_record
    from advprune.runtime import library_versions

    return {
        "schema": TRAIN_SCHEMA,
        "dataset": key.dataset,
        "model": settings["model"],
        "strategy": key.strategy,
        "keep": key.keep,
        "prune_epoch": key.prune_epoch,
        "seed": key.seed,
        "schedule_after_pruning": settings["schedule_after_pruning"] if key.prunes else None,
        "precision": settings["precision"],
        "method_version": METHOD_VERSION,
        "n_train": n_train,
        "n_kept": n_kept,
        "train_seconds": state.train_seconds,
        "scoring_seconds": state.scoring_seconds,
        "monitor_seconds": state.monitor_seconds,
        "final_lr": state.history[-1]["lr"],
        "final_pgd_acc": state.history[-1]["pgd_acc"],
        "collapsed": collapse_epoch is not None,
        "collapse_epoch": collapse_epoch,
        "resumed_at_epochs": state.resumed_at_epochs,
        "forked_from": state.forked_from,  # the prefix it started from (advprune.prefix), or None
        "history": state.history,
        "device": device,
        "jobs_on_device": jobs_on_device,
        "dataset_sha256": dataset_sha256,
        "versions": library_versions(),
        "settings": settings,
        "files": {"checkpoint": "model.pt", "pruning": "pruning.npz"},
        "provenance": run_record(config=settings, dataset_sha256=dataset_sha256, device=device,
                                 jobs_on_device=jobs_on_device, gpu=gpu),
    }


def write_results(out: str | os.PathLike, *, scores: "np.ndarray", kept: "np.ndarray", model: dict[str, Any],
                  record: dict[str, Any]) -> None:
    """Write a finished run's results into `.finished/` in RESULTS' order and link them beside it."""
    import numpy as np

    from advprune.checkpoint import save_checkpoint
    from advprune.runtime import atomic_path, write_json

    finished = finished_dir(out)
    (finished / "train.json").unlink(missing_ok=True)  # a run finished earlier here is not finished any more
    with atomic_path(finished / "pruning.npz") as tmp:
        np.savez(tmp, scores=scores, kept=np.asarray(kept, dtype=np.int64))
    save_checkpoint(finished / "model.pt", model)
    write_json(finished / "train.json", record)
    link_results(out)
