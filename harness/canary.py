"""A canary run: the candidate beside the stable version under live traffic, judged, then
promoted or removed.

Without a service mesh the split is by pods. Stable serves at its replica
count behind the model Service; the Pulumi program's canary section adds a
fresh baseline release of the stable version and a canary release of the
candidate, k pods each (`canary_evidence.replicas_for`), started together,
and switches the model Service to every track's pods, so each takes about
k / (N + 2k) of the live traffic's new connections (connections kept alive
from before stay with the stable pods they were opened to). Each track also
has its own Service on its own nodePort, mapped to a host port, for the
paired checks (`harness/pairing.py`).

The flow, one path from start to end:

1. start-up as `verify` (toolchain, cluster with the canary's port mappings,
   both versions' images); stable deployed alone;
2. the watch and the live traffic (Locust, bounded) start on the model
   Service's URL and run to the end; first 10 s (`gate.baseline_seconds`) on
   stable alone;
3. `pulumi up` with the canary section; both track Services answering;
4. each interval: the labelled hold-out sent to both tracks, paced over the
   interval; the live record cut at the interval's end by time and by the
   track of the pod that answered; judged (`canary_judge`) and decided —
   stopping at the first abort;
5. promote (`pulumi up` of the candidate, the canary section gone: a rolling
   update of stable under the same traffic, rolled back if it fails) or
   remove (the canary section gone, stable untouched) — after an abort, or after
   a promote decision with `--no-promote`, for a pipeline that promotes itself;
6. traffic stopped; the live traffic judged by `verify`'s rules — a promote as
   the rollout it is, a removal by `canary_evidence.judge_abort`; the
   intervals judged again on the complete record; the report written.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from kubernetes import client as kclient
from kubernetes import config
from kubernetes.client.exceptions import ApiException
from ml_model_program import CanaryConfig

from harness import canary_evidence as ce
from harness import errors, pairing, progress, protocols, report, startup, traffic
from harness.canary_judge import Decision, IntervalResult, JudgeLimits, decide
from harness.deploy import ModelStack
from harness.evidence import Marks, PodLife, Request, pod_lives
from harness.hostcpu import HostCpu
from harness.settings import Settings
from harness.startup import Prepared
from harness.traffic import Traffic
from harness.verdict import Plan, judge
from harness.watch import Watcher, final_state

log = logging.getLogger(__name__)

TRAFFIC_LINE_EVERY = 10.0
"""Seconds between the traffic's progress lines."""

RECORD_SETTLE_SECONDS = 3.0
"""Wait after an interval's end before its live requests are read: the recorder writes
at least every second (load/recording.py), and an answer slower than the SLO (1 s) has
failed whenever it comes. A request still in flight after this is judged in the audit
on the complete record (`CanaryRun.audit`), not lost."""

ANSWERING_TIMEOUT = 60.0
"""Time for the model, and then each track's own Service, to answer through its host
port once `pulumi up` has returned."""


@dataclass(frozen=True)
class Result:
    run: ce.CanaryRun
    written: report.Written
    promote_report: report.Written | None
    """The promote's rollout judged and told as `verify` tells one (promote/ folder)."""


def limits(settings: Settings) -> JudgeLimits:
    """The judge's thresholds: the canary flags on JudgeLimits' other defaults, the SLO
    of `verify` (--slo)."""
    c = settings.canary
    return JudgeLimits(confidence=c.confidence, allowed_increase=c.allowed_increase,
                       max_accuracy_drop=c.max_accuracy_drop, marginal_score=c.marginal_score,
                       pass_score=c.pass_score, slo_ms=settings.verdict.slo_seconds * 1000)


def planned_seconds(settings: Settings) -> float:
    """The longest the live traffic may have to run: stable alone, the canary's deploy,
    every interval (with its paired checks' tail and the record's settling), a promote
    and its rollback each to their timeout, old pods draining, settle, a minute spare."""
    c, gate, t = settings.canary, settings.gate, settings.traffic
    interval = c.interval_seconds + t.timeout_seconds + RECORD_SETTLE_SECONDS
    return (gate.baseline_seconds + settings.deploy.rollout_timeout + 2 * ANSWERING_TIMEOUT
            + c.intervals * interval + 2 * settings.deploy.rollout_timeout
            + gate.drain_timeout + gate.settle_seconds + 60)


def check(settings: Settings) -> None:
    """What can be refused before anything is made."""
    if settings.deploy.program is not None:
        raise errors.UsageError(
            "a canary deploys a baseline and a candidate beside the stable release, which "
            "only the bundled program does: unset HARNESS_PROGRAM (or deploy.program in "
            "rollout.yaml) for the canary")
    if settings.deploy.team_chart or settings.traffic.answer_version != \
            protocols.DEFAULT_VERSION_SOURCE:
        raise errors.UsageError(
            "a canary tells its tracks apart by the bundled chart's track value and every "
            "answer's X-Pod-Name: it runs on the bundled chart and server only; unset "
            "HARNESS_CHART/HARNESS_CHART_REPO/HARNESS_IMAGE_REPOSITORY/HARNESS_ANSWER_VERSION "
            "(or their deploy./traffic. keys in rollout.yaml)")
    planned = planned_seconds(settings)
    if planned > settings.traffic.max_seconds:
        raise errors.UsageError(
            f"--intervals {settings.canary.intervals} x --interval "
            f"{settings.canary.interval_seconds:g}s, with the rollout timeouts, plan "
            f"{planned:.0f}s of traffic, beyond the load's hard bound of "
            f"{settings.traffic.max_seconds}s: fewer or shorter intervals")


def canary(settings: Settings) -> Result:
    """The start-up sequence, the canary run, then clean-up unless the cluster is kept."""
    c = settings.canary
    check(settings)
    with startup.prepared(settings, (c.stable, c.candidate), tracks=True) as ready:
        result = run(settings, ready)
    if settings.cluster.keep:
        now = c.candidate if result.run.ending == "promote" and not result.run.promote_failed \
            else c.stable
        progress.say(f"keeping cluster {ready.cluster.name} (model at {now}); `make down` "
                     "removes it")
    return result


def run(settings: Settings, ready: Prepared) -> Result:
    """Steps 1-6 of the module docstring on a prepared cluster."""
    c, gate, t = settings.canary, settings.gate, settings.traffic
    stack, made = ready.stack.configured(settings), ready.cluster
    folder = gate.report_dir.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("paired-*.jsonl"):
        stale.unlink()
    values = settings.deploy.values
    model_name = settings.model_name
    namespace = settings.deploy.namespace
    rules = limits(settings)
    slo_ms = rules.slo_ms
    stable_pods = settings.deploy.replicas
    pods = ce.replicas_for(c.weight, stable_pods)
    urls = {track: made.track_url(track) for track in (ce.BASELINE, ce.CANARY)}
    section = CanaryConfig(
        c.candidate, replicas=pods, baseline_node_port=settings.cluster.baseline_node_port,
        canary_node_port=settings.cluster.canary_node_port,
        baseline_host_port=made.track_ports[ce.BASELINE],
        canary_host_port=made.track_ports[ce.CANARY])
    holdout = pairing.read_holdout()

    stack.up(c.stable, values, chart_repo=ready.chart_repo)  # no canary: one of earlier runs goes
    traffic.wait_answering(made.base_url, model_name, timeout=ANSWERING_TIMEOUT,
                           protocol=t.protocol)
    api = config.new_client_from_config(str(made.kubeconfig))  # type: ignore[no-untyped-call]
    tracks = ce.Tracks()
    edges: list[float] = []
    pairs: list[list[pairing.Pair]] = []
    with progress.phase("the canary run"), \
            Watcher(api, namespace, folder / "events.jsonl") as watcher, \
            HostCpu(folder / "host-cpu.jsonl") as host, \
            Traffic(made.base_url, folder, t, model_name, planned_seconds(settings)) as load, \
            progress.ticker(TRAFFIC_LINE_EVERY, load.progress_line):
        traffic_started = time.time()
        progress.say(f"traffic: {t.describe()} on {made.base_url}; {gate.baseline_seconds:g}s "
                     f"on {c.stable} alone first")
        _serve_a_while(load, gate.baseline_seconds)
        canary_started = time.time()
        edges.append(canary_started)
        progress.say(f"canary: {pods} pod(s) of {c.candidate} and {pods} of a fresh baseline "
                     f"of {c.stable} beside {stable_pods} stable pods: about "
                     f"{ce.share(pods, stable_pods):.0%} of new connections each")
        canary_ready: float | None = None
        try:
            stack.up(c.stable, values, chart_repo=ready.chart_repo, canary=section)
        except errors.DeployError as e:
            decision = Decision("abort", (), f"abort: the canary could not be deployed, so it "
                                             f"never served: {e}")
        else:
            canary_ready = time.time()
            for url in urls.values():
                traffic.wait_answering(url, model_name, timeout=ANSWERING_TIMEOUT,
                                       protocol=t.protocol)
            decision, tracks = _intervals(settings, rules, load, watcher, api, holdout, urls,
                                          model_name, edges, pairs)
        progress.say(f"decision: {decision.reason}")
        ending_started = time.time()
        ending, ending_error = _end(stack, settings, ready.chart_repo, decision)
        ending_finished = None if ending_error else time.time()
        if ending == "promote" and ending_error is None:
            _await_gone(watcher, load, c.stable, gate.drain_timeout)
        _serve_a_while(load, gate.settle_seconds)
        load.stop()
        ended = time.time()

    with progress.step("judging the intervals and the live traffic, writing the report"):
        final = final_state(api, namespace)
        requests = load.requests()
        events = watcher.events()
        lives = pod_lives(events)
        with contextlib.suppress(errors.ClusterError):  # the intervals' look is enough
            tracks = tracks.merged(read_tracks(api, namespace))
        intervals = tuple(ce.cut(requests, w, p, tracks, lives, slo_ms)
                          for w, p in zip(ce.windows(edges), pairs, strict=True))
        audit = ce.judge_all(intervals, rules, c.intervals) if intervals else decision
        times = ce.Times(traffic_started, canary_started, canary_ready, ending_started,
                         ending_finished, ended)
        last_edge = edges[-1]
        canary_after = [r for r in requests if r.t >= last_edge
                        and ce.track_of(r, tracks, lives, slo_ms) == ce.CANARY]
        promote_written = None
        if ending == "promote":
            kept, _ = ce.stable_side(requests, tracks, lives, slo_ms, before=last_edge)
            left_out = _left_out(requests, kept)
            marks = Marks(ending_started, ending_finished, ended, ending_error,
                          rolled_back=ending_error is not None)
            plan = Plan(c.stable, c.candidate, rate=t.rate, limits=settings.verdict)
            stable = ce.stable_lives(lives, tracks)
            cpu = host.samples()
            verdict = judge(kept, stable, plan, marks, final, watcher.gaps(),
                            ce.tally_without(load.tally(), requests, left_out), cpu)
            live = ce.LiveVerdict(verdict.outcome, verdict.checks, verdict.summary())
            promote_written = report.write(folder / "promote", verdict, kept, stable, events,
                                           cpu)
        else:
            kept, _ = ce.stable_side(requests, tracks, lives, slo_ms)
            left_out = _left_out(requests, kept)
            marks = Marks(ending_started, ending_finished, ended, ending_error)
            live = ce.judge_abort(kept, lives, marks, final, watcher.gaps(),
                                  ce.tally_without(load.tally(), requests, left_out),
                                  c.stable, stable_pods, settings.verdict)
        outcome = ce.CanaryRun(
            c.stable, c.candidate, stable_pods, pods, rules, intervals, decision, audit, ending,
            ending_error, live, ce.counts(canary_after, slo_ms), times)
        written = report.write_canary(folder, outcome)
    progress.say(f"result: {outcome.summary()}")
    progress.say(f"report: {written.html} (also {written.json.name}, {written.junit.name}"
                 + (f"; the promote's rollout in {promote_written.html}" if promote_written
                    else "") + ")")
    return Result(outcome, written, promote_written)


def _intervals(settings: Settings, rules: JudgeLimits, load: Traffic, watcher: Watcher,
               api: Any, holdout: list[pairing.Labelled], urls: dict[str, str],
               model_name: str, edges: list[float], pairs: list[list[pairing.Pair]]
               ) -> tuple[Decision, ce.Tracks]:
    """Each interval in turn: paired checks for its time, then its live requests cut from
    the record, judged, decided; stops at the first decision that is not "continue".
    `edges` (the canary's start already in it) and `pairs` grow by one per interval.
    Returns the decision and the tracks of every pod seen."""
    c, t = settings.canary, settings.traffic
    folder = settings.gate.report_dir.resolve()
    results: list[IntervalResult] = []
    tracks = ce.Tracks()
    decision = decide(results, rules, final=False)
    for index in range(1, c.intervals + 1):
        sent = pairing.send(holdout, urls[ce.BASELINE], urls[ce.CANARY], c.interval_seconds,
                            folder / f"paired-{index:02d}.jsonl", model_name, t.timeout_seconds,
                            load.require_running, protocol=t.protocol)
        edges.append(time.time())
        pairs.append(sent)
        _serve_a_while(load, RECORD_SETTLE_SECONDS)
        tracks = tracks.merged(read_tracks(api, settings.deploy.namespace))
        lives: list[PodLife] = pod_lives(watcher.events())
        window = ce.windows(edges)[-1]
        evidence = ce.cut(load.requests(), window, sent, tracks, lives, rules.slo_ms)
        results.append(ce.judge(evidence, rules))
        progress.say(f"interval {index}/{c.intervals}: {results[-1].reason}")
        decision = decide(results, rules, final=index == c.intervals)
        if decision.outcome != "continue":
            break
    return decision, tracks


def _end(stack: ModelStack, settings: Settings, repo: str | None,
         decision: Decision) -> tuple[str, str | None]:
    """Promote (stable to the candidate: the program's `promoted()`) or remove the canary
    (`aborted()`); a promote that fails is rolled back by removing the canary with stable
    at its own version. Returns (what was done, its error or None)."""
    c, values = settings.canary, settings.deploy.values
    if decision.outcome == "promote" and not c.decide_only:
        progress.say(f"promoting: rolling stable {c.stable} -> {c.candidate} under the same "
                     "traffic; the canary and baseline go")
        error, _ = stack.up_or_roll_back(c.candidate, c.stable, values, repo, "promote")
        return "promote", error
    held = " (fit to promote; --no-promote)" if decision.outcome == "promote" else ""
    progress.say(f"removing the canary and baseline{held}; stable stays at {c.stable}")
    try:
        stack.up(c.stable, values, chart_repo=repo)
    except errors.DeployError as e:
        return "remove", str(e)
    return "remove", None


def read_tracks(api: Any, namespace: str) -> ce.Tracks:
    """Pods and ReplicaSets with a track label, as the API lists them now."""
    core, apps = kclient.CoreV1Api(api), kclient.AppsV1Api(api)
    pods: Any
    sets: Any
    try:
        pods = core.list_namespaced_pod(namespace, label_selector=ce.TRACK_LABEL,
                                        _request_timeout=10).items
        sets = apps.list_namespaced_replica_set(namespace, label_selector=ce.TRACK_LABEL,
                                                _request_timeout=10).items
    except (ApiException, OSError) as e:
        raise errors.ClusterError(f"listing the canary's pods in {namespace}: {e}") from e
    return ce.Tracks({p.metadata.name: p.metadata.labels[ce.TRACK_LABEL] for p in pods},
                     {s.metadata.name: s.metadata.labels[ce.TRACK_LABEL] for s in sets})


def _left_out(requests: list[Request], kept: list[Request]) -> list[Request]:
    ids = {id(r) for r in kept}
    return [r for r in requests if id(r) not in ids]


def _await_gone(watcher: Watcher, load: Traffic, version: str, timeout: float) -> None:
    """Pulumi returns once the new pods are ready; the old ones may still be draining."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        load.require_running()
        if all(p.gone_at is not None for p in pod_lives(watcher.events())
               if p.version == version):
            return
        time.sleep(0.5)
    log.warning("pods of %s still present after %.0fs", version, timeout)


def _serve_a_while(load: Traffic, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        load.require_running()
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

