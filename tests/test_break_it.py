"""Issue 25: the attacks of a hostile or careless user that got through, one test each (numbered as in the issue).

Nothing wrong may ever look finished: a file of the user's is never emptied through a symlink, metrics never pair with
a model they did not measure, a finished model survives every rerun, damaged state is refused, and every error is one
line (exit 2). Runs are in-process (`cli.main`) on the digits where they can be; the Snakemake case is `slow`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from advprune import gpu_slots
from test_bad_input import assert_refused, run_cli, train_args

DATASET = "digits-mnist"


# -- 1, 2. a file of the user's is never emptied or appended to through a symlink -----------------------------------
@pytest.fixture
def victims(tmp_path: Path) -> dict[str, Path]:
    """Two files of the user's that an attacker points lock and log names at."""
    files = {name: tmp_path / f"victim-{name}" for name in ("lock", "log", "train-lock")}
    for path in files.values():
        path.write_text("keep\n")
    return files


def _fake_gpu_env(monkeypatch: pytest.MonkeyPatch, lock_dir: Path) -> None:
    monkeypatch.setenv(gpu_slots.FAKE_GPUS, "1")
    monkeypatch.setenv(gpu_slots.LOCK_DIR, str(lock_dir))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)


def test_1_gpu_lock_and_log_symlinks_are_refused_not_followed(victims: dict[str, Path], data_root: Path,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's command: picker.lock and slots.jsonl are symlinks to the user's files in the lock folder."""
    locks = tmp_path / "L"
    locks.mkdir(mode=0o700)
    (locks / "picker.lock").symlink_to(victims["lock"])
    (locks / "slots.jsonl").symlink_to(victims["log"])
    _fake_gpu_env(monkeypatch, locks)
    out = tmp_path / "o1"
    result = run_cli(*train_args(out, data_root))
    assert_refused(result, "picker.lock", "symbolic link")
    assert victims["lock"].read_text() == "keep\n" and victims["log"].read_text() == "keep\n"
    assert not (out / "model.pt").exists()


def test_1_the_slot_log_is_never_appended_through_a_symlink(victims: dict[str, Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    locks = tmp_path / "L"
    locks.mkdir(mode=0o700)
    (locks / "slots.jsonl").symlink_to(victims["log"])
    _fake_gpu_env(monkeypatch, locks)
    with pytest.raises(ValueError, match="slots.jsonl.*symbolic link"):
        with gpu_slots.claim(torch.device("cpu"), 1):
            pass
    assert victims["log"].read_text() == "keep\n"


@pytest.mark.parametrize("how", ["group-writable", "world-readable", "another owner", "a symlink"])
def test_1_a_lock_folder_that_is_not_private_is_refused(how: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    locks = tmp_path / "L"
    if how == "a symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        locks.symlink_to(tmp_path / "elsewhere")
    else:
        locks.mkdir(mode=0o700)
        locks.chmod({"group-writable": 0o770, "world-readable": 0o755, "another owner": 0o700}[how])
        if how == "another owner":
            if os.geteuid() != 0:
                pytest.skip("only root can give a folder to another user")
            os.chown(locks, 4242, 4242)
    _fake_gpu_env(monkeypatch, locks)
    with pytest.raises(ValueError, match=str(locks)) as error:
        with gpu_slots.claim(torch.device("cpu"), 1):
            pass
    assert "\n" not in str(error.value) and "private" in str(error.value)


def test_1_the_default_lock_folder_is_made_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import stat

    import torch

    monkeypatch.setattr(gpu_slots.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.delenv(gpu_slots.LOCK_DIR, raising=False)
    monkeypatch.setenv(gpu_slots.FAKE_GPUS, "1")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with gpu_slots.claim(torch.device("cpu"), 1):
        pass
    folder = gpu_slots.lock_dir()
    assert folder.parent == tmp_path
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.stat().st_uid == os.geteuid()


def test_2_a_train_lock_symlink_is_refused_not_followed(victims: dict[str, Path], data_root: Path,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "o2"
    out.mkdir()
    (out / ".train.lock").symlink_to(victims["train-lock"])
    assert_refused(run_cli(*train_args(out, data_root)), ".train.lock", "symbolic link")
    assert victims["train-lock"].read_text() == "keep\n"
    assert not (out / "model.pt").exists()


def test_2_the_pinned_filelock_does_not_follow_symlinks() -> None:
    """The library that torch (and formerly advprune) locks with: 3.20.1 opens lock files with O_NOFOLLOW
    (CVE-2025-68146), 3.20.3 its SoftFileLock too (CVE-2026-22701)."""
    from importlib import metadata

    requirements = (Path(__file__).resolve().parents[1] / "requirements.txt").read_text().splitlines()
    pinned = next(line.split("==")[1] for line in requirements if line.startswith("filelock=="))
    assert tuple(map(int, pinned.split("."))) >= (3, 20, 3)
    assert tuple(map(int, metadata.version("filelock").split(".")[:3])) >= (3, 20, 3)
