"""Routes and status codes of the app, without sockets."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import orjson
import pytest
from model_server import app, model, train
from model_server.settings import Settings

PREDICT = b"/v1/models/ml-model:predict"
JSON = b"application/json"


def make_app(directory: Path, loaded: bool = True, **settings: object) -> app.App:
    metadata = model.read_metadata(directory)
    application = app.App(Settings.from_env({}, model_dir=directory, **settings), metadata)
    if loaded:
        application.model = model.load(directory, metadata)
    return application


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    for version in ("1.0.0", "1.0.0-flaky", "1.0.0-never-ready", "1.0.0-stall", "1.0.0-bad-body",
                    "1.0.0-slow"):
        train.train(version, root / version)
    return {p.name: p for p in root.iterdir()}


@pytest.fixture(scope="module")
def holdout(trained: dict[str, Path]) -> list[dict[str, object]]:
    lines = (trained["1.0.0"] / train.HOLDOUT_FILE).read_text().splitlines()
    return [json.loads(line) for line in lines]


def predict(application: app.App, body: bytes, content_type: bytes | None = JSON) -> app.Response:
    return application.handle(b"POST", PREDICT, content_type, body, False)[1]


def test_predict_answers_kserve_v1(
    trained: dict[str, Path], holdout: list[dict[str, object]]
) -> None:
    application = make_app(trained["1.0.0"])
    body = orjson.dumps({"instances": [r["instance"] for r in holdout]})
    response = predict(application, body)
    assert response.status == 200
    answer = orjson.loads(response.body)
    assert answer["model_version"] == "1.0.0"
    assert answer["predictions"] == [r["label"] for r in holdout]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"{not json", JSON, 400, "malformed JSON"),
        (b"", JSON, 400, "malformed JSON"),
        (b'{"instances": [[1, 2]]}', b"text/plain", 415, "application/json"),
        (b'{"instances": [[1, 2]]}', None, 415, "got none"),
        (b"[]", JSON, 400, "instances"),
        (b"{}", JSON, 400, "instances"),
        (b'{"inputs": {"x": [1]}}', JSON, 400, "columnar"),
        (b'{"instances": [[1]], "inputs": [[1]]}', JSON, 400, "not both"),
        (b'{"inputs": []}', JSON, 400, '"inputs" must have shape [N, 13]'),
        (b'{"instances": []}', JSON, 400, "[N, 13]"),
        (b'{"instances": [[1, 2, 3]]}', JSON, 400, "got shape [1, 3]"),
        (b'{"instances": [1, 2, 3]}', JSON, 400, "[N, 13]"),
        (b'{"instances": [[1,2,3,4,5,6,7,8,9,10,11,12,13], [1]]}', JSON, 400, "differ in length"),
        (
            b'{"instances": [["1","2","3","4","5","6","7","8","9","10","11","12","13"]]}',
            JSON,
            400,
            "only numbers",
        ),
        (b'{"instances": [[true,2,3,4,5,6,7,8,9,10,11,12,13]]}', JSON, 400, "only numbers"),
        (b'{"instances": [[null,2,3,4,5,6,7,8,9,10,11,12,13]]}', JSON, 400, "only numbers"),
        (b'{"instances": [[1e308,1e308,3,4,5,6,7,8,9,10,11,12,13]]}', JSON, 200, ""),
        (b'{"instances": "x"}', JSON, 400, "[N, 13]"),
    ],
)
def test_bad_input_gets_4xx_naming_the_problem(
    trained: dict[str, Path], body: bytes, content_type: bytes | None, status: int, message: str
) -> None:
    response = predict(make_app(trained["1.0.0"]), body, content_type)
    assert response.status == status, response.body
    if status != 200:
        assert message in orjson.loads(response.body)["error"]


def test_json_media_type_variants_are_accepted(
    trained: dict[str, Path], holdout: list[dict[str, object]]
) -> None:
    body = orjson.dumps({"instances": [holdout[0]["instance"]]})
    for content_type in (
        b"application/json; charset=utf-8",
        b"Application/JSON",
        b"application/vnd.x+json",
    ):
        assert predict(make_app(trained["1.0.0"]), body, content_type).status == 200


@pytest.mark.parametrize(
    ("method", "target", "status"),
    [
        (b"GET", b"/nope", 404),
        (b"POST", b"/v1/models/other:predict", 404),
        (b"GET", b"/v1/models/other", 404),
        (b"GET", PREDICT, 405),
        (b"DELETE", b"/healthz", 405),
        (b"GET", b"/healthz?probe=1", 200),
        (b"HEAD", b"/version", 200),
        (b"GET", b"/v1/models", 200),
        (b"GET", b"/v1/models/ml-model", 200),
    ],
)
def test_routing(trained: dict[str, Path], method: bytes, target: bytes, status: int) -> None:
    _, response = make_app(trained["1.0.0"]).handle(method, target, None, b"", False)
    assert response.status == status
    if status == 405:
        assert response.headers.startswith(b"Allow: ")


def test_model_name_is_configurable(trained: dict[str, Path]) -> None:
    application = make_app(trained["1.0.0"], model_name="wine")
    _, response = application.handle(b"GET", b"/v1/models/wine", None, b"", False)
    assert orjson.loads(response.body) == {"name": "wine", "ready": True, "model_version": "1.0.0"}
    assert application.handle(b"GET", b"/v1/models/ml-model", None, b"", False)[1].status == 404


def test_readiness_follows_loading_and_draining(trained: dict[str, Path]) -> None:
    application = make_app(trained["1.0.0"], loaded=False)

    def ready() -> app.Response:
        return application.handle(b"GET", b"/readyz", None, b"", False)[1]

    assert (ready().status, orjson.loads(ready().body)["reason"]) == (503, "model loading")
    assert predict(application, b'{"instances": [[1]]}').status == 503
    application.model = model.load(trained["1.0.0"])
    assert ready().status == 200
    application.draining = True
    assert (ready().status, orjson.loads(ready().body)["reason"]) == (503, "draining")
    assert application.handle(b"GET", b"/healthz", None, b"", False)[1].status == 200


def test_never_ready_build_serves_but_never_passes_readiness(trained: dict[str, Path]) -> None:
    application = make_app(trained["1.0.0-never-ready"])
    response = application.handle(b"GET", b"/readyz", None, b"", False)[1]
    assert response.status == 503 and b"never-ready" in response.body


def test_flaky_build_fails_a_stable_fraction_of_inputs(
    trained: dict[str, Path], holdout: list[dict[str, object]]
) -> None:
    flaky, good = make_app(trained["1.0.0-flaky"], flaky_rate=0.3), make_app(trained["1.0.0"])
    bodies = [orjson.dumps({"instances": [r["instance"]]}) for r in holdout]
    statuses = [predict(flaky, b).status for b in bodies]
    assert set(statuses) == {200, 500}
    assert 0.1 < statuses.count(500) / len(statuses) < 0.5
    assert statuses == [predict(flaky, b).status for b in bodies], "same input, same answer"
    assert {predict(good, b).status for b in bodies} == {200}


def test_faults_follow_the_rows_not_the_json_spelling(
    trained: dict[str, Path], holdout: list[dict[str, object]]
) -> None:
    flaky = make_app(trained["1.0.0-flaky"], flaky_rate=0.5)
    statuses = []
    for row in holdout:
        values: list[float] = row["instance"]  # type: ignore[assignment]
        compact = orjson.dumps({"instances": [values]})
        spaced = json.dumps({"instances": [values]}, indent=2).encode()
        ints = orjson.dumps({"instances": [[int(v) if v == int(v) else v for v in values]]})
        answers = {predict(flaky, body).status for body in (compact, spaced, ints)}
        assert len(answers) == 1, row
        statuses += answers
    assert set(statuses) == {200, 500}


def test_stall_build_answers_a_stable_fraction_of_inputs_late(
    trained: dict[str, Path], holdout: list[dict[str, object]]
) -> None:
    stall = make_app(trained["1.0.0-stall"], stall_rate=0.3, stall_seconds=1.5)
    bodies = [orjson.dumps({"instances": [r["instance"]]}) for r in holdout]
    responses = [predict(stall, b) for b in bodies]
    assert {r.status for r in responses} == {200}, "late, never wrong"
    for response, row in zip(responses, holdout, strict=True):
        assert orjson.loads(response.body)["predictions"] == [row["label"]]
    delays = [r.delay for r in responses]
    assert set(delays) == {0.0, 1.5}
    assert 0.1 < delays.count(1.5) / len(delays) < 0.5
    assert delays == [predict(stall, b).delay for b in bodies], "same input, same delay"
    assert make_app(trained["1.0.0-stall"]).settings.stall_seconds == 2.0, "the default"
    for target in (b"/healthz", b"/readyz", b"/version", b"/metrics"):
        assert stall.handle(b"GET", target, None, b"", False)[1].delay == 0.0
    assert predict(stall, b"{not json").delay == 0.0


def test_bad_body_build_answers_a_stable_fraction_of_inputs_200_without_a_prediction(
    trained: dict[str, Path], holdout: list[dict[str, object]]
) -> None:
    bad = make_app(trained["1.0.0-bad-body"], bad_body_rate=0.3)
    bodies = [orjson.dumps({"instances": [r["instance"]]}) for r in holdout]
    responses = [predict(bad, b) for b in bodies]
    assert {r.status for r in responses} == {200}, "status and headers stay right"
    answers = [orjson.loads(r.body) for r in responses]
    assert {a["model_version"] for a in answers} == {"1.0.0-bad-body"}
    empty = [a["predictions"] == [] for a in answers]
    assert 0.1 < sum(empty) / len(empty) < 0.5
    for answer, row in zip(answers, holdout, strict=True):
        assert answer["predictions"] in ([], [row["label"]])
    assert empty == [orjson.loads(predict(bad, b).body)["predictions"] == [] for b in bodies]
    assert make_app(trained["1.0.0-bad-body"]).settings.bad_body_rate == 0.1, "the default"


@pytest.mark.parametrize("version", ["1.0.0", "1.0.0-flaky", "1.0.0-stall"])
def test_only_the_bad_body_build_leaves_predictions_out(
    trained: dict[str, Path], holdout: list[dict[str, object]], version: str
) -> None:
    application = make_app(trained[version], bad_body_rate=1.0)
    bodies = [orjson.dumps({"instances": [r["instance"]]}) for r in holdout]
    answers = [predict(application, b) for b in bodies]
    assert all(orjson.loads(a.body)["predictions"] for a in answers if a.status == 200)


@pytest.mark.parametrize("version", ["1.0.0", "1.0.0-flaky", "1.0.0-never-ready"])
def test_only_the_stall_build_delays(
    trained: dict[str, Path], holdout: list[dict[str, object]], version: str
) -> None:
    application = make_app(trained[version], stall_rate=1.0, flaky_rate=0.5)
    bodies = [orjson.dumps({"instances": [r["instance"]]}) for r in holdout]
    assert {predict(application, b).delay for b in bodies} == {0.0}


def test_slow_build_answers_every_prediction_late_by_slow_ms(
    trained: dict[str, Path], holdout: list[dict[str, object]]
) -> None:
    slow = make_app(trained["1.0.0-slow"], slow_ms=35)
    bodies = [orjson.dumps({"instances": [r["instance"]]}) for r in holdout]
    responses = [predict(slow, b) for b in bodies]
    assert {r.status for r in responses} == {200}, "late, never wrong"
    for response, row in zip(responses, holdout, strict=True):
        assert orjson.loads(response.body)["predictions"] == [row["label"]]
    assert {r.delay for r in responses} == {0.035}
    assert {predict(make_app(trained["1.0.0-slow"]), b).delay for b in bodies} == {0.02}, (
        "the default: 20 ms"
    )
    for target in (b"/healthz", b"/readyz", b"/version", b"/metrics"):
        assert slow.handle(b"GET", target, None, b"", False)[1].delay == 0.0
    assert predict(slow, b"{not json").delay == 0.0, "only predictions are slow"


@pytest.mark.parametrize("version", ["1.0.0", "1.0.0-flaky", "1.0.0-stall", "1.0.0-bad-body"])
def test_only_the_slow_build_is_slow(
    trained: dict[str, Path], holdout: list[dict[str, object]], version: str
) -> None:
    application = make_app(trained[version], slow_ms=500, stall_rate=0.0)
    bodies = [orjson.dumps({"instances": [r["instance"]]}) for r in holdout]
    assert {predict(application, b).delay for b in bodies} == {0.0}


def test_pod_name_defaults_to_the_host_name(trained: dict[str, Path]) -> None:
    assert make_app(trained["1.0.0"]).pod_header == socket.gethostname().encode()
    assert make_app(trained["1.0.0"], pod_name="ml-model-7d9f-x2k").pod_header == (
        b"ml-model-7d9f-x2k"
    )


def test_drain_endpoint_only_from_loopback(trained: dict[str, Path]) -> None:
    application = make_app(trained["1.0.0"])
    assert application.handle(b"POST", b"/drain", None, b"", False)[1].status == 403
    assert not application.draining
    assert application.handle(b"POST", b"/drain", None, b"", True)[1].status == 200
    assert application.draining


def test_metrics_exposition(trained: dict[str, Path], holdout: list[dict[str, object]]) -> None:
    application = make_app(trained["1.0.0"])
    application.metrics.observe("predict", 200, 0.0007)
    application.metrics.observe("predict", 400, 3.0)
    _, response = application.handle(b"GET", b"/metrics", None, b"", False)
    text = response.body.decode()
    assert response.content_type.startswith(b"text/plain; version=0.0.4")
    assert 'model_requests_total{route="predict",code="200"} 1' in text
    assert 'model_request_duration_seconds_bucket{route="predict",le="0.001"} 1' in text
    assert 'model_request_duration_seconds_bucket{route="predict",le="+Inf"} 2' in text
    assert 'model_request_duration_seconds_count{route="predict"} 2' in text
    assert "model_requests_in_flight 0" in text
    assert "model_draining 0" in text and "model_ready 1" in text
    assert 'version="1.0.0"' in text
    for line in text.splitlines():
        assert line.startswith("#") or len(line.rsplit(" ", 1)) == 2


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODEL_DRAIN_SECONDS": "ten"}, "MODEL_DRAIN_SECONDS='ten' is not a valid float"),
        ({"MODEL_DRAIN_SECONDS": "nan"}, "finite"),
        ({"MODEL_DRAIN_SECONDS": "-1"}, "drain_seconds must be >= 0"),
        ({"MODEL_GRACEFUL_DRAIN": "maybe"}, "true or false"),
        ({"MODEL_PORT": "70000"}, "0..65535"),
        ({"MODEL_FLAKY_RATE": "2"}, "flaky_rate"),
        ({"MODEL_STALL_RATE": "-0.1"}, "stall_rate must be in"),
        ({"MODEL_BAD_BODY_RATE": "1.5"}, "bad_body_rate must be in"),
        ({"MODEL_STALL_SECONDS": "-1"}, "stall_seconds must be >= 0"),
        ({"MODEL_STALL_SECONDS": "soon"}, "MODEL_STALL_SECONDS='soon' is not a valid float"),
        ({"MODEL_SLOW_MS": "-1"}, "slow_ms must be >= 0"),
        ({"MODEL_SLOW_MS": "20ms"}, "MODEL_SLOW_MS='20ms' is not a valid float"),
        ({"MODEL_POD_NAME": "a pod"}, "pod_name"),
        ({"MODEL_POD_NAME": " "}, "pod_name"),
        ({"MODEL_NAME": "a/b"}, "model_name"),
    ],
)
def test_settings_refuse_bad_values_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        Settings.from_env(env)


def test_settings_from_env() -> None:
    settings = Settings.from_env(
        {
            "MODEL_GRACEFUL_DRAIN": "false",
            "MODEL_DRAIN_SECONDS": "2.5",
            "MODEL_DIR": "/x",
            "MODEL_NAME": "w",
        },
        port=0,
    )
    assert (settings.graceful_drain, settings.drain_seconds, settings.port) == (False, 2.5, 0)
    assert (str(settings.model_dir), settings.model_name) == ("/x", "w")


def test_stall_and_pod_settings_from_env() -> None:
    defaults = Settings.from_env({})
    assert (defaults.stall_rate, defaults.stall_seconds) == (0.1, 2.0)
    assert defaults.pod_name == socket.gethostname()
    settings = Settings.from_env(
        {"MODEL_STALL_RATE": "0.25", "MODEL_STALL_SECONDS": "0.5", "MODEL_POD_NAME": " p-1 "}
    )
    assert (settings.stall_rate, settings.stall_seconds, settings.pod_name) == (0.25, 0.5, "p-1")


def test_slow_ms_from_env() -> None:
    assert Settings.from_env({}).slow_ms == 20.0
    assert Settings.from_env({"MODEL_SLOW_MS": " 7.5 "}).slow_ms == 7.5
