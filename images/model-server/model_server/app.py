"""Routes and responses of the model server, independent of the HTTP transport.

``App.handle`` takes the parts of a request that matter (method, target,
content type, body, whether the peer is loopback) and returns the route
name for metrics and a ``Response``. No socket code here, so every status
code is unit-testable and fuzzable without a server.

Two protocols, each as its documents specify:

- KServe v1: ``GET /v1/models``, ``GET /v1/models/<m>`` (200 ready, 503 not),
  ``POST /v1/models/<m>:predict`` with ``{"instances": rows}`` or
  ``{"inputs": rows}``, answered ``{"predictions": [...], "model_version"}``;
- Open Inference Protocol (KServe v2, MLServer, Triton): ``GET /v2``,
  ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/<m>`` (metadata),
  ``/v2/models/<m>/ready`` and ``POST /v2/models/<m>/infer`` with typed
  tensors (``tensors``); ``/v2/models/<m>/versions/<version>/...`` too.

Both predict routes score with the same predictor and misbehave alike in
the fault builds. Bad input never yields a 5xx: malformed JSON and a body of
the wrong shape or type 400 (``{"error": ...}``, as both protocols say),
wrong media type 415, unknown route or model 404, wrong method 405
(oversized bodies get 413 from the transport, before the body is read).
5xx are reserved for "not ready yet" (503), the ``-flaky`` build's injected
failures (500), and genuine bugs (500, logged).

``handle`` stays synchronous; a response that must go out late (the
``-stall`` and ``-slow`` builds') says so in ``Response.delay`` and the transport waits
that long on the event loop before writing it, so nothing else is held up.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import orjson

from model_server import metrics, model, tensors, train, versions
from model_server.settings import Settings

log = logging.getLogger(__name__)

JSON = b"application/json"
SERVER_NAME = "rollout-harness-model-server"
"""``name`` in the v2 server metadata."""


class Response(NamedTuple):
    """What to send back; the transport adds the standard headers."""

    status: int
    body: bytes
    content_type: bytes = JSON
    headers: bytes = b""
    """Extra raw header lines, each ending in CRLF (e.g. ``Allow``)."""
    delay: float = 0.0
    """Seconds the transport waits, without blocking, before sending this (``-stall``,
    ``-slow``)."""


Handler = Callable[[bytes, bytes | None, bytes, bool], Response]
"""A route's handler: (method, content type, body, loopback) -> response."""


def error(status: int, message: str, headers: bytes = b"") -> Response:
    """A JSON error body ``{"error": message}``."""
    return Response(status, orjson.dumps({"error": message}), JSON, headers)


def _is_json(content_type: bytes | None) -> bool:
    if content_type is None:
        return False
    media = content_type.partition(b";")[0].strip().lower()
    return media == JSON or (media.startswith(b"application/") and media.endswith(b"+json"))


def _not_json(content_type: bytes | None) -> Response:
    got = "none" if content_type is None else content_type.decode("latin-1")
    return error(415, f"Content-Type must be application/json, got {got}")


class App:
    """The server's state and its routes.

    ``model`` is ``None`` until ``serving`` has loaded it (and, for
    ``-slow-start`` builds, waited); ``draining`` is set by the drain
    trigger. Both are only touched from the event loop thread.
    """

    def __init__(self, settings: Settings, metadata: train.Metadata) -> None:
        self.settings = settings
        self.metadata = metadata
        self.behaviour = versions.Behaviour(metadata["behaviour"])
        self.version = metadata["version"]
        self.version_header = self.version.encode("ascii")
        self.pod_header = settings.pod_name.encode("ascii")
        """``X-Pod-Name`` of every response: which pod answered."""
        self.model: model.Model | None = None
        self.draining = False
        self.on_drain: Callable[[], float] = self._drain_without_server
        """Called by ``POST /drain``; returns seconds left until shutdown."""
        self.metrics = metrics.Metrics(
            info={
                "name": settings.model_name,
                "version": self.version,
                "behaviour": self.behaviour.value,
                "estimator": metadata["estimator"],
            }
        )
        self._flaky_threshold = (
            int(settings.flaky_rate * 10_000) if self.behaviour is versions.Behaviour.FLAKY else -1
        )
        self._stall_threshold = (
            int(settings.stall_rate * 10_000) if self.behaviour is versions.Behaviour.STALL else -1
        )
        self._slow_seconds = (
            settings.slow_ms / 1000 if self.behaviour is versions.Behaviour.SLOW else 0.0
        )
        self._bad_body_threshold = (
            int(settings.bad_body_rate * 10_000)
            if self.behaviour is versions.Behaviour.BAD_BODY
            else -1
        )
        self._misbehaves = (
            max(self._flaky_threshold, self._stall_threshold, self._bad_body_threshold) >= 0
        )
        name = settings.model_name
        self._healthz = orjson.dumps({"status": "alive"})
        self._version = orjson.dumps(
            {
                "name": name,
                "model_version": self.version,
                "behaviour": self.behaviour.value,
                "estimator": metadata["estimator"],
                "holdout_accuracy": metadata["holdout_accuracy"],
                "n_features": metadata["n_features"],
                "model_sha256": metadata["model_sha256"],
            }
        )
        self._v2_server = orjson.dumps(
            {"name": SERVER_NAME, "version": self.version, "extensions": []}
        )
        classes = metadata["classes"]
        self._v2_metadata = orjson.dumps(
            {
                "name": name,
                "versions": [self.version],
                "platform": "sklearn_joblib",
                "inputs": [
                    {
                        "name": tensors.INPUT_NAME,
                        "datatype": "FP64",
                        "shape": [-1, metadata["n_features"]],
                    }
                ],
                "outputs": [
                    {
                        "name": tensors.OUTPUT_NAME,
                        "datatype": tensors.datatype_of(np.asarray(classes).dtype),
                        "shape": [-1],
                    }
                ],
            }
        )
        v1 = f"/v1/models/{name}".encode()
        # path -> (metrics route name, allowed methods, handler)
        self._routes: dict[bytes, tuple[str, bytes, Handler]] = {
            v1 + b":predict": ("predict", b"POST", self._predict),
            v1: ("model", b"GET, HEAD", self._model_status),
            b"/v1/models": ("models", b"GET, HEAD", self._models),
            b"/v2": ("server_metadata", b"GET, HEAD", self._server_metadata),
            b"/v2/health/live": ("server_live", b"GET, HEAD", self._server_live),
            b"/v2/health/ready": ("server_ready", b"GET, HEAD", self._server_ready),
            b"/healthz": ("healthz", b"GET, HEAD", self._health),
            b"/readyz": ("readyz", b"GET, HEAD", self._ready),
            b"/version": ("version", b"GET, HEAD", self._version_info),
            b"/metrics": ("metrics", b"GET, HEAD", self._metrics),
            b"/drain": ("drain", b"POST", self._drain),
        }
        for v2 in (f"/v2/models/{name}", f"/v2/models/{name}/versions/{self.version}"):
            self._routes |= {
                f"{v2}/infer".encode(): ("infer", b"POST", self._infer),
                v2.encode(): ("model_metadata", b"GET, HEAD", self._model_metadata),
                f"{v2}/ready".encode(): ("model_ready", b"GET, HEAD", self._model_ready),
            }

    @property
    def ready(self) -> bool:
        """Model loaded and answering, not draining, and not a ``-never-ready`` build."""
        return (
            self.model is not None
            and not self.draining
            and self.behaviour is not versions.Behaviour.NEVER_READY
        )

    @property
    def not_ready_reason(self) -> str:
        """Why readiness fails: ``draining``, ``model loading`` or ``never-ready build``."""
        if self.draining:
            return "draining"
        if self.model is None:
            return "model loading"
        return "never-ready build"

    def handle(
        self,
        method: bytes,
        target: bytes,
        content_type: bytes | None,
        body: bytes,
        loopback: bool,
    ) -> tuple[str, Response]:
        """Answer one request; returns the metrics route name and the response."""
        path = target.partition(b"?")[0] if b"?" in target else target
        route = self._routes.get(path)
        if route is None:
            return "unknown", self._not_found(path)
        name, allowed, handler = route
        verb = b"GET" if method == b"HEAD" else method
        if verb not in allowed.split(b", "):
            return name, error(
                405,
                f"{method.decode('latin-1')} not allowed; use {allowed.decode()}",
                b"Allow: " + allowed + b"\r\n",
            )
        try:
            return name, handler(method, content_type, body, loopback)
        except Exception:
            log.exception("bug answering %s %s", method, path)
            return name, error(500, "internal error")

    def _not_found(self, path: bytes) -> Response:
        text = path.decode("latin-1")
        name = self.settings.model_name
        if path.startswith(b"/v1/models/"):
            return error(404, f"no model at {text}; this server serves /v1/models/{name}")
        if path.startswith(b"/v2/models/"):
            return error(
                404,
                f"no model at {text}; this server serves /v2/models/{name} "
                f"(version {self.version})",
            )
        return error(404, f"no route {text}")

    def _predict(
        self, method: bytes, content_type: bytes | None, body: bytes, loopback: bool
    ) -> Response:
        """KServe v1 predict: ``{"instances": rows}`` or ``{"inputs": rows}``."""
        if not _is_json(content_type):
            return _not_json(content_type)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            return error(400, f"malformed JSON: {e}")
        loaded = self.model
        n = self.metadata["n_features"]
        if type(payload) is not dict:
            return error(400, f'body must be {{"instances": [[{n} numbers], ...]}} or "inputs"')
        if "instances" in payload:
            if "inputs" in payload:
                return error(400, 'give "instances" or "inputs", not both')
            field = "instances"
        elif "inputs" in payload:
            field = "inputs"
            if type(payload["inputs"]) is dict:
                return error(400, '"inputs" must be a list of rows; named (columnar) inputs '
                             "are not supported: this model has one input")  # fmt: skip
        else:
            return error(400, f'body must be {{"instances": [[{n} numbers], ...]}} or "inputs"')
        if loaded is None:
            return error(503, "model not loaded yet")
        try:
            x = model.to_matrix(
                payload[field], n, may_hold_bools=b"true" in body or b"false" in body, field=field
            )
        except model.InputError as e:
            return error(400, str(e))
        predictions, delay = self._score(loaded, x)
        if predictions is None:
            return error(500, "injected failure: this is a -flaky build")
        return Response(
            200,
            orjson.dumps(
                {"predictions": predictions, "model_version": self.version},
                option=orjson.OPT_SERIALIZE_NUMPY,
            ),
            delay=delay,
        )

    def _infer(
        self, method: bytes, content_type: bytes | None, body: bytes, loopback: bool
    ) -> Response:
        """Open Inference Protocol infer: one typed input tensor in, one output tensor out."""
        if not _is_json(content_type):
            return _not_json(content_type)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            return error(400, f"malformed JSON: {e}")
        if type(payload) is not dict:
            return error(400, 'an infer request must be a JSON object with "inputs"')
        loaded = self.model
        if loaded is None:
            return error(503, "model not loaded yet")
        try:
            request = tensors.read_request(
                payload,
                self.metadata["n_features"],
                may_hold_bools=b"true" in body or b"false" in body,
            )
        except model.InputError as e:
            return error(400, str(e))
        predictions, delay = self._score(loaded, request.x)
        if predictions is None:
            return error(500, "injected failure: this is a -flaky build")
        answer: dict[str, object] = {
            "model_name": self.settings.model_name,
            "model_version": self.version,
        }
        if request.id is not None:
            answer["id"] = request.id
        answer["outputs"] = [
            {
                "name": tensors.OUTPUT_NAME,
                "shape": [len(predictions)],
                "datatype": tensors.datatype_of(predictions.dtype),
                "data": predictions,
            }
        ]
        return Response(200, orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY), delay=delay)

    def _score(self, loaded: model.Model, x: np.ndarray) -> tuple[np.ndarray | None, float]:
        """Predictions for ``x`` as this build gives them, and how late to send them.

        ``None``: the ``-flaky`` build fails these rows. Which rows misbehave is
        decided by their values (crc32 of the float64 matrix), not by the JSON
        spelling, so the same rows misbehave alike on both protocols.
        """
        if not self._misbehaves:
            return loaded.predict(x), self._slow_seconds
        key = zlib.crc32(x.data) % 10_000
        if key < self._flaky_threshold:
            return None, 0.0
        predictions = loaded.predict(x)
        if key < self._bad_body_threshold:
            predictions = predictions[:0]
        stall = key < self._stall_threshold
        return predictions, self.settings.stall_seconds if stall else self._slow_seconds

    def _model_status(
        self, method: bytes, content_type: bytes | None, body: bytes, loopback: bool
    ) -> Response:
        """KServe v1 model ready: 200 when ready, 503 (with the reason) when not."""
        answer: dict[str, object] = {
            "name": self.settings.model_name,
            "ready": self.ready,
            "model_version": self.version,
        }
        if self.ready:
            return Response(200, orjson.dumps(answer))
        answer["error"] = f"model {self.settings.model_name} is not ready: {self.not_ready_reason}"
        return Response(503, orjson.dumps(answer))

    def _models(
        self, method: bytes, content_type: bytes | None, body: bytes, loopback: bool
    ) -> Response:
        return Response(200, orjson.dumps({"models": [self.settings.model_name]}))

    def _server_metadata(
        self, method: bytes, content_type: bytes | None, body: bytes, loopback: bool
    ) -> Response:
        return Response(200, self._v2_server)

    def _server_live(
        self, method: bytes, content_type: bytes | None, body: bytes, loopback: bool
    ) -> Response:
        return Response(200, b'{"live":true}')

    def _server_ready(
        self, method: bytes, content_type: bytes | None, body: bytes, loopback: bool
    ) -> Response:
        if self.ready:
            return Response(200, b'{"ready":true}')
        return Response(
            503, orjson.dumps({"ready": False, "error": f"not ready: {self.not_ready_reason}"})
        )

    def _model_metadata(
        self, method: bytes, content_type: bytes | None, body: bytes, loopback: bool
    ) -> Response:
        return Response(200, self._v2_metadata)

    def _model_ready(
        self, method: bytes, content_type: bytes | None, body: bytes, loopback: bool
    ) -> Response:
        name = self.settings.model_name
        if self.ready:
            return Response(200, orjson.dumps({"name": name, "ready": True}))
        return Response(
            503,
            orjson.dumps(
                {
                    "name": name,
                    "ready": False,
                    "error": f"model {name} is not ready: {self.not_ready_reason}",
                }
            ),
        )

    def _health(
        self, method: bytes, content_type: bytes | None, body: bytes, loopback: bool
    ) -> Response:
        return Response(200, self._healthz)

    def _ready(
        self, method: bytes, content_type: bytes | None, body: bytes, loopback: bool
    ) -> Response:
        if self.ready:
            return Response(200, b'{"ready":true}')
        return Response(503, orjson.dumps({"ready": False, "reason": self.not_ready_reason}))

    def _version_info(
        self, method: bytes, content_type: bytes | None, body: bytes, loopback: bool
    ) -> Response:
        return Response(200, self._version)

    def _metrics(
        self, method: bytes, content_type: bytes | None, body: bytes, loopback: bool
    ) -> Response:
        self.metrics.draining = self.draining
        self.metrics.ready = self.ready
        return Response(200, self.metrics.render(), metrics.CONTENT_TYPE)

    def _drain(
        self, method: bytes, content_type: bytes | None, body: bytes, loopback: bool
    ) -> Response:
        if not loopback:
            return error(403, "drain is only accepted from inside the pod (loopback)")
        remaining = self.on_drain()
        return Response(
            200, orjson.dumps({"draining": True, "remaining_seconds": round(remaining, 3)})
        )

    def _drain_without_server(self) -> float:
        self.draining = True
        return 0.0
