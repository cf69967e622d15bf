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
from typing import Any

FINISHED = ".finished"
RESULTS = ("pruning.npz", "model.pt", "train.json")  # in the order they are written: train.json completes a run


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
    """The `keys` of the finished run's checkpoint (what `Trainer.identity` compares)."""
    from advprune.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(finished_dir(out) / "model.pt")
    return {key: checkpoint.get(key) for key in keys}


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
