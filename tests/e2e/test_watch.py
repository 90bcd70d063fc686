"""The Watcher on a real cluster: a rolling update appears in its timeline as it happened."""

from __future__ import annotations

import re
import time
from pathlib import Path

from kube_helpers import eventually
from kubernetes import client

from harness import watch as watching
from harness.evidence import VERSION_LABEL, Event, PodLife, pod_lives, read_events
from harness.watch import Watcher

LABEL = VERSION_LABEL
PRE_STOP_SECONDS = 2
"""A preStop sleep, so that a terminating pod stays visible (and in the endpoints) a while."""


def deployment(image: str, version: str) -> client.V1Deployment:
    selector = {"app": "model"}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name="model", labels={**selector, LABEL: version}),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels=selector),
            strategy=client.V1DeploymentStrategy(
                type="RollingUpdate",
                rolling_update=client.V1RollingUpdateDeployment(max_surge=1,
                                                                max_unavailable=0)),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={**selector, LABEL: version}),
                spec=client.V1PodSpec(
                    termination_grace_period_seconds=10,
                    containers=[client.V1Container(
                        name="probe", image=image, image_pull_policy="Never",
                        args=["serve", ":8080"],
                        ports=[client.V1ContainerPort(container_port=8080)],
                        readiness_probe=client.V1Probe(
                            http_get=client.V1HTTPGetAction(path="/", port=8080),
                            period_seconds=1),
                        lifecycle=client.V1Lifecycle(pre_stop=client.V1LifecycleHandler(
                            sleep=client.V1SleepAction(seconds=PRE_STOP_SECONDS))),
                    )],
                ),
            ),
        ),
    )


def rolled_out(watcher: Watcher, since: float, version: str) -> bool:
    """The Deployment was seen rolled out after `since`, and no pod of another version is left."""
    events = watcher.events()
    done = any(e.kind == "Deployment" and e.t > since and e.ready for e in events)
    return done and all(life.gone_at is not None for life in pod_lives(events)
                        if life.version != version)


def test_a_rolling_update_shows_in_the_timeline(api: client.ApiClient, namespace: str,
                                                probe_image: str, tmp_path: Path):
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    out = tmp_path / "events.jsonl"
    with Watcher(api, namespace, out) as watcher:
        assert watcher.events() == [], "a fresh namespace holds none of the watched kinds"
        core.create_namespaced_service(namespace, client.V1Service(
            metadata=client.V1ObjectMeta(name="model"),
            spec=client.V1ServiceSpec(selector={"app": "model"},
                                      ports=[client.V1ServicePort(port=8080)])))
        started = time.time()
        apps.create_namespaced_deployment(namespace, deployment(probe_image, "1"))
        eventually(lambda: rolled_out(watcher, started, "1"), 120, "version 1 seen rolled out")

        patched = time.time()
        apps.patch_namespaced_deployment("model", namespace, {"spec": {"template": {
            "metadata": {"labels": {LABEL: "2"}}}}})
        eventually(lambda: rolled_out(watcher, patched, "2"), 180,
                   "version 2 seen rolled out, the pods of version 1 gone")
        stopping = time.monotonic()
    stop_seconds = time.monotonic() - stopping

    events = watcher.events()
    assert watcher.errors == 0
    assert stop_seconds < watching.STOP_SECONDS
    assert read_events(out) == events
    assert watcher.gaps() == []

    lives = pod_lives(events)
    old = [p for p in lives if p.version == "1"]
    new = [p for p in lives if p.version == "2"]
    assert len(old) == 2 and len(new) == 2, lives
    assert len(lives) == 4, "no pod without the version label, none extra"
    for p in old:
        assert p.ready_at is not None and p.terminating_at is not None and p.gone_at is not None
        assert started < p.created <= p.ready_at < patched < p.terminating_at < p.gone_at, p
        assert p.gone_at - p.terminating_at >= PRE_STOP_SECONDS - 0.5, \
            f"{p.name} gone before its preStop sleep was over"
    for p in new:
        assert p.ready_at is not None and patched < p.created <= p.ready_at, p
        assert p.terminating_at is None and p.gone_at is None, p
    # maxUnavailable 0: the k-th old pod goes only once k new pods are ready
    new_ready = sorted(p.ready_at for p in new if p.ready_at is not None)
    old_terminating = sorted(p.terminating_at for p in old if p.terminating_at is not None)
    assert all(r <= t for r, t in zip(new_ready, old_terminating, strict=True))

    deployments = [e for e in events if e.kind == "Deployment" and e.t > patched]
    assert deployments[0].ready is False, "the rollout was seen in progress"
    assert deployments[-1].ready is True
    sets = {e.name: e.version for e in events if e.kind == "ReplicaSet"}
    assert sorted(sets.values()) == ["1", "2"]
    terminating = [int(m.group(1)) for e in events if e.kind == "EndpointSlice"
                   for m in [re.search(r"terminating (\d+)", e.detail)] if m]
    assert max(terminating) >= 1, "an endpoint was seen terminating during the preStop sleep"

    print(f"watch stopped in {stop_seconds:.2f}s\n" + timeline(lives, events, patched))


def timeline(lives: list[PodLife], events: list[Event], zero: float) -> str:
    """Seconds from the patch, for a person checking what the cluster did."""
    def at(t: float | None) -> str:
        return "-" if t is None else f"{t - zero:+7.2f}"

    rows = [f"{p.name:32} v{p.version} created {at(p.created)} ready {at(p.ready_at)} "
            f"terminating {at(p.terminating_at)} gone {at(p.gone_at)}" for p in lives]
    rows += [f"{at(e.t)} {e.kind:13} {e.action:8} {e.name:32} {e.detail}"
             for e in events if e.t > zero]
    return "\n".join(rows)
