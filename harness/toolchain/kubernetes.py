"""Kubernetes, etcd, CoreDNS and pause binaries for the node image.

Kubernetes' own module cannot be `go install`ed (its go.mod replaces the
staging modules with local paths); toolchain/kubernetes requires it and
replaces each staging module with its published twin. Versions are stamped
the way upstream's build does, because kubeadm refuses an unstamped v0.0.0.
"""

from __future__ import annotations

from pathlib import Path

from harness.toolchain import downloads, versions
from harness.toolchain.tools import Tool, arch

_STAMPED = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")


def kubernetes_ldflags(version: str = versions.KUBERNETES) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    flags = []
    for package in _STAMPED:
        flags += [
            f"-X {package}.gitVersion={version}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
            f"-X {package}.buildDate=1970-01-01T00:00:00Z",
        ]
    return " ".join(flags)


def _kubernetes_release(folder: Path, timeout: float) -> None:
    base = f"https://dl.k8s.io/release/{versions.KUBERNETES}/bin/linux/{arch()}"
    for name in versions.KUBERNETES_BINARIES:
        downloads.fetch(f"{base}/{name}", folder / name, timeout=timeout,
                        sha256_url=f"{base}/{name}.sha256")


KUBERNETES = Tool(
    component="kubernetes",
    version=versions.KUBERNETES,
    module="kubernetes",
    packages=tuple(f"k8s.io/kubernetes/cmd/{name}" for name in versions.KUBERNETES_BINARIES),
    binaries={name: name for name in versions.KUBERNETES_BINARIES},
    ldflags=kubernetes_ldflags(),
    release=_kubernetes_release,
)

ETCD = Tool(
    component="etcd",
    version=versions.ETCD,
    module="etcd",
    packages=("go.etcd.io/etcd/server/v3",),
    binaries={"server": "etcd"},
)

COREDNS = Tool(
    component="coredns",
    version=versions.COREDNS,
    module="coredns",
    packages=("github.com/coredns/coredns",),
    binaries={"coredns": "coredns"},
)

CRICTL = Tool(
    component="cri-tools",
    version=versions.CRI_TOOLS,
    module="cri-tools",
    packages=("sigs.k8s.io/cri-tools/cmd/crictl",),
    binaries={"crictl": "crictl"},
)
"""crictl on the node: `kind load` asks it which images are there already and skips
those; without it every load sends every image again (12 s for two versions)."""

PAUSE = Tool(
    component="pause",
    version=versions.PAUSE,
    module="pause",
    packages=(".",),
    binaries={"pause": "pause"},
)
