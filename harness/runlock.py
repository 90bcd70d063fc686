"""One run per cluster name at a time, for the whole run.

Two runs on one cluster name corrupt each other: the second reuses the
first's cluster, meets its stack lock, reports a false verdict, then deletes
the cluster under the first. So a run holds an exclusive lock named for its
cluster from before the cluster is made until it is gone. `flock` dies with
its process, so a killed run never leaves a stale lock; the holder writes who
it is into the file, for the line the second run prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from harness import errors


class ClusterBusy(errors.HarnessError):
    """Another run holds the cluster name."""

    exit_code = 75  # sysexits EX_TEMPFAIL: try again later


@contextlib.contextmanager
def held(folder: Path, name: str) -> Iterator[None]:
    """Hold cluster `name`'s lock (in `folder`) for the block, or raise ClusterBusy."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.lock"
    with path.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ClusterBusy(f"cluster {name} is in use by another run ({_holder(path)}); "
                              "wait for it to end, or give another --name for a cluster of "
                              "its own") from None
        lock.seek(0)
        lock.truncate()
        lock.write(json.dumps({"pid": os.getpid(), "command": shlex.join(sys.argv[1:])[:160],
                               "since": time.strftime("%H:%M:%S")}))
        lock.flush()
        try:
            yield
        finally:
            lock.truncate(0)
            fcntl.flock(lock, fcntl.LOCK_UN)


def _holder(path: Path) -> str:
    try:
        who = json.loads(path.read_text())
        return f"pid {who['pid']}, `rollout-harness {who['command']}` since {who['since']}"
    except (OSError, ValueError, KeyError):
        return "its owner did not say who it is"
