"""Conformance to the published shapes: KServe v1.

Each route's status codes and JSON shapes as KServe's "V1 Protocol" page
gives them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from model_server import app, model, train
from model_server.settings import Settings

pytestmark = pytest.mark.timeout(120)

NAME = "ml-model"
V1_PREDICT = b"/v1/models/ml-model:predict"
JSON = b"application/json"
VERSIONS = ("1.0.0", "1.0.0-never-ready")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    for version in VERSIONS:
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
