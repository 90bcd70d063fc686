"""The harness's traffic: a bounded Locust process, stopped without losing a record."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from model_server import testing, train

from harness import procs
from harness.evidence import FinalState, Marks, PodLife, Tally
from harness.settings import TrafficSettings, VerdictSettings
from harness.traffic import Traffic, TrafficError, wait_answering
from harness.verdict import Plan, judge

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testing.ServerProcess]:
    model = tmp_path_factory.mktemp("model") / "1.0.0"
    train.train("1.0.0", model)
    with testing.ServerProcess(model) as process:
        process.wait_ready()
        yield process


def test_a_relative_report_folder_records_and_stops(server: testing.ServerProcess,
                                                   tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch):
    """make verify passes ./rollout-report: Locust runs inside it, so paths must be absolute."""
    monkeypatch.chdir(tmp_path)
    settings = TrafficSettings(users=2, rate_per_user=50, max_seconds=60)
    started = time.time()
    with Traffic(server.url, Path("report"), settings) as load:
        time.sleep(2.5)
        load.require_running()
    took = time.time() - started
    requests = load.requests()
    assert (tmp_path / "report" / "requests.jsonl").exists()
    assert not (tmp_path / "report" / "report").exists()
    assert len(requests) > 100 and all(r.ok and r.version == "1.0.0" for r in requests)
    assert requests == sorted(requests, key=lambda r: r.t)
    assert took < 30, "stopped through the stop file, not by the 60 s bound or a kill"


def test_a_locust_that_dies_early_is_an_error_naming_its_log(tmp_path: Path):
    load = Traffic("http://127.0.0.1:9", tmp_path, TrafficSettings(users=1, max_seconds=60),
                   model_name="x")
    load.start()
    assert load._process is not None
    load._process.kill()
    load._process.wait()
    with pytest.raises(TrafficError, match=r"ended before the run did .*locust\.log"):
        load.require_running()
    with pytest.raises(TrafficError, match=r"failed \(exit -9\); its record .* is not judged"):
        load.stop()


def test_waiting_for_a_model_that_never_answers_is_bounded():
    with pytest.raises(TrafficError, match="did not answer within 1s"):
        wait_answering("http://127.0.0.1:9", "ml-model", timeout=1)


def test_the_progress_line_counts_whole_recorded_lines_as_they_come(tmp_path: Path):
    from harness.evidence import Request, encode_request

    load = Traffic("http://127.0.0.1:1", tmp_path, TrafficSettings())
    assert load.progress_line().startswith("traffic: 0 requests recorded, 0 failed")
    good = encode_request(Request(1.0, 2.0, 200, None, "1.0.0", True))
    bad = encode_request(Request(1.5, 2.0, 0, "ConnectionRefusedError", None, False))
    with load.record_file.open("wb") as record:
        record.write(good + bad + good[:10])  # the last line half-written
        record.flush()
        assert load.progress_line().startswith("traffic: 2 requests recorded, 1 failed")
        record.write(good[10:])
    assert load.progress_line().startswith("traffic: 3 requests recorded, 1 failed")


# -- several Locust processes ------------------------------------------------------------


def run_traffic(url: str, folder: Path, processes: int,
                seconds: float) -> tuple[Traffic, list[int]]:
    """A run of `seconds` of traffic once its clients are up; the Locust processes seen."""
    settings = TrafficSettings(users=2, churn_users=2, rate_per_user=25, max_seconds=60,
                               processes=processes)
    with Traffic(url, folder, settings) as load:
        assert load._process is not None
        deadline = time.monotonic() + 20
        while len(seen := [load._process.pid, *procs.descendants(load._process.pid)]) \
                < (1 if processes == 1 else processes + 1):
            assert time.monotonic() < deadline, f"Locust processes: {seen}"
            time.sleep(0.05)
        time.sleep(1.5 + seconds)  # the master spawns users after it found its workers
        load.require_running()
    return load, seen


def test_two_processes_record_every_request_once_and_end_together(
        server: testing.ServerProcess, tmp_path: Path):
    _, before = server.get("/metrics")
    load, seen = run_traffic(server.url, tmp_path, processes=2, seconds=2)
    _, after = server.get("/metrics")
    assert len(seen) == 3, "a master and two workers"
    assert not [pid for pid in seen if procs.running(pid)], "the stop file ended them all"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "load-summary.json", "locust.log", "requests.jsonl"], "the parts merged into one"
    requests, tally = load.requests(), load.tally()
    assert tally == Tally(len(requests), 0, len(requests)) and len(requests) > 100
    served = sum(int(line.rsplit(" ", 1)[1]) for line in after.decode().splitlines()
                 if line.startswith('model_requests_total{route="predict"')) - sum(
        int(line.rsplit(" ", 1)[1]) for line in before.decode().splitlines()
        if line.startswith('model_requests_total{route="predict"'))
    assert served == len(requests), "every request the server read is in the record once"


def test_a_two_process_record_has_the_shape_of_a_one_process_record(
        server: testing.ServerProcess, tmp_path: Path):
    """What the verdict reads is the same whatever the number of processes: the fields,
    the clients' names, each client's rate, and so the verdict's checks."""
    runs = {n: run_traffic(server.url, tmp_path / str(n), processes=n, seconds=2)[0]
            for n in (1, 2)}
    shapes = {}
    for n, load in runs.items():
        lines = [json.loads(line) for line in load.record_file.read_text().splitlines()]
        requests = load.requests()
        span = requests[-1].t - requests[0].t
        shapes[n] = {"fields": {tuple(line) for line in lines},
                     "names": Counter(r.name for r in requests).keys(),
                     "ok": all(r.ok for r in requests)}
        rate = len(requests) / span
        assert 4 * 25 * 0.8 < rate < 4 * 25 * 1.2, f"{n} processes: {rate:.0f} req/s for 100"
        assert load.tally() == Tally(len(requests), 0, len(requests))
    assert shapes[1] == shapes[2]
    # the latency budget compares p99s of two seconds of local traffic: the machine's load
    # at that moment decides it, not the record's shape (it flipped in a loaded full run)
    outcomes = {n: [(c.name, c.outcome) for c in judged(load) if not c.name.startswith("latency")]
                for n, load in runs.items()}
    assert outcomes[1] == outcomes[2], outcomes


def judged(load: Traffic) -> tuple[Any, ...]:
    """The checks of a verdict on the record as if the upgrade began in its middle."""
    requests = load.requests()
    middle = (requests[0].t + requests[-1].t) / 2
    marks = Marks(middle, middle + 0.5, requests[-1].t)
    lives = [PodLife("old", "1.0.0", middle - 60, middle - 59, middle + 0.1, middle + 0.4)]
    plan = Plan("1.0.0", "1.1.0", rate=100, limits=VerdictSettings(min_requests_before=10,
                                                                    min_requests_after=10))
    verdict = judge(requests, lives, plan, marks, FinalState(1, {"1.1.0": 1}), (), load.tally())
    return verdict.checks


def test_the_progress_line_counts_every_workers_record(tmp_path: Path):
    from harness.evidence import Request, encode_request, part_record

    load = Traffic("http://127.0.0.1:1", tmp_path, TrafficSettings(processes=2))
    good = encode_request(Request(1.0, 2.0, 200, None, "1.0.0", True))
    bad = encode_request(Request(1.5, 2.0, 0, "ConnectionRefusedError", None, False))
    part_record(load.record_file, 0).write_bytes(good + bad)
    part_record(load.record_file, 1).write_bytes(good + good[:5])
    assert load.progress_line().startswith("traffic: 3 requests recorded, 1 failed")
    with part_record(load.record_file, 1).open("ab") as record:
        record.write(good[5:] + good)
    assert load.progress_line().startswith("traffic: 5 requests recorded, 1 failed")


def test_a_short_worker_record_is_named_and_the_record_does_not_reconcile(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    from harness.evidence import Request, encode_request, part_record

    load = Traffic("http://127.0.0.1:1", tmp_path, TrafficSettings(processes=2))
    line = encode_request(Request(1.0, 2.0, 200, None, "1.0.0", True))
    part_record(load.record_file, 0).write_bytes(line * 3)
    part_record(load.record_file, 1).write_bytes(line * 1)  # it said 2
    load.summary_file.write_text(json.dumps({"locust_requests": 5, "locust_failures": 0,
                                             "recorded": 5, "workers": {"0": 3, "1": 2}}))
    with caplog.at_level(logging.WARNING, "harness.traffic"):
        load._merge(judged=True)
    assert "worker 1: requests.worker-1.jsonl held 1 lines, the worker said it wrote 2" \
        in caplog.text
    assert len(load.requests()) == 4 and load.tally() == Tally(5, 0, 5)
    assert not list(tmp_path.glob("requests.worker-*"))


def test_the_load_sends_the_rows_of_a_requests_file(server: testing.ServerProcess,
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch):
    """A team's model has its own features: --requests is what the load sends, and its
    labels are what a prediction must be one of. Here the label set is one the wine
    model never predicts, so every answer failing as a bad body shows the file was used."""
    monkeypatch.chdir(tmp_path)
    rows = [json.loads(line) for line in
            (Path(__file__).parents[2] / "load" / "holdout.jsonl").read_text().splitlines()[:3]]
    Path("rows.jsonl").write_text("".join(
        json.dumps({"instance": r["instance"], "label": 7}) + "\n" for r in rows))
    settings = TrafficSettings(users=1, churn_users=0, rate_per_user=40, max_seconds=60,
                               requests=Path("rows.jsonl"))
    with Traffic(server.url, tmp_path / "report", settings) as load:
        time.sleep(2.0)
        load.require_running()
    requests = load.requests()
    assert len(requests) > 20
    assert all(not r.ok and "is not a class label [7]" in (r.error or "") for r in requests)


@pytest.mark.parametrize(("text", "problem"), [
    ("", "no rows in it"),
    ('{"instance": [1.0, 2]}\nnot json\n', r"rows\.jsonl:2: not JSON"),
    ('{"instance": []}\n', r"rows\.jsonl:1: needs \"instance\": a list of numbers"),
    ('{"instance": [1, "2"]}\n', "a list of numbers"),
    ('{"instance": [true]}\n', "a list of numbers"),
    ('[1, 2]\n', "a list of numbers"),
])
def test_a_requests_file_the_load_cannot_use_is_one_line(tmp_path: Path, text: str,
                                                         problem: str):
    from harness import errors
    from harness.traffic import check_requests

    (tmp_path / "rows.jsonl").write_text(text)
    with pytest.raises(errors.UsageError, match=problem):
        check_requests(tmp_path / "rows.jsonl")
    (tmp_path / "rows.jsonl").write_text('{"instance": [1, 2.5]}\n\n{"instance": [3, 4]}\n')
    assert check_requests(tmp_path / "rows.jsonl") == 2
