"""The canary on a real cluster: issue #8's five runs, each decided for its own reason.

Each case is a whole canary run through the CLI's start-up path on the
session's cluster (kept): stable 1.0.0 deployed by the Pulumi program, live
Locust traffic through 127.0.0.1 → NodePort, the canary section (baseline
1.0.0 + the candidate), three judged intervals with the labelled hold-out sent
to both track Services, then the promote or the removal, judged as `verify`
judges. Default settings throughout. Whatever the decision, no stable-side
request may fail. The stack is taken down after each case.
"""

from __future__ import annotations

import contextlib
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import canary, errors, startup
from harness.deploy import ModelStack
from harness.settings import Settings

pytestmark = pytest.mark.timeout(900)


@dataclass(frozen=True)
class Case:
    candidate: str
    decision: str
    exit_code: int
    metric: str | None = None
    """The metric that must have decided an abort, and how it classified."""
    classification: str | None = None
    says: tuple[str, ...] = ()
    """Texts the decision's reason must hold."""


CASES = {
    "promote": Case("1.1.0", "promote", 0),
    "flaky": Case("1.1.0-flaky", "abort", 1, "errors", "high", ("critical", "HTTP 500")),
    "degraded": Case("1.1.0-degraded", "abort", 1, "accuracy", "low",
                     ("baseline 1.00", "McNemar p=")),
    "slow": Case("1.1.0-slow", "abort", 1, "latency", "high", ("canary slower",)),
    "aa": Case("1.0.0-rebuilt", "promote", 0),
}


@pytest.mark.parametrize("name", list(CASES))
def test_canary(name: str, settings: Settings, model_stack: ModelStack, tmp_path: Path) -> None:
    case = CASES[name]
    kept = settings.replace("cluster", keep=True).replace(
        "canary", stable="1.0.0", candidate=case.candidate).replace(
        "gate", report_dir=tmp_path / "report")
    # the session's stack (the pytest plugin's, which holds the cluster's run lock): a new
    # cluster maps the tracks' ports
    with startup.for_versions(kept, model_stack, ("1.0.0", case.candidate)) as ready:
        assert ready.cluster.track_ports
        try:
            result = canary.run(kept, ready)
        finally:  # the next case starts from nothing
            with contextlib.suppress(errors.HarnessError):
                ready.stack.configured(kept).down()
    run = result.run
    assert run.decision.outcome == case.decision, run.summary()
    assert run.exit_code == case.exit_code, run.summary()
    assert not run.late, run.summary()
    first = run.live.checks[0]
    assert first.name.startswith("no failed requests") and first.outcome == "pass", \
        run.live.checks
    for text in case.says:
        assert text in run.decision.reason, run.decision.reason
    doc = json.loads(result.written.json.read_text())
    assert doc["outcome"] == case.decision and doc["exit_code"] == case.exit_code
    if case.metric:
        decided = {m["name"]: m["classification"] for m in doc["decision"]["metrics"]}
        assert decided.get(case.metric) == case.classification, doc["decision"]
    else:
        assert len(doc["intervals"]) == kept.canary.intervals
        assert result.promote_report is not None
        assert all(c.outcome == "pass" for c in run.live.checks), run.live.checks
    for row in doc["intervals"]:
        assert row["accuracy"]["pairs"] == 54 and row["schema"]["differs"] == 0, row
        assert row["canary"]["requests"] >= 50 and row["baseline"]["requests"] >= 50, row
    suite = ET.parse(result.written.junit).getroot()
    assert bool(list(suite.iter("failure"))) == (case.decision == "abort")
    assert run.word in result.written.html.read_text()
