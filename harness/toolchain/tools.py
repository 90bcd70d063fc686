"""Binary tools: from the cache, else the official release, else Go modules.

One mechanism serves kind, the Kubernetes binaries, etcd, CoreDNS, pause,
pulumi, its Kubernetes provider and helm. A tool is a folder of binaries in
the cache whose name holds the version and where it came from; it appears
only when complete.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness import errors, progress
from harness.resources import RECIPES
from harness.settings import ToolchainSettings
from harness.toolchain import downloads, gobuild
from harness.toolchain.cache import Cache, Stopwatch, building, recipe_hash

log = logging.getLogger(__name__)

ReleaseFetcher = Callable[[Path, float], None]
"""Downloads the official release binaries into a folder, with a timeout."""

Preparer = Callable[[Cache, Path], Path]
"""Prepares a build folder from the wrapper module; returns the folder to build in."""


@dataclass(frozen=True)
class Tool:
    component: str
    """Name in `toolchain --check` and in the cache folder."""
    version: str
    module: str
    """Wrapper module folder under toolchain/."""
    packages: tuple[str, ...]
    binaries: dict[str, str]
    """Binary name as `go build -o DIR/` writes it → name in the tool folder."""
    ldflags: str = ""
    release: ReleaseFetcher | None = None
    prepare: Preparer | None = None
    extra_hash: tuple[str, ...] = field(default_factory=tuple)
    recipe_dir: Path | None = None
    """The wrapper module's folder; toolchain/<module> unless given."""

    @property
    def recipe(self) -> Path:
        return self.recipe_dir or RECIPES / self.module

    def build_key(self) -> str:
        return recipe_hash([self.recipe], self.version, self.ldflags, *self.extra_hash)

    def folders(self, cache: Cache) -> dict[str, Path]:
        base = f"{self.component}-{self.version}"
        return {
            "release": cache.tools / f"{base}-release",
            "build": cache.tools / f"{base}-{self.build_key()}",
        }

    def found(self, cache: Cache) -> tuple[str, Path] | None:
        """Where a complete copy of the tool is cached, if anywhere."""
        for source, folder in self.folders(cache).items():
            if all((folder / name).is_file() for name in self.binaries.values()):
                return source, folder
        return None

    def path(self, cache: Cache, binary: str | None = None) -> Path:
        hit = self.found(cache)
        if hit is None:
            raise errors.ToolchainError(
                f"{self.component} {self.version} is not in the cache: run `make toolchain`"
            )
        return hit[1] / (binary or next(iter(self.binaries.values())))


def ensure(cache: Cache, settings: ToolchainSettings, tool: Tool) -> Path:
    """The folder holding the tool's binaries, obtaining them if needed."""
    hit = tool.found(cache)
    if hit is not None:
        return hit[1]
    folders = tool.folders(cache)
    if settings.source in ("auto", "release") and tool.release is not None:
        watch = Stopwatch()
        try:
            with progress.step(f"downloading {tool.component} {tool.version}"), \
                    building(folders["release"]) as tmp:
                tool.release(tmp, settings.download_timeout)
        except downloads.Unreachable as e:
            if settings.source == "release":
                raise
            progress.say(f"{tool.component}: official release unreachable, "
                         "building from Go modules")
            log.info("%s", e)
        else:
            cache.record(tool.component, source="release", version=tool.version,
                         seconds=watch.seconds)
            return folders["release"]
    elif settings.source == "release":
        raise errors.ToolchainError(f"{tool.component} has no official release download here")
    watch = Stopwatch()
    with progress.step(f"building {tool.component} {tool.version} from Go modules",
                       log_file=gobuild.log_path(cache, tool.module)), \
            building(folders["build"]) as tmp:
        module_dir = tool.prepare(cache, tmp) if tool.prepare else tool.recipe
        out = tmp / ".bin"
        gobuild.build(cache, tool.module, list(tool.packages), out, ldflags=tool.ldflags,
                      module_dir=module_dir)
        for built, name in tool.binaries.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (out / built).rename(tmp / name)
        shutil.rmtree(out)
        if tool.prepare:
            shutil.rmtree(module_dir)
    cache.record(tool.component, source="build", version=tool.version, seconds=watch.seconds)
    return folders["build"]


def arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def os_name() -> str:
    return os.uname().sysname.lower()
