"""versions.py and the wrapper modules in toolchain/ must pin the same releases."""

from __future__ import annotations

import re

import pytest

from harness.resources import RECIPES
from harness.toolchain import versions


def required(module_dir: str, path: str) -> str:
    text = (RECIPES / module_dir / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(path)}\s+(\S+)", text, re.MULTILINE)
    assert match, f"{path} is not required in toolchain/{module_dir}/go.mod"
    return match.group(1)


@pytest.mark.parametrize(("module_dir", "path", "version"), [
    ("kind", "sigs.k8s.io/kind", versions.KIND),
    ("kubernetes", "k8s.io/kubernetes", versions.KUBERNETES),
    ("etcd", "go.etcd.io/etcd/server/v3", versions.ETCD),
    ("coredns", "github.com/coredns/coredns", versions.COREDNS),
    ("cri-tools", "sigs.k8s.io/cri-tools", versions.CRI_TOOLS),
    ("helm", "helm.sh/helm/v3", versions.HELM),
    ("pulumi", "github.com/pulumi/pulumi/pkg/v3", versions.PULUMI),
    ("pulumi-kubernetes", "github.com/pulumi/pulumi-kubernetes/provider/v4",
     versions.PULUMI_KUBERNETES_MODULE),
])
def test_go_mod_pins_the_version(module_dir: str, path: str, version: str):
    assert required(module_dir, path) == version


def test_every_staging_module_is_replaced_by_its_published_twin():
    text = (RECIPES / "kubernetes" / "go.mod").read_text()
    twin = "v0." + versions.KUBERNETES.removeprefix("v1.")
    replaces = re.findall(r"^\s*k8s\.io/(\S+) => k8s\.io/(\S+) (\S+)$", text, re.MULTILINE)
    assert len(replaces) >= 30
    for name, target, version in replaces:
        assert name == target
        assert version == twin, name


def test_node_containerd_uses_the_pause_image_kubeadm_expects():
    config = (RECIPES / "node-image" / "rootfs" / "etc" / "containerd" / "config.toml").read_text()
    assert f'sandbox_image = "{versions.component_images()["pause"]}"' in config
