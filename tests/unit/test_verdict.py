"""The verdict's rules on hand-made evidence: each rule is shown to pass, fail or abstain."""

from __future__ import annotations

import dataclasses

import pytest

from harness.evidence import NEW_CONNECTION, FinalState, Marks, PodLife, Request, Tally, WatchGap
from harness.settings import VerdictSettings
from harness.verdict import Plan, judge, percentile

T0 = 1_000_000.0
"""The upgrade's start; the story below is told in seconds around it."""

PLAN = Plan("1.0.0", "1.1.0", rate=100.0)
MARKS = Marks(started=T0, finished=T0 + 20, ended=T0 + 40)
FINAL = FinalState(desired_replicas=3, ready_by_version={"1.1.0": 3})


def rolling_lives() -> list[PodLife]:
    """Three old pods replaced one by one between +2 s and +24 s."""
    old = [PodLife(f"old-{i}", "1.0.0", T0 - 60, T0 - 55, T0 + 2 + 7 * i, T0 + 10 + 7 * i)
           for i in range(3)]
    new = [PodLife(f"new-{i}", "1.1.0", T0 + 7 * i, T0 + 2 + 7 * i, None, None) for i in range(3)]
    return old + new


def traffic(start: float = -10, end: float = 40, rate: float = 100.0, switch: float = 12.0,
            latency: float = 5.0) -> list[Request]:
    """Steady successful requests, a third from new-connection clients; the new version
    answers from `switch` seconds on. No pod names: the power rule credits each pod its
    share."""
    step = 1 / rate
    count = int((end - start) * rate)
    return [Request(T0 + start + i * step, latency, 200, None,
                    "1.0.0" if start + i * step < switch else "1.1.0", True,
                    NEW_CONNECTION if i % 3 == 0 else "predict")
            for i in range(count)]


def decide(requests: list[Request], lives: list[PodLife], plan: Plan = PLAN, marks: Marks = MARKS,
           final: FinalState = FINAL, gaps: tuple[WatchGap, ...] | list[WatchGap] = (),
           tally: Tally | str | None = "matching"):
    """judge() with the evidence complete unless a test says otherwise."""
    if tally == "matching":
        tally = Tally(len(requests), sum(not r.ok for r in requests), len(requests))
    assert not isinstance(tally, str)
    return judge(requests, lives, plan, marks, final, gaps, tally)


def outcome_of(verdict, name: str) -> str:
    return next(c.outcome for c in verdict.checks if c.name.startswith(name))


def test_a_clean_rollout_passes_every_check():
    verdict = decide(traffic(), rolling_lives(), PLAN, MARKS, FINAL)
    assert verdict.outcome == "pass", verdict.checks
    assert all(c.outcome == "pass" for c in verdict.checks)
    f = verdict.figures
    assert f.failures == 0 and f.replaced_pods == 3 and f.completed == T0 + 24
    assert f.by_version == {"1.0.0": 2200, "1.1.0": 2800}
    assert f.longest_gap_seconds is not None and f.longest_gap_seconds <= 0.011
    assert verdict.summary().startswith("PASS: 5000 requests, 0 failed, 1.0.0 → 1.1.0")


def test_one_failed_request_fails_the_gate_and_is_reported_first():
    requests = traffic()
    requests[1500] = dataclasses.replace(requests[1500], status=0, ok=False, version=None,
                                         error="ConnectionResetError(104)")
    verdict = decide(requests, rolling_lives(), PLAN, MARKS, FINAL)
    assert verdict.outcome == "fail"
    assert outcome_of(verdict, "no failed requests") == "fail"
    assert verdict.figures.errors == {"reset": 1}
    assert verdict.first_failures[0]["at_seconds"] == pytest.approx(5.0)
    assert verdict.first_failures[0]["cause"] == "reset"
    # old-0 was terminating from +2 s: the request with no answer is laid at it
    assert verdict.checks[0].detail == (
        "1 of 5000 failed, the first +5.00s from the upgrade's start: 1 x reset as old pods "
        "exited; 1 reset at old-0 (exiting); the first said: ConnectionResetError(104)")
    assert verdict.summary() == ("FAIL: 1 of 5,000 requests failed: 1 x reset as old pods "
                                 "exited (1.0.0 → 1.1.0, 3 pods replaced)")


def test_http_errors_count_as_failures_with_their_status():
    requests = traffic()
    for i in range(3000, 3010):
        requests[i] = dataclasses.replace(requests[i], status=500, ok=False)
    verdict = decide(requests, rolling_lives(), PLAN, MARKS, FINAL)
    assert verdict.outcome == "fail" and verdict.figures.errors == {"HTTP 500": 10}


def test_old_version_answering_after_its_last_pod_is_gone_fails():
    requests = traffic(switch=30)  # old answers until +30 s, its pods were gone at +24 s
    verdict = decide(requests, rolling_lives(), PLAN, MARKS, FINAL)
    assert verdict.outcome == "fail"
    assert outcome_of(verdict, "both versions") == "fail"


def test_an_unexpected_version_fails():
    requests = traffic()
    requests[100] = dataclasses.replace(requests[100], version="0.9.0")
    assert outcome_of(decide(requests, rolling_lives(), PLAN, MARKS, FINAL),
                      "both versions") == "fail"


def test_a_failed_upgrade_that_was_rolled_back_fails():
    marks = Marks(T0, None, T0 + 40, "pulumi up of 1.1.0 failed: timed out", rolled_back=True)
    lives = [PodLife(f"old-{i}", "1.0.0", T0 - 60, T0 - 55, None, None) for i in range(3)]
    final = FinalState(3, {"1.0.0": 3})
    verdict = decide(traffic(switch=1e9), lives, PLAN, marks, final)
    assert verdict.outcome == "fail"
    detail = next(c.detail for c in verdict.checks if c.name.startswith("rollout finished"))
    assert "rolled back" in detail and "timed out" in detail


def test_final_state_not_all_on_the_new_version_fails():
    final = FinalState(3, {"1.1.0": 2, "1.0.0": 1})
    assert decide(traffic(), rolling_lives(), PLAN, MARKS, final).outcome == "fail"


def test_too_little_traffic_before_is_inconclusive_never_a_pass():
    verdict = decide(traffic(start=-0.2), rolling_lives(), PLAN, MARKS, FINAL)
    assert verdict.outcome == "inconclusive"
    assert "requests before the upgrade" in next(
        c.detail for c in verdict.checks if c.outcome == "inconclusive")


def test_a_gap_while_pods_are_replaced_is_inconclusive():
    requests = [r for r in traffic() if not T0 + 8 <= r.t <= T0 + 13]  # 5 s silence
    verdict = decide(requests, rolling_lives(), PLAN, MARKS, FINAL)
    assert verdict.outcome == "inconclusive"
    assert outcome_of(verdict, "traffic covered") == "inconclusive"


def test_a_rate_far_below_plan_is_inconclusive():
    verdict = decide(traffic(rate=20), rolling_lives(), PLAN, MARKS, FINAL)
    assert outcome_of(verdict, "traffic covered") == "inconclusive"


def test_no_pod_replaced_is_inconclusive():
    lives = [PodLife(f"new-{i}", "1.1.0", T0, T0 + 1, None, None) for i in range(3)]
    verdict = decide(traffic(switch=-100), lives, PLAN, MARKS, FINAL)
    assert verdict.outcome == "inconclusive"


def test_a_failure_outweighs_inconclusive_coverage():
    requests = traffic(start=-0.2)
    requests[10] = dataclasses.replace(requests[10], ok=False, status=502)
    verdict = decide(requests, rolling_lives(), PLAN, MARKS, FINAL)
    assert verdict.outcome == "fail"
    assert outcome_of(verdict, "traffic covered") == "inconclusive"
    # the summary names what decided the outcome, not every check that abstained
    assert verdict.summary() == ("FAIL: 1 of 4,020 requests failed: 1 x HTTP 502 "
                                 "(1.0.0 → 1.1.0, 3 pods replaced)")


def test_latency_beyond_its_budget_fails():
    requests = [dataclasses.replace(r, latency_ms=400.0) if T0 <= r.t <= T0 + 24 else r
                for r in traffic()]
    verdict = decide(requests, rolling_lives(), PLAN, MARKS, FINAL)
    assert outcome_of(verdict, "latency") == "fail"
    assert "budget 105.0 ms" in next(c.detail for c in verdict.checks if c.name.startswith("lat"))


def test_latency_within_budget_passes():
    requests = [dataclasses.replace(r, latency_ms=90.0) if T0 <= r.t <= T0 + 24 else r
                for r in traffic()]
    assert outcome_of(decide(requests, rolling_lives(), PLAN, MARKS, FINAL), "latency") == "pass"


def test_percentile_is_nearest_rank():
    assert percentile([], 99) is None
    assert percentile([5.0], 99) == 5.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0


def test_records_parse_from_the_recorder_format():
    line = {"t": 1.5, "latency_ms": 2, "status": 200, "error": None, "version": "1.0.0",
            "ok": True, "name": "predict"}
    assert Request.from_record(line) == Request(1.5, 2.0, 200, None, "1.0.0", True)


# -- the timeline ---------------------------------------------------------------------


def test_a_watch_gap_during_the_traffic_makes_the_run_inconclusive():
    gap = WatchGap("Pod", T0 + 5, T0 + 8.5, "ConnectionRefusedError: refused")
    verdict = decide(traffic(), rolling_lives(), PLAN, MARKS, FINAL, [gap])
    assert verdict.outcome == "inconclusive"
    check = next(c for c in verdict.checks if c.name == "the rollout's timeline is complete")
    assert check.outcome == "inconclusive"
    assert check.detail == ("Pod watch down +5.0s from the upgrade's start for 3.5s "
                            "(ConnectionRefusedError: refused)")


def test_a_watch_that_never_came_back_is_named_as_such():
    gap = WatchGap("EndpointSlice", T0 + 30, None, "API error 500")
    verdict = decide(traffic(), rolling_lives(), PLAN, MARKS, FINAL, [gap])
    assert verdict.outcome == "inconclusive"
    assert "EndpointSlice watch down +30.0s from the upgrade's start for the end" in \
        next(c.detail for c in verdict.checks if c.name.startswith("the rollout's timeline"))


def test_a_gap_before_the_first_request_or_after_the_end_does_not_count():
    gaps = [WatchGap("Pod", T0 - 30, T0 - 20, "early"), WatchGap("Pod", T0 + 41, T0 + 42, "late")]
    verdict = decide(traffic(), rolling_lives(), PLAN, MARKS, FINAL, gaps)
    assert verdict.outcome == "pass", verdict.checks


def test_a_failed_request_still_fails_a_run_with_a_watch_gap():
    requests = traffic()
    requests[100] = dataclasses.replace(requests[100], status=503, ok=False)
    gap = WatchGap("Pod", T0 + 5, T0 + 6, "reset")
    assert decide(requests, rolling_lives(), PLAN, MARKS, FINAL, [gap]).outcome == "fail"


# -- one cause each: every rule is shown to decide on its own, with its words --------


def check_of(verdict, name: str):
    return next(c for c in verdict.checks if c.name.startswith(name))


def test_an_answer_slower_than_the_slo_is_a_failed_request():
    requests = traffic()
    requests[2000] = dataclasses.replace(requests[2000], latency_ms=1500.0)
    verdict = decide(requests, rolling_lives())
    assert verdict.outcome == "fail"
    assert verdict.figures.errors == {"slow": 1}
    assert "1 x slow" in check_of(verdict, "no failed requests").detail


def test_the_slo_is_a_setting():
    requests = traffic()
    requests[2000] = dataclasses.replace(requests[2000], latency_ms=1500.0)
    lenient = dataclasses.replace(PLAN, limits=VerdictSettings(slo_seconds=2.0, p99_floor_ms=2000))
    assert decide(requests, rolling_lives(), lenient).outcome == "pass"


def test_a_bad_body_is_a_failed_request():
    requests = traffic()
    requests[2000] = dataclasses.replace(requests[2000], ok=False,
                                         error="CatchResponseError: bad body: model_version "
                                               "'1.0.0' but header '1.1.0'")
    verdict = decide(requests, rolling_lives())
    assert verdict.figures.errors == {"bad body": 1}


def test_a_replaced_pod_with_no_request_during_its_termination_is_inconclusive():
    lives = rolling_lives()
    lives[0] = dataclasses.replace(lives[0], terminating_at=T0 + 50, gone_at=T0 + 51)
    marks = dataclasses.replace(MARKS, ended=T0 + 52)
    verdict = decide(traffic(end=40), lives, marks=marks)
    detail = check_of(verdict, "traffic covered").detail
    assert verdict.outcome == "inconclusive"
    assert "no request while old-0 terminated" in detail


def test_no_pod_replaced_says_so():
    lives = [PodLife(f"new-{i}", "1.1.0", T0, T0 + 1, None, None) for i in range(3)]
    verdict = decide(traffic(switch=-100), lives)
    assert "no pod of the old version was seen terminating" in \
        check_of(verdict, "traffic covered").detail
    assert check_of(verdict, "the traffic could have seen").detail == "no pod was replaced"


def test_old_pods_still_there_at_the_end_fail_the_rollout():
    lives = rolling_lives()
    lives[2] = dataclasses.replace(lives[2], gone_at=None)
    verdict = decide(traffic(), lives)
    assert verdict.outcome == "fail"
    assert check_of(verdict, "rollout finished").detail == \
        "pods of the old version were still there at the end"


def test_a_version_that_never_answered_is_inconclusive():
    verdict = decide(traffic(switch=-100), rolling_lives())
    check = check_of(verdict, "both versions answered")
    assert (check.outcome, check.detail) == ("inconclusive", "no successful answer from 1.0.0")


def test_without_new_connections_the_run_cannot_show_an_exit_fault():
    requests = [dataclasses.replace(r, name="predict") for r in traffic()]
    verdict = decide(requests, rolling_lives())
    check = check_of(verdict, "the traffic could have seen")
    assert verdict.outcome == "inconclusive"
    assert check.outcome == "inconclusive"
    assert check.detail.startswith(
        "old-0: 125 answers in the 5s before it was marked terminating (need 20), 0 new "
        "connections while it terminated (need 40)")


def test_a_pod_that_answered_too_little_before_its_exit_is_named():
    requests = [dataclasses.replace(r, pod="old-1" if r.version == "1.0.0" else "new-0")
                for r in traffic()]
    verdict = decide(requests, rolling_lives())
    detail = check_of(verdict, "the traffic could have seen").detail
    assert detail.startswith("old-0: 0 answers in the 5s before it was marked terminating")
    assert "old-1" not in detail.split(";")[0]


def test_enough_answers_and_new_connections_at_every_exit_pass_the_power_rule():
    verdict = decide(traffic(), rolling_lives())
    check = check_of(verdict, "the traffic could have seen")
    assert check.outcome == "pass" and "each of the 3 replaced pods" in check.detail


def test_requests_missing_from_the_record_make_the_run_inconclusive():
    requests = traffic()
    verdict = decide(requests, rolling_lives(),
                     tally=Tally(len(requests) + 12, 0, len(requests) + 12))
    check = check_of(verdict, "every request Locust made")
    assert verdict.outcome == "inconclusive"
    assert check.detail == "Locust made 5012 requests, its recorder wrote 5012, the record " \
                           "holds 5000"


def test_a_run_without_locusts_count_is_not_judged_clean():
    verdict = decide(traffic(), rolling_lives(), tally=None)
    assert verdict.outcome == "inconclusive"
    assert "left no count" in check_of(verdict, "every request Locust made").detail


def test_an_inconclusive_summary_says_why():
    verdict = decide(traffic(), rolling_lives(), tally=None)
    assert verdict.summary().startswith("INCONCLUSIVE: Locust left no count of its requests")
    assert verdict.summary().endswith("0 of 5,000 requests failed (1.0.0 → 1.1.0, 3 pods "
                                      "replaced)")
