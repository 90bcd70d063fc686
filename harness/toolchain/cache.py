"""The toolchain cache: one folder, keyed by pinned versions and recipe hashes.

Everything is built under a temporary name and renamed when complete, so an
interrupted or killed build never leaves something that looks finished; the
next run redoes only the step that was cut short. A killed build does leave
its temporary (`.NAME.tmp-PID`); `sweep_stale_temps` removes those whose
process is gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TEMP_NAME = re.compile(r"^\..+\.tmp-(\d+)$")
"""`.NAME.tmp-PID`: how `building`, `write_json` and downloads.fetch name their temporaries."""


@dataclass(frozen=True)
class Cache:
    root: Path

    @property
    def tools(self) -> Path:
        return self.root / "tools"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def records(self) -> Path:
        return self.root / "records"

    def log(self, name: str) -> Path:
        self.logs.mkdir(parents=True, exist_ok=True)
        return self.logs / f"{name}.log"

    def record(self, component: str, **fields: Any) -> None:
        """Remember where a component came from and how long it took."""
        write_json(self.records / f"{component}.json", {"component": component, **fields})

    def recorded(self, component: str) -> dict[str, Any]:
        try:
            data = json.loads((self.records / f"{component}.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


def recipe_hash(paths: Iterable[Path], *extra: str) -> str:
    """A short hash of recipe files and values: a changed recipe means a new artefact."""
    digest = hashlib.sha256()
    for value in extra:
        digest.update(value.encode() + b"\0")
    for path in sorted(paths):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if "__pycache__" in file.parts or file.name.endswith("-embed.json"):
                continue
            digest.update(str(file.relative_to(path.parent)).encode() + b"\0")
            digest.update(file.read_bytes())
            digest.update(b"\1" if os.access(file, os.X_OK) else b"\0")
    return digest.hexdigest()[:12]


@contextlib.contextmanager
def building(final: Path) -> Iterator[Path]:
    """Yield a temporary folder that becomes `final` only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def scratch(root: Path) -> tempfile.TemporaryDirectory[str]:
    """A scratch folder in `root`, named for the sweep (`.build-XYZ.tmp-PID`) should the
    build be killed before it can remove it."""
    return tempfile.TemporaryDirectory(prefix=".build-", suffix=f".tmp-{os.getpid()}", dir=root)


def sweep_stale_temps(root: Path) -> list[Path]:
    """Remove temporaries in root and its direct subfolders whose process is gone.

    Call it with the toolchain lock held. A temporary of a live process is
    never removed, nor one whose pid is reused by a live process, so a run
    in progress is never disturbed (pids are read in this pid namespace).
    Temporaries are made next to their final name (tools/, wheelhouse/,
    records/, state/), so two levels cover them without descending into
    finished artefacts such as a rootfs tree.
    """
    removed: list[Path] = []
    folders = [root, *(p for p in _entries(root) if p.is_dir() and not p.is_symlink()
                       and TEMP_NAME.match(p.name) is None)]
    for folder in folders:
        for path in _entries(folder):
            match = TEMP_NAME.match(path.name)
            if match is None or _pid_alive(int(match.group(1))):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.unlink()
            if os.path.lexists(path):
                log.warning("could not remove %s, left by process %s", path, match.group(1))
                continue
            log.info("removed %s, left by process %s, which is gone", path, match.group(1))
            removed.append(path)
    return removed


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []


def _pid_alive(pid: int) -> bool:
    """False when no process has pid; 0 and below name none (kill(0) means our group)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        pass  # it exists, under another user
    return True


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.rename(path)


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.monotonic()

    @property
    def seconds(self) -> float:
        return round(time.monotonic() - self.started, 1)
