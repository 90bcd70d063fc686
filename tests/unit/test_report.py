"""The report: three files from one verdict, each readable by its audience."""

from __future__ import annotations

import html
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness import report, verdict
from harness.evidence import CpuSample, Event, FinalState, Marks, PodLife, Request, Tally
from harness.settings import VerdictSettings
from harness.verdict import Plan

T0 = 1_764_400_000.0
OLD, NEW = "1.0.0", "1.1.0"
PLAN = Plan(OLD, NEW, rate=10, limits=VerdictSettings(min_answered_before_exit=0,
                                                     min_new_connections_while_exiting=0))
"""The report's stories need no new-connection clients: the power rule has its own tests."""
NASTY = "<script>alert('x')</script> see https://evil.example/x"

JSON_KEYS = {"schema", "outcome", "summary", "checks", "figures", "by_version", "plan", "marks",
             "first_failures", "failures", "pods", "events", "series"}


def _lives() -> list[PodLife]:
    return [
        PodLife("ml-model-old-a", OLD, T0 - 100, T0 - 95, T0 + 3, T0 + 6),
        PodLife("ml-model-old-b", OLD, T0 - 100, T0 - 95, T0 + 6, T0 + 9),
        PodLife("ml-model-new-a", NEW, T0 + 1, T0 + 2.5, None, None),
        PodLife("ml-model-new-b", NEW, T0 + 4, T0 + 5.5, None, None),
    ]


def _events() -> list[Event]:
    return [
        Event(T0 + 1, "Pod", "ml-model-new-a", "ADDED", NEW, False, False, "Pending"),
        Event(T0 + 2.5, "Pod", "ml-model-new-a", "MODIFIED", NEW, True, False, "Ready"),
        Event(T0 + 3, "Pod", "ml-model-old-a", "MODIFIED", OLD, True, True, "terminating"),
        Event(T0 + 3.1, "EndpointSlice", "ml-model-xyz", "MODIFIED", None, None, False,
              "3 ready <b>"),
        Event(T0 + 6, "Pod", "ml-model-old-a", "DELETED", OLD, False, True, "gone"),
    ]


def _traffic(failures: dict[int, Request] | None = None) -> list[Request]:
    """10 requests/s from 10 s before the upgrade to 20 s after; old version until 6 s."""
    out = []
    for i in range(300):
        t = T0 - 10 + i / 10
        version = OLD if t < T0 + 6 else NEW
        out.append(Request(t, 5.0 + i % 10, 200, None, version, True))
    for i, r in (failures or {}).items():
        out[i] = Request(out[i].t, r.latency_ms, r.status, r.error, r.version, r.ok)
    return out


def _judge(requests: list[Request]) -> verdict.Verdict:
    marks = Marks(started=T0, finished=T0 + 10, ended=T0 + 20)
    tally = Tally(len(requests), sum(not r.ok for r in requests), len(requests))
    return verdict.judge(requests, _lives(), PLAN, marks, FinalState(2, {NEW: 2}), (), tally)


@pytest.fixture
def passed() -> tuple[verdict.Verdict, list[Request]]:
    requests = _traffic()
    return _judge(requests), requests


@pytest.fixture
def failed() -> tuple[verdict.Verdict, list[Request]]:
    requests = _traffic({130: Request(0, 3.0, 0, NASTY, None, False),
                         150: Request(0, 7.0, 503, None, NEW, False)})
    return _judge(requests), requests


def _write(tmp_path: Path, case: tuple[verdict.Verdict, list[Request]]) -> report.Written:
    return report.write(tmp_path / "out", case[0], case[1], _lives(), _events())


# -- verdict.json ----------------------------------------------------------------


def test_json_round_trips_a_pass_with_relative_times(tmp_path: Path, passed):
    assert passed[0].outcome == "pass"
    doc = json.loads(_write(tmp_path, passed).json.read_text())
    assert set(doc) == JSON_KEYS
    assert (doc["schema"], doc["outcome"], doc["summary"]) == (1, "pass", passed[0].summary())
    assert [c["name"] for c in doc["checks"]] == [c.name for c in passed[0].checks]
    assert {c["outcome"] for c in doc["checks"]} == {"pass"}
    assert doc["marks"]["started"] == T0
    assert (doc["marks"]["started_s"], doc["marks"]["finished_s"], doc["marks"]["ended_s"]) == (
        0.0, 10.0, 20.0)
    assert doc["figures"]["completed_s"] == 9.0
    assert doc["figures"]["requests"] == 300
    assert doc["by_version"] == {OLD: 160, NEW: 140}
    assert doc["plan"]["from_version"] == OLD and doc["plan"]["to_version"] == NEW
    assert doc["pods"][0] == {"name": "ml-model-old-a", "version": OLD, "created_s": -100.0,
                              "ready_s": -95.0, "terminating_s": 3.0, "gone_s": 6.0}
    assert doc["pods"][2]["gone_s"] is None
    assert doc["events"][3]["t_s"] == 3.1 and doc["events"][3]["kind"] == "EndpointSlice"
    buckets = doc["series"]["buckets"]
    assert doc["series"]["bucket_seconds"] == 1.0
    assert len(buckets) == 30 and buckets[0]["t"] == -10.0 and buckets[-1]["t"] == 19.0
    assert set(buckets[0]) == {"t", "requests", "failures", "p50_ms", "p99_ms", "by_version"}
    assert sum(b["requests"] for b in buckets) == 300
    assert doc["first_failures"] == []


def test_json_of_a_fail_keeps_the_first_failures(tmp_path: Path, failed):
    doc = json.loads(_write(tmp_path, failed).json.read_text())
    assert doc["outcome"] == "fail"
    assert [f["error"] for f in doc["first_failures"]] == [NASTY, None]
    assert [f["status"] for f in doc["first_failures"]] == [0, 503]
    assert sum(b["failures"] for b in doc["series"]["buckets"]) == 2
    assert doc["figures"]["errors"] == {"no response": 1, "HTTP 503": 1}
    assert [(f["cause"], f["count"]) for f in doc["failures"]] == [("no response", 1),
                                                                 ("HTTP 503", 1)]


# -- junit.xml -------------------------------------------------------------------


def _suite(path: Path) -> ET.Element:
    root = ET.parse(path).getroot()
    suites = root.findall("testsuite")
    assert len(suites) == 1 and suites[0].get("name") == "rollout-gate"
    return suites[0]


def test_junit_of_a_pass_is_all_green(tmp_path: Path, passed):
    suite = _suite(_write(tmp_path, passed).junit)
    cases = suite.findall("testcase")
    assert len(cases) == 8 and suite.get("tests") == "8"
    assert {c.get("classname") for c in cases} == {"rollout-gate"}
    assert [c.get("name") for c in cases] == [c.name for c in passed[0].checks]
    assert not suite.findall(".//failure") and not suite.findall(".//error")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert (props["from_version"], props["to_version"], props["outcome"]) == (OLD, NEW, "pass")


def test_junit_of_a_fail_carries_the_detail(tmp_path: Path, failed):
    suite = _suite(_write(tmp_path, failed).junit)
    failures = suite.findall("testcase/failure")
    assert len(suite.findall("testcase")) == 8 and len(failures) == 1
    assert suite.get("failures") == "1" and suite.get("errors") == "0"
    assert NASTY in (failures[0].text or "") and NASTY in (failures[0].get("message") or "")


def test_an_inconclusive_run_is_an_error_in_ci(tmp_path: Path):
    thin = [r for r in _traffic() if r.t > T0 - 1]  # too little traffic before the upgrade
    v = _judge(thin)
    assert v.outcome == "inconclusive"
    suite = _suite(report.write(tmp_path, v, thin, _lives(), _events()).junit)
    errors = suite.findall("testcase/error")
    assert len(errors) == 1 and errors[0].get("type") == "inconclusive"
    assert suite.get("errors") == "1" and suite.get("failures") == "0"
    assert "<h1>INCONCLUSIVE</h1>" in (tmp_path / "report.html").read_text()


def test_junit_survives_control_characters_in_error_text(tmp_path: Path):
    requests = _traffic({130: Request(0, 3.0, 0, "reset\x00\x1b[0m by peer", None, False)})
    suite = _suite(report.write(tmp_path, _judge(requests), requests, _lives(), []).junit)
    assert "by peer" in (suite.find("testcase/failure").text or "")  # type: ignore[union-attr]


# -- report.html -----------------------------------------------------------------


def test_html_headline_checks_and_timeline(tmp_path: Path, passed):
    page = _write(tmp_path, passed).html.read_text()
    assert "<h1>PASS</h1>" in page and html.escape(passed[0].summary()) in page
    for check in passed[0].checks:
        assert html.escape(check.name) in page and html.escape(check.detail) in page
    svg = page[page.index("<svg"):page.index("</svg>") + len("</svg>")]
    ET.fromstring(svg)  # well-formed, so every browser draws the same picture
    for marker in ("upgrade start", "pulumi finished", "rollout completed"):
        assert marker in svg
    for pod in ("ml-model-old-a", "ml-model-new-b"):
        assert pod in svg
    assert f">{OLD}<" in svg and f">{NEW}<" in svg  # the version legend


def test_html_escapes_user_text_and_stays_offline(tmp_path: Path, failed):
    page = _write(tmp_path, failed).html.read_text()
    assert "<h1>FAIL</h1>" in page
    assert "<script" not in page
    escaped = html.escape(NASTY)
    assert escaped in page and "&lt;b&gt;" in page
    outside_user_text = page.replace(escaped, "")
    assert "http://" not in outside_user_text and "https://" not in outside_user_text
    assert not re.search(r"\b(src|href)=", page)
    assert "@import" not in page and "url(http" not in page


def test_a_failed_upgrade_is_drawn_without_the_marks_it_never_reached(tmp_path: Path):
    requests = _traffic()
    lives = [PodLife("ml-model-old-a", OLD, T0 - 100, T0 - 95, None, None),
             PodLife("ml-model-new-a", NEW, T0 + 1, None, T0 + 15, T0 + 16)]
    marks = Marks(started=T0, finished=None, ended=T0 + 20, rollout_error="timed out <readiness>",
                  rolled_back=True)
    v = verdict.judge(requests, lives, PLAN, marks, FinalState(1, {OLD: 1}), (), None)
    written = report.write(tmp_path, v, requests, lives, [])
    doc = json.loads(written.json.read_text())
    assert doc["outcome"] == "fail" and doc["marks"]["finished_s"] is None
    assert doc["figures"]["completed_s"] is None and doc["marks"]["rolled_back"] is True
    page = written.html.read_text()
    assert "upgrade start" in page and "pulumi finished" not in page
    assert "timed out &lt;readiness&gt;" in page


def test_the_hosts_idle_cpu_is_drawn_under_the_latency_red_where_starved(
        tmp_path: Path, passed):
    host = [CpuSample(T0 + 2.0, 0.5, 0.40), CpuSample(T0 + 2.5, 0.5, 0.03),
            CpuSample(T0 + 3.0, 0.5, 0.05)]
    page = report.write(tmp_path, passed[0], passed[1], _lives(), _events(),
                        host).html.read_text()
    assert "host CPU idle, % of all cores (red: under 5%" in page
    idle = re.findall(r'<rect [^>]*fill="([^"]+)"[^>]*><title>([^<]*% idle)</title>', page)
    assert idle == [(report._OTHER, "2.0s: 40% idle"), (report._RED, "2.5s: 3% idle"),
                    (report._OTHER, "3.0s: 5% idle")]
    without = _write(tmp_path, passed).html.read_text()
    assert "host CPU idle" not in without and "% idle</title>" not in without


# -- series ----------------------------------------------------------------------


def test_series_buckets_counts_failures_percentiles_and_versions():
    def req(t: float, ms: float, version: str | None = OLD, ok: bool = True) -> Request:
        return Request(T0 + t, ms, 200 if ok else 0, None if ok else "reset", version, ok)

    requests = [req(-0.5, 40), req(0.1, 10), req(0.2, 20, NEW), req(0.3, 30, NEW),
                req(0.9, 99, None, ok=False), req(2.5, 7, NEW)]
    buckets = report.series(requests, T0)
    assert [b.t for b in buckets] == [-1.0, 0.0, 1.0, 2.0]
    assert [b.requests for b in buckets] == [1, 4, 0, 1]
    assert [b.failures for b in buckets] == [0, 1, 0, 0]
    assert (buckets[1].p50_ms, buckets[1].p99_ms) == (20, 30)  # the failure's 99 ms is not latency
    assert (buckets[2].p50_ms, buckets[2].p99_ms, buckets[2].by_version) == (None, None, {})
    assert buckets[1].by_version == {OLD: 1, NEW: 2}
    wide = report.series(requests, T0, bucket=2.0)
    assert [(b.t, b.requests) for b in wide] == [(-2.0, 1), (0.0, 4), (2.0, 1)]


def test_series_of_nothing_is_empty_and_a_bad_bucket_is_refused():
    assert report.series([], T0) == []
    with pytest.raises(ValueError, match="positive"):
        report.series([], T0, bucket=0)


# -- writing ---------------------------------------------------------------------


def test_writing_leaves_exactly_the_three_files(tmp_path: Path, passed, failed):
    written = _write(tmp_path, passed)
    assert written == report.Written(tmp_path / "out" / "verdict.json",
                                     tmp_path / "out" / "junit.xml",
                                     tmp_path / "out" / "report.html")
    again = _write(tmp_path, failed)  # a rerun replaces the files in place
    assert sorted(os.listdir(tmp_path / "out")) == ["junit.xml", "report.html", "verdict.json"]
    assert json.loads(again.json.read_text())["outcome"] == "fail"


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path, passed,
                                                 monkeypatch: pytest.MonkeyPatch):
    def refuse(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(report.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        _write(tmp_path, passed)
    assert os.listdir(tmp_path / "out") == []
