"""The HTTP/1.1 transport over real sockets: keep-alive, pipelining, limits, errors."""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from model_server import app, model, testing, train
from model_server.settings import Settings

pytestmark = pytest.mark.timeout(120)

ROW = [14.23, 1.71, 2.43, 15.6, 127, 2.8, 3.06, 0.28, 2.29, 5.64, 1.04, 3.92, 1065]
BODY = json.dumps({"instances": [ROW]}).encode()
PREDICT = "/v1/models/ml-model:predict"
POD = "ml-model-5c7f9-x2kqz"
STALL_SECONDS = 1.0
JSON_TYPE = b"application/json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testing.ServerProcess]:
    directory = tmp_path_factory.mktemp("model") / "1.0.0"
    train.train("1.0.0", directory)
    env = {
        "MODEL_MAX_BODY_BYTES": "65536",
        "MODEL_HEADER_TIMEOUT_SECONDS": "1",
        "MODEL_POD_NAME": POD,
    }
    with testing.ServerProcess(directory, env) as process:
        process.wait_ready()
        yield process


def exchange(server: testing.ServerProcess, raw: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def request(body: bytes = BODY, extra: bytes = b"", close: bool = True) -> bytes:
    connection = b"Connection: close\r\n" if close else b""
    return (
        b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n%s%s\r\n%s" % (len(body), connection, extra, body)
    )


def statuses(raw: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)]


def test_keep_alive_serves_many_requests_on_one_connection(server: testing.ServerProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.connect()
    sock = conn.sock
    for _ in range(50):
        conn.request("POST", PREDICT, BODY, {"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("X-Model-Version") == "1.0.0"
        assert response.getheader("X-Pod-Name") == POD
        assert json.loads(response.read())["predictions"] == [0]
        assert conn.sock is sock, "the connection must stay open"
    conn.close()


def test_pipelined_requests_are_answered_in_order(server: testing.ServerProcess) -> None:
    raw = request(close=False) + b"GET /version HTTP/1.1\r\nHost: t\r\n\r\n" + request(close=True)
    answer = exchange(server, raw)
    assert statuses(answer) == [200, 200, 200]
    assert answer.count(b"X-Model-Version: 1.0.0") == 3


def test_request_split_across_many_writes(server: testing.ServerProcess) -> None:
    raw = request()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        for i in range(0, len(raw), 7):
            sock.sendall(raw[i : i + 7])
        answer = sock.makefile("rb").read()
    assert statuses(answer) == [200]


def test_http10_closes_unless_keep_alive(server: testing.ServerProcess) -> None:
    answer = exchange(server, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert statuses(answer) == [200] and b"Connection: close" in answer
    raw = b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /healthz HTTP/1.0\r\n\r\n"
    answer = exchange(server, raw)
    assert statuses(answer) == [200, 200] and b"Connection: keep-alive" in answer


def test_expect_100_continue(server: testing.ServerProcess) -> None:
    head = request(body=b"", extra=b"Expect: 100-continue\r\n").replace(
        b"Content-Length: 0", b"Content-Length: %d" % len(BODY)
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head)
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(BODY)
        answer = sock.makefile("rb").read()
    assert statuses(answer) == [200]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"garbage\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET /healthz HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        (b"GET healthz HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400),
        (
            b"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
        ),
        (b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411),
        (b"GET /healthz HTTP/1.1\r\nHost: t\r\nExpect: magic\r\n\r\n", 417),
        (b"GET /healthz HTTP/1.1\r\nHost: t\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431),
        (b"GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 404),
        (b"PUT /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 405),
    ],
)
def test_protocol_errors_are_4xx_with_version_header(
    server: testing.ServerProcess, raw: bytes, status: int
) -> None:
    answer = exchange(server, raw)
    assert statuses(answer) == [status], answer[:300]
    assert b"X-Model-Version: 1.0.0" in answer
    assert b"X-Pod-Name: " + POD.encode() + b"\r\n" in answer


@pytest.mark.parametrize(
    ("method", "target", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/readyz", 200),
        ("HEAD", "/readyz", 200),
        ("GET", "/version", 200),
        ("GET", "/metrics", 200),
        ("GET", "/v1/models/ml-model", 200),
        ("GET", PREDICT, 405),
        ("GET", "/v1/models/other:predict", 404),
    ],
)
def test_every_response_names_its_pod(
    server: testing.ServerProcess, method: str, target: str, status: int
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request(method, target)
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    assert response.status == status
    assert response.getheader("X-Pod-Name") == POD
    assert response.getheader("X-Model-Version") == "1.0.0"


def test_predict_errors_name_their_pod(server: testing.ServerProcess) -> None:
    for body, content_type, status in (
        (BODY, "text/plain", 415),
        (b"{oops", "application/json", 400),
        (b'{"instances": [[1]]}', "application/json", 400),
    ):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("POST", PREDICT, body, {"Content-Type": content_type})
        response = conn.getresponse()
        response.read()
        conn.close()
        assert (response.status, response.getheader("X-Pod-Name")) == (status, POD)


def test_body_over_the_limit_gets_413_without_reading_it(server: testing.ServerProcess) -> None:
    head = request(body=b"").replace(b"Content-Length: 0", b"Content-Length: 10000000")
    answer = exchange(server, head)
    assert statuses(answer) == [413]
    assert statuses(exchange(server, request(body=b"[" * 70000))) == [413]


def test_head_has_headers_but_no_body(server: testing.ServerProcess) -> None:
    answer = exchange(server, b"HEAD /version HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert statuses(head) == [200] and body == b""
    assert int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]) > 0


def test_slow_request_times_out_with_408(server: testing.ServerProcess) -> None:
    started = time.monotonic()
    answer = exchange(server, b"GET /healthz HTTP/1.1\r\nHost: t\r\n", timeout=10)
    assert statuses(answer) == [408]
    assert time.monotonic() - started < 5


# --- the -stall build: late answers, without holding anything else up ---


@pytest.fixture(scope="module")
def stall_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("model") / "1.0.0-stall"
    train.train("1.0.0-stall", directory)
    return directory


@pytest.fixture(scope="module")
def stall_bodies(stall_model: Path) -> tuple[bytes, bytes]:
    """A body the stall build answers late and one it answers at once (by the app's rule)."""
    metadata = model.read_metadata(stall_model)
    application = app.App(Settings.from_env({}, stall_rate=0.5), metadata)
    application.model = model.load(stall_model, metadata)
    rows = (stall_model / train.HOLDOUT_FILE).read_text().splitlines()
    bodies = [orjson.dumps({"instances": [json.loads(r)["instance"]]}) for r in rows]

    def delay(body: bytes) -> float:
        _, response = application.handle(b"POST", PREDICT.encode(), JSON_TYPE, body, False)
        return response.delay

    late = next(b for b in bodies if delay(b) > 0)
    prompt = next(b for b in bodies if delay(b) == 0)
    return late, prompt


@pytest.fixture(scope="module")
def stall_server(stall_model: Path) -> Iterator[testing.ServerProcess]:
    env = {"MODEL_STALL_RATE": "0.5", "MODEL_STALL_SECONDS": str(STALL_SECONDS)}
    with testing.ServerProcess(stall_model, env) as process:
        process.wait_ready()
        yield process


def timed_predict(port: int, body: bytes) -> tuple[int, float, bytes]:
    """One predict on a fresh connection: status, seconds taken, body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    started = time.monotonic()
    try:
        conn.request("POST", PREDICT, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    return response.status, time.monotonic() - started, data


def test_stalled_answer_does_not_hold_up_other_requests(
    stall_server: testing.ServerProcess, stall_bodies: tuple[bytes, bytes]
) -> None:
    late, prompt = stall_bodies
    result: list[tuple[int, float, bytes]] = []
    stalled = threading.Thread(target=lambda: result.append(timed_predict(stall_server.port, late)))
    stalled.start()
    time.sleep(0.1)
    others = [timed_predict(stall_server.port, prompt) for _ in range(5)]
    health = stall_server.get("/healthz")[0]
    still_waiting = stalled.is_alive()
    stalled.join(10)
    assert still_waiting, "the stalled request was answered too early"
    assert health == 200
    for status, seconds, _ in others:
        assert status == 200 and seconds < STALL_SECONDS / 2, others
    status, seconds, data = result[0]
    assert status == 200 and seconds >= STALL_SECONDS, result
    assert json.loads(data)["model_version"] == "1.0.0-stall"
    assert b"model_requests_in_flight 1\n" in stall_server.get("/metrics")[1]  # itself only


def test_pipelined_requests_wait_behind_a_stalled_one(
    stall_server: testing.ServerProcess, stall_bodies: tuple[bytes, bytes]
) -> None:
    late, _ = stall_bodies
    raw = (
        request(late, close=False)
        + b"GET /version HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    started = time.monotonic()
    answer = exchange(stall_server, raw)
    assert time.monotonic() - started >= STALL_SECONDS
    assert statuses(answer) == [200, 200]
    assert answer.index(b'"predictions"') < answer.index(b'"holdout_accuracy"'), "in order"


def test_stalled_answer_reaches_a_half_closed_client(
    stall_server: testing.ServerProcess, stall_bodies: tuple[bytes, bytes]
) -> None:
    late, prompt = stall_bodies
    with socket.create_connection(("127.0.0.1", stall_server.port), timeout=10) as sock:
        sock.sendall(request(late, close=False) + request(prompt, close=False))
        sock.shutdown(socket.SHUT_WR)
        answer = sock.makefile("rb").read()
    assert statuses(answer) == [200, 200]


def test_same_input_stalls_every_time_and_others_never(
    stall_server: testing.ServerProcess, stall_bodies: tuple[bytes, bytes]
) -> None:
    late, prompt = stall_bodies
    assert timed_predict(stall_server.port, late)[1] >= STALL_SECONDS
    assert all(timed_predict(stall_server.port, prompt)[1] < STALL_SECONDS / 2 for _ in range(3))


def test_normal_build_never_stalls(
    server: testing.ServerProcess, stall_bodies: tuple[bytes, bytes]
) -> None:
    for body in stall_bodies:
        status, seconds, _ = timed_predict(server.port, body)
        assert status == 200 and seconds < STALL_SECONDS / 2


# --- the -slow build: every answer a known amount late, nothing held up ---

SLOW_MS = 300


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testing.ServerProcess]:
    directory = tmp_path_factory.mktemp("model") / "1.0.0-slow"
    train.train("1.0.0-slow", directory)
    with testing.ServerProcess(directory, {"MODEL_SLOW_MS": str(SLOW_MS)}) as process:
        process.wait_ready()
        yield process


def test_slow_build_answers_every_prediction_late_without_holding_others_up(
    slow_server: testing.ServerProcess
) -> None:
    results: list[tuple[int, float, bytes]] = []
    clients = [threading.Thread(target=lambda: results.append(timed_predict(slow_server.port,
                                                                            BODY)))
               for _ in range(4)]
    started = time.monotonic()
    for client in clients:
        client.start()
    health_status, health_seconds = slow_server.get("/healthz")[0], time.monotonic() - started
    for client in clients:
        client.join(10)
    elapsed = time.monotonic() - started
    assert [status for status, _, _ in results] == [200] * 4
    assert all(seconds >= SLOW_MS / 1000 for _, seconds, _ in results), results
    assert elapsed < 2 * SLOW_MS / 1000, "four late answers at once, not one after another"
    assert health_status == 200 and health_seconds < SLOW_MS / 1000
    assert {json.loads(data)["model_version"] for _, _, data in results} == {"1.0.0-slow"}


def test_server_survives_everything_above(server: testing.ServerProcess) -> None:
    assert server.get("/healthz")[0] == 200
    status, body = server.get("/metrics")
    assert status == 200 and b'model_requests_total{route="invalid",code="400"}' in body
