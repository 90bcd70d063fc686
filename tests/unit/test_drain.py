"""Graceful drain over real sockets: a rolling update in miniature.

Two servers (old 1.0.0 and new 1.1.0) sit behind a client-side "Service":
each new connection goes to a server from the endpoint list, keep-alive
connections stay pinned to theirs, like kube-proxy. A controller polls the
old server's readiness and removes it from the endpoints a little after it
fails, like the endpoints controller plus kube-proxy lag. Clients hammer
predict without retries through SIGTERM of the old server. With graceful
drain no request may fail; with it switched off requests must fail (the
negative control, proving the test can fail).
"""

from __future__ import annotations

import http.client
import itertools
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from model_server import testing, train

pytestmark = pytest.mark.timeout(120)

ROW = [14.23, 1.71, 2.43, 15.6, 127, 2.8, 3.06, 0.28, 2.29, 5.64, 1.04, 3.92, 1065]
BODY = json.dumps({"instances": [ROW]}).encode()
PREDICT = "/v1/models/ml-model:predict"
HEADERS = {"Content-Type": "application/json"}
ENDPOINT_LAG = 0.3
"""Seconds between readiness failing and the endpoint leaving the list."""


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    for version in ("1.0.0", "1.1.0", "1.0.0-slow-start", "1.0.0-never-ready", "1.0.0-stall"):
        train.train(version, root / version)
    return {p.name: p for p in root.iterdir()}


@dataclass
class Outcome:
    """What the clients saw."""

    ok: int = 0
    errors: list[str] = field(default_factory=list)
    by_port: dict[int, int] = field(default_factory=dict)
    closes: int = 0
    versions: set[str] = field(default_factory=set)
    pods: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Service:
    """Client-side load balancing over an endpoint list, per new connection."""

    def __init__(self, ports: list[int]) -> None:
        self.endpoints = list(ports)
        self._next = itertools.count()
        self.lock = threading.Lock()

    def pick(self) -> int:
        with self.lock:
            return self.endpoints[next(self._next) % len(self.endpoints)]

    def remove(self, port: int) -> None:
        with self.lock:
            self.endpoints.remove(port)


def client(
    service: Service, outcome: Outcome, stop: threading.Event, warm: threading.Barrier
) -> None:
    conn: http.client.HTTPConnection | None = None
    port = 0
    done = 0
    while not stop.is_set():
        if conn is None:
            port = service.pick()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("POST", PREDICT, BODY, HEADERS)
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as e:
            with outcome.lock:
                outcome.errors.append(f"{port}: {type(e).__name__}: {e}")
            conn.close()
            conn = None
            continue
        with outcome.lock:
            if response.status == 200:
                outcome.ok += 1
                outcome.by_port[port] = outcome.by_port.get(port, 0) + 1
                outcome.versions.add(response.getheader("X-Model-Version", ""))
                outcome.pods.add(response.getheader("X-Pod-Name", ""))
            else:
                outcome.errors.append(f"{port}: HTTP {response.status}")
            if response.will_close:
                outcome.closes += 1
        if response.will_close:
            conn.close()
            conn = None
        done += 1
        if done == 20:
            warm.wait()
    if conn is not None:
        conn.close()


def controller(server: testing.ServerProcess, service: Service, stop: threading.Event) -> None:
    """Readiness probe plus endpoint removal, with kube-proxy's lag."""
    while not stop.is_set():
        if server.get("/readyz", timeout=1)[0] != 200:
            time.sleep(ENDPOINT_LAG)
            service.remove(server.port)
            return
        time.sleep(0.05)


@pytest.fixture
def new_server(models: dict[str, Path]) -> Iterator[testing.ServerProcess]:
    with testing.ServerProcess(models["1.1.0"], {"MODEL_POD_NAME": "ml-model-new"}) as server:
        server.wait_ready()
        yield server


def roll(
    old: testing.ServerProcess, new: testing.ServerProcess, users: int = 4
) -> tuple[Outcome, int, float]:
    """Hammer both, SIGTERM the old one, keep going until it exited; return what was seen."""
    service = Service([old.port, new.port])
    outcome = Outcome()
    stop = threading.Event()
    warm = threading.Barrier(users + 1)
    threads = [
        threading.Thread(target=client, args=(service, outcome, stop, warm)) for _ in range(users)
    ]
    watcher = threading.Thread(target=controller, args=(old, service, stop))
    for t in threads:
        t.start()
    try:
        warm.wait(timeout=30)
        assert old.port in outcome.by_port and new.port in outcome.by_port
        served_before = outcome.by_port[old.port]
        watcher.start()
        started = time.monotonic()
        old.send_signal(signal.SIGTERM)
        code = old.wait(timeout=30)
        elapsed = time.monotonic() - started
        time.sleep(0.3)  # traffic goes on after the old server is gone
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        if watcher.is_alive():
            watcher.join(5)
    outcome.by_port[-1] = outcome.by_port[old.port] - served_before  # served after SIGTERM
    return outcome, code, elapsed


def test_graceful_drain_loses_no_request(
    models: dict[str, Path], new_server: testing.ServerProcess
) -> None:
    """The drain starts on SIGTERM here, as in the chart's ``gracefulDrain.preStop=false``."""
    env = {
        "MODEL_DRAIN_SECONDS": "2",
        "MODEL_SHUTDOWN_TIMEOUT_SECONDS": "5",
        "MODEL_POD_NAME": "ml-model-old",
    }
    old = testing.ServerProcess(models["1.0.0"], env).start()
    try:
        old.wait_ready()
        outcome, code, elapsed = roll(old, new_server)
    finally:
        old.kill()
    assert outcome.errors == [], f"{len(outcome.errors)} failed requests:\n" + "\n".join(
        outcome.errors[:10]
    )
    assert code == 0, old.output
    assert 2 <= elapsed < 2 + 5, "exits after the drain period, within the grace period"
    assert outcome.by_port[-1] > 0, "the old server kept serving during the drain"
    assert outcome.closes >= 4, "every pinned keep-alive connection was told to close"
    assert outcome.versions == {"1.0.0", "1.1.0"}
    assert outcome.pods == {"ml-model-old", "ml-model-new"}, "every answer names its pod"
    assert outcome.ok > 100


def test_negative_control_without_drain_requests_fail(
    models: dict[str, Path], new_server: testing.ServerProcess
) -> None:
    env = {"MODEL_GRACEFUL_DRAIN": "false"}
    old = testing.ServerProcess(models["1.0.0"], env).start()
    try:
        old.wait_ready()
        outcome, code, elapsed = roll(old, new_server)
    finally:
        old.kill()
    assert len(outcome.errors) >= 2, "pinned connections to the killed server must fail"
    print(f"negative control: {len(outcome.errors)} failed, e.g. {outcome.errors[:3]}")
    assert elapsed < 2, "no drain: exits at once"
    assert code == 0


def test_new_connections_are_served_while_draining(models: dict[str, Path]) -> None:
    with testing.ServerProcess(models["1.0.0"], {"MODEL_DRAIN_SECONDS": "30"}) as server:
        server.wait_ready()
        server.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while server.get("/readyz")[0] != 503:
            assert time.monotonic() < deadline, server.output
            time.sleep(0.02)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("POST", PREDICT, BODY, HEADERS)
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Connection") == "close"
        response.read()
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", "/readyz")
        response = conn.getresponse()
        response.read()
        conn.close()
        assert response.status == 503
        assert response.getheader("X-Pod-Name") == socket.gethostname(), "the default"
        _, metrics = server.get("/metrics")
        assert b"model_draining 1" in metrics and b"model_ready 0" in metrics
        server.send_signal(signal.SIGTERM)  # a second SIGTERM stops at once
        assert server.wait(timeout=10) == 0


def wait_in_flight(server: testing.ServerProcess, n: int) -> None:
    """Until the server has read the heads of ``n`` requests it has not answered yet."""
    deadline = time.monotonic() + 10
    # /metrics counts itself as in flight while it renders
    while f"model_requests_in_flight {n + 1}\n".encode() not in server.get("/metrics")[1]:
        assert time.monotonic() < deadline, server.output
        time.sleep(0.02)


def test_requests_under_way_finish_after_the_listener_closed(models: dict[str, Path]) -> None:
    env = {"MODEL_DRAIN_SECONDS": "0", "MODEL_SHUTDOWN_TIMEOUT_SECONDS": "20"}
    with testing.ServerProcess(models["1.0.0"], env) as server:
        server.wait_ready()
        head = (
            f"POST {PREDICT} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(head + BODY[:10])
            wait_in_flight(server, 1)
            server.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while server.get("/healthz", timeout=1)[0] != 0:  # until the listener is closed
                assert time.monotonic() < deadline, server.output
                time.sleep(0.02)
            sock.sendall(BODY[10:])
            answer = sock.makefile("rb").read()
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Connection: close" in answer
        assert server.wait(timeout=10) == 0


def test_stalled_request_finishes_during_the_drain(models: dict[str, Path]) -> None:
    env = {
        "MODEL_DRAIN_SECONDS": "0",
        "MODEL_SHUTDOWN_TIMEOUT_SECONDS": "20",
        "MODEL_STALL_RATE": "1",
        "MODEL_STALL_SECONDS": "1.5",
    }
    with testing.ServerProcess(models["1.0.0-stall"], env) as server:
        server.wait_ready()
        head = (
            f"POST {PREDICT} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            started = time.monotonic()
            sock.sendall(head + BODY)
            wait_in_flight(server, 1)
            server.send_signal(signal.SIGTERM)
            answer = sock.makefile("rb").read()
            elapsed = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Connection: close" in answer
        assert b'"predictions"' in answer
        assert elapsed >= 1.5
        assert server.wait(timeout=10) == 0


def test_stall_longer_than_the_shutdown_timeout_is_cut(models: dict[str, Path]) -> None:
    env = {
        "MODEL_DRAIN_SECONDS": "0",
        "MODEL_SHUTDOWN_TIMEOUT_SECONDS": "0.5",
        "MODEL_STALL_RATE": "1",
        "MODEL_STALL_SECONDS": "30",
    }
    with testing.ServerProcess(models["1.0.0-stall"], env) as server:
        server.wait_ready()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("POST", PREDICT, BODY, HEADERS)
        wait_in_flight(server, 1)
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        with pytest.raises((OSError, http.client.HTTPException)):
            conn.getresponse()
        conn.close()
        assert server.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
        assert "cutting 1 connection" in server.output


def test_shutdown_timeout_cuts_stuck_requests(models: dict[str, Path]) -> None:
    env = {"MODEL_DRAIN_SECONDS": "0", "MODEL_SHUTDOWN_TIMEOUT_SECONDS": "0.5"}
    with testing.ServerProcess(models["1.0.0"], env) as server:
        server.wait_ready()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                f"POST {PREDICT} HTTP/1.1\r\nHost: t\r\nContent-Length: 99\r\n\r\n".encode()
            )
            wait_in_flight(server, 1)
            started = time.monotonic()
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
        assert "cutting 1 connection" in server.output


def test_prestop_drain_then_sigterm(models: dict[str, Path]) -> None:
    env = {"MODEL_DRAIN_SECONDS": "1"}
    with testing.ServerProcess(models["1.0.0"], env) as server:
        server.wait_ready()
        hook = subprocess.run(
            [sys.executable, "-m", "model_server", "drain", "--port", str(server.port), "--wait"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert hook.returncode == 0, hook.stderr
        assert "draining" in hook.stdout
        assert server.get("/readyz")[0] == 503
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
        assert time.monotonic() - started < 1, "the drain period already passed in preStop"


def test_drain_hook_fails_loudly_without_a_server() -> None:
    hook = subprocess.run(
        [sys.executable, "-m", "model_server", "drain", "--port", str(free_port())],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert hook.returncode == 1 and "cannot reach" in hook.stderr


def test_slow_start_becomes_ready_later(models: dict[str, Path]) -> None:
    env = {"MODEL_SLOW_START_SECONDS": "1.5"}
    with testing.ServerProcess(models["1.0.0-slow-start"], env) as server:
        assert server.get("/healthz")[0] == 200
        assert server.get("/readyz")[0] == 503
        started = time.monotonic()
        server.wait_ready(timeout=30)
        assert time.monotonic() - started > 0.5


def test_never_ready_build_stays_unready(models: dict[str, Path]) -> None:
    with testing.ServerProcess(models["1.0.0-never-ready"]) as server:
        deadline = time.monotonic() + 30
        while "model loaded" not in server.output:
            assert time.monotonic() < deadline, server.output
            time.sleep(0.02)
        assert server.get("/readyz")[0] == 503
        assert server.get("/healthz")[0] == 200


def free_port() -> int:
    """A port with nothing listening on it (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
