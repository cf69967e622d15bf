"""Where code runs and how files are written: device choice, library versions, atomic writes."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import tempfile
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:  # torch is imported where it is used: the workflow imports this module without needing it
    import torch


class RunFailure(RuntimeError):
    """A run that cannot go on for a reason the user acts on, not a bug (a failed download, a diverged training, a
    missing GPU): the command line reports it in one line, as it reports bad input."""


class DeviceUnavailableError(RunFailure):
    """The settings ask for a device this machine does not have."""


class WriteFailure(RunFailure):
    """A result file could not be written (a full disk, a quota, an I/O error). Every write is atomic, so the file it
    would have replaced, and every file finished before, are intact."""


def write_failure(path: Path, error: BaseException) -> WriteFailure:
    """One line: which file, why, the space left there, and that nothing finished was lost."""
    reason = getattr(error, "strerror", None) or " ".join(str(error).split())[:120] or type(error).__name__
    try:
        free = f"; {shutil.disk_usage(path.parent).free / 1e6:.1f} MB free there"
    except OSError:
        free = ""
    return WriteFailure(
        f"cannot write {path} ({reason}{free}); nothing finished was lost (every write is atomic: the file it would "
        "replace, if any, is intact): free space and run the same command again"
    )


DEVICE_REQUEST = re.compile(r"auto|cpu|cuda(:\d{1,4})?")


def slurm_job_id() -> str | None:
    """The Slurm job this process runs in, if any."""
    return os.environ.get("SLURM_JOB_ID") or None


def choose_device(request: str = "auto") -> torch.device:
    """The one place that decides the device: 'auto' takes CUDA when present, else the CPU.

    Inside a Slurm job the scheduler has chosen the GPU and narrowed CUDA_VISIBLE_DEVICES to it, so 'cuda' and
    'auto' mean cuda:0 of that set, used as given: no GPU picking of ours may run there.
    """
    import torch

    if not isinstance(request, str) or not DEVICE_REQUEST.fullmatch(request):
        raise ValueError(f"device {request!r} is not one of auto, cpu, cuda, cuda:N")
    job = slurm_job_id()
    if request == "auto":
        request = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(request)
    if device.type == "cuda" and not torch.cuda.is_available():
        if job:
            raise DeviceUnavailableError(
                f"device {request!r} was requested but Slurm job {job} has no GPU that PyTorch can see "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); ask for one with the "
                "resource gpu=1 (the workflow does when its device is cuda) or use --device cpu"
            )
        raise DeviceUnavailableError(
            f"device {request!r} was requested but PyTorch sees no CUDA GPU on this machine; "
            "use --device cpu (or the workflow's demo profile, which runs on the CPU)"
        )
    if device.type == "cuda" and device.index is None and job:
        return torch.device("cuda", 0)
    count = torch.cuda.device_count() if device.type == "cuda" else 0
    if count and device.index is not None and device.index >= count:  # else the first use of it fails, unexplained
        raise DeviceUnavailableError(
            f"device {request!r} was requested but PyTorch sees {count} GPU(s), cuda:0 to cuda:{count - 1}"
        )
    return device


def device_name(device: torch.device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def library_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of python, the libraries every result depends on, and the `extra` packages a caller names."""
    import torch

    versions = {"python": platform.python_version()}
    for package in ("advprune", "torch", "torchvision", "numpy", "pyautoattack", *extra):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    versions["cuda"] = torch.version.cuda or "none"
    return versions


_UMASK = os.umask(0)
os.umask(_UMASK)


def check_writable_directory(directory: str | os.PathLike, option: str, given: str | os.PathLike | None = None) -> None:
    """Create `directory` if needed and prove that a file can be written in it, before any work: an unwritable output
    otherwise fails only at the first save (after an epoch, or after the clean pass and the first attack). `given` is
    the option's value when the directory is its folder."""
    directory = Path(directory)
    where = f"{option} {given if given is not None else directory}"
    folder = "" if given is None else f"its folder {directory} "
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{where}: {folder}is a file, not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory, prefix=".write-test."):
            pass
    except OSError as error:
        raise ValueError(f"{where}: cannot write {'there' if given is None else f'in {directory}'} "
                         f"({error.strerror or error})") from None


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block completes.

    A killed process leaves at most a hidden `.tmp` file, never a file that looks finished.
    The temporary name keeps the suffix, so writers that choose a format by suffix still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as error:
        raise write_failure(path, error) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes owner-only files; give them the usual permissions
        os.replace(tmp_path, path)
    except OSError as error:  # a full disk, mostly: said in one line, with the file
        raise write_failure(path, error) from None
    finally:
        tmp_path.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, payload: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, allow_nan=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def log_to_stderr(level: int) -> Iterator[None]:
    """advprune's log records at `level` and above as timestamped (UTC, ISO 8601) lines on the current stderr, for
    the duration of one command; the logger is left as found, so commands run in one process do not stack handlers."""
    import logging
    import sys
    import time

    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter(LOG_FORMAT, datefmt="%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    logger = logging.getLogger("advprune")
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # one line per record, not another from the root logger's handlers
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
