"""The harness's traffic: a bounded Locust process, stopped without losing a record."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from model_server import testing, train

from harness.settings import TrafficSettings
from harness.traffic import Traffic, TrafficError, wait_answering

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
