"""Calibration's arithmetic and its table, without a cluster."""

from __future__ import annotations

import pytest

from harness import calibrate, controls, errors


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
    assert controls.named("all") == controls.CONTROLS
    with pytest.raises(errors.UsageError, match="no control named nope; controls: "):
        controls.named("nope")
