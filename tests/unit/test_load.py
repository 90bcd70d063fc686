"""The load generator: Locust, headless and bounded, against a real server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from model_server import testing, train

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "load" / "locustfile.py"
LOCUST = str(Path(sys.executable).with_name("locust"))
sys.path.insert(0, str(ROOT / "load"))
import recording  # noqa: E402


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The raw lines as written (the harness reads them with evidence.read_requests)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    for version in ("1.0.0", "1.0.0-flaky"):
        train.train(version, root / version)
    return {p.name: p for p in root.iterdir()}


@pytest.fixture(scope="module")
def server(models: dict[str, Path]) -> Iterator[testing.ServerProcess]:
    with testing.ServerProcess(models["1.0.0"]) as process:
        process.wait_ready()
        yield process


def run_locust(
    host: str, record: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """Locust as a subprocess, always bounded by ``-t`` (and the timeout).

    ``--stop-timeout`` lets each user finish the request it has under way when
    the run ends; without it Locust kills users mid-request and those requests
    (answered by the server) are never recorded.
    """
    command = [LOCUST, "-f", str(LOCUSTFILE), "--host", host, "--headless", "--only-summary",
               "--loglevel", "WARNING", "--stop-timeout", "10", *args]  # fmt: skip
    full_env = {**os.environ, "LOAD_RECORD_FILE": str(record), **(env or {})}
    return subprocess.run(
        command, env=full_env, capture_output=True, text=True, timeout=timeout, cwd=record.parent
    )


def test_recorder_writes_typed_lines_and_flushes_on_close(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    response = SimpleNamespace(status_code=200, headers={"X-Model-Version": "1.1.0"})
    failed = SimpleNamespace(status_code=0, headers=None)
    with recording.Recorder(path, buffer_lines=3) as recorder:
        recorder.on_request("POST", "predict", 2.5, 10, response=response, start_time=100.0)
        recorder.on_request(
            "POST",
            "predict",
            1.0,
            0,
            response=failed,
            exception=OSError("refused"),
            start_time=101.0,
        )
        assert path.read_bytes() == b"", "buffered until the block is full or closed"
    records = read_lines(path)
    assert records == [
        {"t": 100.0, "latency_ms": 2.5, "status": 200, "error": None, "version": "1.1.0",
         "ok": True, "name": "predict"},
        {"t": 101.0, "latency_ms": 1.0, "status": 0, "error": "OSError: refused", "version": None,
         "ok": False, "name": "predict"},
    ]  # fmt: skip


def check_records(records: list[Any], started: float, ended: float) -> None:
    for r in records:
        assert isinstance(r["t"], float) and started - 1 <= r["t"] <= ended
        assert isinstance(r["latency_ms"], float) and r["latency_ms"] >= 0
        assert isinstance(r["status"], int) and isinstance(r["ok"], bool)
        assert r["error"] is None or isinstance(r["error"], str)


def test_locust_records_every_request(server: testing.ServerProcess, tmp_path: Path) -> None:
    record = tmp_path / "requests.jsonl"
    started = time.time()
    result = run_locust(server.url, record, "-u", "4", "-r", "4", "-t", "3s")
    assert result.returncode == 0, result.stderr[-2000:]
    records = read_lines(record)
    check_records(records, started, time.time())
    assert len(records) > 50
    assert all(r["ok"] and r["status"] == 200 for r in records)
    assert {r["version"] for r in records} == {"1.0.0"}
    _, metrics = server.get("/metrics")
    served = sum(
        int(line.rsplit(" ", 1)[1])
        for line in metrics.decode().splitlines()
        if line.startswith('model_requests_total{route="predict"')
    )
    assert served >= len(records), "nothing recorded that the server did not see"


def test_failures_are_recorded_not_retried(models: dict[str, Path], tmp_path: Path) -> None:
    record = tmp_path / "requests.jsonl"
    with testing.ServerProcess(models["1.0.0-flaky"], {"MODEL_FLAKY_RATE": "0.3"}) as flaky:
        flaky.wait_ready()
        result = run_locust(flaky.url, record, "-u", "2", "-r", "2", "-t", "2s")
        _, metrics = flaky.get("/metrics")
    assert result.returncode == 1, "Locust exits 1 when requests failed"
    records = read_lines(record)
    failed = [r for r in records if not r["ok"]]
    assert failed and all(r["status"] == 500 and "500" in str(r["error"]) for r in failed)
    assert all(r["version"] == "1.0.0-flaky" for r in records)
    served = sum(
        int(line.rsplit(" ", 1)[1])
        for line in metrics.decode().splitlines()
        if line.startswith('model_requests_total{route="predict"')
    )
    assert served == len(records), "one server request per recorded request: no retries"


def test_connection_errors_are_recorded(tmp_path: Path) -> None:
    record = tmp_path / "requests.jsonl"
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_locust(
        f"http://127.0.0.1:{port}", record, "-u", "1", "-r", "1", "-t", "2s",
        env={"LOAD_RPS_PER_USER": "10"},
    )  # fmt: skip
    assert result.returncode == 1
    records = read_lines(record)
    assert records and all(not r["ok"] and r["status"] == 0 and r["error"] for r in records)


def test_constant_throughput_per_user(server: testing.ServerProcess, tmp_path: Path) -> None:
    record = tmp_path / "requests.jsonl"
    result = run_locust(
        server.url, record, "-u", "2", "-r", "2", "-t", "3s", env={"LOAD_RPS_PER_USER": "5"}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    count = len(read_lines(record))
    assert 10 <= count <= 2 * 5 * 3 + 4, f"{count} requests at 2 users x 5/s for 3 s"


def test_request_cap_ends_the_run(server: testing.ServerProcess, tmp_path: Path) -> None:
    record = tmp_path / "requests.jsonl"
    started = time.monotonic()
    result = run_locust(
        server.url, record, "-u", "2", "-r", "2", "-t", "60s", env={"LOAD_MAX_REQUESTS": "200"}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert time.monotonic() - started < 50, "the cap, not -t, ended the run"
    assert 200 <= len(read_lines(record)) <= 202


def test_batches_and_data_file(
    server: testing.ServerProcess, models: dict[str, Path], tmp_path: Path
) -> None:
    record = tmp_path / "requests.jsonl"
    env = {
        "LOAD_BATCH_SIZE": "8",
        "LOAD_DATA_FILE": str(models["1.0.0"] / train.HOLDOUT_FILE),
        "LOAD_MAX_REQUESTS": "20",
    }
    result = run_locust(server.url, record, "-u", "1", "-r", "1", "-t", "30s", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert all(r["ok"] for r in read_lines(record))


def test_stop_file_ends_the_run_with_every_request_recorded(server: testing.ServerProcess,
                                                           tmp_path: Path) -> None:
    record, stop = tmp_path / "requests.jsonl", tmp_path / "stop"
    command = [LOCUST, "-f", str(LOCUSTFILE), "--host", server.url, "--headless", "--only-summary",
               "--loglevel", "WARNING", "--stop-timeout", "10", "-u", "3", "-r", "3", "-t", "120s"]
    env = {**os.environ, "LOAD_RECORD_FILE": str(record), "LOAD_STOP_FILE": str(stop),
           "LOAD_RPS_PER_USER": "50"}
    _, before = server.get("/metrics")
    with subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True) as locust:
        time.sleep(2.5)
        assert locust.poll() is None
        stop.touch()
        _, err = locust.communicate(timeout=30)  # far below the 120 s run time
    assert locust.returncode == 0, err[-2000:]
    records = read_lines(record)
    assert len(records) > 50 and all(r["ok"] for r in records)
    _, after = server.get("/metrics")
    assert served(after) - served(before) == len(records), "every answered request is recorded"


def served(metrics: bytes) -> int:
    return sum(int(line.rsplit(" ", 1)[1]) for line in metrics.decode().splitlines()
               if line.startswith('model_requests_total{route="predict"'))
