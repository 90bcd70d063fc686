"""helm: the model chart is packaged and rendered with the real CLI, as production does.

The Kubernetes provider renders charts with helm's code built in, so the
deploy itself needs no helm binary; the harness does, to package the chart
into the local repository the program fetches from and to render it before
a deploy so schema errors show before anything changes. Like the other
binary tools it comes from the official release, else from its Go module.
"""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path

from harness.toolchain import downloads, versions
from harness.toolchain.tools import Tool, arch


def _helm_release(folder: Path, timeout: float) -> None:
    name = f"helm-{versions.HELM}-linux-{arch()}.tar.gz"
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / name
        downloads.fetch(f"https://get.helm.sh/{name}", archive, timeout=timeout,
                        sha256_url=f"https://get.helm.sh/{name}.sha256sum")
        with tarfile.open(archive) as tar:
            member = tar.getmember(f"linux-{arch()}/helm")
            member.name = "helm"
            tar.extract(member, folder, filter="data")


def _helm_ldflags() -> str:
    """Stamp the version and, as upstream's build does, the Kubernetes version it assumes.

    Unstamped, helm renders for Kubernetes v1.20 and our chart's kubeVersion
    constraint fails; we stamp the Kubernetes minor the toolchain runs.
    """
    major, minor = versions.KUBERNETES.lstrip("v").split(".")[:2]
    flags = [f"-X helm.sh/helm/v3/internal/version.version={versions.HELM}"]
    for package in ("helm.sh/helm/v3/pkg/chartutil", "helm.sh/helm/v3/pkg/lint/rules"):
        flags += [f"-X {package}.k8sVersionMajor={major}", f"-X {package}.k8sVersionMinor={minor}"]
    return " ".join(flags)


HELM = Tool(
    component="helm",
    version=versions.HELM,
    module="helm",
    packages=("helm.sh/helm/v3/cmd/helm",),
    binaries={"helm": "helm"},
    ldflags=_helm_ldflags(),
    release=_helm_release,
)
