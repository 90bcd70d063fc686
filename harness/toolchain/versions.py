"""Pinned versions of everything the toolchain provides.

The Go wrapper modules in toolchain/ pin the same versions in go.mod/go.sum;
a unit test keeps the two in step.
"""

from __future__ import annotations

KIND = "v0.33.0"
KUBERNETES = "v1.34.4"
ETCD = "v3.6.5"
ETCD_IMAGE_TAG = "3.6.5-0"
COREDNS = "v1.12.1"
PAUSE = "3.10.1"
CRI_TOOLS = "v1.34.0"
PULUMI = "v3.274.1"
PULUMI_KUBERNETES = "4.25.0"
PULUMI_KUBERNETES_MODULE = "v4.0.0-20260115033456-f47bc2d6f199"
HELM = "v3.22.0"
DEBIAN_SUITE = "bookworm"
MIN_DOCKER = (20, 10)

KUBERNETES_BINARIES = (
    "kubeadm",
    "kubelet",
    "kubectl",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
)


def component_images() -> dict[str, str]:
    """The image references kubeadm expects for KUBERNETES, by component name."""
    return {
        "kube-apiserver": f"registry.k8s.io/kube-apiserver:{KUBERNETES}",
        "kube-controller-manager": f"registry.k8s.io/kube-controller-manager:{KUBERNETES}",
        "kube-scheduler": f"registry.k8s.io/kube-scheduler:{KUBERNETES}",
        "kube-proxy": f"registry.k8s.io/kube-proxy:{KUBERNETES}",
        "etcd": f"registry.k8s.io/etcd:{ETCD_IMAGE_TAG}",
        "coredns": f"registry.k8s.io/coredns/coredns:{COREDNS}",
        "pause": f"registry.k8s.io/pause:{PAUSE}",
    }
