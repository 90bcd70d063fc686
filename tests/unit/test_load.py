"""The load generator: Locust, headless and bounded, against real servers on 127.0.0.1.

Two kinds of server: the model server (``model_server.testing``), and ``FakeServer``,
a plain socket server in a thread that counts the connections it accepted and
the requests it read, and answers each request the way a test says (late,
wrongly, not at all, with a reset). Every run is bounded in requests and time,
and every run's summary file is held against its record.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from geventhttpclient.response import HTTPConnectionClosed
from geventhttpclient.useragent import RetriesExceeded
from model_server import testing, train

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "load" / "locustfile.py"
LOCUST = str(Path(sys.executable).with_name("locust"))
sys.path.insert(0, str(ROOT / "load"))
import recording  # noqa: E402

from harness import evidence, procs  # noqa: E402

pytestmark = pytest.mark.timeout(180)

KEEP_ALIVE, NEW_CONNECTION = "predict", "predict-new-connection"


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The raw lines as written (the harness reads them with evidence.read_requests)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summary_of(record: Path) -> dict[str, int]:
    return dict(json.loads(record.with_name("summary.json").read_text()))


def check_summary(record: Path) -> dict[str, int]:
    """The summary's totals agree with the record line for line."""
    summary = summary_of(record)
    lines = read_lines(record)
    assert summary == {"locust_requests": len(lines),
                       "locust_failures": sum(not r["ok"] for r in lines),
                       "recorded": len(lines)}  # fmt: skip
    return summary


# -- servers ------------------------------------------------------------------------------


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


def answer(body: bytes | dict[str, Any] | None = None, status: int = 200,
           version: str | None = "1.0.0", pod: str | None = "pod-a") -> bytes:
    """A raw HTTP/1.1 response; by default a valid prediction for one instance."""
    if body is None:
        body = {"predictions": [1], "model_version": "1.0.0"}
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}",
            "Content-Type: application/json"]  # fmt: skip
    if version is not None:
        head.append(f"X-Model-Version: {version}")
    if pod is not None:
        head.append(f"X-Pod-Name: {pod}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass(frozen=True)
class Reply:
    """What FakeServer does with a request it read: wait, answer (or not), then end."""

    delay: float = 0.0
    raw: bytes | None = field(default_factory=answer)
    """None: no answer at all."""
    end: str = "keep"
    """keep the connection open for the next request, close it, or reset it."""


@dataclass
class Connection:
    requests: int = 0
    asked_to_close: bool = False
    """A request on it carried ``Connection: close``."""


class FakeServer:
    """An HTTP/1.1 server on 127.0.0.1 that does what ``reply(i)`` says with request i.

    It keeps connections open (and ignores ``Connection: close``) unless a reply
    ends them, so one connection per request is the client's doing.
    """

    def __init__(self, reply: Callable[[int], Reply] = lambda i: Reply()) -> None:
        self.reply = reply
        self.connections: list[Connection] = []
        self.requests = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *_: object) -> None:
        self._listener.close()

    def wait_requests(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.requests < count:
            assert time.monotonic() < deadline, f"only {self.requests} of {count} requests came"
            time.sleep(0.05)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            connection = Connection()
            with self._lock:
                self.connections.append(connection)
            threading.Thread(target=self._serve, args=(sock, connection), daemon=True).start()

    def _serve(self, sock: socket.socket, connection: Connection) -> None:
        buffer = b""
        with sock:
            try:
                while True:
                    while b"\r\n\r\n" not in buffer:
                        data = sock.recv(65536)
                        if not data:
                            return
                        buffer += data
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:])
                    fields = {k.strip().lower(): v.strip().lower() for k, v in fields.items()}
                    length = int(fields.get(b"content-length", b"0"))
                    while len(buffer) < length:
                        data = sock.recv(65536)
                        if not data:
                            return
                        buffer += data
                    buffer = buffer[length:]
                    with self._lock:
                        index = self.requests
                        self.requests += 1
                        connection.requests += 1
                        connection.asked_to_close |= fields.get(b"connection") == b"close"
                    reply = self.reply(index)
                    time.sleep(reply.delay)
                    if reply.raw is not None:
                        sock.sendall(reply.raw)
                    if reply.end == "reset":
                        linger = struct.pack("ii", 1, 0)  # close at once: RST, not FIN
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                        return
                    if reply.end == "close":
                        return
            except OSError:
                return


# -- Locust -------------------------------------------------------------------------------


def locust_command(host: str, *args: str) -> list[str]:
    """``--stop-timeout`` lets each user finish the request it has under way when the run
    ends; without it Locust kills users mid-request (recorded as cut, see the locustfile)."""
    return [LOCUST, "-f", str(LOCUSTFILE), "--host", host, "--headless", "--only-summary",
            "--loglevel", "WARNING", "--stop-timeout", "10", *args]  # fmt: skip


def locust_env(record: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LOAD_")}
    return {**inherited, "LOAD_RECORD_FILE": str(record),
            "LOAD_SUMMARY_FILE": str(record.with_name("summary.json")), **(env or {})}  # fmt: skip


def run_locust(
    host: str, record: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """Locust as a subprocess, always bounded by ``-t`` (and the timeout)."""
    return subprocess.run(locust_command(host, *args), env=locust_env(record, env),
                          capture_output=True, text=True, timeout=timeout, cwd=record.parent)


def served(metrics: bytes, route: str = "predict") -> int:
    return sum(int(line.rsplit(" ", 1)[1]) for line in metrics.decode().splitlines()
               if line.startswith(f'model_requests_total{{route="{route}"'))


# -- the recorder, in this process --------------------------------------------------------


def test_recorder_writes_typed_lines_and_flushes_on_close(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    response = SimpleNamespace(status_code=200,
                               headers={"X-Model-Version": "1.1.0", "X-Pod-Name": "ml-model-x"})
    failed = SimpleNamespace(status_code=0, headers=None)
    with recording.Recorder(path, buffer_lines=4) as recorder:
        recorder.on_request("POST", "predict", 2.5, 10, response=response, start_time=100.0)
        recorder.on_request("POST", "predict-new-connection", 1.0, 0, response=failed,
                            exception=ConnectionRefusedError(111, "Connection refused"),
                            start_time=101.0)  # fmt: skip
        late = {recording.INTENDED_TIME: 101.5, recording.LAG_MS: 400.0,
                recording.BEHIND_MS: 150.0}
        recorder.on_request("POST", "predict", 3.0, 10, response=response, start_time=101.9,
                            context=late)  # fmt: skip
        assert path.read_bytes() == b"", "buffered until the block is full or closed"
        assert (recorder.count, recorder.written) == (3, 0)
    assert recorder.written == 3
    assert read_lines(path) == [
        {"t": 100.0, "latency_ms": 2.5, "status": 200, "error": None, "version": "1.1.0",
         "ok": True, "name": "predict", "pod": "ml-model-x", "lag_ms": 0.0, "behind_ms": 0.0},
        {"t": 101.0, "latency_ms": 1.0, "status": 0,
         "error": "ConnectionRefusedError: [Errno 111] Connection refused", "version": None,
         "ok": False, "name": "predict-new-connection", "pod": None, "lag_ms": 0.0,
         "behind_ms": 0.0},
        {"t": 101.5, "latency_ms": 403.0, "status": 200, "error": None, "version": "1.1.0",
         "ok": True, "name": "predict", "pod": "ml-model-x", "lag_ms": 400.0,
         "behind_ms": 150.0},
    ]  # fmt: skip


def test_recorder_writes_at_least_every_flush_period(tmp_path: Path) -> None:
    """A reader following the file (a canary judging an interval) is never far behind."""
    path = tmp_path / "r.jsonl"
    response = SimpleNamespace(status_code=200, headers={"X-Model-Version": "1.0.0"})
    with recording.Recorder(path, flush_seconds=0.2) as recorder:
        recorder.on_request("POST", "predict", 1.0, 10, response=response, start_time=1.0)
        assert recorder.written == 0
        time.sleep(0.25)
        recorder.on_request("POST", "predict", 1.0, 10, response=response, start_time=2.0)
        assert recorder.written == 2 and len(read_lines(path)) == 2
        recorder.on_request("POST", "predict", 1.0, 10, response=response, start_time=3.0)
        assert recorder.written == 2, "then buffered again for a period"


def test_error_texts_name_what_happened() -> None:
    class CatchResponseError(Exception):  # Locust's, by name (importing Locust patches gevent in)
        pass

    def reset_seen_as_closed() -> BaseException:
        try:
            try:
                raise ConnectionResetError(104, "Connection reset by peer")
            except ConnectionResetError:
                raise HTTPConnectionClosed("connection closed.") from None
        except HTTPConnectionClosed as e:
            e.__suppress_context__ = False  # geventhttpclient raises it inside the except
            return e

    timeout = RetriesExceeded("http://x/", 0, original=TimeoutError("timed out"))
    assert recording.describe(timeout) == "timeout: TimeoutError: timed out"
    assert recording.describe(CatchResponseError("bad body: 2 predictions for 1 instances")) \
        == "bad body: 2 predictions for 1 instances"
    assert recording.describe(reset_seen_as_closed()) \
        == "ConnectionResetError: [Errno 104] Connection reset by peer"
    assert recording.describe(HTTPConnectionClosed("connection closed.")) \
        == "HTTPConnectionClosed: connection closed."
    assert recording.describe(recording.RequestCut("the run ended")) == "RequestCut: the run ended"


def test_summary_is_written_whole(tmp_path: Path) -> None:
    path = tmp_path / "out" / "summary.json"
    recording.write_summary(path, 10, 2, 10)
    assert json.loads(path.read_text()) == {"locust_requests": 10, "locust_failures": 2,
                                            "recorded": 10}  # fmt: skip
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]


# -- against the model server -------------------------------------------------------------


def check_records(records: list[Any], started: float, ended: float) -> None:
    for r in records:
        assert isinstance(r["t"], float) and started - 1 <= r["t"] <= ended
        assert isinstance(r["latency_ms"], float) and r["latency_ms"] >= 0
        assert isinstance(r["status"], int) and isinstance(r["ok"], bool)
        assert r["error"] is None or isinstance(r["error"], str)


def test_locust_records_every_request(server: testing.ServerProcess, tmp_path: Path) -> None:
    record = tmp_path / "requests.jsonl"
    started = time.time()
    _, before = server.get("/metrics")
    result = run_locust(server.url, record, "-u", "4", "-r", "4", "-t", "3s",
                        env={"LOAD_USERS": "2", "LOAD_CHURN_USERS": "2"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    records = read_lines(record)
    check_records(records, started, time.time())
    assert len(records) > 50
    assert all(r["ok"] and r["status"] == 200 for r in records), "answers pass the body check"
    assert {r["version"] for r in records} == {"1.0.0"}
    assert {r["name"] for r in records} == {KEEP_ALIVE, NEW_CONNECTION}
    _, after = server.get("/metrics")
    assert served(after) - served(before) == len(records), "one record per request served"
    check_summary(record)


def test_open_inference_v2_traffic_asks_the_infer_route(server: testing.ServerProcess,
                                                        tmp_path: Path) -> None:
    record = tmp_path / "requests.jsonl"
    _, before = server.get("/metrics")
    result = run_locust(server.url, record, "-u", "2", "-r", "2", "-t", "3s",
                        env={"LOAD_PROTOCOL": "open-inference-v2", "LOAD_USERS": "1",
                             "LOAD_CHURN_USERS": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    records = read_lines(record)
    assert len(records) > 20
    assert all(r["ok"] and r["status"] == 200 for r in records), "answers pass the v2 check"
    _, after = server.get("/metrics")
    assert served(after, "infer") - served(before, "infer") == len(records)
    assert served(after) == served(before), "not one request on the v1 route"
    check_summary(record)


V2_BAD_BODIES = [
    (answer({"predictions": [1], "model_version": "1.0.0"}), 'not {"model_version"'),
    (answer({"model_version": "1.0.0", "outputs": [{"shape": [0], "data": []}]}),
     "output of shape [0] with 0 values for 1 instances"),
    (answer({"model_version": "1.1.0", "outputs": [{"shape": [1], "data": [1]}]}),
     "model_version '1.1.0' but X-Model-Version '1.0.0'"),
]


def test_v2_answers_are_held_to_the_v2_shape(tmp_path: Path) -> None:
    record = tmp_path / "requests.jsonl"
    good = answer({"model_version": "1.0.0", "outputs": [{"shape": [1], "data": [2]}]})
    kinds = [*V2_BAD_BODIES, (good, None)]
    env = {"LOAD_USERS": "1", "LOAD_MAX_REQUESTS": str(len(kinds)),
           "LOAD_PROTOCOL": "open-inference-v2"}
    with FakeServer(lambda i: Reply(raw=kinds[i % len(kinds)][0])) as fake:
        result = run_locust(fake.url, record, "-u", "1", "-r", "1", "-t", "60s", env=env)
    records = read_lines(record)
    assert len(records) == fake.requests == len(kinds), result.stderr[-2000:]
    for r, (_, expected) in zip(records, kinds, strict=True):
        if expected is None:
            assert r["ok"], r
        else:
            assert not r["ok"] and r["error"].startswith(f"bad body: {expected}"), r


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
    assert served(metrics) == len(records), "one server request per recorded request: no retries"
    check_summary(record)


def test_connection_errors_are_recorded(tmp_path: Path) -> None:
    record = tmp_path / "requests.jsonl"
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_locust(
        f"http://127.0.0.1:{port}", record, "-u", "2", "-r", "2", "-t", "2s",
        env={"LOAD_RPS_PER_USER": "10", "LOAD_USERS": "1", "LOAD_CHURN_USERS": "1"},
    )  # fmt: skip
    assert result.returncode == 1
    records = read_lines(record)
    assert records and all(not r["ok"] and r["status"] == 0 and r["pod"] is None for r in records)
    assert all(r["error"].startswith("ConnectionRefusedError: ") for r in records)
    assert {r["name"] for r in records} == {KEEP_ALIVE, NEW_CONNECTION}
    check_summary(record)


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
    assert len(read_lines(record)) == 200
    check_summary(record)


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
    records = read_lines(record)
    assert len(records) == 20 and all(r["ok"] for r in records), "8 predictions for 8 instances"


def test_stop_file_ends_the_run_with_every_request_recorded(server: testing.ServerProcess,
                                                           tmp_path: Path) -> None:
    record, stop = tmp_path / "requests.jsonl", tmp_path / "stop"
    env = locust_env(record, {"LOAD_STOP_FILE": str(stop), "LOAD_RPS_PER_USER": "50",
                              "LOAD_USERS": "2", "LOAD_CHURN_USERS": "1"})  # fmt: skip
    _, before = server.get("/metrics")
    with subprocess.Popen(locust_command(server.url, "-u", "3", "-r", "3", "-t", "120s"),
                          env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True) as locust:  # fmt: skip
        time.sleep(2.5)
        assert locust.poll() is None
        stop.touch()
        _, err = locust.communicate(timeout=30)  # far below the 120 s run time
    assert locust.returncode == 0, err[-2000:]
    records = read_lines(record)
    assert len(records) > 50 and all(r["ok"] for r in records)
    _, after = server.get("/metrics")
    assert served(after) - served(before) == len(records), "every answered request is recorded"
    check_summary(record)


# -- against FakeServer -------------------------------------------------------------------


def test_new_connection_users_open_one_connection_per_request(tmp_path: Path) -> None:
    record = tmp_path / "requests.jsonl"
    env = {"LOAD_USERS": "2", "LOAD_CHURN_USERS": "2", "LOAD_RPS_PER_USER": "10",
           "LOAD_MAX_REQUESTS": "60"}  # fmt: skip
    with FakeServer() as fake:
        result = run_locust(fake.url, record, "-u", "4", "-r", "4", "-t", "60s", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    records = read_lines(record)
    assert len(records) == fake.requests == 60 and all(r["ok"] for r in records)
    assert {r["pod"] for r in records} == {"pod-a"}
    churned = [c for c in fake.connections if c.asked_to_close]
    kept = [c for c in fake.connections if not c.asked_to_close]
    new_connection = sum(r["name"] == NEW_CONNECTION for r in records)
    assert new_connection > 10
    assert len(churned) == new_connection and all(c.requests == 1 for c in churned), \
        "one connection per request, though the server would have kept it open"
    assert len(kept) == 2, "two keep-alive users, one connection each"
    assert sum(c.requests for c in kept) == len(records) - new_connection
    check_summary(record)


def test_latency_counts_from_the_intended_send_time(tmp_path: Path) -> None:
    """One user at 20/s; the server holds request 10 for 1.5 s. The requests due meanwhile
    go out at once when it answers, each timed from when it was meant to be sent."""
    record = tmp_path / "requests.jsonl"
    stall = 1.5
    env = {"LOAD_USERS": "1", "LOAD_RPS_PER_USER": "20", "LOAD_MAX_REQUESTS": "60"}
    with FakeServer(lambda i: Reply(delay=stall if i == 10 else 0.0)) as fake:
        result = run_locust(fake.url, record, "-u", "1", "-r", "1", "-t", "60s", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    records = read_lines(record)
    assert len(records) == fake.requests == 60 and all(r["ok"] for r in records)
    times = [r["t"] for r in records]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(abs(gap - 0.05) < 0.005 for gap in gaps), "t is the schedule, none skipped"
    stalled = records[10]
    assert stalled["latency_ms"] >= stall * 1000
    answered_at = stalled["t"] + stalled["latency_ms"] / 1000
    queued = [r for r in records[11:] if r["t"] < answered_at]
    assert len(queued) >= 20, "the requests due during the stall were sent, not skipped"
    for r in queued:  # sent after the stall ended: timed from the intended time, not the send
        assert r["t"] + r["latency_ms"] / 1000 >= answered_at - 0.01
    assert all(r["latency_ms"] > 500 for r in queued[:10]), "far above their service time"
    # late behind an answer, not by the load generator's own fault
    assert all(r["lag_ms"] > 500 for r in queued[:10])
    assert all(0 <= r["behind_ms"] < 100 for r in records), [r["behind_ms"] for r in records]
    check_summary(record)


def test_a_starved_load_generator_says_how_far_behind_it_was(tmp_path: Path) -> None:
    """Locust stopped for 0.6 s (SIGSTOP: no CPU at all) with every answer instant: the
    sends due meanwhile go out late with no answer to explain it, and say so in
    `behind_ms` — the instrument's own lateness, which the latency rule will not judge."""
    record = tmp_path / "requests.jsonl"
    env = locust_env(record, {"LOAD_USERS": "1", "LOAD_RPS_PER_USER": "20",
                              "LOAD_MAX_REQUESTS": "60"})
    with FakeServer(lambda i: Reply()) as fake:
        command = locust_command(fake.url, "-u", "1", "-r", "1", "-t", "60s")
        with subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) as locust:  # fmt: skip
            fake.wait_requests(10)
            locust.send_signal(signal.SIGSTOP)
            time.sleep(0.6)
            locust.send_signal(signal.SIGCONT)
            _, err = locust.communicate(timeout=60)
    assert locust.returncode == 0, err[-2000:]
    records = read_lines(record)
    assert len(records) == 60 and all(r["ok"] for r in records)
    starved = [r for r in records if r["behind_ms"] >= 400]
    assert starved, [r["behind_ms"] for r in records]
    for r in records:
        assert 0 <= r["behind_ms"] <= r["lag_ms"] + 0.001
    assert max(r["behind_ms"] for r in records) < 1000


BAD_BODIES = [
    (answer({"predictions": [1], "model_version": "1.1.0"}), "model_version '1.1.0'"),
    (answer({"predictions": [1, 2], "model_version": "1.0.0"}), "2 predictions for 1 instances"),
    (answer({"predictions": [], "model_version": "1.0.0"}), "0 predictions for 1 instances"),
    (answer(b"<html>ok</html>"), "not JSON"),
    (answer({"predictions": [7], "model_version": "1.0.0"}), "7 is not a class label"),
    (answer({"predictions": [True], "model_version": "1.0.0"}), "True is not a class label"),
    (answer({"predictions": [1]}), 'not {"predictions"'),
    (answer(version=None), "X-Model-Version None"),
]


def test_bad_bodies_are_failures(tmp_path: Path) -> None:
    record = tmp_path / "requests.jsonl"
    kinds = [*BAD_BODIES, (answer(), None)]  # the last: a good answer

    def reply(i: int) -> Reply:
        return Reply(raw=kinds[i % len(kinds)][0])

    env = {"LOAD_USERS": "1", "LOAD_MAX_REQUESTS": str(2 * len(kinds))}
    with FakeServer(reply) as fake:
        result = run_locust(fake.url, record, "-u", "1", "-r", "1", "-t", "60s", env=env)
    records = read_lines(record)
    assert len(records) == fake.requests == 2 * len(kinds), result.stderr[-2000:]
    for i, r in enumerate(records):  # one user: answers come back in the order sent
        expected = kinds[i % len(kinds)][1]
        assert r["status"] == 200 and r["pod"] == "pod-a"
        if expected is None:
            assert r["ok"] and r["error"] is None
        else:
            assert not r["ok"] and r["error"].startswith("bad body: "), r
            assert expected in r["error"], r
    check_summary(record)


def test_a_server_naming_its_version_in_the_body_only(tmp_path: Path) -> None:
    """MLServer and KServe's runtimes send no version header and no pod name: with
    LOAD_ANSWER_VERSION=body each request is recorded with its body's model_version,
    and a bad body is still a failure."""
    record = tmp_path / "requests.jsonl"
    kinds = [
        (answer({"predictions": [1], "model_version": "1.0.0"}, version=None, pod=None), None),
        (answer({"predictions": [1], "model_version": "1.1.0"}, version=None, pod=None), None),
        (answer({"predictions": [1]}, version=None, pod=None), 'not {"predictions"'),
        (answer({"predictions": [9], "model_version": "1.1.0"}, version=None, pod=None),
         "9 is not a class label"),
    ]
    env = {"LOAD_USERS": "1", "LOAD_MAX_REQUESTS": str(len(kinds)),
           "LOAD_ANSWER_VERSION": "body"}
    with FakeServer(lambda i: Reply(raw=kinds[i % len(kinds)][0])) as fake:
        result = run_locust(fake.url, record, "-u", "1", "-r", "1", "-t", "60s", env=env)
    records = read_lines(record)
    assert len(records) == len(kinds), result.stderr[-2000:]
    assert [r["version"] for r in records] == ["1.0.0", "1.1.0", None, "1.1.0"]
    assert [r["ok"] for r in records] == [True, True, False, False]
    for r, (_, expected) in zip(records, kinds, strict=True):
        assert r["pod"] is None
        assert expected is None or expected in r["error"]
    check_summary(record)


@pytest.mark.parametrize(("reply", "error"), [
    (Reply(raw=None, end="reset"), "ConnectionResetError: "),
    (Reply(delay=3.0), "timeout: "),
    (Reply(raw=None, end="close"), "HTTPConnectionClosed: "),
], ids=["reset", "stall-past-timeout", "close-without-answer"])  # fmt: skip
def test_no_silent_retry(reply: Reply, error: str, tmp_path: Path) -> None:
    record = tmp_path / "requests.jsonl"
    env = {"LOAD_USERS": "1", "LOAD_CHURN_USERS": "1", "LOAD_TIMEOUT_SECONDS": "1",
           "LOAD_MAX_REQUESTS": "6"}  # fmt: skip
    with FakeServer(lambda i: reply) as fake:
        result = run_locust(fake.url, record, "-u", "2", "-r", "2", "-t", "60s", env=env)
        requests = fake.requests
    records = read_lines(record)
    assert len(records) == requests == 6, result.stderr[-2000:]
    assert all(not r["ok"] and r["status"] == 0 and r["pod"] is None for r in records)
    assert all(r["error"].startswith(error) for r in records), [r["error"] for r in records]
    check_summary(record)


def stopped_run(tmp_path: Path, reply: Callable[[int], Reply], *, users: int,
                churn_users: int, wait_for: int,
                locust_args: Sequence[str]) -> tuple[Path, int, str]:
    """Locust against a fake server, stopped through its stop file once the server has
    read `wait_for` requests: (the record's path, requests the server read, stderr)."""
    record, stop = tmp_path / "requests.jsonl", tmp_path / "stop"
    env = locust_env(record, {"LOAD_STOP_FILE": str(stop), "LOAD_USERS": str(users),
                              "LOAD_CHURN_USERS": str(churn_users),
                              "LOAD_TIMEOUT_SECONDS": "30"})  # fmt: skip
    with FakeServer(reply) as fake:
        command = locust_command(fake.url, *locust_args)
        with subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) as locust:  # fmt: skip
            fake.wait_requests(wait_for)
            stop.touch()
            _, err = locust.communicate(timeout=30)
        return record, fake.requests, err


def test_requests_cut_at_stop_are_recorded(tmp_path: Path) -> None:
    """The server never answers in time: when the stop file ends the run, Locust waits
    --stop-timeout (1 s), then kills the users mid-request. Their requests fire no
    event of Locust's own; the locustfile records them, and counts them for Locust too."""
    record, requests, err = stopped_run(
        tmp_path, lambda i: Reply(delay=20.0), users=2, churn_users=1, wait_for=3,
        locust_args=("-u", "3", "-r", "3", "-t", "60s", "--stop-timeout", "1"))
    records = read_lines(record)
    assert len(records) == requests == 3, err[-2000:]
    assert all(not r["ok"] and r["error"].startswith("RequestCut: ") for r in records)
    assert {r["name"] for r in records} == {KEEP_ALIVE, NEW_CONNECTION}
    check_summary(record)


def test_sigterm_still_finishes_requests_under_way(tmp_path: Path) -> None:
    """On SIGTERM Locust fires quitting before it stops the users: the locustfile stops
    them first, so the requests under way are answered and recorded before the record
    closes."""
    record = tmp_path / "requests.jsonl"
    env = locust_env(record, {"LOAD_USERS": "2"})
    with FakeServer(lambda i: Reply(delay=1.0 if i >= 4 else 0.0)) as fake:
        command = locust_command(fake.url, "-u", "2", "-r", "2", "-t", "60s")
        with subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) as locust:  # fmt: skip
            fake.wait_requests(6)
            locust.send_signal(signal.SIGTERM)
            _, err = locust.communicate(timeout=30)
        requests = fake.requests
    records = read_lines(record)
    assert len(records) == requests, err[-2000:]
    assert all(r["ok"] for r in records), "answered within --stop-timeout"
    check_summary(record)


ORPHAN = """
import os, subprocess, sys, time
env = {**os.environ, "LOAD_PARENT_PID": str(os.getpid())}
child = subprocess.Popen(sys.argv[1:], env=env, cwd=os.environ["RECORD_DIR"])
print(child.pid, flush=True)
time.sleep(60)
"""


def test_locust_ends_when_the_process_that_started_it_is_killed(
        server: testing.ServerProcess, tmp_path: Path) -> None:
    record = tmp_path / "requests.jsonl"
    env = {**locust_env(record, {"LOAD_USERS": "2", "LOAD_CHURN_USERS": "0"}),
           "RECORD_DIR": str(tmp_path)}
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHAN, *locust_command(server.url, "-u", "2", "-r", "2",
                                                        "-t", "60s")],
        env=env, stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    locust = int(parent.stdout.readline())
    deadline = time.monotonic() + 20
    while not record.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    parent.kill()  # SIGKILL: no clean-up of its own
    parent.wait()
    started = time.monotonic()
    while Path(f"/proc/{locust}").exists() and time.monotonic() - started < 30:
        if Path(f"/proc/{locust}/stat").read_text().split(") ")[1].startswith("Z"):
            break
        time.sleep(0.1)
    assert time.monotonic() - started < 15, "Locust went on without its parent"
    assert check_summary(record)["locust_requests"] == len(read_lines(record)) > 0


# -- several processes: Locust's master and workers (--processes) -------------------------

FIELDS = {"t", "latency_ms", "status", "error", "version", "ok", "name", "pod", "lag_ms",
          "behind_ms"}


def parts_of(record: Path) -> dict[int, list[dict[str, Any]]]:
    """Each worker's lines, by worker index, from the files beside `record`."""
    return {worker: read_lines(path) for worker, path in evidence.part_records(record).items()}


def check_workers_summary(record: Path) -> dict[int, list[dict[str, Any]]]:
    """The master's totals agree with its workers' records line for line, and each
    worker's record with what the worker said it wrote."""
    parts = parts_of(record)
    lines = [line for part in parts.values() for line in part]
    summary = json.loads(record.with_name("summary.json").read_text())
    assert not record.exists(), "workers write their own files, never the record itself"
    assert summary == {"locust_requests": len(lines),
                       "locust_failures": sum(not r["ok"] for r in lines),
                       "recorded": len(lines),
                       "workers": {str(w): len(part) for w, part in parts.items()}}  # fmt: skip
    return parts


def in_processes(*args: str) -> list[str]:
    """Locust's arguments for two workers and a master that listens on a port of its own
    (a test running at the same time must not take our workers)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    return [*args, "--processes", "2", "--master-bind-host", "127.0.0.1",
            "--master-bind-port", port, "--master-port", port]


SPAWNED = 1.5
"""Seconds from the workers' start to their users' (the master looks for its workers
once a second, then spawns the users)."""


def wait_for_workers(record: Path) -> None:
    """Until both workers have opened their records (they flush them only at 2,000 lines
    or at the end)."""
    deadline = time.monotonic() + 20
    while len(evidence.part_records(record)) < 2:
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.05)


def run_in_processes(host: str, record: Path, stop_after: float, *args: str,
                     env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Two workers and a master, ended through the stop file after `stop_after` s."""
    stop = record.with_name("stop")
    command = locust_command(host, *in_processes(*args, "-t", "60s"))
    with subprocess.Popen(command, env=locust_env(record, {"LOAD_STOP_FILE": str(stop), **env}),
                          cwd=record.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as locust:  # fmt: skip
        wait_for_workers(record)
        time.sleep(SPAWNED + stop_after)
        stop.touch()
        out, err = locust.communicate(timeout=40)
    return subprocess.CompletedProcess(command, locust.returncode, out, err)


def test_two_workers_record_every_request_once(server: testing.ServerProcess,
                                               tmp_path: Path) -> None:
    record = tmp_path / "requests.jsonl"
    _, before = server.get("/metrics")
    result = run_in_processes(server.url, record, 2.0, "-u", "4", "-r", "4",
                              env={"LOAD_USERS": "2", "LOAD_CHURN_USERS": "2",
                                   "LOAD_RPS_PER_USER": "25"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    parts = check_workers_summary(record)
    assert sorted(parts) == [0, 1] and all(len(part) > 20 for part in parts.values())
    _, after = server.get("/metrics")
    lines = [line for part in parts.values() for line in part]
    assert served(after) - served(before) == len(lines), "each request recorded exactly once"
    assert all(set(r) == FIELDS and r["ok"] and r["version"] == "1.0.0" for r in lines)
    assert {r["name"] for r in lines} == {KEEP_ALIVE, NEW_CONNECTION}
    taken = evidence.merge_parts(record)
    assert taken == {w: len(part) for w, part in parts.items()}
    assert len(evidence.read_requests(record)) == len(lines) and not evidence.part_records(record)


def test_each_user_keeps_its_own_schedule_in_its_worker(tmp_path: Path) -> None:
    """Two users at 20/s, one per worker: each worker's record is one user's schedule."""
    record = tmp_path / "requests.jsonl"
    with FakeServer() as fake:
        result = run_in_processes(fake.url, record, 2.0, "-u", "2", "-r", "2",
                                  env={"LOAD_USERS": "2", "LOAD_RPS_PER_USER": "20"})
        requests = fake.requests
    assert result.returncode == 0, result.stderr[-2000:]
    parts = check_workers_summary(record)
    assert sum(len(part) for part in parts.values()) == requests
    for part in parts.values():
        gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(part)]
        assert len(gaps) > 20 and all(abs(gap - 0.05) < 0.005 for gap in gaps), gaps


def test_the_request_cap_holds_in_every_worker_and_ends_the_run(tmp_path: Path) -> None:
    """LOAD_MAX_REQUESTS bounds each worker; the first to reach it ends the run for all."""
    record = tmp_path / "requests.jsonl"
    started = time.monotonic()
    with FakeServer() as fake:
        result = run_locust(fake.url, record, *in_processes("-u", "4", "-r", "4", "-t", "60s"),
                            env={"LOAD_MAX_REQUESTS": "150"})
        requests = fake.requests
    assert result.returncode == 0, result.stderr[-2000:]
    assert time.monotonic() - started < 30, "the cap, not -t, ended the run"
    parts = check_workers_summary(record)
    counts = sorted(len(part) for part in parts.values())
    assert counts[-1] == 150 and sum(counts) == requests <= 300, counts


def test_requests_cut_in_workers_at_stop_are_in_the_masters_totals(tmp_path: Path) -> None:
    """The workers' last requests end a second after the stop (--stop-timeout 1, cut):
    later than Locust's own quit waits for its workers' statistics (0.5 s), and long
    before their next regular report. The master waits for every worker's report."""
    record, requests, err = stopped_run(
        tmp_path, lambda i: Reply(delay=20.0 if i >= 20 else 0.0), users=2, churn_users=2,
        wait_for=24, locust_args=in_processes("-u", "4", "-r", "4", "-t", "60s",
                                              "--stop-timeout", "1"))
    parts = check_workers_summary(record)
    lines = [line for part in parts.values() for line in part]
    assert len(lines) == requests == 24, err[-2000:]
    cut = [r for r in lines if not r["ok"]]
    assert len(cut) == 4 and all(r["error"].startswith("RequestCut: ") for r in cut)


def test_the_master_and_its_workers_end_when_the_harness_is_killed(
        server: testing.ServerProcess, tmp_path: Path) -> None:
    record = tmp_path / "requests.jsonl"
    env = {**locust_env(record, {"LOAD_USERS": "2", "LOAD_CHURN_USERS": "0",
                                 "LOAD_RPS_PER_USER": "50"}), "RECORD_DIR": str(tmp_path)}
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHAN, *locust_command(server.url, *in_processes(
            "-u", "2", "-r", "2", "-t", "60s"))],
        env=env, stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    master = int(parent.stdout.readline())
    wait_for_workers(record)
    time.sleep(SPAWNED + 1)
    locusts = [master, *procs.descendants(master)]
    assert len(locusts) == 3, "a master and two workers"
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 15
    while any(procs.running(pid) for pid in locusts) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in locusts if procs.running(pid)], "Locust went on without us"
    parts = check_workers_summary(record)
    assert all(parts.values())
