"""Fuzzing: no input, however odd, gets a 5xx or takes the server down, on either protocol."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from model_server import app, model, testing, train
from model_server.settings import Settings

pytestmark = pytest.mark.timeout(300)

PREDICT = b"/v1/models/ml-model:predict"
INFER = b"/v2/models/ml-model/infer"
KNOWN_TARGETS = [
    b"/", b"/healthz", b"/readyz", b"/version", b"/metrics", b"/drain", b"/v1/models",
    b"/v1/models/ml-model", PREDICT, b"/v1/models/x:predict", b"/v2", b"/v2/health/live",
    b"/v2/health/ready", b"/v2/models/ml-model", b"/v2/models/ml-model/ready", INFER,
    b"/v2/models/x/infer", b"/v2/models/ml-model/versions/1.0.0/infer",
]  # fmt: skip

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=30,
)
scalars = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.booleans()
    | st.none()
    | st.text(max_size=3)
)
rows = st.lists(st.lists(scalars, min_size=11, max_size=15), min_size=0, max_size=4)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("model") / "1.0.0"
    train.train("1.0.0", directory)
    return directory


@pytest.fixture(scope="module")
def application(model_dir: Path) -> app.App:
    metadata = model.read_metadata(model_dir)
    loaded = app.App(Settings.from_env({}, model_dir=model_dir), metadata)
    loaded.model = model.load(model_dir, metadata)
    return loaded


def _is_valid(instances: list[list[object]]) -> bool:
    return bool(instances) and all(
        len(row) == 13 and all(isinstance(v, int | float) and not isinstance(v, bool) for v in row)
        for row in instances
    )


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(max_size=300), target=st.sampled_from([PREDICT, INFER]))
def test_arbitrary_bytes(application: app.App, body: bytes, target: bytes) -> None:
    status = application.handle(b"POST", target, b"application/json", body, False)[1].status
    assert status in (200, 400)


@settings(max_examples=300, deadline=None)
@given(payload=json_values, target=st.sampled_from([PREDICT, INFER]))
def test_arbitrary_json(application: app.App, payload: object, target: bytes) -> None:
    body = json.dumps(payload).encode()
    status = application.handle(b"POST", target, b"application/json", body, False)[1].status
    assert status in (200, 400)


@settings(max_examples=400, deadline=None)
@given(instances=rows)
def test_instances_of_every_shape_and_type(
    application: app.App, instances: list[list[object]]
) -> None:
    body = json.dumps({"instances": instances}).encode()
    response = application.handle(b"POST", PREDICT, b"application/json", body, False)[1]
    assert response.status == (200 if _is_valid(instances) else 400), response.body
    if response.status == 200:
        assert len(orjson.loads(response.body)["predictions"]) == len(instances)


def _fits_fp32(instances: list[list[object]]) -> bool:
    with np.errstate(over="ignore"):
        return bool(np.isfinite(np.array(instances, dtype=np.float64).astype(np.float32)).all())


@settings(max_examples=400, deadline=None)
@given(
    instances=rows,
    datatype=st.sampled_from(["FP64", "FP32", "BYTES", "fp64"]),
    nested=st.booleans(),
    shape=st.none() | st.lists(st.integers(-1, 20), max_size=3),
    request_id=st.none() | st.text(max_size=5) | st.integers(),
)
def test_tensors_of_every_shape_and_type(
    application: app.App,
    instances: list[list[object]],
    datatype: str,
    nested: bool,
    shape: list[int] | None,
    request_id: object,
) -> None:
    """An infer request is answered 200 exactly when it is a valid [N, 13] numeric tensor."""
    width = len(instances[0]) if instances else 13
    declared = [len(instances), width] if shape is None else shape
    data = instances if nested else [v for row in instances for v in row]
    request: dict[str, object] = {
        "inputs": [{"name": "x", "shape": declared, "datatype": datatype, "data": data}]
    }
    if request_id is not None:
        request["id"] = request_id
    body = json.dumps(request).encode()
    response = application.handle(b"POST", INFER, b"application/json", body, False)[1]
    valid = (
        _is_valid(instances)
        and declared == [len(instances), 13]
        and datatype in ("FP64", "FP32")
        and (request_id is None or isinstance(request_id, str))
        and (datatype != "FP32" or _fits_fp32(instances))
    )
    assert response.status == (200 if valid else 400), response.body
    if response.status == 200:
        answer = orjson.loads(response.body)
        assert answer["outputs"][0]["shape"] == [len(instances)]
        assert len(answer["outputs"][0]["data"]) == len(instances)
        assert answer.get("id") == request_id


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"X"]),
    target=st.sampled_from(KNOWN_TARGETS) | st.binary(max_size=40).map(lambda b: b"/" + b),
    content_type=st.none()
    | st.sampled_from([b"application/json", b"text/plain", b""])
    | st.binary(max_size=20),
    body=st.binary(max_size=100),
)
def test_arbitrary_requests(
    application: app.App, method: bytes, target: bytes, content_type: bytes | None, body: bytes
) -> None:
    application.draining = False
    status = application.handle(method, target, content_type, body, False)[1].status
    assert 200 <= status < 500


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Iterator[testing.ServerProcess]:
    env = {"MODEL_HEADER_TIMEOUT_SECONDS": "1", "MODEL_MAX_BODY_BYTES": "4096"}
    with testing.ServerProcess(model_dir, env) as process:
        process.wait_ready()
        yield process


def _send(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer and close before reading it all
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    return b"".join(chunks)


ROW = b"[14.23,1.71,2.43,15.6,127,2.8,3.06,0.28,2.29,5.64,1.04,3.92,1065]"
valid_requests = [
    b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (target, len(body), body)
    for target, body in (
        (PREDICT, b'{"instances": [' + ROW + b"]}"),
        (INFER, b'{"inputs": [{"name": "x", "shape": [1, 13], "datatype": "FP64", "data": '
                + ROW + b"}]}"),
    )
]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(valid_requests)))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        chunk = draw(st.binary(min_size=1, max_size=8))
        if action == "insert":
            data[i:i] = chunk
        elif action == "delete":
            del data[i : i + len(chunk)]
        else:
            data[i : i + len(chunk)] = chunk
    return bytes(data)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=200) | mutated())
@example(raw=b"A / HTTP/0\x00\x00\r\n\r\n")  # once failed: 505 was taken for a crash
def test_raw_bytes_on_the_socket(server: testing.ServerProcess, raw: bytes) -> None:
    answer = _send(server.port, raw)
    for line in answer.split(b"\r\n"):
        if line.startswith(b"HTTP/1.1 ") and line[9:12].isdigit():
            # a client error, or 505 for a version other than HTTP/1.x (RFC 9110 15.6.6):
            # never the server's own failure
            assert int(line[9:12]) < 500 or int(line[9:12]) == 505, answer[:300]
    assert server.process is not None and server.process.poll() is None, server.output


def test_the_unmutated_requests_are_answered_200(server: testing.ServerProcess) -> None:
    for raw in valid_requests:
        assert _send(server.port, raw).startswith(b"HTTP/1.1 200 OK\r\n")


def test_server_still_healthy_after_fuzzing(server: testing.ServerProcess) -> None:
    assert server.get("/healthz")[0] == 200
    assert server.get("/readyz")[0] == 200
