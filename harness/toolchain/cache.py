"""The toolchain cache: one folder, keyed by pinned versions and recipe hashes.

Everything is built under a temporary name and renamed when complete, so an
interrupted or killed build never leaves something that looks finished; the
next run redoes only the step that was cut short.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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
