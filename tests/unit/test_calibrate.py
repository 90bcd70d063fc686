"""Calibration's arithmetic and its table, without a cluster."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness import calibrate, controls, errors
from harness.settings import Settings


@pytest.mark.parametrize(("hits", "n", "lo", "hi"), [
    (10, 10, 0.6915, 1.0),      # 10/10 still leaves a miss rate up to 31 %
    (0, 10, 0.0, 0.3085),
    (5, 10, 0.1871, 0.8129),
    (29, 30, 0.8278, 0.9992),
])
def test_clopper_pearson_matches_the_published_values(hits: int, n: int, lo: float, hi: float):
    got = calibrate.clopper_pearson(hits, n)
    assert got == pytest.approx((lo, hi), abs=1e-4)


def run(outcome: str, failures: int = 0) -> calibrate.Run:
    return calibrate.Run(outcome, 6000, failures, 70.0, f"{outcome.upper()}: ...")


def test_a_row_counts_the_right_verdicts_and_the_smallest_margin():
    row = calibrate.Row(controls.BY_NAME["drain-off"],
                        (run("fail", 31), run("fail", 12), run("pass"), run("fail", 40)))
    f = row.figures()
    assert row.hits == 3
    assert f["verdicts"] == {"fail": 3, "pass": 1}
    assert f["min_failed_requests"] == 0 and f["median_failed_requests"] == 21.5
    table = calibrate.table([row])
    assert table.splitlines()[0].startswith("control")
    assert "drain-off  fail      fail 3 pass 1  3/4 [0.19, 0.99]" in table


def test_a_pass_control_counts_passes():
    row = calibrate.Row(controls.BY_NAME["rolling-update"], (run("pass"), run("inconclusive")))
    assert row.hits == 1


def test_controls_are_chosen_by_name_in_table_order():
    chosen = controls.named("flaky,drain-off")
    assert [c.name for c in chosen] == ["drain-off", "flaky"]
    assert controls.named("all") == (*controls.CONTROLS, *controls.CANARY_CONTROLS)
    assert controls.named("gate") == controls.CONTROLS
    assert [c.name for c in controls.named("canary")] == [
        "canary-promote", "canary-flaky", "canary-degraded", "canary-slow", "canary-aa"]
    assert [c.name for c in controls.named("canary-aa,rolling-update")] == [
        "rolling-update", "canary-aa"]
    with pytest.raises(errors.UsageError, match="no control named nope; controls: "):
        controls.named("nope")


def test_a_control_runs_at_the_defaults_but_for_its_versions_values_and_load(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Only keep-alive-only changes the traffic; every run's stack is taken down after."""
    seen: list[Settings] = []
    downs: list[str] = []

    class Stack:
        def configured(self, settings: Settings) -> Any:
            return SimpleNamespace(down=lambda: downs.append(settings.gate.to_version))

    monkeypatch.setattr(calibrate.verify, "rehearse", lambda s, ready: seen.append(s))
    ready: Any = SimpleNamespace(stack=Stack())
    for name in ("keep-alive-only", "drain-off"):
        calibrate.rehearse(Settings(), ready, controls.BY_NAME[name], tmp_path / name)
    thin, drain = seen
    defaults = Settings()
    assert thin.traffic == dataclasses.replace(defaults.traffic, churn_users=0)
    assert drain.traffic == defaults.traffic and drain.verdict == defaults.verdict
    assert drain.deploy.values == {"gracefulDrain": {"enabled": False}}
    assert (drain.gate.from_version, drain.gate.to_version) == ("1.0.0", "1.1.0")
    assert drain.gate.report_dir == tmp_path / "drain-off"
    assert downs == ["1.1.0", "1.1.0"]


def test_every_control_names_checks_that_exist_and_causes_the_verdict_gives():
    from harness import verdict
    from harness.causes import cause
    from harness.evidence import FinalState, Marks, Request

    checks = verdict.judge([], [], verdict.Plan("1.0.0", "1.1.0", 1.0), Marks(1.0, 2.0, 3.0),
                           FinalState(2, {"1.1.0": 2}), [], None).checks
    names = {c.name for c in checks}
    given = {cause(Request(0, 1, 500, "HTTP 500", "1.1.0", False), 1000),
             cause(Request(0, 1500, 200, None, "1.1.0", True), 1000),
             cause(Request(0, 1500, 200, None, "1.1.0", True, lag_ms=1000), 1000),
             cause(Request(0, 1, 200, "bad body: 0 predictions", "1.1.0", False), 1000)}
    for control in controls.CONTROLS:
        for prefix in control.broken:
            assert any(n.startswith(prefix) for n in names), (control.name, prefix)
        assert control.causes <= given, control.name
        assert not control.traffic or control.expected != "pass", "a pass needs the defaults"


def _canary_result(code: int, canary_requests: list[Any]) -> Any:
    interval = SimpleNamespace(live={"canary": canary_requests, "baseline": []})
    run_ = SimpleNamespace(exit_code=code, intervals=(interval,), limits=SimpleNamespace(
        slo_ms=1000.0), summary=lambda: f"exit {code}")
    return SimpleNamespace(run=run_)


@pytest.mark.parametrize(("code", "outcome"), [(0, "pass"), (1, "fail"), (3, "inconclusive"),
                                               (2, "error")])
def test_a_canary_control_runs_the_canary_from_nothing_back_to_nothing(
        code: int, outcome: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Stable 1.0.0, the control's candidate, the canary's defaults; the stack goes after;
    the run's exit code is its verdict, and the canary's own failed requests are counted."""
    from harness.evidence import Request

    seen: list[Settings] = []
    downs: list[str] = []

    class Stack:
        def configured(self, settings: Settings) -> Any:
            return SimpleNamespace(down=lambda: downs.append(settings.canary.candidate))

    answers = [Request(0, 2, 200, None, "1.1.0-flaky", True),
               Request(1, 2, 500, "HTTP 500", "1.1.0-flaky", False)]

    def fake_run(settings: Settings, ready: Any) -> Any:
        seen.append(settings)
        return _canary_result(code, answers)

    monkeypatch.setattr(calibrate.canary, "run", fake_run)
    ready: Any = SimpleNamespace(stack=Stack())
    got = calibrate._run(Settings(), ready, controls.BY_NAME["canary-flaky"], tmp_path / "f")
    (used,) = seen
    assert (used.canary.stable, used.canary.candidate) == ("1.0.0", "1.1.0-flaky")
    assert used.canary == dataclasses.replace(Settings().canary, stable="1.0.0",
                                              candidate="1.1.0-flaky")
    assert used.gate.report_dir == tmp_path / "f"
    assert downs == ["1.1.0-flaky"]
    assert (got.outcome, got.requests, got.failures, got.summary) == (
        outcome, 2, 1, f"exit {code}")


def test_a_canary_row_counts_promotes_for_a_promote_control():
    row = calibrate.Row(controls.BY_NAME["canary-aa"], (run("pass"), run("fail"), run("pass")))
    assert row.hits == 2
    assert row.figures()["decision"] == "promote" and row.figures()["canary"] is True


@pytest.mark.parametrize(("decision", "taken_down"), [("abort", False), ("promote", True),
                                                      ("inconclusive", True)])
def test_keep_stable_leaves_only_what_an_abort_left(decision: str, taken_down: bool,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path):
    """The e2e's aborts run one after the other on the stable the last one left; a
    promote moved stable to the candidate, so it goes, as does any other end."""
    downs: list[str] = []
    ready: Any = SimpleNamespace(stack=SimpleNamespace(configured=lambda s: SimpleNamespace(
        down=lambda: downs.append(s.canary.candidate))))

    def fake_run(settings: Settings, ready: Any) -> Any:
        result = _canary_result(1, [])
        result.run.decision = SimpleNamespace(outcome=decision)
        return result

    monkeypatch.setattr(calibrate.canary, "run", fake_run)
    control = controls.BY_NAME["canary-flaky"]
    calibrate.canary_run(Settings(), ready, control, tmp_path, keep_stable=True)
    assert downs == (["1.1.0-flaky"] if taken_down else [])
    calibrate.canary_run(Settings(), ready, control, tmp_path)  # the default: always down
    assert downs[-1:] == ["1.1.0-flaky"]

    def broken(settings: Settings, ready: Any) -> Any:
        raise calibrate.errors.DeployError("the canary could not be deployed")

    monkeypatch.setattr(calibrate.canary, "run", broken)
    downs.clear()
    with pytest.raises(calibrate.errors.DeployError):
        calibrate.canary_run(Settings(), ready, control, tmp_path, keep_stable=True)
    assert downs == ["1.1.0-flaky"]
