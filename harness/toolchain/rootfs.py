"""Debian base images made with debootstrap, for hosts with no registry.

No base image can be pulled on an air-gapped host, so every image the
toolchain needs starts as `debootstrap --variant=minbase` into a folder,
gets the recipe's files and a preparation script run in a chroot, and is
imported with `docker import`. The tag carries the recipe hash, so a changed
package list or file makes a new image and an unchanged one is reused.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness import errors, procs, progress
from harness.settings import ToolchainSettings
from harness.toolchain import containers, versions
from harness.toolchain.cache import Cache, recipe_hash


@dataclass(frozen=True)
class Recipe:
    name: str
    """Image name under rollout-harness/, e.g. node-base."""
    packages: tuple[str, ...]
    """Debian packages added to minbase."""
    files: tuple[Path, ...] = ()
    """Recipe files (overlay folder, scripts) that go into the hash."""
    overlay: Path | None = None
    """Folder copied onto the root filesystem."""
    prepare: Path | None = None
    """Script run in a chroot after the overlay is copied."""
    changes: tuple[str, ...] = field(default_factory=tuple)
    """`docker import --change` lines (ENTRYPOINT, ENV, ...)."""

    def tag(self) -> str:
        key = recipe_hash(self.files, versions.DEBIAN_SUITE, *self.packages, *self.changes)
        return f"rollout-harness/{self.name}:{key}"


def read_packages(path: Path) -> tuple[str, ...]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return tuple(line for line in lines if line)


def ensure(cache: Cache, settings: ToolchainSettings, recipe: Recipe) -> str:
    """The recipe's image tag, building the image if it does not exist yet.

    Two steps, each cached as an image: the debootstrapped root (slow, keyed
    by the package list only), then the recipe's files and preparation on top
    (seconds), so editing a file of the recipe does not re-run debootstrap.
    """
    tag = recipe.tag()
    if containers.image_exists(tag):
        return tag
    raw = _debootstrapped(cache, settings, recipe)
    files: list[tuple[containers.Source, str]] = []
    if recipe.overlay:
        files.append((f"{recipe.overlay}/.", "/"))
    if recipe.prepare:
        files.append((recipe.prepare, "/prepare.sh"))
    script = "/prepare.sh" if recipe.prepare else "/bin/true"
    log_path = cache.log(f"rootfs-{recipe.name}")
    with progress.step(f"making base image {tag}", log_file=log_path):
        containers.extend(raw, tag, container=f"harness-build-{recipe.name}", files=files,
                          script=f"{script} && rm -f /prepare.sh",
                          changes=("ENTRYPOINT []", "CMD []", *recipe.changes),
                          log_path=log_path)
    return tag


def _debootstrapped(cache: Cache, settings: ToolchainSettings, recipe: Recipe) -> str:
    key = recipe_hash([], versions.DEBIAN_SUITE, *recipe.packages)
    tag = f"rollout-harness/{recipe.name}-debootstrap:{key}"
    if containers.image_exists(tag):
        return tag
    log_path = cache.log(f"debootstrap-{recipe.name}")
    log_path.unlink(missing_ok=True)
    with progress.step(f"debootstrapping {versions.DEBIAN_SUITE} for {recipe.name}",
                       log_file=log_path), \
            scratch_dir(cache.root / "work" / recipe.name) as work:
        root = work / "rootfs"
        procs.run(
            [debootstrap(), "--variant=minbase", f"--include={','.join(recipe.packages)}",
             versions.DEBIAN_SUITE, root, mirror(settings)],
            log_path=log_path, what=f"debootstrap of {recipe.name}",
        )
        containers.import_rootfs(root, tag, (), log_path)
    return tag


def debootstrap() -> str:
    found = procs.which("debootstrap")
    if found:
        return found
    if os.geteuid() == 0 and procs.which("apt-get"):
        procs.output(["apt-get", "install", "-y", "-q", "debootstrap"],
                     what="apt-get install debootstrap", timeout=600,
                     env={"DEBIAN_FRONTEND": "noninteractive"}, error=errors.ToolchainError)
        found = procs.which("debootstrap")
    if not found:
        raise errors.ToolchainError(
            "building base images needs debootstrap (as root): apt-get install debootstrap"
        )
    return found


def mirror(settings: ToolchainSettings, sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror: the setting, else the first one the host's apt uses."""
    if settings.debian_mirror:
        return settings.debian_mirror
    candidates: list[str] = []
    for file in sorted(sources.glob("sources.list.d/*.sources")):
        candidates += re.findall(r"^URIs:\s*(\S+)", file.read_text(), re.MULTILINE)
    for file in [sources / "sources.list", *sorted(sources.glob("sources.list.d/*.list"))]:
        if file.exists():
            candidates += re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", file.read_text(),
                                     re.MULTILINE)
    for url in candidates:
        if "security" not in url and url.startswith(("http://", "https://")):
            return url
    raise errors.ToolchainError(
        "no Debian mirror found in /etc/apt: set HARNESS_DEBIAN_MIRROR to one"
    )


@contextlib.contextmanager
def scratch_dir(path: Path) -> Iterator[Path]:
    """A fresh work folder, removed afterwards even if debootstrap left mounts in it."""
    remove(path)
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        remove(path)


def remove(path: Path) -> None:
    if not path.exists():
        return
    resolved = str(path.resolve())
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(resolved + "/")), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
    shutil.rmtree(path, ignore_errors=True)
