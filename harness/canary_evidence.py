"""A canary run's evidence cut by track and by interval, and what the run made of it.

During a canary the model Service spreads the live traffic's new connections
over three releases' pods by pod ratio: stable, the fresh baseline and the
canary. Every answer names its pod (X-Pod-Name), and a pod's track comes from
its ``rollout-harness/track`` label, read from the Kubernetes API (the watch
records no labels): pods without the label are stable's. A request with no
answer is laid where `harness/causes.py` lays it — at the pod whose exit or
start was under way — and counts as ``unknown`` when no pod explains it.

Intervals are contiguous: interval k runs from the end of interval k - 1 (the
first from the moment the canary's deployment began, so a canary pod that
fails as it starts is judged too) to the moment its paired checks ended. Each
is judged by `canary_judge.judge_interval` on the canary's and the
baseline's requests, live and paired, and the paired outcomes.

The live traffic is judged as a whole too, after the promote or abort, by the
rules of `verify` (zero failed requests): the *stable side* — every live
request but those the canary answered (or is blamed for), which its own judge
has seen. A promote is judged as the rollout it is (`verdict.judge`); an abort
by `judge_abort`: stable untouched, nothing failed.

Pure functions and values, like the verdict: no I/O, every rule unit-tested.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from harness import pairing
from harness.canary_judge import Decision, IntervalResult, JudgeLimits, decide, judge_interval
from harness.causes import attribute, cause, story
from harness.evidence import FinalState, Marks, PodLife, Request, Tally, WatchGap
from harness.settings import VerdictSettings
from harness.verdict import Check, Outcome

TRACK_LABEL = "rollout-harness/track"
"""Set by the chart on every object of a baseline or canary release, pods included."""

STABLE, BASELINE, CANARY, UNKNOWN = "stable", "baseline", "canary", "unknown"
TRACKS = (STABLE, BASELINE, CANARY, UNKNOWN)

EXIT_CODES = {"promote": 0, "abort": 1, "inconclusive": 3}
"""The canary's exit code per decision, when the live traffic held (`exit_code`)."""


# -- how many canary pods -----------------------------------------------------------------


def share(canary_pods: int, stable_pods: int) -> float:
    """The canary's share of the model Service's new connections: k / (N + 2k), the
    baseline taking as much as the canary."""
    return canary_pods / (stable_pods + 2 * canary_pods)


def replicas_for(weight_percent: float, stable_pods: int) -> int:
    """Pods of the canary (and as many of the baseline) for a traffic share of
    `weight_percent`: the whole k >= 1 whose `share` is nearest the weight; between two
    equally near, the smaller (less traffic at risk). k/(N + 2k) = w gives
    k = wN / (1 - 2w), rounded that way; with N = 3: 20 % → 1 pod (20 %), 30 % → 2
    (29 %), 10 % → 1 (20 %: one pod is the least a canary can have)."""
    w = weight_percent / 100
    if not 0 < w < 0.5 or stable_pods < 1:
        raise ValueError(f"weight {weight_percent!r}% must be above 0 and below 50, and stable "
                         f"pods {stable_pods!r} at least 1")
    exact = w * stable_pods / (1 - 2 * w)
    options = {max(1, math.floor(exact)), max(1, math.ceil(exact))}
    return min(options, key=lambda k: (abs(share(k, stable_pods) - w), k))


# -- which track answered ---------------------------------------------------------------


@dataclass(frozen=True)
class Tracks:
    """Which track each pod belongs to, as the API's labels say.

    `pods`: pod name → track of the labelled pods seen; `replica_sets`: name → track
    of the labelled ReplicaSets seen, which also place a pod that came and went
    between two looks (its name is its ReplicaSet's name plus a suffix). A pod
    neither names is stable's: stable pods carry no track label.
    """

    pods: Mapping[str, str] = field(default_factory=dict)
    replica_sets: Mapping[str, str] = field(default_factory=dict)

    def of(self, pod: str | None) -> str:
        if pod is None:
            return UNKNOWN
        if pod in self.pods:
            return self.pods[pod]
        owners = [name for name in self.replica_sets if pod.startswith(f"{name}-")]
        return self.replica_sets[max(owners, key=len)] if owners else STABLE

    def merged(self, later: Tracks) -> Tracks:
        """What both looks saw: a pod or ReplicaSet deleted since is still placed."""
        return Tracks({**self.pods, **later.pods}, {**self.replica_sets, **later.replica_sets})


def track_of(request: Request, tracks: Tracks, lives: Sequence[PodLife],
             slo_ms: float) -> str:
    """The track of the pod that answered, or of the pod a failure without an answer is
    laid at (harness/causes.py); `UNKNOWN` when neither is known."""
    if request.pod:
        return tracks.of(request.pod)
    why = cause(request, slo_ms) or "no response"
    (laid,) = attribute([(request, why)], lives)
    return tracks.of(laid.pod) if laid.pod else UNKNOWN


# -- intervals ------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    index: int
    """1, 2, ..."""
    start: float
    end: float
    """Epoch seconds; a request belongs to the window its start falls in: start <= t < end."""


def windows(edges: Sequence[float]) -> list[Window]:
    """Contiguous windows between consecutive edges (epoch seconds, ascending)."""
    if any(b <= a for a, b in itertools.pairwise(edges)):
        raise ValueError(f"interval edges must ascend: {list(edges)}")
    return [Window(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(edges), 1)]


@dataclass(frozen=True)
class IntervalEvidence:
    """One interval's live requests by track, and its paired checks."""

    window: Window
    live: Mapping[str, tuple[Request, ...]]
    """Track (`TRACKS`) → the live requests that started in the window, in start order."""
    pairs: tuple[pairing.Pair, ...]

    def side(self, track: str) -> list[Request]:
        """The judge's sample of one side (baseline or canary): live and paired requests."""
        paired_baseline, paired_canary = pairing.as_requests(self.pairs)
        paired = {BASELINE: paired_baseline, CANARY: paired_canary}[track]
        return sorted([*self.live.get(track, ()), *paired], key=lambda r: r.t)


def cut(requests: Sequence[Request], window: Window, pairs: Sequence[pairing.Pair],
        tracks: Tracks, lives: Sequence[PodLife], slo_ms: float) -> IntervalEvidence:
    """The live requests that started in `window`, by the track that answered them."""
    live: dict[str, list[Request]] = {track: [] for track in TRACKS}
    for request in sorted(requests, key=lambda r: r.t):
        if window.start <= request.t < window.end:
            live[track_of(request, tracks, lives, slo_ms)].append(request)
    return IntervalEvidence(window, {track: tuple(rs) for track, rs in live.items()},
                            tuple(pairs))


def judge(evidence: IntervalEvidence, limits: JudgeLimits) -> IntervalResult:
    """The canary's judge on one interval: canary vs baseline, live and paired."""
    return judge_interval(evidence.window.index, evidence.side(CANARY),
                          evidence.side(BASELINE),
                          [pairing.outcome(p) for p in evidence.pairs], limits)


def judge_all(evidence: Sequence[IntervalEvidence], limits: JudgeLimits,
              planned: int) -> Decision:
    """The decision over intervals judged in order, stopping where a live run stops:
    at the first decision that is not "continue" (`final` on the `planned`-th)."""
    results: list[IntervalResult] = []
    decision = decide(results, limits, final=planned == 0)
    for item in evidence:
        results.append(judge(item, limits))
        decision = decide(results, limits, final=len(results) == planned)
        if decision.outcome != "continue":
            break
    return decision


# -- the live traffic: the stable side ------------------------------------------------------


def stable_side(requests: Sequence[Request], tracks: Tracks, lives: Sequence[PodLife],
                slo_ms: float, before: float | None = None) -> tuple[list[Request], int]:
    """(the requests the stable side answers for, how many were left out): every live
    request but the canary's — all of them, or with `before` only those that started
    before it (a promote answers for the canary pods' exit as part of its rollout)."""
    kept = [r for r in requests
            if track_of(r, tracks, lives, slo_ms) != CANARY
            or (before is not None and r.t >= before)]
    return kept, len(requests) - len(kept)


def stable_lives(lives: Sequence[PodLife], tracks: Tracks) -> list[PodLife]:
    """The stable release's pods, both versions: what a promote's rollout replaces.

    The baseline's pods are left out of the promote's verdict: the model Service stops
    selecting them as the promote begins, so they answer nothing in the seconds before
    they go, which `verdict`'s power rule would read as a rollout it could not see.
    Their failures, if any, still count: every request is judged, whichever pod."""
    return [life for life in lives if tracks.of(life.name) == STABLE]


def tally_without(tally: Tally | None, requests: Sequence[Request],
                  left_out: Sequence[Request]) -> Tally | None:
    """Locust's count less the requests left out of the judged record: judging the rest
    against it is the same check as judging the whole record against the whole count."""
    if tally is None:
        return None
    failed = sum(not r.ok for r in left_out)
    return replace(tally, locust_requests=tally.locust_requests - len(left_out),
                   locust_failures=tally.locust_failures - failed,
                   recorded=tally.recorded - len(left_out))


@dataclass(frozen=True)
class LiveVerdict:
    """The live traffic through the end of the canary, judged by `verify`'s rules."""

    outcome: Outcome
    checks: tuple[Check, ...]
    summary: str


def judge_abort(requests: Sequence[Request], lives: Sequence[PodLife], marks: Marks,
                final: FinalState, gaps: Sequence[WatchGap], tally: Tally | None,
                stable: str, stable_pods: int, limits: VerdictSettings) -> LiveVerdict:
    """The stable side of a canary that was removed (aborted, inconclusive, or fit to
    promote under `--no-promote`): nothing
    failed from the first request to the last, the removal went through and stable
    serves as before at all its pods, and the evidence is whole (the traffic covered
    the removal, the watch had no hole, the record holds every request Locust made).

    `marks`: started = the removal's `pulumi up`, finished = its end (None: it failed),
    ended = traffic stopped; `requests` = the stable side, `tally` already less the
    canary's requests (`tally_without`).
    """
    requests = sorted(requests, key=lambda r: r.t)
    slo_ms = limits.slo_seconds * 1000
    causes = [(r, why) for r in requests if (why := cause(r, slo_ms)) is not None]
    checks: list[Check] = []
    name = "no failed requests on the stable side"
    if causes:
        told = story(attribute(causes, lives))
        checks.append(Check(name, "fail", f"{len(causes)} of {len(requests)} failed: {told}"))
    else:
        checks.append(Check(name, "pass", f"all {len(requests)} answered with success within "
                                          "the SLO"))
    name = "the canary was removed, stable serves as before"
    ready = {v: n for v, n in final.ready_by_version.items() if n}
    if marks.finished is None:
        checks.append(Check(name, "fail", f"removing the canary failed: {marks.rollout_error}"))
    elif ready != {stable: stable_pods} or final.desired_replicas != stable_pods:
        checks.append(Check(name, "fail", f"at the end ready pods by version {ready or 'none'}, "
                                          f"{final.desired_replicas} desired; expected "
                                          f"{stable_pods} of {stable}"))
    else:
        checks.append(Check(name, "pass", f"all {stable_pods} pods ready on {stable}, "
                                          "nothing else"))
    name = "traffic covered the removal"
    before = sum(r.t < marks.started for r in requests)
    after = sum(marks.finished is not None and r.t > marks.finished for r in requests)
    short = []
    if before < limits.min_requests_before:
        short.append(f"{before} requests before it (need {limits.min_requests_before})")
    if marks.finished is not None and after < limits.min_requests_after:
        short.append(f"{after} requests after it (need {limits.min_requests_after})")
    checks.append(Check(name, "inconclusive", "; ".join(short)) if short else
                  Check(name, "pass", f"{before} requests before it, {after} after"))
    checks.append(_timeline(gaps, requests, marks))
    checks.append(_record(tally, requests))
    outcome: Outcome = ("fail" if any(c.outcome == "fail" for c in checks) else
                        "inconclusive" if any(c.outcome == "inconclusive" for c in checks)
                        else "pass")
    decisive = next((c for c in checks if c.outcome == outcome), checks[0])
    summary = (f"{outcome.upper()}: {len(causes)} of {len(requests)} stable-side requests "
               f"failed" + (f"; {decisive.detail}" if outcome != "pass" else ""))
    return LiveVerdict(outcome, tuple(checks), summary)


def _timeline(gaps: Sequence[WatchGap], requests: Sequence[Request], marks: Marks) -> Check:
    """As `verdict`'s: a watch down while traffic ran may hide where a failure belongs."""
    name = "the timeline is complete"
    begin = requests[0].t if requests else marks.started
    holes = [g for g in gaps if (g.ended is None or g.ended >= begin) and g.started <= marks.ended]
    if holes:
        return Check(name, "inconclusive", "; ".join(f"{g.kind} watch down from "
                                                     f"{g.started - marks.started:+.1f}s "
                                                     f"({g.reason})" for g in holes[:3]))
    return Check(name, "pass", "every watch ran from the first request to the last")


def _record(tally: Tally | None, requests: Sequence[Request]) -> Check:
    """As `verdict`'s: every request Locust made is in the record."""
    name = "every request Locust made is in the record"
    if tally is None:
        return Check(name, "inconclusive", "Locust left no count of its requests")
    if tally.locust_requests != len(requests) or tally.recorded != len(requests):
        return Check(name, "inconclusive", f"Locust made {tally.locust_requests} requests, the "
                                           f"record holds {len(requests)}")
    return Check(name, "pass", f"{len(requests)} requests made, {len(requests)} recorded")


# -- how it ends ------------------------------------------------------------------------


def exit_code(decision: str, live: Outcome, promote_failed: bool = False) -> int:
    """0 promoted and the promote's rollout passed `verify`'s rules; 1 aborted, or a
    promote whose rollout failed, or stable-side requests that failed whatever the
    decision; 3 inconclusive (never promoted), or promoted with a rollout verdict that
    could not show it was clean."""
    if decision == "promote":
        if promote_failed or live == "fail":
            return 1
        return 3 if live == "inconclusive" else 0
    if decision == "abort" or live == "fail":
        return 1
    return EXIT_CODES["inconclusive"]


def counts(requests: Sequence[Request], slo_ms: float) -> tuple[int, int]:
    """(requests, failed) by `verify`'s rules."""
    return len(requests), sum(cause(r, slo_ms) is not None for r in requests)


def by_cause(requests: Sequence[Request], slo_ms: float) -> dict[str, int]:
    return dict(Counter(why for r in requests if (why := cause(r, slo_ms)) is not None))


@dataclass(frozen=True)
class Times:
    """When the run did what, epoch seconds."""

    traffic_started: float
    canary_started: float
    """The canary's `pulumi up` began: interval 1 starts here."""
    canary_ready: float | None
    """Its `pulumi up` returned; None when it failed."""
    ending_started: float
    """The promote's or removal's `pulumi up` began."""
    ending_finished: float | None
    """It returned; None when it failed."""
    ended: float
    """Traffic stopped."""


@dataclass(frozen=True)
class CanaryRun:
    """All a canary run decided and found, as the report tells it."""

    stable: str
    candidate: str
    stable_pods: int
    canary_pods: int
    """Pods of the canary, and as many of the baseline."""
    limits: JudgeLimits
    intervals: tuple[IntervalEvidence, ...]
    """Each judged interval, cut from the complete record (after the traffic stopped)."""
    decision: Decision
    """What the run decided as it went, on the record as written so far."""
    audit: Decision
    """The same intervals judged again on the complete record."""
    ending: str
    """What was done: "promote" (stable to the candidate) or "remove" (canary and baseline
    removed, stable untouched: an abort, or a promote decision under `--no-promote`)."""
    ending_error: str | None
    """The promote's or removal's failure; a failed promote was rolled back (removed)."""
    live: LiveVerdict
    canary_outside: tuple[int, int]
    """(requests, failed) the canary answered outside its judged intervals (after the last
    one, until it was gone)."""
    times: Times

    @property
    def promote_failed(self) -> bool:
        return self.ending == "promote" and self.ending_error is not None

    @property
    def held_back(self) -> bool:
        """Decided to promote, and not promoted as asked (`--no-promote`)."""
        return self.decision.outcome == "promote" and self.ending == "remove"

    @property
    def late(self) -> bool:
        """The complete record would not have promoted: a failure recorded after its
        interval was judged."""
        return self.decision.outcome == "promote" and self.audit.outcome != "promote"

    @property
    def exit_code(self) -> int:
        code = exit_code(self.decision.outcome, self.live.outcome, self.promote_failed)
        return 1 if self.late else code

    @property
    def word(self) -> str:
        if self.held_back:
            return {0: "FIT TO PROMOTE", 3: "FIT TO PROMOTE, UNPROVEN"}.get(
                self.exit_code, "FIT TO PROMOTE, STABLE FAILED")
        if self.decision.outcome == "promote":
            return "PROMOTED" if self.exit_code == 0 else (
                "PROMOTED, UNPROVEN" if self.exit_code == 3 else "PROMOTE FAILED")
        return {"abort": "ABORTED", "inconclusive": "INCONCLUSIVE"}[self.decision.outcome]

    def summary(self) -> str:
        """One line: what was decided and why, then how the live traffic fared."""
        line = f"{self.word}: {self.stable} -> {self.candidate}: {self.decision.reason}"
        if self.promote_failed:
            line += f"; the promote failed and was rolled back to {self.stable}: " \
                    f"{self.ending_error}"
        elif self.ending_error:
            line += f"; removing the canary failed: {self.ending_error}"
        if self.held_back:
            line += f"; not promoted (--no-promote): stable stays at {self.stable}"
        if self.late:
            line += (f"; but on the complete record the decision is {self.audit.outcome}: "
                     f"{self.audit.reason}")
        what = "promote rollout" if self.ending == "promote" else "stable side"
        return f"{line}; {what}: {self.live.summary}"
