"""The Pulumi program deploys and upgrades the chart on a real cluster.

Both chart sources are covered: the chart packaged at the version and read
from disk, and the same package fetched from a chart repository served on
127.0.0.1, as production fetches it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kube_helpers import eventually
from kubernetes import client

from harness import charts, errors, progress, startup
from harness import cluster as clusters
from harness.deploy import PROJECT, ModelStack
from harness.resources import CHART_DIR
from harness.settings import Settings
from harness.toolchain import DeployTools, Toolchain

OLD, NEW = "1.0.0", "1.1.0"
NAME = "ml-model"


@pytest.fixture
def stack(settings: Settings, cluster: clusters.Cluster, toolchain: Toolchain,
          deploy_tools: DeployTools) -> Iterator[ModelStack]:
    startup.load_images(settings, cluster.name, toolchain, (OLD, NEW))
    model = ModelStack(settings, cluster, toolchain, deploy_tools)
    yield model
    with contextlib.suppress(errors.HarnessError):
        model.down()


def rollout_state(api: client.ApiClient, namespace: str) -> dict[str, object]:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    deployment = apps.read_namespaced_deployment(NAME, namespace)
    sets = apps.list_namespaced_replica_set(namespace).items
    pods = core.list_namespaced_pod(namespace).items
    return {
        "revision": deployment.metadata.annotations["deployment.kubernetes.io/revision"],
        "ready": deployment.status.ready_replicas,
        "image": deployment.spec.template.spec.containers[0].image,
        "replica_sets": len(sets),
        "active_sets": sum(1 for s in sets if (s.status.replicas or 0) > 0),
        "pod_images": sorted({p.spec.containers[0].image for p in pods
                              if p.metadata.deletion_timestamp is None}),
    }


def only_restricted_pods_are_admitted(api: client.ApiClient, namespace: str) -> None:
    """The chart's pods were admitted under Pod Security "restricted"; a pod spec that is
    not (the same image, no securityContext) is refused at admission, nothing created."""
    core = client.CoreV1Api(api)
    labels = core.read_namespace(namespace).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted", labels
    loose = client.V1Pod(
        metadata=client.V1ObjectMeta(name="not-restricted"),
        spec=client.V1PodSpec(containers=[client.V1Container(
            name="model", image=f"rollout-harness/model-server:{OLD}")]))
    with pytest.raises(client.exceptions.ApiException) as refused:
        core.create_namespaced_pod(namespace, loose)
    assert refused.value.status == 403, refused.value
    message = json.loads(refused.value.body)["message"]
    assert 'violates PodSecurity "restricted:latest"' in message, message
    assert "runAsNonRoot != true" in message, message
    names = [p.metadata.name for p in core.list_namespaced_pod(namespace).items]
    assert "not-restricted" not in names


@pytest.mark.parametrize("source", ["folder", "repo"])
def test_up_upgrade_refresh_preview_down(source: str, stack: ModelStack,
                                         api: client.ApiClient, settings: Settings):
    namespace = settings.deploy.namespace
    with startup.chart_repository(settings.replace("deploy", chart_source=source), stack,
                                  (OLD, NEW)) as repo:
        first = stack.up(OLD, chart_repo=repo)
        if source == "folder":
            only_restricted_pods_are_admitted(api, namespace)
        state = rollout_state(api, namespace)
        assert state["image"] == f"rollout-harness/model-server:{OLD}"
        assert state["ready"] == settings.deploy.replicas
        assert first.outputs["deployment"]["readyReplicas"] == settings.deploy.replicas
        assert first.outputs["serviceUrl"] == stack.cluster.base_url

        second = stack.up(NEW, chart_repo=repo)
        after = rollout_state(api, namespace)
        assert int(after["revision"]) == int(state["revision"]) + 1
        assert after["replica_sets"] == 2 and after["active_sets"] == 1
        assert after["ready"] == settings.deploy.replicas
        assert after["image"] == f"rollout-harness/model-server:{NEW}"
        assert second.outputs["deployment"]["revision"] == after["revision"]
        eventually(lambda: rollout_state(api, namespace)["pod_images"]
                   == [f"rollout-harness/model-server:{NEW}"], 60, "only new pods left")

        stack.refresh()
        planned = stack.preview()
        assert set(planned) <= {"same"}, planned

    stack.down()
    core = client.CoreV1Api(api)

    def namespace_gone() -> bool:
        names = [n.metadata.name for n in core.list_namespace().items]
        return namespace not in names

    eventually(namespace_gone, 120, f"namespace {namespace} deleted")


def test_a_rollout_pulumi_does_not_await_is_awaited_all_the_same(
        settings: Settings, cluster: clusters.Cluster, toolchain: Toolchain,
        deploy_tools: DeployTools, api: client.ApiClient, tmp_path: Path):
    """The chart's Deployment carries `pulumi.com/skipAwait`, so pulumi returns as soon as
    the API takes the change; `up` still returns only once the rollout is over, with
    outputs that say so. The same holds when pulumi returns early unasked, as it did
    once in CI (harness/rollouts.py)."""
    chart = tmp_path / "ml-model"
    shutil.copytree(CHART_DIR, chart)
    template = chart / "templates" / "deployment.yaml"
    head = 'metadata:\n  name: {{ include "ml-model.fullname" . }}\n'
    text = template.read_text()
    assert head in text
    template.write_text(text.replace(
        head, head + '  annotations:\n    pulumi.com/skipAwait: "true"\n', 1))
    startup.load_images(settings, cluster.name, toolchain, (OLD, NEW))
    namespace, replicas = settings.deploy.namespace, settings.deploy.replicas
    stack = ModelStack(settings.replace("deploy", chart=chart), cluster, toolchain,
                       deploy_tools)
    try:
        first = stack.up(OLD)
        state = rollout_state(api, namespace)
        assert state["ready"] == replicas
        assert first.outputs["deployment"]["readyReplicas"] == replicas

        second = stack.up(NEW)
        after = rollout_state(api, namespace)
        assert after["replica_sets"] == 2 and after["active_sets"] == 1
        assert after["ready"] == replicas
        assert after["image"] == f"rollout-harness/model-server:{NEW}"
        assert second.outputs["deployment"]["revision"] == after["revision"] == "2"
        assert second.outputs["deployment"]["updatedReplicas"] == replicas
        planned = stack.preview()
        assert set(planned) <= {"same"}, planned
    finally:
        with contextlib.suppress(errors.HarnessError):
            stack.down()


def test_faults_change_nothing(stack: ModelStack, api: client.ApiClient, settings: Settings):
    namespace = settings.deploy.namespace
    stack.up(OLD)
    before = rollout_state(api, namespace)

    stack.repository.package(OLD)
    with charts.serve(stack.repository.folder) as repo, \
            pytest.raises(errors.DeployError, match=r"9\.9\.9 is not in the repository.*1\.0\.0"):
        stack.up("9.9.9", chart_repo=repo)

    with pytest.raises(errors.DeployError, match="values rejected, nothing was changed"):
        stack.up(NEW, values={"strategy": {"type": "BlueGreen"}})
    assert rollout_state(api, namespace) == before


def write_lock(stack: ModelStack, pid: int) -> None:
    """A lock as pulumi's file backend writes it, owned by process `pid` on this host."""
    locks = stack.state / ".pulumi" / "locks" / "organization" / PROJECT / stack.name
    locks.mkdir(parents=True, exist_ok=True)
    (locks / f"run-{pid}.json").write_text(json.dumps(
        {"pid": pid, "username": "root", "hostname": os.uname().nodename,
         "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ")}))


def test_stale_lock_from_a_killed_run_is_cleared(stack: ModelStack, api: client.ApiClient,
                                                 settings: Settings):
    stack.up(OLD)
    # control: a lock whose owner is alive blocks pulumi, so the path is the real one
    write_lock(stack, os.getpid())
    with pytest.raises(errors.DeployError, match="is locked by a running update"):
        stack.up(NEW)
    for lock in stack.state.glob(".pulumi/locks/**/run-*.json"):
        lock.unlink()

    dead = 2**22 + 12345
    write_lock(stack, dead)
    with progress.redirected(io.StringIO()) as said:
        outcome = stack.up(NEW)
    assert f"removed the lock left by a killed run (pid {dead})" in said.getvalue()
    assert outcome.outputs["imageTag"] == NEW
