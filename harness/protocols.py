"""The inference protocols the traffic speaks: where a prediction is asked, how rows are
written, and what a valid answer is.

A team's model answers KServe's v1 protocol or the Open Inference Protocol (KServe v2,
spoken by MLServer, Triton and KServe's own runtimes); the gate must ask it the way its
clients do, or it tests a path no client takes. This is the one home of each protocol's
wire shape, so the load (every request), the canary's paired checks and the wait for a
model answering before traffic starts cannot disagree on it. Importable by the
locustfile: nothing here but the standard library and orjson (imported where an answer
is read, so that the settings can name the protocols without it).

An answer is read strictly, because a release that changes what its clients receive has
failed them even when it answers 200: the body must be the protocol's JSON, with one
prediction per instance sent and the answering version in the body equal to the
version header (``X-Model-Version`` by default). A server that names its version only in
the body (MLServer, KServe's runtimes: ``model_version``) is read by its body alone
(`VERSION_FROM_BODY`). Whether each prediction is a class label is the caller's check
(`label_problem`): only the caller knows the labels.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal, get_args

ProtocolName = Literal["kserve-v1", "open-inference-v2"]
NAMES: tuple[str, ...] = get_args(ProtocolName)
DEFAULT: ProtocolName = "kserve-v1"


VERSION_FROM_BODY = "body"
"""The answer-version setting that reads the version from the body's ``model_version``."""
DEFAULT_VERSION_SOURCE = "header:X-Model-Version"
"""The bundled server names its version in this header (and in the body)."""


def version_header(source: str) -> str | None:
    """The header an answer names its version in (``header:NAME``), or None: the body."""
    return None if source == VERSION_FROM_BODY else source.partition(":")[2]


class AnswerProblem(Exception):
    """A 2xx answer that is not a valid prediction; the message says what is wrong."""


class Protocol:
    """One protocol's paths, request body and answer reading."""

    name: ProtocolName

    def predict_path(self, model: str) -> str:
        raise NotImplementedError

    def ready_path(self, model: str) -> str:
        """Answers 200 once the model can predict (before that, 503 or no answer)."""
        raise NotImplementedError

    def encode(self, instances: Sequence[Sequence[float]]) -> bytes:
        raise NotImplementedError

    def answer(self, body: bytes | None, instances: int) -> tuple[list[Any], str]:
        """The predictions in a 2xx answer to `instances` rows and the version its body
        names; AnswerProblem if it is not one."""
        raise NotImplementedError

    def predictions(self, body: bytes | None, header_version: str | None,
                    instances: int) -> list[Any]:
        """`answer`'s predictions, its body's version checked against the header's."""
        predictions, version = self.answer(body, instances)
        _same_version(version, header_version)
        return predictions


def _json(body: bytes | None) -> Any:
    import orjson  # here, not at the top: settings import this module for its names

    try:
        return orjson.loads(body or b"")
    except orjson.JSONDecodeError as e:
        raise AnswerProblem(f"not JSON ({e}): {(body or b'')[:80]!r}") from None


def _same_version(version: Any, header_version: str | None) -> None:
    if version != header_version:
        raise AnswerProblem(f"model_version {version!r} but X-Model-Version {header_version!r}")


class KServeV1(Protocol):
    """``POST /v1/models/<m>:predict`` with ``{"instances": [...]}``, answered by
    ``{"predictions": [...], "model_version": "..."}``."""

    name: ProtocolName = "kserve-v1"

    def predict_path(self, model: str) -> str:
        return f"/v1/models/{model}:predict"

    def ready_path(self, model: str) -> str:
        return f"/v1/models/{model}"

    def encode(self, instances: Sequence[Sequence[float]]) -> bytes:
        return json.dumps({"instances": [list(row) for row in instances]}).encode()

    def answer(self, body: bytes | None, instances: int) -> tuple[list[Any], str]:
        answer = _json(body)
        if not (isinstance(answer, dict) and isinstance(answer.get("predictions"), list)
                and isinstance(answer.get("model_version"), str)):  # fmt: skip
            raise AnswerProblem('not {"predictions": [...], "model_version": "..."}: '
                                f"{(body or b'')[:80]!r}")
        predictions: list[Any] = answer["predictions"]
        if len(predictions) != instances:
            raise AnswerProblem(f"{len(predictions)} predictions for {instances} instances")
        return predictions, answer["model_version"]


class OpenInferenceV2(Protocol):
    """``POST /v2/models/<m>/infer`` with one ``FP64`` input tensor ``[rows, features]``,
    answered by ``{"model_name", "model_version", "outputs": [tensor]}``; the first output
    tensor holds the predictions, one per row."""

    name: ProtocolName = "open-inference-v2"
    input_name = "input-0"

    def predict_path(self, model: str) -> str:
        return f"/v2/models/{model}/infer"

    def ready_path(self, model: str) -> str:
        return f"/v2/models/{model}/ready"

    def encode(self, instances: Sequence[Sequence[float]]) -> bytes:
        rows = [list(row) for row in instances]
        width = len(rows[0]) if rows else 0
        return json.dumps({"inputs": [{
            "name": self.input_name, "shape": [len(rows), width], "datatype": "FP64",
            "data": [x for row in rows for x in row]}]}).encode()  # fmt: skip

    def answer(self, body: bytes | None, instances: int) -> tuple[list[Any], str]:
        answer = _json(body)
        outputs = answer.get("outputs") if isinstance(answer, dict) else None
        first = outputs[0] if isinstance(outputs, list) and outputs else None
        if not (isinstance(first, dict) and isinstance(first.get("data"), list)
                and isinstance(first.get("shape"), list)
                and isinstance(answer.get("model_version"), str)):  # fmt: skip
            raise AnswerProblem('not {"model_version": "...", "outputs": [{"shape": [...], '
                                f'"data": [...]}}]}}: {(body or b"")[:80]!r}')
        data: list[Any] = _flat(first["data"])
        if len(data) != instances or first["shape"][:1] != [instances]:
            raise AnswerProblem(f"output of shape {first['shape']} with {len(data)} values "
                                f"for {instances} instances")
        return data, answer["model_version"]


def _flat(data: list[Any]) -> list[Any]:
    """A tensor's data, row-major: the protocol allows it nested in the tensor's shape."""
    flat: list[Any] = []
    for item in data:
        flat.extend(_flat(item) if isinstance(item, list) else [item])
    return flat


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (KServeV1(), OpenInferenceV2())}


def by_name(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown inference protocol {name!r}: use one of "
                         f"{', '.join(NAMES)}") from None


def label_problem(predictions: Sequence[Any], labels: frozenset[Any] | None) -> str | None:
    """What is wrong with predictions that should be class labels; None when each is one
    (or when no labels are known). A label that changed type (``1`` became ``1.0``) is
    wrong: a client comparing labels would break."""
    if labels is None:
        return None
    types = {type(label) for label in labels}
    for p in predictions:
        if type(p) not in types or p not in labels:
            return f"prediction {p!r} is not a class label {sorted(labels)}"
    return None
