"""Why a request failed, and which pod it is laid at: the explanation a FAIL owes its reader.

A verdict that only counts failures sends a person to the logs. Each failed
request gets a cause a person can act on — refused, reset, connection
closed, unreachable, timeout, slow, queued, HTTP 5xx, bad body — and a pod: the one
that answered (its X-Pod-Name), else the pod whose exit or start was under way
when the request began, which is where a request with no answer almost always died.

"queued" is a request whose answer came within the SLO but whose client sent it
late, still waiting for an earlier slow answer: latency runs from the intended
send time (no coordinated omission), so the client did wait too long, but the
pod that answered it is not the one to blame — it is laid at no pod.
Pure functions over the evidence, like the verdict they serve.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from harness.evidence import PodLife, Request

EXIT_MARGIN_SECONDS = 2.0
"""A request that starts this long after a pod's deletion can still be routed to it:
kube-proxy on the node applies the endpoint removal a moment later."""

START_MARGIN_SECONDS = 2.0
"""Likewise around a new pod's first readiness."""


def cause(request: Request, slo_ms: float) -> str | None:
    """The failure's cause in a word or two; None for a request that did not fail."""
    if not request.ok:
        error = request.error or ""
        if error.startswith("bad body") or "bad body" in error[:40]:
            return "bad body"
        if request.status:
            return f"HTTP {request.status}"
        lowered = error.lower()
        for words, name in (
            (("requestcut",), "cut at stop"),
            (("refused",), "refused"),
            (("no route", "unreachable"), "unreachable"),
            (("reset",), "reset"),
            (("timeout", "timed out"), "timeout"),
            (("closed", "disconnected", "incomplete", "badstatusline", "eof", "broken pipe"),
             "connection closed"),
        ):
            if any(word in lowered for word in words):
                return name
        return "no response"
    if request.latency_ms > slo_ms:
        return "slow" if request.latency_ms - request.lag_ms > slo_ms else "queued"
    return None


@dataclass(frozen=True)
class Attribution:
    """Failures of one cause laid at one pod."""

    cause: str
    pod: str | None
    """The pod, or None when neither an answer nor a pod's exit or start explains it."""
    how: str
    """answered: the pod's own header; exiting / starting: it was on its way out or in;
    queued: sent late behind an earlier slow answer (no pod); unknown."""
    count: int
    first: float
    """The first such failure's start, epoch seconds."""


def attribute(failed: Sequence[tuple[Request, str]],
              lives: Sequence[PodLife]) -> list[Attribution]:
    """(request, cause) pairs grouped by cause and pod, most frequent first."""
    groups: Counter[tuple[str, str | None, str]] = Counter()
    first: dict[tuple[str, str | None, str], float] = {}
    for request, why in failed:
        pod, how = (None, "queued") if why == "queued" else _pod_of(request, lives)
        key = (why, pod, how)
        groups[key] += 1
        first.setdefault(key, request.t)
    return [Attribution(why, pod, how, n, first[(why, pod, how)])
            for (why, pod, how), n in groups.most_common()]


def _pod_of(request: Request, lives: Sequence[PodLife]) -> tuple[str | None, str]:
    if request.pod:
        return request.pod, "answered"
    exiting = [p for p in lives if p.terminating_at is not None
               and p.terminating_at <= request.t
               <= (p.gone_at or p.terminating_at) + EXIT_MARGIN_SECONDS]
    if exiting:
        return min(exiting, key=lambda p: p.terminating_at or 0.0).name, "exiting"
    starting = [p for p in lives if p.created <= request.t
                <= (p.ready_at or p.created) + START_MARGIN_SECONDS]
    if starting:
        return starting[0].name, "starting"
    return None, "unknown"


def story(attributions: Sequence[Attribution]) -> str:
    """One clause for the summary line: what broke and when, e.g.
    "12 x connection closed as old pods exited"."""
    parts = []
    for how, phrase in (("exiting", "as old pods exited"), ("starting", "as new pods started"),
                        ("answered", "from the pods that answered them"),
                        ("queued", "behind slow answers"), ("unknown", "")):
        by_cause: Counter[str] = Counter()
        for a in attributions:
            if a.how == how:
                by_cause[a.cause] += a.count
        if by_cause:
            what = ", ".join(f"{n} x {why}" for why, n in by_cause.most_common(3))
            parts.append(f"{what} {phrase}".rstrip())
    return "; ".join(parts)
