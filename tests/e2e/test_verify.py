"""The gate on a real cluster: it passes the good rollouts and fails every negative control.

Each case is a full rehearsal — deploy the old version with the Pulumi
program, Locust traffic through 127.0.0.1 → NodePort → pods, the upgrade,
the verdict on every request — so each case's outcome is the product's
answer, not a simulation of it. The cases are harness/controls.py, run once
each with the gate's default settings: the traffic, the timings and the
thresholds a user gets from `make verify`. `make calibrate` repeats them.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness import calibrate, controls, startup
from harness import cluster as clusters
from harness.settings import Settings

pytestmark = pytest.mark.timeout(600)

JUDGED = [c for c in controls.CONTROLS if c.expected != "measure"]


@pytest.fixture(params=[c.name for c in JUDGED])
def control(request: pytest.FixtureRequest) -> controls.Control:
    return controls.BY_NAME[str(request.param)]


def test_gate(control: controls.Control, settings: Settings, cluster: clusters.Cluster,
              tmp_path: Path):
    """Through the CLI's own start-up path, on the session's cluster (kept)."""
    defaults = Settings()
    assert (settings.traffic, settings.gate, settings.verdict) == (
        defaults.traffic, defaults.gate, defaults.verdict), "controls run at the defaults"
    kept = settings.replace("cluster", keep=True)
    with startup.prepared(kept, (controls.FROM_VERSION, control.to_version)) as ready:
        assert ready.cluster.name == cluster.name
        result = calibrate.rehearse(kept, ready, control, tmp_path / "report")
    verdict = result.verdict
    checks = {c.name: c for c in verdict.checks}
    assert verdict.outcome == control.expected, verdict.checks
    if control.failed_requests:
        assert verdict.figures.failures > 0
    elif control.expected == "pass" or control.name == "never-ready":
        assert verdict.figures.failures == 0, verdict.figures.errors
    for prefix in control.broken:
        assert any(n.startswith(prefix) and c.outcome == "fail" for n, c in checks.items())
    if control.expected == "pass":
        assert verdict.figures.by_version.keys() == {"1.0.0", control.to_version}
        assert verdict.figures.replaced_pods == settings.deploy.replicas
        assert all(c.outcome == "pass" for c in verdict.checks), verdict.checks
    if control.name == "never-ready":
        assert verdict.marks.rolled_back and verdict.marks.finished is None

    document = json.loads(result.written.json.read_text())
    assert document["outcome"] == control.expected
    suite = ET.parse(result.written.junit).getroot()
    failures = suite.iter("failure")
    assert (control.expected == "pass") == (next(failures, None) is None)
    assert control.expected.upper() in result.written.html.read_text()
