"""The canary's flow with the cluster faked: the order of its `pulumi up`s, the intervals
it judges and where it stops, what it ends with, and its report — in a second or two.

What is faked is what needs a cluster: the stack (it records each `up` and its canary
section), the load (it "answers" on a clock from whatever the stack has deployed:
stable pods, and with a canary a baseline and a canary pod), the watch, the paired
checks, the API's track labels and final state. The pure parts run for real.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness import canary, errors, pairing
from harness import canary_evidence as ce
from harness.canary_judge import JudgeLimits
from harness.cluster import Cluster
from harness.deploy import ModelStack
from harness.evidence import FinalState, Request, Tally
from harness.settings import Settings
from harness.startup import Prepared

CANARY_RS, BASELINE_RS = "ml-model-canary-7f8d9c6b4", "ml-model-baseline-6c7d8b9f5"
PODS = {ce.STABLE: "ml-model-5d8f9c7b4-abcde", ce.BASELINE: f"{BASELINE_RS}-xk2p9",
        ce.CANARY: f"{CANARY_RS}-q8w4z"}
TICK = 0.002
"""Seconds between the fake load's requests to each pod."""


@dataclass
class FakeStack:
    """Records every `up`; what it deployed is what the fake load reaches."""

    fail: dict[str, str] = field(default_factory=dict)
    """"canary" / version -> the DeployError message of that up."""
    ups: list[tuple[str, str | None]] = field(default_factory=list)
    state: list[tuple[float, str, str | None]] = field(default_factory=list)
    """(since, stable version, canary version or None)."""

    def configured(self, settings: Settings) -> FakeStack:
        return self

    def up(self, version: str, values: Any = None, chart_repo: str | None = None,
           canary: Any = None) -> None:
        candidate = canary.version if canary is not None else None
        self.ups.append((version, candidate))
        key = "canary" if candidate else version
        if key in self.fail:
            raise errors.DeployError(self.fail[key])
        self.state.append((time.time(), version, candidate))

    up_or_roll_back = ModelStack.up_or_roll_back  # the real one, over the fake `up`

    def at(self, t: float) -> tuple[str, str | None]:
        now = ("", None)
        for since, version, candidate in self.state:
            if since <= t:
                now = (version, candidate)
        return now


class FakeLoad:
    """Requests every TICK to each deployed pod; a -flaky candidate answers 500."""

    def __init__(self, stack: FakeStack) -> None:
        self.stack = stack
        self.began = time.time()
        self.stopped: float | None = None

    def __enter__(self) -> FakeLoad:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def require_running(self) -> None:
        pass

    def progress_line(self) -> str:
        return "traffic: fake"

    def stop(self, judged: bool = True) -> None:
        self.stopped = self.stopped or time.time()

    def requests(self) -> list[Request]:
        end = self.stopped or time.time()
        out = []
        for i in range(int((end - self.began) / TICK)):
            t = self.began + i * TICK
            stable, candidate = self.stack.at(t)
            if not stable:
                continue
            out.append(Request(t, 3.0, 200, None, stable, True, "predict", PODS[ce.STABLE]))
            if candidate:
                out.append(Request(t, 3.0, 200, None, stable, True, "predict",
                                   PODS[ce.BASELINE]))
                flaky = candidate.endswith("-flaky") and i % 10 == 0
                out.append(Request(t, 3.0, 500 if flaky else 200,
                                   "HTTP 500: not a 2xx answer" if flaky else None, candidate,
                                   not flaky, "predict", PODS[ce.CANARY]))
        return out

    def tally(self) -> Tally:
        n = len(self.requests())
        return Tally(n, sum(not r.ok for r in self.requests()), n)


class FakeWatcher:
    def __init__(self, *args: object) -> None:
        pass

    def __enter__(self) -> FakeWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def events(self) -> list[Any]:
        return []

    def gaps(self) -> list[Any]:
        return []


def fake_send(rows: list[pairing.Labelled], baseline_url: str, canary_url: str,
              seconds: float, out: Path, *args: object, **kwargs: object) -> list[pairing.Pair]:
    time.sleep(seconds)
    body = json.dumps({"predictions": [0], "model_version": "v"}).encode()
    schema = pairing.schema_text(body)
    now = time.time()
    return [pairing.Pair(i, r.label,
                         pairing.Answer(now, 3.0, 200, None, r.label, "v", PODS[ce.BASELINE],
                                        schema),
                         pairing.Answer(now, 3.0, 200, None, r.label, "v", PODS[ce.CANARY],
                                        schema))
            for i, r in enumerate(rows)]


@pytest.fixture
def faked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[
        tuple[FakeStack, Prepared, Settings]]:
    stack = FakeStack()
    made = Cluster("c", tmp_path / "kubeconfig", 41000, "node:x", kind=None,
                   track_ports={ce.BASELINE: 41001, ce.CANARY: 41002})
    ready = Prepared(made, stack, None)  # type: ignore[arg-type]
    settings = Settings().replace("gate", baseline_seconds=0.05, settle_seconds=0.05,
                                  report_dir=tmp_path / "report")
    settings = settings.replace("canary", interval_seconds=0.25, intervals=3,
                                candidate="1.1.0")
    monkeypatch.setattr(canary, "RECORD_SETTLE_SECONDS", 0.0)
    monkeypatch.setattr(canary.traffic, "wait_answering", lambda *a, **k: None)
    monkeypatch.setattr(canary.config, "new_client_from_config", lambda path: None)
    monkeypatch.setattr(canary, "Watcher", FakeWatcher)
    monkeypatch.setattr(canary, "Traffic", lambda *a, **k: FakeLoad(stack))
    monkeypatch.setattr(canary.pairing, "send", fake_send)
    monkeypatch.setattr(canary, "read_tracks", lambda api, ns: ce.Tracks(
        {PODS[ce.BASELINE]: ce.BASELINE, PODS[ce.CANARY]: ce.CANARY},
        {BASELINE_RS: ce.BASELINE, CANARY_RS: ce.CANARY}))

    def final(api: object, namespace: str) -> FinalState:
        version, _ = stack.at(time.time())
        return FinalState(3, {version: 3})

    monkeypatch.setattr(canary, "final_state", final)
    yield stack, ready, settings


def test_a_good_canary_is_judged_every_interval_then_promoted(
        faked: tuple[FakeStack, Prepared, Settings]) -> None:
    stack, ready, settings = faked
    result = canary.run(settings, ready)
    assert stack.ups == [("1.0.0", None), ("1.0.0", "1.1.0"), ("1.1.0", None)]
    run = result.run
    assert run.decision.outcome == "promote" and len(run.intervals) == 3
    assert run.audit.outcome == "promote" and not run.late
    assert run.ending == "promote" and run.ending_error is None
    first = run.intervals[0]
    assert first.window.start == run.times.canary_started
    assert all(a.window.end == b.window.start for a, b in zip(run.intervals, run.intervals[1:],
                                                               strict=False))
    assert len(first.side(ce.CANARY)) > 54 and len(first.pairs) == 54
    assert result.promote_report is not None and result.promote_report.json.exists()
    # the fake watch sees no pods: the rollout's evidence is missing, never a pass
    assert run.live.outcome == "inconclusive" and run.exit_code == 3
    doc = json.loads(result.written.json.read_text())
    assert [row["index"] for row in doc["intervals"]] == [1, 2, 3]


def test_with_no_promote_a_good_canary_is_judged_then_removed_and_stable_stays(
        faked: tuple[FakeStack, Prepared, Settings]) -> None:
    stack, ready, settings = faked
    settings = settings.replace("canary", decide_only=True)
    settings = settings.replace("gate", settle_seconds=0.3)  # 50 requests after the removal
    result = canary.run(settings, ready)
    assert stack.ups == [("1.0.0", None), ("1.0.0", "1.1.0"), ("1.0.0", None)]
    run = result.run
    assert run.decision.outcome == "promote" and len(run.intervals) == 3
    assert run.ending == "remove" and run.held_back and not run.promote_failed
    assert result.promote_report is None
    assert run.live.outcome == "pass", run.live.checks  # the stable side, as after an abort
    assert (run.exit_code, run.word) == (0, "FIT TO PROMOTE")
    assert run.summary().endswith("stable stays at 1.0.0; stable side: " + run.live.summary)
    doc = json.loads(result.written.json.read_text())
    assert (doc["outcome"], doc["exit_code"], doc["ending"]["action"]) == (
        "promote", 0, "remove")


def test_no_promote_changes_nothing_after_an_abort(
        faked: tuple[FakeStack, Prepared, Settings]) -> None:
    stack, ready, settings = faked
    settings = settings.replace("canary", candidate="1.1.0-flaky", decide_only=True)
    run = canary.run(settings, ready).run
    assert stack.ups == [("1.0.0", None), ("1.0.0", "1.1.0-flaky"), ("1.0.0", None)]
    assert (run.exit_code, run.word, run.held_back) == (1, "ABORTED", False)


def test_a_flaky_canary_is_aborted_at_its_first_interval_and_removed(
        faked: tuple[FakeStack, Prepared, Settings]) -> None:
    stack, ready, settings = faked
    settings = settings.replace("canary", candidate="1.1.0-flaky")
    settings = settings.replace("gate", settle_seconds=0.3)  # 50 requests after the removal
    run = canary.run(settings, ready).run
    assert stack.ups == [("1.0.0", None), ("1.0.0", "1.1.0-flaky"), ("1.0.0", None)]
    assert run.decision.outcome == "abort" and len(run.intervals) == 1
    assert "HTTP 500" in run.decision.reason
    assert run.ending == "remove"
    assert run.live.outcome == "pass", run.live.checks
    assert run.live.summary.startswith("PASS: 0 of ")
    assert run.exit_code == 1 and run.word == "ABORTED"
    assert run.canary_outside[1] >= 0


def test_a_canary_that_cannot_be_deployed_is_an_abort_and_is_removed(
        faked: tuple[FakeStack, Prepared, Settings]) -> None:
    stack, ready, settings = faked
    stack.fail["canary"] = "[ProgressDeadlineExceeded] canary never ready"
    run = canary.run(settings, ready).run
    assert stack.ups == [("1.0.0", None), ("1.0.0", "1.1.0"), ("1.0.0", None)]
    assert run.decision.outcome == "abort" and run.intervals == ()
    assert "could not be deployed" in run.decision.reason and run.times.canary_ready is None
    assert run.exit_code == 1


def test_a_promote_that_fails_is_rolled_back_and_exits_1(
        faked: tuple[FakeStack, Prepared, Settings]) -> None:
    stack, ready, settings = faked
    stack.fail["1.1.0"] = "[ProgressDeadlineExceeded] new pods never ready"
    run = canary.run(settings, ready).run
    assert stack.ups == [("1.0.0", None), ("1.0.0", "1.1.0"), ("1.1.0", None), ("1.0.0", None)]
    assert run.decision.outcome == "promote" and run.promote_failed
    assert run.exit_code == 1 and run.word == "PROMOTE FAILED"
    assert "the promote failed and was rolled back to 1.0.0" in run.summary()


# -- settings ----------------------------------------------------------------------------


def test_the_canary_flags_default_to_the_judges_own_limits() -> None:
    assert canary.limits(Settings()) == JudgeLimits()
    chosen = Settings().replace("canary", confidence=0.95, pass_score=90.0)
    assert (canary.limits(chosen).confidence, canary.limits(chosen).pass_score) == (0.95, 90.0)


def test_a_plan_longer_than_the_loads_bound_is_refused_before_anything_is_made() -> None:
    canary.check(Settings())
    too_long = Settings().replace("canary", intervals=60)
    with pytest.raises(errors.UsageError, match="beyond the load's hard bound of 1800s"):
        canary.check(too_long)
