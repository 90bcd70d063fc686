"""The controls: rollouts whose right verdict is known, to show the gate tells them apart.

A gate shown only to pass proves nothing. Each control is a real rollout of
the bundled model — a bad chart setting or a misbehaving build — with the
verdict a sound gate must give. They run with the gate's default settings
(traffic, thresholds): a control that fails only under a special load proves
the load, not the gate users run. The canary has its own: candidates whose
right decision (promote or abort) is known, each for one metric, and an A/A
run whose abort would be a false alarm; they run with the canary's default
analysis. `make test` runs each control once, the canary's included;
`calibrate` runs each N times and reports the rate with its confidence
interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Expected = Literal["pass", "fail", "inconclusive", "measure"]


@dataclass(frozen=True)
class Control:
    name: str
    to_version: str
    expected: Expected
    """The verdict a sound gate gives; "measure": no right answer is claimed, the rate
    is reported (a hazard whose size depends on the cluster)."""
    why: str
    values: Mapping[str, Any] = field(default_factory=dict)
    """Chart values for both versions (--set)."""
    rollout_timeout: int | None = None
    """Overrides the default when the control is meant to stall."""
    failed_requests: bool = False
    """A FAIL that must come from failed requests (not from the rollout's end state)."""
    broken: tuple[str, ...] = ()
    """Names (prefixes) of the checks that must give the expected outcome."""
    causes: frozenset[str] = frozenset()
    """When given, every failed request's cause is one of these (harness/causes.py)."""
    blamed: Literal["old", "new"] | None = None
    """When given, every failure laid at a pod is laid at a pod of this version."""
    traffic: Mapping[str, Any] = field(default_factory=dict)
    """Traffic settings changed from the defaults; only for controls of the load itself."""


FROM_VERSION = "1.0.0"

CONTROLS: tuple[Control, ...] = (
    Control("rolling-update", "1.1.0", "pass", "the chart as shipped: drain, preStop, probes"),
    Control("slow-start", "1.1.0-slow-start", "pass",
            "a version slow to become ready: readiness holds traffic back until it is"),
    Control("drain-off", "1.1.0", "fail",
            "no preStop hook and an abrupt exit on SIGTERM: connections are cut",
            values={"gracefulDrain": {"enabled": False}}, failed_requests=True,
            broken=("no failed requests",)),
    Control("recreate", "1.1.0", "fail", "the Recreate strategy: every pod goes at once",
            values={"strategy": {"type": "Recreate"}}, failed_requests=True,
            broken=("no failed requests",)),
    Control("flaky", "1.1.0-flaky", "fail", "a version answering 500 to some inputs",
            failed_requests=True, broken=("no failed requests",),
            causes=frozenset({"HTTP 500"}), blamed="new"),
    Control("stall", "1.1.0-stall", "fail",
            "a version whose answers to some inputs stall past the client's latency SLO",
            failed_requests=True, broken=("no failed requests",),
            causes=frozenset({"slow", "queued"}), blamed="new"),
    Control("bad-body", "1.1.0-bad-body", "fail",
            "a version answering some inputs 200 with no prediction in the body",
            failed_requests=True, broken=("no failed requests",),
            causes=frozenset({"bad body"}), blamed="new"),
    Control("readiness-off", "1.1.0-slow-start", "fail",
            "a slow-starting version with its readiness probe off: traffic reaches it "
            "before it can answer", values={"probes": {"readiness": {"enabled": False}}},
            failed_requests=True, broken=("no failed requests",)),
    Control("never-ready", "1.1.0-never-ready", "fail",
            "a version that never gets ready: the rollout stalls and is rolled back",
            values={"progressDeadlineSeconds": 20}, rollout_timeout=60,
            broken=("rollout finished",)),
    Control("keep-alive-only", "1.1.0", "inconclusive",
            "the shipped chart under keep-alive clients alone: no new connection meets an "
            "exiting pod, so a clean run proves nothing and must not pass",
            traffic={"churn_users": 0}, broken=("the traffic could have seen a fault",)),
    Control("no-prestop", "1.1.0", "measure",
            "graceful drain on SIGTERM but no preStop hook: endpoint removal races the exit",
            values={"gracefulDrain": {"preStop": False}}),
)



@dataclass(frozen=True)
class CanaryControl:
    """A canary run (harness/canary.py) of a candidate beside stable FROM_VERSION, whose
    right decision is known; expected "pass" is a promote, "fail" an abort."""

    name: str
    candidate: str
    expected: Literal["pass", "fail"]
    why: str
    metric: str | None = None
    """The metric that must decide an abort, and how it must classify."""
    classification: str | None = None
    says: tuple[str, ...] = ()
    """Texts the decision's reason must hold."""
    promote: bool = True
    """Whether a promote decision is carried out; False decides only (`--no-promote`),
    for a control about the decision whose promote another control already shows."""

    @property
    def to_version(self) -> str:
        return self.candidate

    @property
    def decision(self) -> str:
        return "promote" if self.expected == "pass" else "abort"


CANARY_CONTROLS: tuple[CanaryControl, ...] = (
    CanaryControl("canary-promote", "1.1.0", "pass", "the next version, as good and as fast"),
    CanaryControl("canary-flaky", "1.1.0-flaky", "fail", "a candidate answering 500 to some "
                  "inputs: any failed canary request is critical", "errors", "high",
                  ("critical", "HTTP 500")),
    CanaryControl("canary-degraded", "1.1.0-degraded", "fail", "a worse model that serves "
                  "without an error: only the paired accuracy check sees it", "accuracy", "low",
                  ("baseline 1.00", "McNemar p=")),
    CanaryControl("canary-slow", "1.1.0-slow", "fail", "a candidate 20 ms slower on every "
                  "prediction, within the SLO: only the latency comparison sees it", "latency",
                  "high", ("canary slower",)),
    CanaryControl("canary-aa", "1.0.0-rebuilt", "pass", "A/A: the stable build under another "
                  "tag; an abort is a false alarm (decided only: canary-promote shows the "
                  "promote)", promote=False),
)

AnyControl = Control | CanaryControl

EVERY: tuple[AnyControl, ...] = (*CONTROLS, *CANARY_CONTROLS)

BY_NAME: dict[str, AnyControl] = {control.name: control for control in EVERY}


def named(names: str) -> tuple[AnyControl, ...]:
    """Controls from a comma-separated list, in table order: "all" for every one, "gate"
    for the rollout controls, "canary" for the canary's."""
    from harness import errors

    groups: dict[str, tuple[AnyControl, ...]] = {
        "all": EVERY, "gate": CONTROLS, "canary": CANARY_CONTROLS}
    if names in groups:
        return groups[names]
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in BY_NAME]
    if unknown or not wanted:
        raise errors.UsageError(f"no control named {', '.join(unknown) or repr(names)}; "
                                f"controls: {', '.join(BY_NAME)} (or all, gate, canary)")
    return tuple(c for c in groups["all"] if c.name in wanted)
