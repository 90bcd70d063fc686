"""One gate run: roll the model from one version to the next under traffic, then judge it.

`rehearse` does the rollout part on a cluster that exists (staging, or the
e2e tests' cluster): deploy the old version, start watching and traffic,
upgrade with the same Pulumi program production uses, roll back if the
upgrade fails, let the new version serve a while, stop, judge, report.
`verify` wraps it with what a fresh machine needs — toolchain, cluster,
images — and cleans up afterwards unless asked to keep the cluster.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config

from harness import charts, cluster, errors, images, progress, report, toolchain, traffic
from harness.cluster import Cluster
from harness.deploy import ModelStack
from harness.settings import Settings
from harness.traffic import Traffic, TrafficSettings
from harness.verdict import FinalState, Marks, Plan, Verdict, judge
from harness.watch import Watcher, pod_lives

log = logging.getLogger(__name__)

VERSION_LABEL = "rollout-harness/model-version"

EXIT_CODES = {"pass": 0, "fail": 1, "inconclusive": 3}
"""verify's exit code per outcome; harness errors keep their own codes (64-72, 2)."""


@dataclass(frozen=True)
class RunSettings:
    from_version: str = "1.0.0"
    to_version: str = "1.1.0"
    values: Mapping[str, Any] = field(default_factory=dict)
    """Extra chart values for both versions (--set), e.g. the negative controls' switches."""
    traffic: TrafficSettings = field(default_factory=TrafficSettings)
    baseline_seconds: float = 10.0
    """Traffic on the old version before the upgrade starts."""
    settle_seconds: float = 10.0
    """Traffic on the new version after the last old pod is gone."""
    drain_timeout: float = 120.0
    """How long old pods may take to disappear once Pulumi reports the rollout done."""
    report_dir: Path = Path("rollout-report")

    def plan(self) -> Plan:
        return Plan(self.from_version, self.to_version, rate=self.traffic.rate)


@dataclass(frozen=True)
class Result:
    verdict: Verdict
    written: report.Written


def verify(settings: Settings, run: RunSettings) -> Result:
    """Toolchain, cluster, images, the rehearsal, then clean-up unless the cluster is kept."""
    tools, deploy_tools = toolchain.ensure_all(settings)
    made = cluster.up(settings.cluster, tools)
    stack = ModelStack(settings, made, tools, deploy_tools)
    try:
        if made.created:
            stack.forget()
        return rehearse(settings, made, stack, run)
    finally:
        if not settings.cluster.keep:
            # the cluster goes, and with it everything the stack made: drop the
            # stack's state instead of destroying object by object (18 s saved)
            with contextlib.suppress(errors.HarnessError):
                stack.forget()
            cluster.down(settings.cluster, tools)
        else:
            progress.say(f"keeping cluster {made.name} (model at {run.to_version} if it passed); "
                         "`make down` removes it")


def rehearse(settings: Settings, made: Cluster, stack: ModelStack, run: RunSettings) -> Result:
    """Deploy the old version, roll to the new one under traffic, judge and report."""
    folder = run.report_dir.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    model_name = str(dict(run.values.get("model") or {}).get("name", "ml-model"))
    with progress.step("building and loading the model images"):
        for version in (run.from_version, run.to_version):
            images.load(made.name, stack.toolchain.kind,
                        images.ensure(settings, stack.cache, version), stack.cache)
    with _chart_repo(settings, stack, run) as repo:
        stack.up(run.from_version, run.values, chart_repo=repo)
        traffic.wait_answering(made.base_url, model_name, timeout=60)
        api = config.new_client_from_config(str(made.kubeconfig))  # type: ignore[no-untyped-call]
        namespace = settings.deploy.namespace
        t = run.traffic
        with Watcher(api, namespace, folder / "events.jsonl") as watcher, \
                Traffic(made.base_url, folder, t, model_name) as load:
            progress.say(f"traffic: {t.users} users x {t.rate_per_user:g} req/s on "
                         f"{made.base_url}; {run.baseline_seconds:g}s on {run.from_version} first")
            _serve_a_while(load, run.baseline_seconds)
            marks = _upgrade(stack, run, repo)
            if marks.finished is not None:  # after a rollback the old version stays
                _await_old_pods_gone(watcher, run, load)
            _serve_a_while(load, run.settle_seconds)
            load.stop()
            ended = time.time()
        marks = dataclasses.replace(marks, ended=ended)
        final = final_state(api, namespace)
    requests = load.requests()
    events = watcher.events()
    lives = pod_lives(events)
    verdict = judge(requests, lives, run.plan(), marks, final)
    written = report.write(folder, verdict, requests, lives, events)
    progress.say(f"verdict: {verdict.summary()}")
    progress.say(f"report: {written.html} (also {written.json.name}, {written.junit.name})")
    return Result(verdict, written)


@contextlib.contextmanager
def _chart_repo(settings: Settings, stack: ModelStack, run: RunSettings) -> Iterator[str | None]:
    if settings.deploy.chart_source != "repo":
        yield None
        return
    for version in (run.from_version, run.to_version):
        stack.repository.package(version)
    with charts.serve(stack.repository.folder) as url:
        yield url


def _upgrade(stack: ModelStack, run: RunSettings, repo: str | None) -> Marks:
    """The upgrade under traffic; a failed one is rolled back by deploying the old version."""
    started = time.time()
    progress.say(f"upgrading {run.from_version} -> {run.to_version} under traffic")
    try:
        stack.up(run.to_version, run.values, chart_repo=repo)
    except errors.DeployError as e:
        progress.say(f"the upgrade failed; rolling back to {run.from_version}")
        try:
            stack.up(run.from_version, run.values, chart_repo=repo)
        except errors.DeployError as again:
            return Marks(started, None, 0.0, f"{e}; the rollback failed too: {again}", False)
        return Marks(started, None, 0.0, str(e), True)
    return Marks(started, time.time(), 0.0)


def _await_old_pods_gone(watcher: Watcher, run: RunSettings, load: Traffic) -> None:
    """Pulumi returns once new pods are ready; old ones may still be draining."""
    version = run.from_version
    deadline = time.monotonic() + run.drain_timeout
    while time.monotonic() < deadline:
        load.require_running()
        lives = [p for p in pod_lives(watcher.events()) if p.version == version]
        if all(p.gone_at is not None for p in lives):
            return
        time.sleep(0.5)
    log.warning("pods of %s still present after %.0fs", version, run.drain_timeout)


def _serve_a_while(load: Traffic, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        load.require_running()
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def final_state(api: client.ApiClient, namespace: str) -> FinalState:
    """Ready pods by model version, and the replicas the Deployment asks for."""
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace).items
    ready: dict[str, int] = {}
    for pod in pods:
        conditions = (pod.status.conditions or []) if pod.status else []
        meta = pod.metadata
        if meta is not None and meta.deletion_timestamp is None and any(
                c.type == "Ready" and c.status == "True" for c in conditions):
            version = (meta.labels or {}).get(VERSION_LABEL, "unknown")
            ready[version] = ready.get(version, 0) + 1
    deployments = client.AppsV1Api(api).list_namespaced_deployment(namespace).items
    desired = sum(d.spec.replicas or 0 for d in deployments)
    return FinalState(desired, ready)
