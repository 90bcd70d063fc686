"""The canary on a real cluster: issue #8's five runs, each decided for its own reason.

Each case is a whole canary run through the CLI's start-up path on the
session's cluster (kept): stable 1.0.0 deployed by the Pulumi program, live
Locust traffic through 127.0.0.1 → NodePort, the canary section (baseline
1.0.0 + the candidate), three judged intervals with the labelled hold-out sent
to both track Services, then the promote or the removal, judged as `verify`
judges. Default settings throughout. Whatever the decision, no stable-side
request may fail. The aborts run first, one after the other on the stable 1.0.0
the previous abort left (as a team's next canary starts on it); each promote is
taken down after it. The A/A run decides only (`--no-promote`): the promote it
would make is canary-promote's. The cases are harness/controls.py's canary controls, which
`make calibrate` repeats.
"""

from __future__ import annotations

import contextlib
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import calibrate, errors, startup
from harness.controls import CANARY_CONTROLS, FROM_VERSION, CanaryControl
from harness.deploy import ModelStack
from harness.settings import Settings

pytestmark = [pytest.mark.timeout(900), pytest.mark.canary]

ABORTS_FIRST = sorted(CANARY_CONTROLS, key=lambda c: c.expected == "pass")


@pytest.fixture(scope="module", autouse=True)
def nothing_left_after(model_stack: ModelStack, settings: Settings) -> Iterator[None]:
    """The last abort's stable goes with the module, whatever happened."""
    yield
    with contextlib.suppress(errors.HarnessError):
        model_stack.configured(settings).down()


@pytest.mark.parametrize("case", ABORTS_FIRST, ids=[c.name for c in ABORTS_FIRST])
def test_canary(case: CanaryControl, settings: Settings, model_stack: ModelStack,
                tmp_path: Path) -> None:
    kept = settings.replace("cluster", keep=True)
    # the session's stack (the pytest plugin's, which holds the cluster's run lock): a new
    # cluster maps the tracks' ports
    with startup.for_versions(kept, model_stack, (FROM_VERSION, case.candidate)) as ready:
        assert ready.cluster.track_ports
        result = calibrate.canary_run(kept, ready, case, tmp_path / "report", keep_stable=True)
    run = result.run
    assert run.decision.outcome == case.decision, run.summary()
    assert run.exit_code == (0 if case.expected == "pass" else 1), run.summary()
    assert not run.late, run.summary()
    first = run.live.checks[0]
    assert first.name.startswith("no failed requests") and first.outcome == "pass", \
        run.live.checks
    for text in case.says:
        assert text in run.decision.reason, run.decision.reason
    doc = json.loads(result.written.json.read_text())
    assert doc["outcome"] == case.decision and doc["exit_code"] == run.exit_code
    if case.metric:
        decided = {m["name"]: m["classification"] for m in doc["decision"]["metrics"]}
        assert decided.get(case.metric) == case.classification, doc["decision"]
    else:
        assert len(doc["intervals"]) == settings.canary.intervals
        assert (result.promote_report is not None) == case.promote
        assert run.ending == ("promote" if case.promote else "remove"), run.summary()
        assert all(c.outcome == "pass" for c in run.live.checks), run.live.checks
    for row in doc["intervals"]:
        assert row["accuracy"]["pairs"] == 54 and row["schema"]["differs"] == 0, row
        assert row["canary"]["requests"] >= 50 and row["baseline"]["requests"] >= 50, row
    suite = ET.parse(result.written.junit).getroot()
    assert bool(list(suite.iter("failure"))) == (case.decision == "abort")
    assert run.word in result.written.html.read_text()
