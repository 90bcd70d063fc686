"""Inference traffic for the model server: keep-alive, no retries, every request recorded.

Usable alone::

    locust -f load/locustfile.py --host http://127.0.0.1:30080 --headless -u 10 -r 10 -t 60s

Feature vectors are the rows of the model's own dataset (scikit-learn's
bundled wine data, read from its CSV without importing scikit-learn into
this gevent process), pre-encoded once so each request costs no JSON work.
Settings from the environment:

- ``LOAD_MODEL_NAME``: ``<name>`` in ``/v1/models/<name>:predict`` (ml-model);
- ``LOAD_RPS_PER_USER``: requests per second per user (``constant_throughput``);
  unset or 0 means as fast as the server answers;
- ``LOAD_BATCH_SIZE``: instances per request (1);
- ``LOAD_RECORD_FILE``: JSONL file of every request (see ``recording.py``);
- ``LOAD_MAX_REQUESTS``: stop the run after this many requests (0: no cap);
- ``LOAD_TIMEOUT_SECONDS``: connect and read timeout (10);
- ``LOAD_DATA_FILE``: a hold-out JSONL (``{"instance": [...]}`` lines) instead
  of the bundled CSV;
- ``LOAD_SEED``: seed for the choice of rows (0);
- ``LOAD_STOP_FILE``: end the run when this file appears, the way ``-t`` ends
  it (users finish the request under way within ``--stop-timeout``, then every
  record is flushed). A harness that cannot know the run's length in advance
  uses this instead of a signal: on SIGTERM Locust closes its listeners
  before the users stop, and the last requests would go unrecorded.

No retries anywhere: a retry would hide exactly the failures the gate is for.
Run with ``--stop-timeout`` (e.g. 10) so requests under way when the run
ends are finished and recorded instead of being killed mid-flight.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
from pathlib import Path
from typing import Any

import gevent  # type: ignore[import-untyped]
import recording  # the locustfile's folder is on sys.path when Locust loads it
from locust import FastHttpUser, constant, constant_throughput, events, task
from locust.exception import StopUser


def _env_float(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    try:
        return float(text) if text else default
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a number") from None


MODEL_NAME = os.environ.get("LOAD_MODEL_NAME", "ml-model")
RPS_PER_USER = _env_float("LOAD_RPS_PER_USER", 0.0)
BATCH_SIZE = max(1, int(_env_float("LOAD_BATCH_SIZE", 1)))
MAX_REQUESTS = int(_env_float("LOAD_MAX_REQUESTS", 0))
TIMEOUT = _env_float("LOAD_TIMEOUT_SECONDS", 10.0)
SEED = int(_env_float("LOAD_SEED", 0))


def dataset_rows() -> list[list[float]]:
    """Feature vectors: ``LOAD_DATA_FILE`` if set, else scikit-learn's bundled wine CSV."""
    if data_file := os.environ.get("LOAD_DATA_FILE"):
        lines = Path(data_file).read_text().splitlines()
        return [json.loads(line)["instance"] for line in lines if line.strip()]
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise RuntimeError("scikit-learn is not installed; set LOAD_DATA_FILE to a hold-out JSONL")
    csv = Path(spec.origin).parent / "datasets" / "data" / "wine_data.csv"
    lines = csv.read_text().splitlines()[1:]  # first line: counts and class names
    return [[float(x) for x in line.split(",")[:-1]] for line in lines if line]


def request_bodies(rows: list[list[float]], batch: int, seed: int, count: int = 512) -> list[bytes]:
    """Pre-encoded predict bodies: each row alone, or ``count`` random batches."""
    if batch == 1:
        return [json.dumps({"instances": [row]}).encode() for row in rows]
    rng = random.Random(seed)
    return [json.dumps({"instances": rng.choices(rows, k=batch)}).encode() for _ in range(count)]


BODIES = request_bodies(dataset_rows(), BATCH_SIZE, SEED)
PATH = f"/v1/models/{MODEL_NAME}:predict"
HEADERS = {"Content-Type": "application/json"}
_sent = 0


def _record(environment: Any, **_: Any) -> None:
    if record_file := os.environ.get("LOAD_RECORD_FILE"):
        recording.attach(environment.events, Path(record_file))


def _watch_stop_file(environment: Any, **_: Any) -> None:
    if not (stop_file := os.environ.get("LOAD_STOP_FILE")):
        return
    path = Path(stop_file)

    def poll() -> None:
        while not path.exists():
            gevent.sleep(0.1)
        if environment.runner is not None:
            environment.runner.quit()

    gevent.spawn(poll)


events.init.add_listener(_record)  # type: ignore[no-untyped-call]
events.init.add_listener(_watch_stop_file)  # type: ignore[no-untyped-call]


class InferenceUser(FastHttpUser):
    """One client with one keep-alive connection, posting dataset rows."""

    wait_time = constant_throughput(RPS_PER_USER) if RPS_PER_USER > 0 else constant(0)
    max_retries = 0
    connection_timeout = TIMEOUT
    network_timeout = TIMEOUT

    def on_start(self) -> None:
        self.rng = random.Random(SEED + id(self))

    @task
    def predict(self) -> None:
        global _sent
        if MAX_REQUESTS and _sent >= MAX_REQUESTS:
            if _sent == MAX_REQUESTS:
                _sent += 1
                gevent.spawn(self.environment.runner.quit)
            raise StopUser()
        _sent += 1
        body = self.rng.choice(BODIES)  # bytes: geventhttpclient sends them as they are
        self.client.post(PATH, data=body, headers=HEADERS, name="predict")  # type: ignore[arg-type]
