"""Conformance to the published shapes: KServe v1 and the Open Inference Protocol (v2).

Each route's status codes and JSON shapes as the protocols' documents give
them (KServe's "V1 Protocol" page; the Open Inference Protocol's REST
specification), the same predictions over both, the fault builds alike on
both predict routes, and over real sockets the headers and the lifecycle
(slow start, readiness, drain) on both protocols' routes.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from model_server import app, model, testing, train
from model_server.settings import Settings

pytestmark = pytest.mark.timeout(120)

NAME = "ml-model"
V1_PREDICT = b"/v1/models/ml-model:predict"
V2_INFER = b"/v2/models/ml-model/infer"
JSON = b"application/json"
POD = "ml-model-6b8d7-q4xzt"
VERSIONS = ("1.0.0", "1.1.0", "1.0.0-flaky", "1.0.0-stall", "1.0.0-bad-body", "1.0.0-never-ready")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    for version in (*VERSIONS, "1.0.0-slow-start"):
        train.train(version, root / version)
    return {p.name: p for p in root.iterdir()}


@pytest.fixture(scope="module")
def holdout(trained: dict[str, Path]) -> tuple[list[list[float]], list[int]]:
    lines = (trained["1.0.0"] / train.HOLDOUT_FILE).read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    return [r["instance"] for r in rows], [r["label"] for r in rows]


def make_app(directory: Path, loaded: bool = True, **settings: object) -> app.App:
    metadata = model.read_metadata(directory)
    application = app.App(Settings.from_env({}, model_dir=directory, **settings), metadata)
    if loaded:
        application.model = model.load(directory, metadata)
    return application


def call(
    application: app.App, method: bytes, target: bytes, payload: object = None,
    content_type: bytes | None = JSON,
) -> tuple[int, Any]:  # fmt: skip
    """Status and decoded JSON body of one request."""
    body = b"" if payload is None else payload if type(payload) is bytes else orjson.dumps(payload)
    response = application.handle(method, target, content_type, body, False)[1]
    return response.status, orjson.loads(response.body)


def tensor(rows: list[list[float]], datatype: str = "FP64", nested: bool = False) -> dict[str, Any]:
    """A v2 input tensor of ``rows``, its data flat (row-major) or nested."""
    data: list[Any] = rows if nested else [v for row in rows for v in row]
    return {"name": "input-0", "shape": [len(rows), len(rows[0])], "datatype": datatype,
            "data": data}  # fmt: skip


def v1_labels(application: app.App, rows: list[list[float]], field: str = "instances") -> list[int]:
    status, answer = call(application, b"POST", V1_PREDICT, {field: rows})
    assert status == 200, answer
    assert set(answer) == {"predictions", "model_version"}
    return list(answer["predictions"])


def v2_labels(application: app.App, rows: list[list[float]], **how: Any) -> list[int]:
    status, answer = call(application, b"POST", V2_INFER, {"inputs": [tensor(rows, **how)]})
    assert status == 200, answer
    return list(answer["outputs"][0]["data"])


# --- KServe v1 ---


def test_v1_model_ready_is_200_when_ready_and_503_when_not(trained: dict[str, Path]) -> None:
    application = make_app(trained["1.0.0"], loaded=False)
    target = b"/v1/models/ml-model"
    status, answer = call(application, b"GET", target)
    assert status == 503
    assert (answer["name"], answer["ready"]) == (NAME, False) and "loading" in answer["error"]
    application.model = model.load(trained["1.0.0"])
    status, answer = call(application, b"GET", target)
    assert (status, answer["name"], answer["ready"]) == (200, NAME, True)
    application.draining = True
    status, answer = call(application, b"GET", target)
    assert (status, answer["ready"]) == (503, False) and "draining" in answer["error"]
    status, answer = call(make_app(trained["1.0.0-never-ready"]), b"GET", target)
    assert (status, answer["ready"]) == (503, False) and "never-ready" in answer["error"]


def test_v1_lists_its_one_model(trained: dict[str, Path]) -> None:
    assert call(make_app(trained["1.0.0"]), b"GET", b"/v1/models") == (200, {"models": [NAME]})


@pytest.mark.parametrize("field", ["instances", "inputs"])
def test_v1_predict_takes_instances_or_inputs(
    trained: dict[str, Path], holdout: tuple[list[list[float]], list[int]], field: str
) -> None:
    rows, labels = holdout
    application = make_app(trained["1.0.0"])
    status, answer = call(application, b"POST", V1_PREDICT, {field: rows})
    assert status == 200
    assert answer == {"predictions": labels, "model_version": "1.0.0"}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([[1.0] * 13], "instances"),
        ({"instances": [[1.0] * 12]}, "got shape [1, 12]"),
        ({"inputs": [[1.0] * 12]}, '"inputs" must have shape [N, 13]'),
        ({"inputs": {"input-0": [[1.0] * 13]}}, "columnar"),
        ({"instances": [[1.0] * 13], "inputs": [[1.0] * 13]}, "not both"),
        ({"inputs": [tensor([[1.0] * 13])]}, "must have shape [N, 13]"),  # a v2 body to v1
        (b"{", "malformed JSON"),
    ],
)
def test_v1_invalid_input_is_400_with_an_error(
    trained: dict[str, Path], payload: object, message: str
) -> None:
    status, answer = call(make_app(trained["1.0.0"]), b"POST", V1_PREDICT, payload)
    assert status == 400
    assert set(answer) == {"error"} and message in answer["error"]


@pytest.mark.parametrize(
    ("method", "target"),
    [(b"GET", b"/v1/models/other"), (b"POST", b"/v1/models/other:predict")],
)
def test_v1_unknown_model_is_404_with_an_error(
    trained: dict[str, Path], method: bytes, target: bytes
) -> None:
    status, answer = call(make_app(trained["1.0.0"]), method, target, {"instances": [[1] * 13]})
    assert status == 404 and set(answer) == {"error"} and "/v1/models/ml-model" in answer["error"]


# --- Open Inference Protocol (v2) ---


def test_v2_server_metadata_and_liveness(trained: dict[str, Path]) -> None:
    application = make_app(trained["1.0.0"], loaded=False)
    status, answer = call(application, b"GET", b"/v2")
    assert status == 200 and set(answer) == {"name", "version", "extensions"}
    assert answer["version"] == "1.0.0" and answer["extensions"] == []
    assert call(application, b"GET", b"/v2/health/live") == (200, {"live": True}), "while loading"
    application.draining = True
    assert call(application, b"GET", b"/v2/health/live") == (200, {"live": True}), "and draining"


@pytest.mark.parametrize("target", [b"/v2/health/ready", b"/v2/models/ml-model/ready",
                                    b"/v2/models/ml-model/versions/1.0.0/ready"])  # fmt: skip
def test_v2_readiness_is_200_when_ready_and_503_when_not(
    trained: dict[str, Path], target: bytes
) -> None:
    application = make_app(trained["1.0.0"], loaded=False)
    status, answer = call(application, b"GET", target)
    assert (status, answer["ready"]) == (503, False) and "loading" in answer["error"]
    application.model = model.load(trained["1.0.0"])
    status, answer = call(application, b"GET", target)
    assert (status, answer["ready"]) == (200, True)
    if b"/models/" in target:
        assert answer == {"name": NAME, "ready": True}
    application.draining = True
    status, answer = call(application, b"GET", target)
    assert (status, answer["ready"]) == (503, False) and "draining" in answer["error"]
    never = target.replace(b"/1.0.0/", b"/1.0.0-never-ready/")
    status, answer = call(make_app(trained["1.0.0-never-ready"]), b"GET", never)
    assert status == 503 and "never-ready" in answer["error"]


@pytest.mark.parametrize("target", [b"/v2/models/ml-model", b"/v2/models/ml-model/versions/1.0.0"])
def test_v2_model_metadata_describes_its_tensors(trained: dict[str, Path], target: bytes) -> None:
    status, answer = call(make_app(trained["1.0.0"], loaded=False), b"GET", target)
    assert status == 200, "metadata needs no loaded model"
    assert set(answer) == {"name", "versions", "platform", "inputs", "outputs"}
    assert (answer["name"], answer["versions"]) == (NAME, ["1.0.0"])
    assert isinstance(answer["platform"], str) and answer["platform"]
    assert answer["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 13]}]
    assert answer["outputs"] == [{"name": "output-0", "datatype": "INT64", "shape": [-1]}]


@pytest.mark.parametrize(
    ("method", "target"),
    [
        (b"GET", b"/v2/models/other"),
        (b"GET", b"/v2/models/other/ready"),
        (b"POST", b"/v2/models/other/infer"),
        (b"POST", b"/v2/models/ml-model/versions/9.9.9/infer"),
    ],
)
def test_v2_unknown_model_or_version_is_404_with_an_error(
    trained: dict[str, Path], method: bytes, target: bytes
) -> None:
    status, answer = call(make_app(trained["1.0.0"]), method, target, {"inputs": []})
    assert status == 404 and set(answer) == {"error"} and "/v2/models/ml-model" in answer["error"]


@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_v2_infer_answers_typed_tensors(
    trained: dict[str, Path], holdout: tuple[list[list[float]], list[int]], datatype: str,
    nested: bool,
) -> None:  # fmt: skip
    rows, labels = holdout
    request = {"id": "req-7", "inputs": [tensor(rows, datatype, nested)]}
    status, answer = call(make_app(trained["1.0.0"]), b"POST", V2_INFER, request)
    assert status == 200, answer
    assert answer == {
        "model_name": NAME,
        "model_version": "1.0.0",
        "id": "req-7",
        "outputs": [
            {"name": "output-0", "shape": [len(rows)], "datatype": "INT64", "data": labels}
        ],
    }


def test_v2_infer_without_id_answers_without_id_and_honours_requested_outputs(
    trained: dict[str, Path], holdout: tuple[list[list[float]], list[int]]
) -> None:
    rows, labels = holdout
    application = make_app(trained["1.0.0"])
    for outputs in (None, [], [{"name": "output-0"}], [{"name": "output-0", "parameters": {}}]):
        request: dict[str, Any] = {"inputs": [tensor(rows[:3])], "parameters": {}}
        if outputs is not None:
            request["outputs"] = outputs
        status, answer = call(application, b"POST", V2_INFER, request)
        assert status == 200, answer
        assert "id" not in answer and answer["outputs"][0]["data"] == labels[:3]


def test_v2_integer_tensors_are_read_as_their_values(trained: dict[str, Path]) -> None:
    rows = [[13, 2, 2, 16, 100, 3, 3, 0, 2, 5, 1, 3, 1000]]
    application = make_app(trained["1.0.0"])
    expected = v1_labels(application, rows)
    for datatype in ("INT64", "INT32", "UINT16"):
        assert v2_labels(application, rows, datatype=datatype) == expected


ROW = [14.23, 1.71, 2.43, 15.6, 127, 2.8, 3.06, 0.28, 2.29, 5.64, 1.04, 3.92, 1065]


def _with(**fields: object) -> dict[str, Any]:
    return {"inputs": [{**tensor([ROW]), **fields}]}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{", "malformed JSON"),
        ([tensor([ROW])], "JSON object"),
        ({}, '"inputs"'),
        ({"inputs": []}, "one tensor"),
        ({"inputs": [tensor([ROW]), tensor([ROW])]}, "one tensor"),
        ({"inputs": [[ROW]]}, "one tensor"),
        ({"inputs": [{k: v for k, v in tensor([ROW]).items() if k != "name"}]}, '"name"'),
        (_with(datatype="BYTES"), "datatype 'BYTES'"),
        (_with(datatype="BOOL"), "datatype 'BOOL'"),
        (_with(datatype="fp32"), "datatype 'fp32'"),  # case-sensitive, as the spec says
        (_with(datatype=None), "datatype None"),
        (_with(shape=[13]), "shape [N, 13]"),
        (_with(shape=[1, 12]), "shape [N, 13]"),
        (_with(shape=[0, 13], data=[]), "shape [N, 13]"),
        (_with(shape=[1, 13, 1]), "shape [N, 13]"),
        (_with(shape=[True, 13]), "shape [N, 13]"),
        (_with(shape=[1.0, 13]), "shape [N, 13]"),
        (_with(shape=None), "shape [N, 13]"),
        (_with(shape=[2, 13]), "give 26 values"),
        (_with(data=[[ROW]]), "data of shape [1, 1, 13] does not fit shape [1, 13]"),
        (_with(shape=[2, 13], data=[ROW + ROW]), "data of shape [1, 26] does not fit"),
        (_with(data=[ROW, ROW[:12]]), "rows differ in length"),
        (_with(data=None), '"data"'),
        (_with(data=[str(v) for v in ROW]), "only numbers"),
        (_with(data=[True, *ROW[1:]]), "only numbers"),
        (_with(data=[None, *ROW[1:]]), "only numbers"),
        (_with(datatype="INT32"), "only integers"),
        (_with(datatype="UINT8", data=[300] * 13), "[0, 255]"),
        (_with(datatype="INT8", data=[-129] * 13), "[-128, 127]"),
        (_with(datatype="FP32", data=[1e39, *ROW[1:]]), "FP32's range"),
        (_with(datatype="FP16", data=[70000, *ROW[1:]]), "FP16's range"),
        ({**_with(), "id": 42}, '"id"'),
        ({**_with(), "parameters": []}, '"parameters"'),
        (_with(parameters="x"), '"parameters"'),
        ({**_with(), "outputs": {"name": "output-0"}}, '"outputs"'),
        ({**_with(), "outputs": [{"name": "probabilities"}]}, "no output named 'probabilities'"),
    ],
)
def test_v2_bad_requests_are_400_with_an_error(
    trained: dict[str, Path], payload: object, message: str
) -> None:
    status, answer = call(make_app(trained["1.0.0"]), b"POST", V2_INFER, payload)
    assert status == 400, answer
    assert set(answer) == {"error"} and message in answer["error"]


def test_v2_infer_refuses_what_v1_refuses(trained: dict[str, Path]) -> None:
    application = make_app(trained["1.0.0"])
    status, answer = call(application, b"POST", V2_INFER, _with(), b"text/plain")
    assert status == 415 and "application/json" in answer["error"]
    status, _ = call(application, b"GET", V2_INFER)
    assert status == 405
    status, answer = call(make_app(trained["1.0.0"], loaded=False), b"POST", V2_INFER, _with())
    assert status == 503 and set(answer) == {"error"}


# --- the same model behind both ---


def _noise(n: int, seed: int) -> list[list[float]]:
    """Rows around and beyond the dataset's ranges, where classes meet."""
    rng = np.random.default_rng(seed)
    x = np.array([ROW]) * rng.uniform(0.3, 1.7, size=(n, 13))
    return [[float(v) for v in row] for row in x]


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_same_inputs_same_predictions_over_v1_and_v2(
    trained: dict[str, Path], holdout: tuple[list[list[float]], list[int]], version: str
) -> None:
    application = make_app(trained[version])
    rows = holdout[0] + _noise(300, seed=3)
    expected = v1_labels(application, rows)
    assert len(set(expected)) == 3, "the rows reach every class"
    assert v1_labels(application, rows, field="inputs") == expected
    assert v2_labels(application, rows) == expected
    assert v2_labels(application, rows, nested=True) == expected
    one_by_one = [v2_labels(application, [row])[0] for row in rows[:40]]
    assert one_by_one == expected[:40]
    # FP32 rounds the features; on the hold-out rows that changes no answer
    assert v2_labels(application, holdout[0], datatype="FP32") == expected[: len(holdout[0])]


# --- the fault builds, alike on both predict routes ---


def _both(application: app.App, row: list[float]) -> tuple[app.Response, app.Response]:
    v1 = application.handle(b"POST", V1_PREDICT, JSON, orjson.dumps({"instances": [row]}), False)
    v2 = application.handle(
        b"POST", V2_INFER, JSON, orjson.dumps({"inputs": [tensor([row])]}), False
    )
    return v1[1], v2[1]


def test_flaky_build_fails_the_same_rows_on_both_protocols(
    trained: dict[str, Path], holdout: tuple[list[list[float]], list[int]]
) -> None:
    flaky = make_app(trained["1.0.0-flaky"], flaky_rate=0.3)
    answers = [_both(flaky, row) for row in holdout[0]]
    v1 = [a.status for a, _ in answers]
    assert set(v1) == {200, 500} and 0.1 < v1.count(500) / len(v1) < 0.5
    assert [b.status for _, b in answers] == v1
    for _, b in answers:
        if b.status == 500:
            assert "-flaky" in orjson.loads(b.body)["error"]


def test_stall_build_delays_the_same_rows_on_both_protocols(
    trained: dict[str, Path], holdout: tuple[list[list[float]], list[int]]
) -> None:
    stall = make_app(trained["1.0.0-stall"], stall_rate=0.3, stall_seconds=1.5)
    answers = [_both(stall, row) for row in holdout[0]]
    assert {r.status for pair in answers for r in pair} == {200}, "late, never wrong"
    delays = [a.delay for a, _ in answers]
    assert set(delays) == {0.0, 1.5} and [b.delay for _, b in answers] == delays
    health = stall.handle(b"GET", b"/v2/health/ready", None, b"", False)[1]
    assert health.delay == 0.0


def test_bad_body_build_leaves_out_the_same_predictions_on_both_protocols(
    trained: dict[str, Path], holdout: tuple[list[list[float]], list[int]]
) -> None:
    bad = make_app(trained["1.0.0-bad-body"], bad_body_rate=0.3)
    empty_v1, empty_v2 = [], []
    for v1, v2 in (_both(bad, row) for row in holdout[0]):
        assert (v1.status, v2.status) == (200, 200), "status and headers stay right"
        empty_v1.append(orjson.loads(v1.body)["predictions"] == [])
        output = orjson.loads(v2.body)["outputs"][0]
        assert len(output["data"]) == output["shape"][0] in (0, 1)
        empty_v2.append(output["data"] == [])
    assert 0.1 < sum(empty_v1) / len(empty_v1) < 0.5
    assert empty_v2 == empty_v1


def test_never_ready_build_still_answers_both_predict_routes(trained: dict[str, Path]) -> None:
    v1, v2 = _both(make_app(trained["1.0.0-never-ready"]), ROW)
    assert (v1.status, v2.status) == (200, 200)


def test_metrics_name_each_protocols_predict_route(trained: dict[str, Path]) -> None:
    application = make_app(trained["1.0.0"])
    for name, response in zip(("predict", "infer"), _both(application, ROW), strict=True):
        application.metrics.observe(name, response.status, 0.001)
    text = application.handle(b"GET", b"/metrics", None, b"", False)[1].body.decode()
    assert 'model_requests_total{route="predict",code="200"} 1' in text
    assert 'model_requests_total{route="infer",code="200"} 1' in text
    route = application.handle(b"POST", V2_INFER, JSON, orjson.dumps(_with()), False)[0]
    assert route == "infer"


# --- over real sockets ---


@pytest.fixture(scope="module")
def server(trained: dict[str, Path]) -> Iterator[testing.ServerProcess]:
    with testing.ServerProcess(trained["1.0.0"], {"MODEL_POD_NAME": POD}) as process:
        process.wait_ready()
        yield process


def request(
    port: int, method: str, target: str, payload: object = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        body = None if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, target, body, headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("method", "target", "payload", "status"),
    [
        ("POST", "/v2/models/ml-model/infer", {"inputs": [tensor([ROW])]}, 200),
        ("POST", "/v2/models/ml-model/versions/1.0.0/infer", {"inputs": [tensor([ROW])]}, 200),
        ("POST", "/v2/models/ml-model/infer", {"inputs": [tensor([ROW[:12]])]}, 400),
        ("POST", "/v2/models/other/infer", {"inputs": [tensor([ROW])]}, 404),
        ("GET", "/v2/models/ml-model/infer", None, 405),
        ("GET", "/v2", None, 200),
        ("GET", "/v2/health/live", None, 200),
        ("GET", "/v2/health/ready", None, 200),
        ("GET", "/v2/models/ml-model", None, 200),
        ("GET", "/v2/models/ml-model/ready", None, 200),
        ("POST", "/v1/models/ml-model:predict", {"inputs": [ROW]}, 200),
    ],
)
def test_every_v2_answer_names_its_version_and_pod(
    server: testing.ServerProcess, method: str, target: str, payload: object, status: int
) -> None:
    got, headers, body = request(server.port, method, target, payload)
    assert got == status, body
    assert headers["x-model-version"] == "1.0.0"
    assert headers["x-pod-name"] == POD
    assert headers["content-type"] == "application/json"
    if status == 200 and target.endswith("/infer"):
        assert orjson.loads(body)["outputs"][0]["data"] == [0]


def test_lifecycle_on_both_protocols_slow_start_ready_drain(trained: dict[str, Path]) -> None:
    """Readiness routes agree at every stage; predict routes serve as long as the model is up."""
    readiness = ["/readyz", "/v1/models/ml-model", "/v2/health/ready", "/v2/models/ml-model/ready"]
    liveness = ["/healthz", "/v2/health/live"]
    predict = [("/v1/models/ml-model:predict", {"instances": [ROW]}),
               ("/v2/models/ml-model/infer", {"inputs": [tensor([ROW])]})]  # fmt: skip
    env = {"MODEL_SLOW_START_SECONDS": "1.5", "MODEL_DRAIN_SECONDS": "30"}
    with testing.ServerProcess(trained["1.0.0-slow-start"], env) as process:
        assert {t: process.get(t)[0] for t in readiness} == dict.fromkeys(readiness, 503)
        assert {t: process.get(t)[0] for t in liveness} == dict.fromkeys(liveness, 200)
        for target, payload in predict:
            assert request(process.port, "POST", target, payload)[0] == 503
        process.wait_ready(timeout=30)
        assert {t: process.get(t)[0] for t in readiness} == dict.fromkeys(readiness, 200)
        assert request(process.port, "POST", "/drain")[0] == 200
        assert {t: process.get(t)[0] for t in readiness} == dict.fromkeys(readiness, 503)
        for target, payload in predict:
            status, headers, _ = request(process.port, "POST", target, payload)
            assert (status, headers["connection"]) == (200, "close"), "served while draining"
