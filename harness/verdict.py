"""The verdict: did any client see a failure while the rollout happened?

Pure logic over what traffic and watch wrote down, so every rule can be
tested on hand-made evidence without a cluster. The outcome is one of three:

- **fail**: some rule is broken — a request failed, the old version answered
  after its last pod was gone, the rollout did not finish on the new version,
  or latency left its budget;
- **inconclusive**: nothing broke, but the traffic did not cover the rollout
  (too few requests before or after it, a gap while pods were replaced, or a
  rate far below plan), or the watch of the cluster had a hole while it ran
  (a pod's exit may then be timed wrong or missed), or the load generator
  itself fell behind (late sends with no slow answer; latency over budget only
  in answers timed while it waited for CPU, or while the host had no idle
  CPU). Never a pass: an unobserved rollout proves nothing;
- **pass**: every rule held.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.causes import Attribution, attribute, cause, story
from harness.evidence import (
    NEW_CONNECTION,
    CpuSample,
    FinalState,
    Marks,
    PodLife,
    Request,
    Tally,
    WatchGap,
    request_order,
)
from harness.settings import VerdictSettings

Outcome = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class Plan:
    """What the run set out to do; the verdict measures the evidence against it."""

    from_version: str
    to_version: str
    rate: float
    """Planned requests per second over all users (0: as fast as the server answers)."""
    limits: VerdictSettings = field(default_factory=VerdictSettings)


@dataclass(frozen=True)
class Check:
    name: str
    outcome: Outcome
    detail: str


@dataclass(frozen=True)
class Figures:
    """The numbers behind the checks, for the report and the summary line."""

    requests: int
    failures: int
    by_version: dict[str, int]
    errors: dict[str, int]
    """Failures by cause (see harness/causes.py)."""
    completed: float | None
    """When the last pod of the old version was gone (epoch seconds)."""
    rate_achieved: float
    p50_baseline_ms: float | None
    p99_baseline_ms: float | None
    p99_rollout_ms: float | None
    p99_after_ms: float | None
    longest_gap_seconds: float | None
    replaced_pods: int
    attributions: tuple[Attribution, ...] = ()
    """Failures by cause and pod."""
    recorded_by_locust: int | None = None
    """Locust's own count of the requests it made, when it gave one."""


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    checks: tuple[Check, ...]
    figures: Figures
    plan: Plan
    marks: Marks
    first_failures: tuple[dict[str, Any], ...] = field(default=())

    def summary(self) -> str:
        """One line that reads right whatever the outcome: what broke, then the run."""
        f = self.figures
        run = (f"{self.plan.from_version} → {self.plan.to_version}, "
               f"{f.replaced_pods} pods replaced")
        if self.outcome == "pass":
            return f"PASS: {f.requests} requests, 0 failed, {run}"
        if f.failures:
            return (f"{self.outcome.upper()}: {f.failures:,} of {f.requests:,} requests failed: "
                    f"{story(f.attributions)} ({run})")
        decisive = next(c for c in self.checks if c.outcome == self.outcome)
        return (f"{self.outcome.upper()}: {decisive.detail}; 0 of {f.requests:,} requests "
                f"failed ({run})")


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def judge(requests: Sequence[Request], lives: Sequence[PodLife], plan: Plan, marks: Marks,
          final: FinalState, gaps: Sequence[WatchGap], tally: Tally | None,
          host: Sequence[CpuSample] = ()) -> Verdict:
    """Apply every rule; the worst outcome of the checks is the verdict.

    `tally` is Locust's own count of what it sent (None: it left none), held
    against `requests` so that evidence lost on the way is never judged as clean.
    `host`: the host's CPU while the load ran (none: not sampled).
    The order of `requests` does not matter (they are put in `request_order`, a total
    order), so neither does how many Locust processes wrote them.
    """
    requests = sorted(requests, key=request_order)
    old_pods = [p for p in lives if p.version == plan.from_version]
    completed = _completed(old_pods)
    window_end = completed if completed is not None else marks.ended
    before = [r for r in requests if r.t < marks.started]
    during = [r for r in requests if marks.started <= r.t <= window_end]
    after = [r for r in requests if r.t > window_end]
    slo_ms = plan.limits.slo_seconds * 1000
    causes = [(r, why) for r in requests if (why := cause(r, slo_ms)) is not None]
    failed = [r for r, _ in causes]
    replaced = [p for p in old_pods if p.terminating_at is not None]

    figures = Figures(
        requests=len(requests),
        failures=len(failed),
        by_version=dict(Counter(r.version or "none" for r in requests)),
        errors=dict(Counter(why for _, why in causes)),
        completed=completed,
        rate_achieved=_rate(requests),
        p50_baseline_ms=percentile([r.answer_ms for r in before if r.ok], 50),
        p99_baseline_ms=percentile([r.answer_ms for r in before if r.ok], 99),
        p99_rollout_ms=percentile([r.answer_ms for r in during if r.ok], 99),
        p99_after_ms=percentile([r.answer_ms for r in after if r.ok], 99),
        longest_gap_seconds=_longest_gap(requests, marks.started, window_end),
        replaced_pods=len(replaced),
        attributions=tuple(attribute(causes, lives)),
        recorded_by_locust=tally.locust_requests if tally else None,
    )
    checks = (
        _no_failures(causes, marks, figures),
        _rollout_finished(plan, marks, completed, old_pods, final),
        _versions(requests, plan, completed),
        _coverage(plan, before, after, replaced, requests, figures),
        _latency(plan, figures, during, host),
        _power(plan, replaced, requests, lives),
        _timeline(gaps, requests, marks),
        _evidence(tally, requests),
    )
    outcome: Outcome = "pass"
    if any(c.outcome == "fail" for c in checks):
        outcome = "fail"
    elif any(c.outcome == "inconclusive" for c in checks):
        outcome = "inconclusive"
    first = tuple(
        {"at_seconds": round(r.t - marks.started, 3), "cause": why, "status": r.status,
         "error": r.error, "version": r.version, "pod": r.pod, "latency_ms": r.latency_ms}
        for r, why in causes[:10]
    )
    return Verdict(outcome, checks, figures, plan, marks, first)


# -- the rules -----------------------------------------------------------------


def _no_failures(causes: Sequence[tuple[Request, str]], marks: Marks, f: Figures) -> Check:
    """Zero failed requests: an error, a non-2xx answer, a bad body, or an answer slower
    than the client's SLO. Any one fails the gate."""
    name = "no failed requests"
    if not causes:
        return Check(name, "pass", "every request was answered with success within the SLO")
    if all(why == "queued" for _, why in causes):
        # late sends with no answer slower than the SLO: the load generator fell behind its
        # schedule, which says nothing about the release. Either Locust itself was late
        # (CPU), or each client, one request at a time, waited behind answers slower than
        # its pace, a wait an open-loop client would not have had.
        late = max(r.lag_ms for r, _ in causes)
        own = max(r.behind_ms for r, _ in causes)
        why = ("Locust itself was late (short of CPU); give it fewer clients or a lower "
               "--rate, or the host more CPU" if own * 2 >= late else
               "each client waited behind answers slower than its pace; spread the rate over "
               "more clients (--users, --rate) or give the host more CPU")
        return Check(name, "inconclusive",
                     f"{len(causes)} of {f.requests} requests went out late (up to "
                     f"{late / 1000:.1f}s behind their schedule, {own / 1000:.1f}s of it "
                     "Locust's own delay) though no answer took longer than the SLO: the load "
                     f"generator fell behind, not the model: {why}")
    first = causes[0][0]
    pods = ", ".join(f"{a.count} {a.cause} at {a.pod} ({a.how})" if a.pod else
                     f"{a.count} {a.cause} (no pod known)" for a in f.attributions[:3])
    said = first.error or (f"HTTP {first.status}" if not first.ok else
                           f"answered in {first.latency_ms:.0f} ms")
    return Check(
        name, "fail",
        f"{len(causes)} of {f.requests} failed, the first {first.t - marks.started:+.2f}s from "
        f"the upgrade's start: {story(f.attributions)}; {pods}; the first said: {said}",
    )


def _rollout_finished(plan: Plan, marks: Marks, completed: float | None,
                      old_pods: Sequence[PodLife], final: FinalState) -> Check:
    name = "rollout finished on the new version"
    if marks.finished is None:
        back = " and was rolled back" if marks.rolled_back else ""
        return Check(name, "fail", f"the upgrade failed{back}: {marks.rollout_error}")
    ready_new = final.ready_by_version.get(plan.to_version, 0)
    others = {v: n for v, n in final.ready_by_version.items() if v != plan.to_version and n}
    if others or ready_new != final.desired_replicas:
        return Check(name, "fail",
                     f"at the end {ready_new}/{final.desired_replicas} replicas ready on "
                     f"{plan.to_version}, others ready: {others or 'none'}")
    if completed is None and old_pods:
        return Check(name, "fail", "pods of the old version were still there at the end")
    return Check(name, "pass", f"all {final.desired_replicas} replicas ready on {plan.to_version}")


def _versions(requests: Sequence[Request], plan: Plan, completed: float | None) -> Check:
    name = "both versions answered, the old one never after the rollout"
    answered = Counter(r.version for r in requests if r.ok)
    strangers = {v: n for v, n in answered.items()
                 if v not in (plan.from_version, plan.to_version)}
    if strangers:
        return Check(name, "fail", f"unexpected versions answered: {strangers}")
    late = [r for r in requests if completed is not None and r.ok
            and r.version == plan.from_version and r.t > completed]
    if late:
        return Check(name, "fail",
                     f"{len(late)} requests started after the last {plan.from_version} pod was "
                     f"gone were answered by {plan.from_version}")
    missing = [v for v in (plan.from_version, plan.to_version) if not answered.get(v)]
    if missing:
        return Check(name, "inconclusive", f"no successful answer from {', '.join(missing)}")
    return Check(name, "pass", f"{plan.from_version}: {answered[plan.from_version]}, "
                               f"{plan.to_version}: {answered[plan.to_version]}")


def _coverage(plan: Plan, before: Sequence[Request], after: Sequence[Request],
              replaced: Sequence[PodLife], requests: Sequence[Request],
              figures: Figures) -> Check:
    name = "traffic covered the rollout"
    limits = plan.limits
    gaps: list[str] = []
    if len(before) < limits.min_requests_before:
        gaps.append(f"{len(before)} requests before the upgrade "
                    f"(need {limits.min_requests_before})")
    if len(after) < limits.min_requests_after:
        gaps.append(f"{len(after)} requests after the rollout (need {limits.min_requests_after})")
    if figures.longest_gap_seconds is None:
        gaps.append("no rollout to cover: the old version was gone before the upgrade started")
    elif figures.longest_gap_seconds > limits.max_gap_seconds:
        gaps.append(f"no request for {figures.longest_gap_seconds}s during the rollout "
                    f"(allowed {limits.max_gap_seconds}s)")
    starts = [r.t for r in requests]
    uncovered = [p.name for p in replaced if not _any_between(
        starts, p.terminating_at or 0.0, p.gone_at or (p.terminating_at or 0.0) + 1.0)]
    if uncovered:
        gaps.append(f"no request while {', '.join(uncovered)} terminated")
    if plan.rate > 0 and figures.rate_achieved < plan.rate * limits.min_rate_fraction:
        gaps.append(f"rate {figures.rate_achieved:.0f}/s, planned {plan.rate:.0f}/s")
    if not replaced:
        gaps.append("no pod of the old version was seen terminating")
    if gaps:
        return Check(name, "inconclusive", "; ".join(gaps))
    return Check(name, "pass",
                 f"{len(before)} requests before, {len(after)} after, longest gap "
                 f"{figures.longest_gap_seconds:.2f}s, all {len(replaced)} replaced pods covered, "
                 f"{figures.rate_achieved:.0f} req/s")


def _power(plan: Plan, replaced: Sequence[PodLife], requests: Sequence[Request],
           lives: Sequence[PodLife]) -> Check:
    """Could the traffic have seen a fault at each replaced pod's exit?

    Zero failures proves something only if failures would have shown. Two ways a
    pod's exit fails clients, and what it takes to see each:

    - requests in flight when the pod stops answering are cut: the pod must be
      carrying traffic right up to its exit. At least `min_answered_before_exit`
      (20) answers from it in the `power_window_seconds` (5 s) before it was
      marked terminating: 4 a second, so a cut lasting a quarter of a second
      meets one request on average and a longer one meets several;
    - new connections routed to it after it stopped listening (kube-proxy
      applies the endpoint removal late, or there is no preStop hook) are
      refused or reset: new connections must keep arriving while it terminates.
      At least `min_new_connections_while_exiting` (40) new-connection requests
      start between its terminating mark and its deletion (at least 1 s): when
      the Service spreads them over 4 pods and the exposed window is 0.5 s, 40 a
      second meet it 5 times on average, and miss it entirely with odds of
      e^-5 < 1 %.

    Kept-alive connections alone skip the second window (a pooled client quietly
    replaces a closed idle socket), which is why the default load has clients
    that open a connection per request. Which pod answered comes from its
    X-Pod-Name header; a server without one is credited its share of all answers.
    """
    name = "the traffic could have seen a fault at every pod's exit"
    limits = plan.limits
    named = any(r.pod for r in requests)
    short: list[str] = []
    for pod in replaced:
        leaving = pod.terminating_at or 0.0
        window = [r for r in requests if leaving - limits.power_window_seconds <= r.t < leaving]
        if named:
            answered = sum(1 for r in window if r.pod == pod.name)
        else:
            alive = [p for p in lives if p.created <= leaving
                     and (p.gone_at is None or p.gone_at >= leaving)]
            answered = len(window) // max(1, len(alive))
        until = max(pod.gone_at or leaving, leaving + 1.0)
        fresh = sum(1 for r in requests if r.name == NEW_CONNECTION and leaving <= r.t <= until)
        if (answered < limits.min_answered_before_exit
                or fresh < limits.min_new_connections_while_exiting):
            short.append(f"{pod.name}: {answered} answers in the "
                         f"{limits.power_window_seconds:g}s before it was marked terminating "
                         f"(need {limits.min_answered_before_exit}), {fresh} new connections "
                         f"while it terminated (need {limits.min_new_connections_while_exiting})")
    if short:
        return Check(name, "inconclusive", "; ".join(short[:3]))
    if not replaced:
        return Check(name, "inconclusive", "no pod was replaced")
    return Check(name, "pass", f"each of the {len(replaced)} replaced pods answered at least "
                               f"{limits.min_answered_before_exit} requests just before it was "
                               f"marked terminating and met at least "
                               f"{limits.min_new_connections_while_exiting} new connections "
                               "while it terminated")


def _evidence(tally: Tally | None, requests: Sequence[Request]) -> Check:
    """Every request Locust made is in the record, or the record is not the run."""
    name = "every request Locust made is in the record"
    if tally is None:
        return Check(name, "inconclusive", "Locust left no count of its requests to check the "
                                           "record against")
    if tally.locust_requests != len(requests) or tally.recorded != len(requests):
        return Check(name, "inconclusive",
                     f"Locust made {tally.locust_requests} requests, its recorder wrote "
                     f"{tally.recorded}, the record holds {len(requests)}")
    return Check(name, "pass", f"{len(requests)} requests made, {len(requests)} recorded")


def _timeline(gaps: Sequence[WatchGap], requests: Sequence[Request], marks: Marks) -> Check:
    """Every rule above reads pod lives off the watch: a hole in it during the traffic
    may hide a pod's exit or move it in time, so the rules' answers cannot be trusted."""
    name = "the rollout's timeline is complete"
    begin = requests[0].t if requests else marks.started
    holes = [g for g in gaps if (g.ended is None or g.ended >= begin) and g.started <= marks.ended]
    if not holes:
        return Check(name, "pass", "every watch ran from the first request to the last")
    def span(g: WatchGap) -> str:
        until = "the end" if g.ended is None else f"{g.ended - g.started:.1f}s"
        return (f"{g.kind} watch down {g.started - marks.started:+.1f}s from the upgrade's start "
                f"for {until} ({g.reason})")
    return Check(name, "inconclusive", "; ".join(span(g) for g in holes[:3]))


def _latency(plan: Plan, f: Figures, during: Sequence[Request],
             host: Sequence[CpuSample]) -> Check:
    """The p99 of the answers' own time (`Request.answer_ms`) during the rollout against
    the one before. A client's wait behind its previous answer is left out: a slow answer
    is counted once, as itself, and a load generator that fell behind is the failed-request
    rule's to report (INCONCLUSIVE), not a slower release.

    The instrument must not be judged as the release either. An answer read while the
    load generator's own process was waiting for CPU is timed late by however long it
    waited (on a small host the cluster, the deployer and the load share the cores, and
    a heavy server's start-up takes them). Its sends say when that was (`behind_ms`);
    a wait as long as the budget's headroom over the baseline could carry an answer
    past the budget on its own. Nor the test bed: while the host had no idle CPU
    (`host`), every pod waited for a core, old ones and new alike, and their answers
    time the host. Over budget only with the answers in flight at such moments, the
    verdict is INCONCLUSIVE (never a pass: a slow release that starves the host looks
    the same); over budget without them too, it is a FAIL.
    """
    name = "latency within budget"
    if f.p99_baseline_ms is None or f.p99_rollout_ms is None:
        return Check(name, "inconclusive", "no successful requests to measure before or during")
    limits = plan.limits
    budget = max(f.p99_baseline_ms * limits.p99_factor, f.p99_baseline_ms + limits.p99_floor_ms)
    text = (f"p99 {f.p99_rollout_ms:.1f} ms during the rollout, {f.p99_baseline_ms:.1f} ms "
            f"before, budget {budget:.1f} ms")
    if f.p99_rollout_ms <= budget:
        return Check(name, "pass", text)
    answered = [r for r in during if r.ok]
    behind = _behind_spans(during, budget - f.p99_baseline_ms)
    starved = _starved_spans(host, answered)
    if not behind and not starved:
        return Check(name, "fail", text)
    clean = [r.answer_ms for r in answered if not _in_flight_during(r, behind + starved)]
    p99_clean = percentile(clean, 99)
    why = []
    if behind:
        worst = max(r.behind_ms for r in during) / 1000
        why.append(f"the load generator itself fell up to {worst:.1f}s behind its schedule "
                   "(waiting for CPU)")
    if starved:
        seconds = sum(hi - lo for lo, hi in starved)
        why.append(f"the host had no idle CPU for {seconds:.1f}s")
    outside = f"{' and '.join(why)} while {len(answered) - len(clean)} answers were in flight"
    if p99_clean is not None and p99_clean > budget:
        return Check(name, "fail", f"{text}; {p99_clean:.1f} ms without the answers timed while "
                                   f"{outside}")
    rest = (f"the other {len(clean)} answers' p99 is {p99_clean:.1f} ms" if p99_clean is not None
            else "no answer was timed outside those moments")
    slow = ("The host's cores, not the release, may have been what was slow; give the host "
            "more CPU or the load fewer clients" if starved else
            "The instrument, not the release, may have been slow; give the load fewer clients "
            "or the host more CPU")
    return Check(name, "inconclusive", f"{text}, but {outside}: {rest}. {slow}")


# -- small helpers -------------------------------------------------------------


def _completed(old_pods: Sequence[PodLife]) -> float | None:
    """When the old version was entirely gone; None while any old pod remains."""
    if not old_pods or any(p.gone_at is None for p in old_pods):
        return None
    return max(p.gone_at for p in old_pods if p.gone_at is not None)


def _rate(requests: Sequence[Request]) -> float:
    if len(requests) < 2:
        return 0.0
    span = requests[-1].t - requests[0].t
    return len(requests) / span if span > 0 else 0.0


def _longest_gap(requests: Sequence[Request], start: float, end: float) -> float | None:
    """Longest time inside [start, end] with no request starting (edges count)."""
    if end <= start:
        return None
    points = [start, *(r.t for r in requests if start <= r.t <= end), end]
    return round(max(b - a for a, b in itertools.pairwise(points)), 3)


def _behind_spans(requests: Sequence[Request], least_ms: float) -> list[tuple[float, float]]:
    """When the load generator was at least `least_ms` behind: for each send that late, from
    the moment its client was free to send to the moment it did (epoch seconds). A send
    on time is never one, whatever `least_ms` (a budget with no headroom)."""
    spans = []
    for r in requests:
        if r.behind_ms > 0 and r.behind_ms >= least_ms:
            sent = r.t + r.lag_ms / 1000
            spans.append((sent - r.behind_ms / 1000, sent))
    return spans


STARVED_IDLE = 0.05
"""A host interval with less than this share of its CPU idle left the pods queueing for
cores (measured on two cores: 0-4 % idle while a heavy server's pod started, 7-70 %
while the same rollout only served)."""


def _starved_spans(host: Sequence[CpuSample],
                   answered: Sequence[Request]) -> list[tuple[float, float]]:
    """The host's intervals with no idle CPU (epoch seconds) that overlap `answered`'s time."""
    if not answered:
        return []
    first = min(r.t for r in answered)
    last = max(r.t + r.latency_ms / 1000 for r in answered)
    return [(c.started, c.t) for c in host
            if c.idle < STARVED_IDLE and c.started <= last and c.t >= first]


def _in_flight_during(request: Request, spans: Sequence[tuple[float, float]]) -> bool:
    """Whether `request` was between its send and its answer at any moment of `spans`."""
    sent, answered = request.t + request.lag_ms / 1000, request.t + request.latency_ms / 1000
    return any(lo <= answered and sent <= hi for lo, hi in spans)


def _any_between(starts: Sequence[float], lo: float, hi: float) -> bool:
    return any(lo <= t <= hi for t in starts)
