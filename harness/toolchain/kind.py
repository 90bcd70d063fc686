"""The kind CLI, pinned to one release."""

from __future__ import annotations

from pathlib import Path

from harness.toolchain import downloads, versions
from harness.toolchain.tools import Tool, arch, os_name


def _release(folder: Path, timeout: float) -> None:
    url = f"https://kind.sigs.k8s.io/dl/{versions.KIND}/kind-{os_name()}-{arch()}"
    downloads.fetch(url, folder / "kind", timeout=timeout, sha256_url=f"{url}.sha256sum")


KIND = Tool(
    component="kind",
    version=versions.KIND,
    module="kind",
    packages=("sigs.k8s.io/kind",),
    binaries={"kind": "kind"},
    release=_release,
)
