"""Files that processes share: exclusive locks, append-only logs and the private folders they live in.

None of them ever follows a symbolic link: a lock or log name that an attacker (or an accident) pointed at a file of
the user's would otherwise empty it (a lock opened with O_TRUNC) or append to it. Locks are flock(2) locks, which the
operating system drops when the process holding them dies, so a killed job never leaves a stale lock. The lock file
is never truncated or written: its content does not matter, only the open file description that holds the lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from pathlib import Path
from types import TracebackType

_NO_FOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def open_no_follow(path: str | os.PathLike, flags: int, mode: int = 0o600) -> int:
    """os.open that refuses a symbolic link (ValueError, one line) and anything but a regular file."""
    try:
        fd = os.open(path, flags | _NO_FOLLOW | os.O_NONBLOCK, mode)  # O_NONBLOCK: a FIFO in its place cannot hang us
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ValueError(f"{path} is a symbolic link; refusing to open it (it could point at any file). "
                             "Remove the link") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValueError(f"{path} is not a regular file; refusing to use it. Remove it")
    os.set_blocking(fd, True)
    return fd


def private_directory(path: str | os.PathLike, what: str) -> Path:
    """Create `path` (mode 0700) if missing, and refuse one that is a symbolic link, another user's, or open to
    others: whoever can write in a lock folder can plant links there, and whoever can create it first owns it."""
    path = Path(path)
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    info = path.lstat()
    problem = None
    if stat.S_ISLNK(info.st_mode):
        problem = "is a symbolic link"
    elif not stat.S_ISDIR(info.st_mode):
        problem = "is not a directory"
    elif info.st_uid != os.geteuid():
        problem = f"belongs to user id {info.st_uid}, not to this user ({os.geteuid()})"
    elif info.st_mode & 0o077:
        problem = f"has mode {stat.S_IMODE(info.st_mode):04o}, open to other users"
    if problem is not None:
        raise ValueError(f"{what} {path} {problem}; it must be a private folder (mode 0700, owned by this user): "
                         "fix or remove it, or name another one")
    return path


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line (a single write: lines of several processes do not interleave), never through a link."""
    fd = open_no_follow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode())
    finally:
        os.close(fd)


class ExclusiveLock:
    """An exclusive flock(2) on `path`, created if missing (never truncated, never through a symbolic link).

    Two holders in one process conflict as in two processes: each acquire opens the file anew."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; False (at once) if another holder has it."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: this lock is held already")
        fd = open_no_follow(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def acquire(self, poll_seconds: float = 0.05) -> None:
        """Wait until the lock is free, then take it."""
        while not self.try_acquire():
            time.sleep(poll_seconds)

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the last descriptor of the open file drops the flock

    def __enter__(self) -> ExclusiveLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()
