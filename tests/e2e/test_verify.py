"""The gate on a real cluster: it passes the good rollouts and fails every negative control.

Each case is a full rehearsal — deploy the old version with the Pulumi
program, Locust traffic through 127.0.0.1 → NodePort → pods, the upgrade,
the verdict on every request — so each case's outcome is the product's
answer, not a simulation of it. The cases are harness/controls.py, run once
each with the gate's default settings: the traffic, the timings and the
thresholds a user gets from `make verify` (keep-alive-only alone changes the
load: it is the control of the load's own power). `make calibrate` repeats them.

Besides the outcome, each case checks the rule that decided it and the
explanation it gave: the cause of every failed request (HTTP 500, slow past
the SLO, bad body) and, for a bad build, that each is laid at one of its
pods. The good rollout's real
evidence is judged again with a few records removed, as if lost on the way:
Locust's own count must expose it.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest

from harness import controls, verify
from harness.pytest_plugin import Rollout
from harness.settings import Settings
from harness.verdict import judge

pytestmark = pytest.mark.timeout(600)

JUDGED = [c for c in controls.CONTROLS if c.expected != "measure"]


@pytest.fixture(params=[c.name for c in JUDGED])
def control(request: pytest.FixtureRequest) -> controls.Control:
    return controls.BY_NAME[str(request.param)]


def test_gate(control: controls.Control, settings: Settings,
              rollout: Callable[..., Rollout]):
    """Through the pytest plugin's `rollout`, as a team's suite runs it, on the session's
    cluster; the control's own chart values, rollout timeout and load changes only."""
    defaults = Settings()
    assert (settings.traffic, settings.gate, settings.verdict) == (
        defaults.traffic, defaults.gate, defaults.verdict), "controls run at the defaults"
    changes: dict[str, Any] = {"values": dict(control.values), **control.traffic}
    if control.rollout_timeout is not None:
        changes["rollout_timeout"] = control.rollout_timeout
    result = rollout(controls.FROM_VERSION, control.to_version, **changes).result
    verdict = result.verdict
    checks = {c.name: c for c in verdict.checks}
    assert verdict.outcome == control.expected, verdict.checks
    if control.failed_requests:
        assert verdict.figures.failures > 0
    elif control.expected in ("pass", "inconclusive") or control.name == "never-ready":
        assert verdict.figures.failures == 0, verdict.figures.errors
    for prefix in control.broken:
        assert any(n.startswith(prefix) and c.outcome == control.expected
                   for n, c in checks.items()), verdict.checks
    if control.expected == "inconclusive":
        assert all(c.outcome == "pass" for n, c in checks.items()
                   if not n.startswith(control.broken)), verdict.checks
    if control.causes:  # the control's own cause decides (a rare stray new-connection
        # failure can ride along: see the README's calibration, the good rollout's 1 in 10)
        own = sum(n for cause, n in verdict.figures.errors.items() if cause in control.causes)
        assert own >= 0.95 * verdict.figures.failures, verdict.figures.errors
    if control.blamed:
        version = {"old": controls.FROM_VERSION, "new": control.to_version}[control.blamed]
        of_pod = {life.name: life.version for life in result.evidence.lives}
        laid = [a for a in verdict.figures.attributions if a.pod and a.cause in control.causes]
        assert laid and all(of_pod.get(a.pod) == version for a in laid), (
            verdict.figures.attributions)
    if control.name == "rolling-update":
        lost_records_are_caught(result)
    if control.expected == "pass":
        assert verdict.figures.by_version.keys() == {"1.0.0", control.to_version}
        assert verdict.figures.replaced_pods == settings.deploy.replicas
        assert all(c.outcome == "pass" for c in verdict.checks), verdict.checks
    if control.name == "never-ready":
        assert verdict.marks.rolled_back and verdict.marks.finished is None

    document = json.loads(result.written.json.read_text())
    assert document["outcome"] == control.expected
    suite = ET.parse(result.written.junit).getroot()
    failures, errors = list(suite.iter("failure")), list(suite.iter("error"))
    assert bool(failures) == (control.expected == "fail")  # inconclusive: an error, not green
    assert bool(errors) or control.expected != "inconclusive"
    assert not errors or control.expected != "pass"
    assert control.expected.upper() in result.written.html.read_text()


def lost_records_are_caught(result: verify.Result) -> None:
    """The same real run, judged again without every 500th record: the reconciliation
    rule alone turns it inconclusive, naming the three counts."""
    ev, plan = result.evidence, result.verdict.plan
    again = judge(ev.requests, ev.lives, plan, ev.marks, ev.final, ev.gaps, ev.tally)
    assert again.outcome == result.verdict.outcome == "pass"
    kept = [r for i, r in enumerate(ev.requests) if i % 500 != 250]
    lost = len(ev.requests) - len(kept)
    assert ev.tally is not None and ev.tally.locust_requests == len(ev.requests)
    short = judge(kept, ev.lives, plan, ev.marks, ev.final, ev.gaps, ev.tally)
    assert short.outcome == "inconclusive"
    outcomes = {c.name: c for c in short.checks}
    check = outcomes.pop("every request Locust made is in the record")
    assert check.outcome == "inconclusive" and check.detail == (
        f"Locust made {len(ev.requests)} requests, its recorder wrote {len(ev.requests)}, "
        f"the record holds {len(ev.requests) - lost}"), check
    assert all(c.outcome == "pass" for c in outcomes.values()), short.checks
