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
from dataclasses import dataclass

from kubernetes import config

from harness import errors, progress, report, startup, traffic
from harness.deploy import ModelStack
from harness.evidence import Marks, RunEvidence, pod_lives
from harness.hostcpu import HostCpu
from harness.settings import GateSettings, Settings
from harness.startup import Prepared
from harness.traffic import Traffic
from harness.verdict import Plan, Verdict, judge
from harness.watch import Watcher, final_state

log = logging.getLogger(__name__)

TRAFFIC_LINE_EVERY = 10.0
"""Seconds between the traffic phase's progress lines."""

EXIT_CODES = {"pass": 0, "fail": 1, "inconclusive": 3}
"""verify's exit code per outcome; harness errors keep their own codes (64-72, 2)."""


@dataclass(frozen=True)
class Result:
    verdict: Verdict
    written: report.Written
    evidence: RunEvidence


def verify(settings: Settings) -> Result:
    """The start-up sequence, the rehearsal, then clean-up unless the cluster is kept."""
    gate = settings.gate
    with startup.prepared(settings, (gate.from_version, gate.to_version)) as ready:
        result = rehearse(settings, ready)
    if settings.cluster.keep:
        progress.say(f"keeping cluster {ready.cluster.name} (model at {gate.to_version} if it "
                     "passed); `make down` removes it")
    return result


def rehearse(settings: Settings, ready: Prepared) -> Result:
    """Deploy the old version, roll to the new one under traffic, judge and report."""
    gate, stack, made = settings.gate, ready.stack.configured(settings), ready.cluster
    folder = gate.report_dir.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    model_name = settings.model_name
    stack.up(gate.from_version, settings.deploy.values, chart_repo=ready.chart_repo)
    traffic.wait_answering(made.base_url, model_name, timeout=60,
                           protocol=settings.traffic.protocol)
    api = config.new_client_from_config(  # type: ignore[no-untyped-call]
        str(made.kubeconfig), context=made.context)
    namespace = settings.deploy.namespace
    t = settings.traffic
    with progress.phase("the traffic phase"), \
            Watcher(api, namespace, folder / "events.jsonl") as watcher, \
            HostCpu(folder / "host-cpu.jsonl") as host, \
            Traffic(made.base_url, folder, t, model_name, planned_seconds(settings)) as load, \
            progress.ticker(TRAFFIC_LINE_EVERY, load.progress_line):
        progress.say(f"traffic: {t.describe()} on {made.base_url}; "
                     f"{gate.baseline_seconds:g}s on {gate.from_version} first")
        _serve_a_while(load, gate.baseline_seconds)
        marks = _upgrade(stack, settings, ready.chart_repo)
        if marks.finished is not None:  # after a rollback the old version stays
            _await_old_pods_gone(watcher, gate, load)
        _serve_a_while(load, gate.settle_seconds)
        load.stop()
        ended = time.time()
    marks = dataclasses.replace(marks, ended=ended)
    with progress.step("judging every request and writing the report"):
        final = final_state(api, namespace)
        requests = load.requests()
        events = watcher.events()
        lives = pod_lives(events)
        plan = Plan(gate.from_version, gate.to_version, rate=t.rate, limits=settings.verdict)
        evidence = RunEvidence(tuple(requests), tuple(lives), marks, final,
                               tuple(watcher.gaps()), load.tally(), tuple(host.samples()))
        verdict = judge(requests, lives, plan, marks, final, evidence.gaps, evidence.tally,
                        evidence.host)
        written = report.write(folder, verdict, requests, lives, events, evidence.host)
    progress.say(f"verdict: {verdict.summary()}")
    progress.say(f"report: {written.html} (also {written.json.name}, {written.junit.name})")
    return Result(verdict, written, evidence)


def rehearsal(settings: Settings, ready: Prepared) -> Result:
    """`rehearse`, then the stack taken down whatever happened, so that the next rollout
    on the cluster starts from nothing (calibration rounds, the pytest plugin's tests)."""
    try:
        return rehearse(settings, ready)
    finally:
        with contextlib.suppress(errors.HarnessError):
            ready.stack.configured(settings).down()


def planned_seconds(settings: Settings) -> float:
    """The longest the traffic may have to run: baseline, an upgrade and a rollback each
    awaited to their timeout, old pods draining, settle, and a minute to spare."""
    gate = settings.gate
    return (gate.baseline_seconds + 2 * settings.deploy.rollout_timeout + gate.drain_timeout
            + gate.settle_seconds + 60)


def _upgrade(stack: ModelStack, settings: Settings, repo: str | None) -> Marks:
    """The upgrade under traffic; a failed one is rolled back by deploying the old version."""
    gate, values = settings.gate, settings.deploy.values
    started = time.time()
    progress.say(f"upgrading {gate.from_version} -> {gate.to_version} under traffic")
    error, rolled_back = stack.up_or_roll_back(gate.to_version, gate.from_version, values,
                                               repo, "upgrade")
    if error is not None:
        return Marks(started, None, 0.0, error, rolled_back)
    return Marks(started, time.time(), 0.0)


def _await_old_pods_gone(watcher: Watcher, gate: GateSettings, load: Traffic) -> None:
    """Pulumi returns once new pods are ready; old ones may still be draining."""
    version = gate.from_version
    deadline = time.monotonic() + gate.drain_timeout
    while time.monotonic() < deadline:
        load.require_running()
        lives = [p for p in pod_lives(watcher.events()) if p.version == version]
        if all(p.gone_at is not None for p in lives):
            return
        time.sleep(0.5)
    log.warning("pods of %s still present after %.0fs", version, gate.drain_timeout)


def _serve_a_while(load: Traffic, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        load.require_running()
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
