"""Paired quality checks: the same labelled inputs sent to a canary's baseline and candidate.

Live traffic tells errors and latency apart; it cannot tell a version that
answers wrongly from one that answers rightly, because live inputs carry no
label. So during each canary interval every row of the model's labelled
hold-out set (`resources.HOLDOUT`: the 54 rows `model_server.train` holds out
of the wine data and writes into every image, the same split for every
version) is posted once to the baseline's Service and once to the
candidate's, each through its own host port, in turn (which side goes first
alternates). Both answers are written down — prediction, pod, version,
status, latency — one JSON line per input in a file per interval, and become:

- a `PairedOutcome` per input for the judge's accuracy metric (McNemar on the
  discordant pairs, `harness/canary_judge.py`): a side is correct when it
  answered a valid prediction equal to the label;
- an `evidence.Request` per answer (name ``paired``), judged with the live
  requests of its side: a paired answer that failed is a failed request;
- the output schema compared: the candidate's answer must have the baseline's
  keys with the same JSON types (``{"model_version": "string",
  "predictions": ["integer"]}``); a difference fails that candidate request as
  ``bad body: output schema ...`` — a client parsing the old answer would break.

Each input is sent once per interval, not repeated to fill it: McNemar counts
independent inputs, and a deterministic model answers a repeat exactly as it
answered the first time. The rows are paced evenly over the interval.

The answer check is the load's: both read an answer with harness/protocols.py
(the protocol's shape, one prediction per instance, the version in the body equal
to the header) and hold its predictions to the hold-out's labels.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import logging
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import errors, protocols, resources
from harness.canary_judge import PairedOutcome
from harness.evidence import Request

log = logging.getLogger(__name__)

PAIRED = "paired"
"""The request name of paired answers when judged as requests."""


@dataclass(frozen=True)
class Labelled:
    """One hold-out row: the features and the true class."""

    instance: tuple[float, ...]
    label: int


def read_holdout(path: Path = resources.HOLDOUT) -> list[Labelled]:
    """The labelled rows of a hold-out JSONL (``{"instance": [...], "label": L}`` lines)."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            rows.append(Labelled(tuple(float(x) for x in record["instance"]),
                                 int(record["label"])))
        except (ValueError, KeyError, TypeError) as e:
            raise errors.HarnessError(f"{path}:{number}: not a labelled row ({e})") from e
    if not rows:
        raise errors.HarnessError(f"{path} holds no labelled rows: nothing to compare")
    return rows


@dataclass(frozen=True)
class Answer:
    """One side's answer to one labelled input."""

    t: float
    """When it was sent, epoch seconds."""
    latency_ms: float
    status: int
    """0 when no answer came (then `error` says why)."""
    error: str | None
    """Why the request failed: no answer, not 2xx, or a body that is not a prediction."""
    prediction: Any
    """The one prediction, None without a valid one."""
    version: str | None
    """X-Model-Version."""
    pod: str | None
    """X-Pod-Name."""
    schema: str | None
    """The answer's JSON shape (`schema_of`), None when it is not JSON."""

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Pair:
    """One labelled input and both answers to it: a line of paired-NN.jsonl."""

    index: int
    """Its row in the hold-out."""
    label: int
    baseline: Answer
    canary: Answer

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Pair:
        return cls(int(record["index"]), int(record["label"]),
                   Answer(**record["baseline"]), Answer(**record["canary"]))


# -- what the answers mean (pure) -------------------------------------------------


def answer_problem(body: bytes, header_version: str | None, labels: frozenset[int],
                   protocol: str = protocols.DEFAULT) -> str | None:
    """What is wrong with a 2xx answer to one instance, or None for a valid prediction."""
    return read_answer(body, header_version, labels, protocol)[1]


def read_answer(body: bytes, header_version: str | None, labels: frozenset[int],
                protocol: str = protocols.DEFAULT) -> tuple[Any, str | None]:
    """A 2xx answer to one instance, read once: (its prediction, None), or (None, what is
    wrong with it)."""
    try:
        predictions = protocols.by_name(protocol).predictions(body, header_version, 1)
    except protocols.AnswerProblem as e:
        return None, str(e)
    problem = protocols.label_problem(predictions, labels)
    return (None, problem) if problem is not None else (predictions[0], None)


def schema_of(value: Any) -> Any:
    """A JSON value's shape: objects by key, arrays by the set of their items' shapes,
    scalars by JSON type name (integer and number apart: a class label that became
    a float is a change a client sees)."""
    if isinstance(value, dict):
        return {key: schema_of(item) for key, item in sorted(value.items())}
    if isinstance(value, list):
        shapes = {json.dumps(schema_of(item), sort_keys=True) for item in value}
        return [json.loads(shape) for shape in sorted(shapes)]
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "null"


def schema_text(body: bytes) -> str | None:
    """`schema_of` the answer as compact JSON text, None when the body is not JSON."""
    try:
        return json.dumps(schema_of(json.loads(body or b"")), sort_keys=True,
                          separators=(",", ":"))
    except ValueError:
        return None


def schema_difference(pair: Pair) -> str | None:
    """How the candidate's answer's shape differs from the baseline's; None when alike,
    or when there is nothing to compare (either side did not answer 2xx JSON)."""
    b, c = pair.baseline, pair.canary
    if b.schema is None or c.schema is None or not (200 <= b.status < 300
                                                     and 200 <= c.status < 300):
        return None
    if b.schema == c.schema:
        return None
    return f"output schema {c.schema} differs from the baseline's {b.schema}"


def outcome(pair: Pair) -> PairedOutcome:
    """The pair as the judge's accuracy metric reads it."""
    b, c = pair.baseline, pair.canary
    return PairedOutcome(
        baseline_correct=b.ok and b.prediction == pair.label,
        canary_correct=c.ok and c.prediction == pair.label,
        same_prediction=b.prediction is not None and b.prediction == c.prediction,
    )


def as_requests(pairs: Sequence[Pair]) -> tuple[list[Request], list[Request]]:
    """(baseline, canary) requests of the paired answers; a candidate answer whose
    schema differs from the baseline's is a failed request (``bad body``)."""
    baseline, canary = [], []
    for pair in pairs:
        baseline.append(_request(pair.baseline, None))
        canary.append(_request(pair.canary, schema_difference(pair)))
    return baseline, canary


def _request(answer: Answer, problem: str | None) -> Request:
    error = answer.error or (f"bad body: {problem}" if problem else None)
    return Request(t=answer.t, latency_ms=answer.latency_ms, status=answer.status, error=error,
                   version=answer.version, ok=error is None, name=PAIRED, pod=answer.pod)


@dataclass(frozen=True)
class Summary:
    """One interval's paired checks, for the report."""

    pairs: int
    baseline_failed: int
    canary_failed: int
    schema_compared: int
    """Pairs where both answered 2xx JSON, so their shapes could be compared."""
    schema_differs: int
    first_difference: str | None


def summary(pairs: Sequence[Pair]) -> Summary:
    compared = [p for p in pairs if p.baseline.schema is not None and p.canary.schema is not None
                and 200 <= p.baseline.status < 300 and 200 <= p.canary.status < 300]
    differences = [d for p in compared if (d := schema_difference(p)) is not None]
    return Summary(len(pairs), sum(not p.baseline.ok for p in pairs),
                   sum(not p.canary.ok for p in pairs), len(compared), len(differences),
                   differences[0] if differences else None)


# -- sending (I/O) ------------------------------------------------------------------


def send(rows: Sequence[Labelled], baseline_url: str, canary_url: str, seconds: float,
         out: Path, model_name: str = "ml-model", timeout: float = 10.0,
         still_running: Callable[[], None] = lambda: None,
         protocol: str = protocols.DEFAULT) -> list[Pair]:
    """Each row once to both sides, paced evenly over `seconds`, each pair written to
    `out` (JSONL) as it completes; returns the pairs. Returns no sooner than `seconds`
    after it began, so it can time an interval, and starts no row later than one
    request `timeout` after that, so a side that never answers cannot stretch the
    interval by minutes (the rows left out are simply not in the result).
    `still_running` is called between sends (the live traffic's health check raises
    there)."""
    labels = frozenset(row.label for row in rows)
    wire = protocols.by_name(protocol)
    started = time.monotonic()
    pairs: list[Pair] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as record:
        for index, row in enumerate(rows):
            _sleep_until(started + index * seconds / len(rows), still_running)
            if time.monotonic() > started + seconds + timeout:
                log.warning("paired checks: %d of %d rows left out, the interval's time is up",
                            len(rows) - index, len(rows))
                break
            body = wire.encode([row.instance])
            sides = [("baseline", baseline_url), ("canary", canary_url)]
            if index % 2:  # neither side always goes first
                sides.reverse()
            answers = {side: ask(url, model_name, body, labels, timeout, protocol)
                       for side, url in sides}
            pair = Pair(index, row.label, answers["baseline"], answers["canary"])
            pairs.append(pair)
            record.write(json.dumps(dataclasses.asdict(pair)) + "\n")
            record.flush()
    _sleep_until(started + seconds, still_running)
    return pairs


def read_pairs(path: Path) -> list[Pair]:
    """The pairs of a paired-NN.jsonl."""
    return [Pair.from_record(json.loads(line)) for line in path.read_text().splitlines()
            if line.strip()]


def ask(url: str, model_name: str, body: bytes, labels: frozenset[int],
        timeout: float, protocol: str = protocols.DEFAULT) -> Answer:
    """One predict on a new connection (no retries, redirects not followed)."""
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port,
                                            timeout=timeout)
    t, begun = time.time(), time.perf_counter()
    try:
        connection.request("POST", protocols.by_name(protocol).predict_path(model_name), body,
                           {"Content-Type": "application/json", "Connection": "close"})
        response = connection.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException) as e:
        return Answer(t, _ms(begun), 0, f"{type(e).__name__}: {e}", None, None, None, None)
    finally:
        connection.close()
    latency = _ms(begun)
    version, pod = response.getheader("X-Model-Version"), response.getheader("X-Pod-Name")
    schema = schema_text(data)
    if not 200 <= response.status < 300:
        return Answer(t, latency, response.status, f"HTTP {response.status}: not a 2xx answer",
                      None, version, pod, schema)
    prediction, problem = read_answer(data, version, labels, protocol)
    if problem is not None:
        return Answer(t, latency, response.status, f"bad body: {problem}", None, version, pod,
                      schema)
    return Answer(t, latency, response.status, None, prediction, version, pod, schema)


def _ms(begun: float) -> float:
    return round((time.perf_counter() - begun) * 1000, 3)


def _sleep_until(deadline: float, still_running: Callable[[], None]) -> None:
    while (left := deadline - time.monotonic()) > 0:
        still_running()
        time.sleep(min(left, 0.5))
