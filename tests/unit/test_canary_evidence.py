"""A canary run's pure parts: pods to tracks, requests to intervals, the live traffic's
verdict, exit codes, the report — on synthetic evidence, no cluster."""

from __future__ import annotations

import json
import random
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from harness import canary_evidence as ce
from harness import pairing, report
from harness.canary_judge import Decision, JudgeLimits, LatencyFigures
from harness.evidence import FinalState, Marks, PodLife, Request, Tally, WatchGap
from harness.settings import VerdictSettings
from harness.verdict import Outcome

STABLE_POD = "ml-model-5d8f9c7b4-abcde"
BASELINE_RS, CANARY_RS = "ml-model-baseline-6c7d8b9f5", "ml-model-canary-7f8d9c6b4"
BASELINE_POD, CANARY_POD = f"{BASELINE_RS}-xk2p9", f"{CANARY_RS}-q8w4z"
TRACKS = ce.Tracks({BASELINE_POD: ce.BASELINE, CANARY_POD: ce.CANARY},
                   {BASELINE_RS: ce.BASELINE, CANARY_RS: ce.CANARY})
SLO_MS = 1000.0
T0 = 1_800_000_000.0


def req(t: float, pod: str | None, latency: float = 5.0, status: int = 200,
        error: str | None = None, version: str = "1.0.0") -> Request:
    return Request(t, latency, status, error, version if pod else None, error is None,
                   "predict-new-connection", pod)


# -- how many canary pods -----------------------------------------------------------------


@pytest.mark.parametrize(("weight", "stable", "pods"), [
    (20, 3, 1), (30, 3, 2), (10, 3, 1), (40, 3, 6), (25, 3, 2), (20, 6, 2), (5, 10, 1),
    (33.3, 3, 3),
])
def test_the_weight_becomes_the_whole_number_of_pods_nearest_it(
        weight: float, stable: int, pods: int) -> None:
    assert ce.replicas_for(weight, stable) == pods
    nearest = min(range(1, 50), key=lambda k: (abs(ce.share(k, stable) - weight / 100), k))
    assert pods == nearest


def test_share_counts_the_baseline_too() -> None:
    assert ce.share(1, 3) == pytest.approx(0.2)
    assert ce.share(2, 3) == pytest.approx(2 / 7)


@pytest.mark.parametrize("weight", [0, 50, 60, -5])
def test_a_weight_the_split_cannot_give_is_refused(weight: float) -> None:
    with pytest.raises(ValueError, match="above 0 and below 50"):
        ce.replicas_for(weight, 3)


# -- which track answered ---------------------------------------------------------------


def test_a_pods_track_comes_from_its_label_else_its_replica_set_else_it_is_stable() -> None:
    assert TRACKS.of(CANARY_POD) == ce.CANARY
    assert TRACKS.of(f"{CANARY_RS}-r3plc") == ce.CANARY, "a pod that came and went"
    assert TRACKS.of(f"{BASELINE_RS}-n3w00") == ce.BASELINE
    assert TRACKS.of(STABLE_POD) == ce.STABLE
    assert TRACKS.of(None) == ce.UNKNOWN
    later = ce.Tracks({"other-canary-pod": ce.CANARY}, {})
    merged = TRACKS.merged(later)
    assert merged.of("other-canary-pod") == ce.CANARY and merged.of(CANARY_POD) == ce.CANARY


def test_a_failure_without_an_answer_goes_to_the_pod_it_is_laid_at() -> None:
    leaving = PodLife(CANARY_POD, "1.1.0", T0, T0 + 1, T0 + 50, T0 + 60)
    reset = req(T0 + 55, None, status=0, error="ConnectionResetError: reset")
    assert ce.track_of(reset, TRACKS, [leaving], SLO_MS) == ce.CANARY
    assert ce.track_of(replace(reset, t=T0 + 10), TRACKS, [leaving], SLO_MS) == ce.UNKNOWN


# -- intervals ------------------------------------------------------------------------


def test_windows_are_contiguous_and_must_ascend() -> None:
    assert ce.windows([0.0, 10.0, 25.0]) == [ce.Window(1, 0.0, 10.0), ce.Window(2, 10.0, 25.0)]
    assert ce.windows([5.0]) == []
    with pytest.raises(ValueError, match="ascend"):
        ce.windows([0.0, 10.0, 10.0])


def test_cut_keeps_the_windows_requests_by_track_and_adds_the_paired_ones() -> None:
    requests = [req(T0 + 1, STABLE_POD), req(T0 + 2, BASELINE_POD), req(T0 + 3, CANARY_POD),
                req(T0 + 4, None, status=0, error="timeout: no answer"),
                req(T0 + 10, CANARY_POD), req(T0 - 1, CANARY_POD)]
    pair = pairing.Pair(0, 1, answer(T0 + 5, BASELINE_POD), answer(T0 + 5, CANARY_POD))
    cut = ce.cut(requests, ce.Window(1, T0, T0 + 10), [pair], TRACKS, [], SLO_MS)
    assert {k: [r.t - T0 for r in v] for k, v in cut.live.items()} == {
        ce.STABLE: [1], ce.BASELINE: [2], ce.CANARY: [3], ce.UNKNOWN: [4]}
    assert [(r.t - T0, r.name) for r in cut.side(ce.CANARY)] == [
        (3, "predict-new-connection"), (5, "paired")]


# -- whole runs on synthetic evidence ------------------------------------------------------


def answer(t: float, pod: str, prediction: int = 1, version: str = "1.0.0",
           latency: float = 4.0) -> pairing.Answer:
    body = json.dumps({"predictions": [prediction], "model_version": version}).encode()
    return pairing.Answer(t, latency, 200, None, prediction, version, pod,
                          pairing.schema_text(body))


def evidence(index: int, canary_latency: float = 0.0, canary_errors: int = 0,
             canary_correct: float = 1.0, seed: int = 0) -> ce.IntervalEvidence:
    """One 30 s interval: 300 requests per side, 600 stable, 54 labelled pairs."""
    rng = random.Random(seed * 100 + index)
    start = T0 + 30 * (index - 1)
    requests = []
    for i in range(300):
        t = start + i * 0.1
        requests.append(req(t, BASELINE_POD, rng.uniform(2, 8)))
        failed = i < canary_errors
        requests.append(req(t + 0.01, CANARY_POD, rng.uniform(2, 8) + canary_latency,
                            status=500 if failed else 200,
                            error="HTTP 500: not a 2xx answer" if failed else None,
                            version="1.1.0"))
        requests += [req(t + 0.02, STABLE_POD, rng.uniform(2, 8)),
                     req(t + 0.03, STABLE_POD, rng.uniform(2, 8))]
    pairs = []
    for i in range(54):
        label = i % 3
        right = i < round(54 * canary_correct)
        pairs.append(pairing.Pair(i, label, answer(start + i * 0.5, BASELINE_POD, label),
                                  answer(start + i * 0.5, CANARY_POD,
                                         label if right else (label + 1) % 3, "1.1.0")))
    return ce.cut(requests, ce.Window(index, start, start + 30), pairs, TRACKS, [], SLO_MS)


def test_an_aa_run_is_promoted_after_every_interval() -> None:
    decision = ce.judge_all([evidence(i) for i in (1, 2, 3)], JudgeLimits(), planned=3)
    assert decision.outcome == "promote", decision.reason
    assert len(decision.intervals) == 3


def test_a_canary_answering_500_is_aborted_at_its_first_interval_for_errors() -> None:
    decision = ce.judge_all([evidence(1, canary_errors=5), evidence(2)], JudgeLimits(), 3)
    assert decision.outcome == "abort" and len(decision.intervals) == 1
    assert "critical" in decision.reason and "5 x HTTP 500" in decision.reason


def test_a_degraded_canary_is_aborted_for_accuracy_with_both_accuracies_and_mcnemar() -> None:
    decision = ce.judge_all([evidence(1, canary_correct=0.3)], JudgeLimits(), 3)
    assert decision.outcome == "abort"
    assert "canary 0.30 vs baseline 1.00 on 54 inputs, McNemar p=" in decision.reason


def test_a_canary_slower_by_20_ms_is_aborted_for_latency() -> None:
    decision = ce.judge_all([evidence(1, canary_latency=20.0)], JudgeLimits(), 3)
    assert decision.outcome == "abort" and "latency: canary slower" in decision.reason
    figures = decision.intervals[0].metric("latency").figures
    assert isinstance(figures, LatencyFigures) and figures.shift_ms is not None
    assert 18 < figures.shift_ms < 21, "the paired answers (equally fast) pull it a little"


def test_a_run_with_too_few_pairs_at_the_end_is_inconclusive_never_promoted() -> None:
    thin = evidence(3)
    thin = replace(thin, pairs=thin.pairs[:10],
                   live={**thin.live, ce.CANARY: thin.live[ce.CANARY][:20]})
    decision = ce.judge_all([evidence(1), evidence(2), thin], JudgeLimits(), 3)
    assert decision.outcome == "inconclusive", decision.reason


# -- the live traffic: the stable side ------------------------------------------------------


def test_the_stable_side_leaves_out_the_canarys_requests_only() -> None:
    requests = [req(T0, STABLE_POD), req(T0 + 1, CANARY_POD, status=500, error="HTTP 500: x"),
                req(T0 + 2, BASELINE_POD), req(T0 + 50, CANARY_POD)]
    kept, left = ce.stable_side(requests, TRACKS, [], SLO_MS)
    assert [r.pod for r in kept] == [STABLE_POD, BASELINE_POD] and left == 2
    kept, left = ce.stable_side(requests, TRACKS, [], SLO_MS, before=T0 + 10)
    assert [r.pod for r in kept] == [STABLE_POD, BASELINE_POD, CANARY_POD] and left == 1


def test_a_promote_replaces_the_stable_pods_only() -> None:
    lives = [PodLife(STABLE_POD, "1.0.0", T0, T0, T0 + 50, T0 + 60),
             PodLife("ml-model-8b7c6d5f4-fghij", "1.1.0", T0 + 40, T0 + 45, None, None),
             PodLife(BASELINE_POD, "1.0.0", T0, T0, T0 + 70, T0 + 80),
             PodLife(CANARY_POD, "1.1.0", T0, T0, T0 + 70, T0 + 80)]
    assert [p.name for p in ce.stable_lives(lives, TRACKS)] == [STABLE_POD,
                                                                "ml-model-8b7c6d5f4-fghij"]


def test_the_tally_loses_what_the_record_lost() -> None:
    left_out = [req(T0, CANARY_POD, status=500, error="HTTP 500: x"), req(T0, CANARY_POD)]
    tally = ce.tally_without(Tally(100, 3, 100), [], left_out)
    assert tally == Tally(98, 2, 98)
    assert ce.tally_without(None, [], left_out) is None


def abort_case(**changes: object) -> ce.LiveVerdict:
    requests = [req(T0 + i * 0.1, STABLE_POD) for i in range(1000)]
    args: dict[str, object] = {
        "requests": requests, "lives": [], "marks": Marks(T0 + 40, T0 + 50, T0 + 100),
        "final": FinalState(3, {"1.0.0": 3}), "gaps": [], "tally": Tally(1000, 0, 1000),
        "stable": "1.0.0", "stable_pods": 3, "limits": VerdictSettings()}
    args.update(changes)
    return ce.judge_abort(**args)  # type: ignore[arg-type]


def test_an_abort_with_a_clean_stable_side_passes() -> None:
    live = abort_case()
    assert live.outcome == "pass", live.checks
    assert live.summary == "PASS: 0 of 1000 stable-side requests failed"


def test_an_abort_fails_on_any_stable_side_failure() -> None:
    requests = [req(T0 + i * 0.1, STABLE_POD) for i in range(1000)]
    requests[500] = req(requests[500].t, STABLE_POD, status=503, error="HTTP 503: x")
    live = abort_case(requests=requests, tally=Tally(1000, 1, 1000))
    assert live.outcome == "fail"
    assert live.summary.startswith("FAIL: 1 of 1000 stable-side requests failed; 1 of 1000 "
                                   "failed: 1 x HTTP 503")


@pytest.mark.parametrize(("changes", "outcome", "says"), [
    ({"final": FinalState(4, {"1.0.0": 3, "1.1.0": 1})}, "fail", "expected 3 of 1.0.0"),
    ({"marks": Marks(T0 + 40, None, T0 + 100, "timed out")}, "fail", "removing the canary "
                                                                        "failed: timed out"),
    ({"marks": Marks(T0 + 1, T0 + 99.95, T0 + 100)}, "inconclusive", "requests before it"),
    ({"tally": Tally(1001, 0, 1001)}, "inconclusive", "Locust made 1001"),
    ({"gaps": [WatchGap("Pod", T0 + 45, T0 + 47, "reset")]}, "inconclusive", "Pod watch down"),
])
def test_an_abort_is_judged_on_its_end_state_and_its_evidence(
        changes: dict[str, object], outcome: str, says: str) -> None:
    live = abort_case(**changes)
    assert live.outcome == outcome
    assert says in " ".join(c.detail for c in live.checks)


# -- how it ends ------------------------------------------------------------------------


@pytest.mark.parametrize(("decision", "live", "promote_failed", "code"), [
    ("promote", "pass", False, 0), ("promote", "fail", False, 1),
    ("promote", "inconclusive", False, 3), ("promote", "pass", True, 1),
    ("abort", "pass", False, 1), ("abort", "fail", False, 1),
    ("inconclusive", "pass", False, 3), ("inconclusive", "inconclusive", False, 3),
    ("inconclusive", "fail", False, 1),
])
def test_exit_codes(decision: str, live: str, promote_failed: bool, code: int) -> None:
    assert ce.exit_code(decision, live, promote_failed) == code  # type: ignore[arg-type]


def a_run(items: Sequence[ce.IntervalEvidence], ending: str = "promote",
          live: Outcome = "pass", ending_error: str | None = None,
          audit: Decision | None = None) -> ce.CanaryRun:
    limits = JudgeLimits()
    decision = ce.judge_all(items, limits, 3)
    verdict = ce.LiveVerdict(live, (), f"{live.upper()}: 9000 requests, 0 failed")
    return ce.CanaryRun(
        "1.0.0", "1.1.0", 3, 1, limits, tuple(items), decision, audit or decision, ending,
        ending_error, verdict, (12, 0),
        ce.Times(T0 - 20, T0, T0 + 12, T0 + 95, T0 + 110, T0 + 130))


def test_a_promoted_run_says_so_in_one_line_and_exits_0() -> None:
    run = a_run([evidence(i) for i in (1, 2, 3)])
    assert (run.exit_code, run.word) == (0, "PROMOTED")
    assert run.summary().startswith("PROMOTED: 1.0.0 -> 1.1.0: promote: the final interval 3 "
                                    "scored 100")
    assert run.summary().endswith("; promote rollout: PASS: 9000 requests, 0 failed")


def test_a_promote_held_back_by_no_promote_says_fit_and_exits_as_the_stable_side_did(
        ) -> None:
    run = a_run([evidence(i) for i in (1, 2, 3)], ending="remove")
    assert run.held_back and (run.exit_code, run.word) == (0, "FIT TO PROMOTE")
    assert run.summary() == (
        f"FIT TO PROMOTE: 1.0.0 -> 1.1.0: {run.decision.reason}; not promoted "
        "(--no-promote): stable stays at 1.0.0; stable side: PASS: 9000 requests, 0 failed")
    unproven = a_run([evidence(i) for i in (1, 2, 3)], ending="remove", live="inconclusive")
    assert (unproven.exit_code, unproven.word) == (3, "FIT TO PROMOTE, UNPROVEN")
    failed = a_run([evidence(i) for i in (1, 2, 3)], ending="remove", live="fail")
    assert (failed.exit_code, failed.word) == (1, "FIT TO PROMOTE, STABLE FAILED")
    aborted = a_run([evidence(1, canary_errors=1)], ending="remove")
    assert not aborted.held_back and aborted.word == "ABORTED"


def test_a_failed_promote_is_exit_1_with_a_clear_line() -> None:
    run = a_run([evidence(i) for i in (1, 2, 3)], live="fail",
                ending_error="[ProgressDeadlineExceeded] ...")
    assert (run.exit_code, run.word) == (1, "PROMOTE FAILED")
    assert "the promote failed and was rolled back to 1.0.0: [ProgressDeadlineExceeded]" \
        in run.summary()


def test_a_promote_the_complete_record_would_not_have_made_is_exit_1() -> None:
    items = [evidence(i) for i in (1, 2, 3)]
    audit = ce.judge_all([evidence(1, canary_errors=1), *items[1:]], JudgeLimits(), 3)
    run = a_run(items, audit=audit)
    assert run.late and run.exit_code == 1
    assert "on the complete record the decision is abort" in run.summary()


# -- the report -----------------------------------------------------------------------


def test_the_canary_report_tells_each_interval_and_what_decided(tmp_path: Path) -> None:
    run = a_run([evidence(1, canary_correct=0.3)], ending="remove")
    written = report.write_canary(tmp_path, run)
    doc = json.loads(written.json.read_text())
    assert (doc["kind"], doc["outcome"], doc["exit_code"]) == ("canary", "abort", 1)
    assert doc["decision"]["interval"] == 1
    (decisive,) = doc["decision"]["metrics"]
    assert (decisive["name"], decisive["classification"]) == ("accuracy", "low")
    assert "McNemar p=" in decisive["detail"]
    (row,) = doc["intervals"]
    assert row["canary"]["requests"] == 300 + 54 and row["baseline"]["requests"] == 300 + 54
    assert row["accuracy"]["canary"] == pytest.approx(16 / 54)
    assert row["accuracy"]["baseline"] == 1.0 and row["accuracy"]["mcnemar_p"] < 1e-6
    assert row["metrics"] == {"errors": "pass", "latency": "pass", "accuracy": "low"}
    assert row["stable_live"] == {"requests": 600, "failed": 0}
    assert row["schema"] == {"compared": 54, "differs": 0, "first_difference": None}
    for key in ("p50_ms", "p99_ms"):
        assert row["canary"][key] is not None and row["baseline"][key] is not None
    assert row["latency"]["shift_low_ms"] <= row["latency"]["shift_ms"] \
        <= row["latency"]["shift_high_ms"]
    assert (row["start_s"], row["end_s"]) == (0.0, 30.0)
    suite = ET.parse(written.junit).getroot().find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures")) == ("2", "2")
    page = written.html.read_text()
    assert "<h1>ABORTED</h1>" in page and "McNemar p" in page and "Decided at interval 1" in page


def test_the_report_marks_a_decision_the_complete_record_would_not_make(tmp_path: Path) -> None:
    items = [evidence(i) for i in (1, 2, 3)]
    audit = ce.judge_all([evidence(1, canary_errors=1), *items[1:]], JudgeLimits(), 3)
    page = report.write_canary(tmp_path, a_run(items, audit=audit)).html.read_text()
    assert "On the complete record the decision would be abort" in page
    assert 'href="promote/report.html"' in page
