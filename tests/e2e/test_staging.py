"""`rehearse` on a cluster it did not make, addressed only by its kubeconfig and a URL.

The session's kind cluster stands in for a team's staging cluster: the test
makes it (conftest), loads the model's images into it as a team would push
them to its registry, and from then on the harness is given nothing but a copy
of its kubeconfig, a context and the URL of the NodePort. The harness must
deploy, roll out, judge and take its stack down there without touching the
cluster itself, and refuse a namespace it did not make.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client

from harness import cluster as clusters
from harness import startup
from harness.settings import Settings
from harness.toolchain import Toolchain

pytestmark = pytest.mark.timeout(900)

OLD, NEW = "1.0.0", "1.1.0"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                          text=True, timeout=800, check=False)


def test_rehearse_on_a_cluster_given_by_kubeconfig_and_url(
        settings: Settings, cluster: clusters.Cluster, toolchain: Toolchain,
        api: client.ApiClient, tmp_path: Path) -> None:
    startup.load_images(settings, cluster.name, toolchain, (OLD, NEW))  # the team's registry push
    kubeconfig = shutil.copy(cluster.kubeconfig, tmp_path / "staging.kubeconfig")
    where = ["--kubeconfig", str(kubeconfig), "--context", f"kind-{cluster.name}",
             "--url", cluster.base_url]
    core = client.CoreV1Api(api)
    # a stack of this context left by an earlier session's cluster is refreshed away
    # (the cluster is new); then its state holds nothing of this one

    theirs = "team-owned"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=theirs)))
    try:
        refused = cli("rehearse", *where, "--namespace", theirs, "--report-dir",
                      str(tmp_path / "refused"))
        assert refused.returncode == 64, refused.stderr
        assert (f"namespace {theirs} exists on context kind-{cluster.name} and was not made "
                "by this harness") in refused.stderr
        assert core.list_namespaced_pod(theirs).items == []  # nothing deployed there
    finally:
        core.delete_namespace(theirs)

    # the target's path is what is tested, not the gate's power: a shorter look before
    # and after the rollout (720 and 1,200 requests, against 50 needed) is enough
    ran = cli("rehearse", *where, "--namespace", "team-stage", "--from", OLD, "--to", NEW,
              "--baseline", "3", "--settle", "5", "--report-dir", str(tmp_path / "report"))
    try:
        assert ran.returncode == 0, ran.stderr[-4000:]
        assert ran.stdout.startswith("PASS:"), ran.stdout
        assert f"cluster: context kind-{cluster.name} of {kubeconfig}" in ran.stderr
        assert "building and loading the model images" not in ran.stderr  # not on a target
        assert "creating cluster" not in ran.stderr and "deleting cluster" not in ran.stderr
        assert (tmp_path / "report" / "verdict.json").is_file()
        pods = core.list_namespaced_pod("team-stage").items
        assert pods and {p.metadata.labels["app.kubernetes.io/version"] for p in pods} == {NEW}
    finally:
        down = cli("down", *where, "--namespace", "team-stage")
    assert down.returncode == 0, down.stderr[-3000:]
    assert "team-stage" not in {n.metadata.name for n in core.list_namespace().items
                                if n.status.phase == "Active"}
    assert clusters.readiness(cluster.kubeconfig).ready  # the cluster itself is untouched
