"""`python -m advprune` with a test hook: python tests/pause_training.py EPOCH MARKER ARGS...

Runs the command line with ARGS exactly as `python -m advprune ARGS...` does, except that once a training run has
written its resume checkpoint (resume.pt) after epoch EPOCH, it writes MARKER and then waits until it is killed. A
test waits for MARKER and sends SIGKILL (or has the scheduler cancel the job): the kill lands at the chosen epoch on
every machine, however fast, and never after the run has finished. Nothing of the library changes: the hook wraps
the trainer's checkpoint writer.

With PAUSE_ONLY set, only a run whose checkpoint path contains that text pauses (the Slurm test runs every training
of a workflow through this hook and stops one of them).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from advprune import cli, training


def main() -> int:
    epoch, marker, args = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    only = os.environ.get("PAUSE_ONLY", "")
    write_checkpoint = training.save_checkpoint

    def write_then_wait(path: Any, payload: dict[str, Any]) -> None:
        write_checkpoint(path, payload)
        if not payload["complete"] and payload["state"]["epoch"] == epoch and only in str(path):
            marker.write_text(f"{path}\n")
            while True:  # until killed
                time.sleep(3600)

    training.save_checkpoint = write_then_wait
    return cli.main(args)


if __name__ == "__main__":
    raise SystemExit(main())
