"""The traffic's two protocols: what is asked, and which answers count as predictions.

The requests are checked against our model server's own handlers (which the
protocol conformance tests hold to the published shapes), and each way an answer
can be wrong is a single-cause case with the text the report shows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from model_server import app, model, testing, train
from model_server.settings import Settings

from harness import protocols
from harness.traffic import TrafficError, wait_answering

pytestmark = pytest.mark.timeout(120)

V1, V2 = protocols.by_name("kserve-v1"), protocols.by_name("open-inference-v2")
ROWS = [[13.2, 1.78, 2.14, 11.2, 100.0, 2.65, 2.76, 0.26, 1.28, 4.38, 1.05, 3.4, 1050.0],
        [12.37, 0.94, 1.36, 10.6, 88.0, 1.98, 0.57, 0.28, 0.42, 1.95, 1.05, 1.82, 520.0]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("model") / "1.0.0"
    train.train("1.0.0", directory)
    return directory


@pytest.fixture(scope="module")
def application(trained: Path) -> app.App:
    metadata = model.read_metadata(trained)
    served = app.App(Settings.from_env({}, model_dir=trained), metadata)
    served.model = model.load(trained, metadata)
    return served


@pytest.mark.parametrize("protocol", [V1, V2], ids=lambda p: p.name)
def test_each_protocol_asks_our_server_and_reads_its_predictions(
        application: app.App, protocol: protocols.Protocol) -> None:
    target = protocol.predict_path("ml-model").encode()
    response = application.handle(b"POST", target, b"application/json",
                                  protocol.encode(ROWS), False)[1]
    assert response.status == 200, response.body
    predictions = protocol.predictions(response.body, application.version, len(ROWS))
    assert len(predictions) == 2 and protocols.label_problem(predictions, frozenset({0, 1, 2})) \
        is None
    expected = application.model.predict(model.to_matrix(ROWS, 13)).tolist()  # type: ignore[union-attr]
    assert predictions == expected, "the same predictions whichever protocol asks"


def test_both_protocols_write_the_same_numbers() -> None:
    v1, v2 = json.loads(V1.encode(ROWS)), json.loads(V2.encode(ROWS))
    assert v1 == {"instances": ROWS}
    assert v2 == {"inputs": [{"name": "input-0", "shape": [2, 13], "datatype": "FP64",
                              "data": ROWS[0] + ROWS[1]}]}
    assert V1.encode([ROWS[0]]) == json.dumps({"instances": [ROWS[0]]}).encode(), \
        "v1 bodies are byte for byte what the load always sent"


@pytest.mark.parametrize(("protocol", "ready", "predict"), [
    (V1, "/v1/models/m", "/v1/models/m:predict"),
    (V2, "/v2/models/m/ready", "/v2/models/m/infer"),
], ids=["v1", "v2"])
def test_paths(protocol: protocols.Protocol, ready: str, predict: str) -> None:
    assert (protocol.ready_path("m"), protocol.predict_path("m")) == (ready, predict)


def v2_answer(data: Any = (1,), shape: Any = None, version: Any = "1.0.0", **extra: Any) -> bytes:
    output = {"name": "output-0", "datatype": "INT64",
              "shape": [len(data)] if shape is None else shape, "data": list(data)}
    body = {"model_name": "ml-model", "outputs": [output], **extra}
    if version is not None:
        body["model_version"] = version
    return orjson.dumps(body)


@pytest.mark.parametrize(("body", "problem"), [
    (v2_answer(), None),
    (v2_answer(data=[[1]], shape=[1, 1]), None),  # data nested in its shape, as allowed
    (v2_answer(data=[]), "output of shape [0] with 0 values for 1 instances"),
    (v2_answer(data=[1, 2]), "output of shape [2] with 2 values for 1 instances"),
    (v2_answer(shape=[2]), "output of shape [2] with 1 values for 1 instances"),
    (v2_answer(version="1.1.0"), "model_version '1.1.0' but X-Model-Version '1.0.0'"),
    (v2_answer(version=None), 'not {"model_version": "...", "outputs"'),
    (orjson.dumps({"model_version": "1.0.0", "outputs": []}), 'not {"model_version"'),
    (orjson.dumps({"predictions": [1], "model_version": "1.0.0"}), 'not {"model_version"'),
    (b"<html>ok</html>", "not JSON"),
], ids=["good", "nested", "empty", "two", "shape", "version", "no-version", "no-outputs",
        "v1-shape", "html"])
def test_a_v2_answer_is_predictions_or_says_what_is_wrong(body: bytes,
                                                          problem: str | None) -> None:
    if problem is None:
        assert V2.predictions(body, "1.0.0", 1) == [1]
    else:
        with pytest.raises(protocols.AnswerProblem) as caught:
            V2.predictions(body, "1.0.0", 1)
        assert str(caught.value).startswith(problem), caught.value


@pytest.mark.parametrize(("body", "problem"), [
    (b'{"predictions": [1], "model_version": "1.0.0"}', None),
    (b'{"predictions": [], "model_version": "1.0.0"}', "0 predictions for 1 instances"),
    (b'{"predictions": [1], "model_version": "1.1.0"}', "model_version '1.1.0' but"),
    (b'{"predictions": [1]}', 'not {"predictions": [...], "model_version": "..."}'),
    (b'{"outputs": []}', 'not {"predictions"'),
    (b"", "not JSON"),
])
def test_a_v1_answer_is_predictions_or_says_what_is_wrong(body: bytes,
                                                          problem: str | None) -> None:
    if problem is None:
        assert V1.predictions(body, "1.0.0", 1) == [1]
    else:
        with pytest.raises(protocols.AnswerProblem, match=problem.replace("[", r"\[")
                           .replace("(", r"\(")):
            V1.predictions(body, "1.0.0", 1)


@pytest.mark.parametrize(("predictions", "labels", "problem"), [
    ([0, 2], frozenset({0, 1, 2}), None),
    ([7], frozenset({0, 1, 2}), "prediction 7 is not a class label [0, 1, 2]"),
    ([1.0], frozenset({0, 1, 2}), "prediction 1.0 is not a class label"),
    ([True], frozenset({0, 1, 2}), "prediction True is not a class label"),
    ([7.5], None, None),  # no labels known: nothing to hold them to
])
def test_labels(predictions: list[Any], labels: frozenset[Any] | None,
                problem: str | None) -> None:
    found = protocols.label_problem(predictions, labels)
    assert found == problem if problem is None or found is None else found.startswith(problem)
    assert (found is None) == (problem is None)


def test_an_unknown_protocol_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown inference protocol 'grpc': use one of "
                                         "kserve-v1, open-inference-v2"):
        protocols.by_name("grpc")


@pytest.fixture(scope="module")
def server(trained: Path) -> Iterator[testing.ServerProcess]:
    with testing.ServerProcess(trained) as process:
        process.wait_ready()
        yield process


@pytest.mark.parametrize("protocol", protocols.NAMES)
def test_the_wait_for_a_model_asks_the_protocols_ready_route(server: testing.ServerProcess,
                                                             protocol: str) -> None:
    wait_answering(server.url, "ml-model", timeout=5, protocol=protocol)
    with pytest.raises(TrafficError, match=r"did not answer within 1s \(HTTP Error 404"):
        wait_answering(server.url, "no-such-model", timeout=1, protocol=protocol)
