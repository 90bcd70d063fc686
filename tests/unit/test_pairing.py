"""The canary's paired checks: the labelled hold-out, answers compared, sent to real servers."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from model_server import model, testing, train

from harness import canary_judge, errors, pairing, protocols, resources
from harness.canary_judge import JudgeLimits, PairedOutcome
from harness.procs import free_port

pytestmark = pytest.mark.timeout(120)

LABELS = frozenset({0, 1, 2})


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    for version in ("1.0.0", "1.0.0-rebuilt", "1.0.0-degraded", "1.1.0"):
        train.train(version, root / version)
    return {p.name: p for p in root.iterdir()}


# -- the hold-out --------------------------------------------------------------------


def test_the_shipped_holdout_is_what_every_image_holds_out(models: dict[str, Path]) -> None:
    shipped = resources.HOLDOUT.read_bytes()
    for version in ("1.0.0", "1.1.0", "1.0.0-degraded"):
        assert (models[version] / train.HOLDOUT_FILE).read_bytes() == shipped, version
    rows = pairing.read_holdout()
    assert len(rows) == 54 and {r.label for r in rows} == {0, 1, 2}
    assert all(len(r.instance) == 13 for r in rows)


def test_a_rebuild_under_another_version_predicts_exactly_as_the_original(
        models: dict[str, Path]) -> None:
    """The A/A canary's premise: 1.0.0-rebuilt is 1.0.0 built again (same code, data and
    estimator; the seed differs, which the logistic regression's lbfgs does not use)."""
    x = np.array([r.instance for r in pairing.read_holdout()])
    original = model.load(models["1.0.0"]).predict(x)
    assert np.array_equal(model.load(models["1.0.0-rebuilt"]).predict(x), original)
    assert model.read_metadata(models["1.0.0-rebuilt"])["behaviour"] == "normal"


def test_a_damaged_holdout_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "h.jsonl"
    bad.write_text('{"instance": [1, 2], "label": 0}\n{"instance": [1, 2]}\n')
    with pytest.raises(errors.HarnessError, match=r"h.jsonl:2: not a labelled row"):
        pairing.read_holdout(bad)


# -- answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "version", "problem"), [
    (b'{"predictions": [1], "model_version": "1.0.0"}', "1.0.0", None),
    (b'{"predictions": [], "model_version": "1.0.0"}', "1.0.0", "0 predictions for 1 instance"),
    (b'{"predictions": [7], "model_version": "1.0.0"}', "1.0.0", "not a class label"),
    (b'{"predictions": [1.0], "model_version": "1.0.0"}', "1.0.0", "not a class label"),
    (b'{"predictions": [1], "model_version": "1.0.0"}', "1.1.0", "but X-Model-Version"),
    (b'{"error": "x"}', "1.0.0", 'not {"predictions"'),
    (b"<html>", "1.0.0", "not JSON"),
])
def test_an_answer_is_a_valid_prediction_or_says_what_is_wrong(
        body: bytes, version: str, problem: str | None) -> None:
    found = pairing.answer_problem(body, version, LABELS)
    assert found == problem if problem is None else problem in (found or "")


def answer(prediction: object = 1, schema: str | None = None, status: int = 200,
           error: str | None = None) -> pairing.Answer:
    if schema is None and status == 200:
        schema = pairing.schema_text(json.dumps({"predictions": [prediction],
                                                 "model_version": "v"}).encode())
    return pairing.Answer(1.0, 2.0, status, error, prediction if error is None else None,
                          "v", "pod-a", schema)


def test_schema_tells_keys_and_json_types_apart() -> None:
    same = pairing.schema_text(b'{"predictions": [2], "model_version": "1.1.0"}')
    assert same == pairing.schema_text(b'{"model_version": "x", "predictions": [0, 1]}')
    assert same == '{"model_version":"string","predictions":["integer"]}'
    for other in (b'{"predictions": [2.0], "model_version": "1"}',
                  b'{"predictions": [2], "model_version": "1", "scores": [0.1]}',
                  b'{"predictions": 2, "model_version": "1"}',
                  b'{"predictions": [2]}'):
        assert pairing.schema_text(other) != same, other
    assert pairing.schema_text(b"not json") is None


def test_a_candidate_answer_shaped_unlike_the_baselines_fails_that_request() -> None:
    extra = pairing.schema_text(b'{"predictions": [1], "model_version": "v", "p": [0.5]}')
    pair = pairing.Pair(0, 1, answer(), answer(schema=extra))
    baseline, canary = pairing.as_requests([pair])
    assert baseline[0].ok and not canary[0].ok
    assert canary[0].error is not None and canary[0].error.startswith("bad body: output schema")
    assert canary[0].name == "paired" and canary[0].pod == "pod-a"
    assert pairing.outcome(pair) == PairedOutcome(True, True, True), "still a right answer"
    s = pairing.summary([pair, pairing.Pair(1, 1, answer(), answer())])
    assert (s.pairs, s.schema_compared, s.schema_differs) == (2, 2, 1)
    assert s.first_difference is not None and '"p":["number"]' in s.first_difference


def test_no_schema_comparison_without_two_answers() -> None:
    failed = answer(status=500, error="HTTP 500: not a 2xx answer", schema='{"error":"string"}')
    pair = pairing.Pair(0, 1, answer(), failed)
    assert pairing.schema_difference(pair) is None
    baseline, canary = pairing.as_requests([pair])
    assert baseline[0].ok and not canary[0].ok and canary[0].status == 500
    assert pairing.outcome(pair) == PairedOutcome(True, False, False)
    assert pairing.summary([pair]).canary_failed == 1


def test_outcomes_count_a_wrong_or_missing_prediction_as_not_correct() -> None:
    assert pairing.outcome(pairing.Pair(0, 1, answer(1), answer(2))) == PairedOutcome(
        True, False, False)
    assert pairing.outcome(pairing.Pair(0, 2, answer(1), answer(1))) == PairedOutcome(
        False, False, True)
    nothing = answer(status=0, error="ConnectionRefusedError: refused", schema=None)
    assert pairing.outcome(pairing.Pair(0, 1, nothing, answer(1))) == PairedOutcome(
        False, True, False)


# -- sent to real servers -----------------------------------------------------------------


@pytest.fixture(scope="module")
def servers(models: dict[str, Path]) -> Iterator[dict[str, testing.ServerProcess]]:
    with testing.ServerProcess(models["1.0.0"], {"MODEL_POD_NAME": "baseline-pod"}) as base, \
            testing.ServerProcess(models["1.0.0-degraded"],
                                  {"MODEL_POD_NAME": "canary-pod"}) as cand:
        base.wait_ready()
        cand.wait_ready()
        yield {"baseline": base, "canary": cand}


@pytest.mark.parametrize("protocol", protocols.NAMES)
def test_every_row_goes_to_both_sides_and_the_degraded_one_is_found_less_accurate(
        servers: dict[str, testing.ServerProcess], tmp_path: Path, protocol: str) -> None:
    rows = pairing.read_holdout()
    began = time.monotonic()
    pairs = pairing.send(rows, servers["baseline"].url, servers["canary"].url, 1.0,
                         tmp_path / "paired-01.jsonl", protocol=protocol)
    assert time.monotonic() - began >= 1.0, "an interval lasts its seconds"
    assert [p.index for p in pairs] == list(range(len(rows)))
    assert pairing.read_pairs(tmp_path / "paired-01.jsonl") == pairs
    assert {(p.baseline.pod, p.canary.pod) for p in pairs} == {("baseline-pod", "canary-pod")}
    assert {(p.baseline.version, p.canary.version) for p in pairs} == {("1.0.0",
                                                                       "1.0.0-degraded")}
    assert all(p.baseline.ok and p.canary.ok and p.baseline.latency_ms > 0 for p in pairs)
    assert pairing.summary(pairs).schema_differs == 0
    outcomes = [pairing.outcome(p) for p in pairs]
    result = canary_judge.accuracy(outcomes, JudgeLimits())
    assert result.classification == "low", result.detail
    assert isinstance(result.figures, canary_judge.AccuracyFigures)
    assert result.figures.baseline_accuracy == 1.0
    assert (result.figures.canary_accuracy or 1.0) < 0.7
    assert (result.figures.p_value or 1.0) < 1e-6


def test_a_side_that_does_not_answer_is_recorded_as_a_failed_request(
        servers: dict[str, testing.ServerProcess], tmp_path: Path) -> None:
    rows = pairing.read_holdout()[:3]
    pairs = pairing.send(rows, servers["baseline"].url, f"http://127.0.0.1:{free_port()}", 0.0,
                         tmp_path / "p.jsonl", timeout=2.0)
    _, canary = pairing.as_requests(pairs)
    assert [(r.ok, r.status) for r in canary] == [(False, 0)] * 3
    assert all("Connection" in (r.error or "") for r in canary), canary


def test_a_side_that_never_answers_cannot_stretch_the_interval(
        servers: dict[str, testing.ServerProcess], tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        began = time.monotonic()
        pairs = pairing.send(pairing.read_holdout(), servers["baseline"].url,
                             f"http://127.0.0.1:{silent.getsockname()[1]}", 0.2,
                             tmp_path / "p.jsonl", timeout=0.3)
    assert 1 <= len(pairs) < 5
    assert time.monotonic() - began < 2.0
    assert all(p.canary.error and "timed out" in p.canary.error for p in pairs)
