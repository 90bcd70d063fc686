"""Inference traffic for the model server: no retries, answers checked, every request recorded.

Usable alone::

    locust -f load/locustfile.py --host http://127.0.0.1:30080 --headless -u 10 -r 10 -t 60s

Two kinds of clients post the same predict requests:

- keep-alive users (``InferenceUser``, recorded as ``name="predict"``) hold one
  connection each, the way most clients talk to a service;
- new-connection users (``NewConnectionUser``, ``name="predict-new-connection"``)
  open a new TCP connection for every request (they send ``Connection: close``
  and drop their connection pool after each answer). A pod that exits without
  draining, or an endpoint that still routes to an exited or unready pod, is
  met by new connections: kept-alive sockets mostly skip it.

Each class runs exactly the number of users its setting says (Locust's
``fixed_count``); pass ``-u`` = their sum. With ``LOAD_USERS`` unset the
keep-alive class takes whatever ``-u`` users the churn class leaves, so a run
by hand without settings is all keep-alive users, as before.

With a rate, each user keeps its own schedule of intended send times, one
every ``1 / rate`` seconds from a random phase in the first interval. A request
that comes back late does not thin out the schedule: the ones due meanwhile are
sent at once, and their recorded ``latency_ms`` runs from the time they were
meant to be sent (``t`` in the record), so a stall is charged to every request
queued behind it rather than hidden (no coordinated omission). Locust's own
console statistics show service times only.

Every answer is checked: a 2xx must be the protocol's JSON answer (v1:
``{"predictions": [...], "model_version": "..."}``; v2: an output tensor) with
one prediction per instance sent, each a class label of the dataset, and the
body's ``model_version`` equal to the version header; otherwise the request
fails as ``bad body: <what was wrong>``. A server that names its version in the
body only (``LOAD_ANSWER_VERSION=body``) is recorded with the body's version.

Feature vectors are the rows of the model's own dataset (scikit-learn's
bundled wine data, read from its CSV without importing scikit-learn into
this gevent process), pre-encoded once so each request costs no JSON work.
Settings from the environment:

- ``LOAD_MODEL_NAME``: the model's name in the predict path (ml-model);
- ``LOAD_PROTOCOL``: ``kserve-v1`` (``POST /v1/models/<name>:predict``, the
  default) or ``open-inference-v2`` (``POST /v2/models/<name>/infer`` with an
  ``FP64`` tensor); ``harness/protocols.py`` holds both wire shapes;
- ``LOAD_ANSWER_VERSION``: where an answer names its version: ``header:NAME``
  (``header:X-Model-Version``, the default) or ``body`` (its ``model_version``);
- ``LOAD_USERS``: keep-alive users (unset: all ``-u`` users but the churn ones;
  0: none);
- ``LOAD_CHURN_USERS``: new-connection users (0);
- ``LOAD_RPS_PER_USER``: requests per second per user, on each user's schedule;
  unset or 0 means as fast as the server answers;
- ``LOAD_BATCH_SIZE``: instances per request (1);
- ``LOAD_RECORD_FILE``: JSONL file of every request (see ``recording.py``); a
  worker writes ``requests.worker-<index>.jsonl`` beside it instead (see below);
- ``LOAD_SUMMARY_FILE``: at the end, ``{"locust_requests": N, "locust_failures":
  F, "recorded": R}`` (Locust's totals and the lines written to the record)
  so the two can be reconciled; ``recorded`` is 0 without a record file. With
  workers the master writes it alone (see below);
- ``LOAD_MAX_REQUESTS``: stop the run after this many requests (0: no cap);
  a bound per process that sends requests: with workers, each worker's share,
  and the first worker to reach it ends the run for all;
- ``LOAD_TIMEOUT_SECONDS``: connect and read timeout (10);
- ``LOAD_DATA_FILE``: a hold-out JSONL (``{"instance": [...], "label": L}``
  lines) instead of the bundled CSV; without labels, predictions are not
  checked against the label set;
- ``LOAD_SEED``: seed for the choice of rows (0);
- ``LOAD_STOP_FILE``: end the run when this file appears, the way ``-t`` ends
  it (users finish the request under way within ``--stop-timeout``, then every
  record is flushed). A harness that cannot know the run's length in advance
  uses this instead of a signal;
- ``LOAD_PARENT_PID``: end the run the same way when this process is no
  longer Locust's parent (the harness that started it was killed): load never
  outlives the run it belongs to.

Several processes (Locust's ``--processes N``, or ``--master`` and
``--worker`` on several hosts, every one with this file and the same
variables): the master runs no users; each worker runs its share of them,
each user on its own schedule as above, and records them into its own file,
``<record>.worker-<index><suffix>`` (``harness.evidence.part_record``; the
master numbers its workers 0, 1, ...), so no two processes write to one
file. ``LOAD_STOP_FILE`` and ``LOAD_PARENT_PID`` are read by the master; a
worker forked by ``--processes`` ends when its master is gone. However the
run ends (``-t``, the stop file, the cap, SIGTERM), the master first has
every worker stop its users (requests under way finish within
``--stop-timeout``), send its last statistics and then the number of lines
it recorded, waits for all of them (at most ``--stop-timeout`` + 10 s), and
only then quits: Locust's own quit would give workers 0.5 s, and requests
finishing later would be in a worker's record but not in the master's
totals. The master's summary then holds Locust's totals over all workers,
``recorded`` (their sum) and ``"workers": {"<index>": lines}``. Merging the
workers' files into one record (``harness.evidence.merge_parts``) is left to
whoever reads them: the harness does it when Locust has ended.

No retries anywhere: a retry would hide exactly the failures the gate is for;
redirects are not followed either. Run with ``--stop-timeout`` (e.g. 10) so
requests under way when the run ends are finished and recorded. One that is
still under way when Locust kills its user (after ``--stop-timeout``, or at
once without it) would vanish from Locust's statistics and from the record
alike although the server may have read it: it is recorded as failed with
``RequestCut: ...`` instead, counted by both. On SIGTERM the run is stopped
the same way before the record is closed.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any, ClassVar

import gevent  # type: ignore[import-untyped]
import gevent.event  # type: ignore[import-untyped]
import recording  # the locustfile's folder is on sys.path when Locust loads it
from locust import FastHttpUser, constant, events, task
from locust.exception import RPCError, RPCSendError, StopUser
from locust.runners import (
    STATE_CLEANUP,
    STATE_RUNNING,
    STATE_SPAWNING,
    MasterRunner,
    WorkerRunner,
)
from locust.user.task import LOCUST_STATE_STOPPING

from harness import protocols
from harness.evidence import NEW_CONNECTION, part_record


def _env_float(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    try:
        return float(text) if text else default
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a number") from None


def _env_count(name: str) -> int | None:
    """A user count from the environment; None when unset or empty."""
    if not os.environ.get(name, "").strip():
        return None
    count = int(_env_float(name, 0))
    if count < 0:
        raise ValueError(f"{name}={count} is negative")
    return count


log = logging.getLogger(__name__)

MODEL_NAME = os.environ.get("LOAD_MODEL_NAME", "ml-model")
USERS = _env_count("LOAD_USERS")
CHURN_USERS = _env_count("LOAD_CHURN_USERS") or 0
RPS_PER_USER = _env_float("LOAD_RPS_PER_USER", 0.0)
BATCH_SIZE = max(1, int(_env_float("LOAD_BATCH_SIZE", 1)))
MAX_REQUESTS = int(_env_float("LOAD_MAX_REQUESTS", 0))
TIMEOUT = _env_float("LOAD_TIMEOUT_SECONDS", 10.0)
SEED = int(_env_float("LOAD_SEED", 0))
PROTOCOL = protocols.by_name(os.environ.get("LOAD_PROTOCOL") or protocols.DEFAULT)
VERSION_HEADER = protocols.version_header(os.environ.get("LOAD_ANSWER_VERSION")
                                          or protocols.DEFAULT_VERSION_SOURCE)
"""The header an answer names its version in; None: its body's model_version."""

KEEP_ALIVE_NAME = "predict"
NEW_CONNECTION_NAME = NEW_CONNECTION  # the verdict's power rule counts these


def dataset() -> tuple[list[list[float]], frozenset[Any] | None]:
    """Feature vectors and the class labels: ``LOAD_DATA_FILE`` if set, else the wine CSV.

    The labels are those of the rows (None for a data file without labels).
    """
    if data_file := os.environ.get("LOAD_DATA_FILE"):
        lines = Path(data_file).read_text().splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
        labels = [r["label"] for r in records if "label" in r]
        return [r["instance"] for r in records], frozenset(labels) if labels else None
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise RuntimeError("scikit-learn is not installed; set LOAD_DATA_FILE to a hold-out JSONL")
    csv = Path(spec.origin).parent / "datasets" / "data" / "wine_data.csv"
    lines = csv.read_text().splitlines()[1:]  # first line: counts and class names
    fields = [line.split(",") for line in lines if line]
    return [[float(x) for x in f[:-1]] for f in fields], frozenset(int(f[-1]) for f in fields)


def request_bodies(rows: list[list[float]], batch: int, seed: int, count: int = 512) -> list[bytes]:
    """Pre-encoded predict bodies: each row alone, or ``count`` random batches of ``batch``."""
    if batch == 1:
        return [PROTOCOL.encode([row]) for row in rows]
    rng = random.Random(seed)
    return [PROTOCOL.encode(rng.choices(rows, k=batch)) for _ in range(count)]


ROWS, LABELS = dataset()
if not ROWS:
    raise RuntimeError("no feature vectors to send: the data file is empty")
BODIES = request_bodies(ROWS, BATCH_SIZE, SEED)
PATH = PROTOCOL.predict_path(MODEL_NAME)
_sent = 0
_recorder: recording.Recorder | None = None


def read_answer(content: bytes | None, header_version: str | None,
                instances: int) -> tuple[str | None, str | None]:
    """(What is wrong with a 2xx answer's body or None, the version its body names).
    With the version in a header (`VERSION_HEADER`), the body's must equal it."""
    try:
        predictions, version = PROTOCOL.answer(content, instances)
    except protocols.AnswerProblem as e:
        return str(e), None
    if VERSION_HEADER is not None and version != header_version:
        return f"model_version {version!r} but {VERSION_HEADER} {header_version!r}", version
    return protocols.label_problem(predictions, LABELS), version


def _record(environment: Any, **_: Any) -> None:
    global _recorder
    runner = environment.runner
    record_file = os.environ.get("LOAD_RECORD_FILE")
    if record_file and not isinstance(runner, MasterRunner):  # a master sends no requests
        path = Path(record_file)
        if isinstance(runner, WorkerRunner):
            if runner.worker_index < 0:
                raise RuntimeError("the Locust master gave this worker no index: its record "
                                   "would have no file of its own")
            path = part_record(path, runner.worker_index)
        _recorder = recording.attach(environment.events, path, VERSION_HEADER)
    if isinstance(runner, MasterRunner):
        _lead(runner)
    elif isinstance(runner, WorkerRunner):
        _follow(runner)
    # Registered after the recorder's listeners: quitting fires in reverse, so this runs first.
    environment.events.quitting.add_listener(_finish)


def _finish(environment: Any, **_: Any) -> None:
    """At quitting: stop users still running (SIGTERM), close the record, write the totals."""
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        _stop_workers(runner)  # at SIGTERM quitting comes before Locust's quit
    elif runner is not None and runner.state in (STATE_SPAWNING, STATE_RUNNING):
        runner.stop()  # users finish (or are cut and recorded) before the record closes
    deadline = time.monotonic() + (environment.stop_timeout or 0) + 5
    while (runner is not None and runner.state == STATE_CLEANUP  # a stop under way elsewhere
           and time.monotonic() < deadline):  # fmt: skip
        gevent.sleep(0.1)
    if _recorder is not None:
        _recorder.close()
    summary_file = os.environ.get("LOAD_SUMMARY_FILE")
    if summary_file and not isinstance(runner, WorkerRunner):  # the master speaks for workers
        total = environment.stats.total
        if isinstance(runner, MasterRunner):
            recording.write_summary(Path(summary_file), total.num_requests, total.num_failures,
                                    sum(_workers.values()), _workers)
        else:
            recorded = _recorder.written if _recorder is not None else 0
            recording.write_summary(Path(summary_file), total.num_requests, total.num_failures,
                                    recorded)


def _watch_stop_file(environment: Any, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        # The master ends the run and stops its workers (stop file, parent, -t, the cap);
        # a worker it forked (--processes) ends by itself only when the master is gone.
        forked = bool(getattr(environment.parsed_options, "processes", None))
        stop_file, parent = None, os.getppid() if forked else 0
    else:
        stop_file = os.environ.get("LOAD_STOP_FILE")
        parent = int(os.environ.get("LOAD_PARENT_PID") or 0)
    if not stop_file and not parent:
        return
    path = Path(stop_file) if stop_file else None

    def poll() -> None:
        while not (path is not None and path.exists()) and not (parent and os.getppid() != parent):
            gevent.sleep(0.1)
        if environment.runner is not None:
            environment.runner.quit()

    gevent.spawn(poll)


events.init.add_listener(_record)  # type: ignore[no-untyped-call]
events.init.add_listener(_watch_stop_file)  # type: ignore[no-untyped-call]


# -- several processes: a master and its workers ---------------------------------------

STOP = "load_stop"
"""Master → workers: stop your users, then report (``STOPPED``)."""
STOPPED = "load_stopped"
"""Worker → master, once its users stopped and after its last statistics:
``{"worker": index, "recorded": lines its recorder wrote}``."""
CAPPED = "load_capped"
"""Worker → master: this worker reached ``LOAD_MAX_REQUESTS``; end the run."""

_workers: dict[int, int] = {}
"""On the master: the lines each worker said it recorded, by worker index."""
_stopping: gevent.event.Event | None = None


def _lead(runner: MasterRunner) -> None:
    """The master: it quits only after every worker stopped and reported (``_stop_workers``)."""

    def stopped(msg: Any, **_: Any) -> None:
        _workers[int(msg.data["worker"])] = int(msg.data["recorded"])

    runner.register_message(STOPPED, stopped)
    runner.register_message(CAPPED, lambda **_: gevent.spawn(runner.quit), concurrent=True)
    locust_quit = runner.quit

    def quit() -> None:  # every way a run ends calls it: -t, the stop file, the cap, SIGTERM
        _stop_workers(runner)
        locust_quit()

    runner.quit = quit  # type: ignore[method-assign]


def _stop_workers(runner: MasterRunner) -> None:
    """Have every worker stop its users and report; wait for them (at most
    ``--stop-timeout`` + 10 s).

    Locust's own quit gives workers 0.5 s for their last statistics, while a
    worker's users may take up to ``--stop-timeout`` to finish the requests
    under way: those would be in the worker's record but not in the master's
    totals. So the master first sends ``STOP``; each worker stops its users,
    sends its last statistics and then ``STOPPED`` with its record's length, in
    that order on one connection. Once every worker has, the master's totals
    hold every request its workers made.
    """
    global _stopping
    if _stopping is not None:  # under way in another greenlet (SIGTERM during a stop)
        _stopping.wait()
        return
    _stopping = gevent.event.Event()
    try:
        waiting = {runner.worker_indexes[client.id] for client in runner.clients.all}
        runner.send_message(STOP)
        deadline = time.monotonic() + (runner.environment.stop_timeout or 0) + 10
        while not waiting <= _workers.keys() and time.monotonic() < deadline:
            gevent.sleep(0.05)
        if missing := waiting - _workers.keys():
            log.error("workers %s did not report their record; the summary will not "
                      "reconcile", sorted(missing))
    finally:
        _stopping.set()


def _follow(runner: WorkerRunner) -> None:
    """A worker: stops its users when the master says, then reports (``STOPPED``)."""
    runner.register_message(STOP, lambda **_: runner.stop(), concurrent=True)

    def report(environment: Any, **_: Any) -> None:
        if _recorder is not None:
            _recorder.flush()
        stats: dict[str, Any] = {}
        environment.events.report_to_master.fire(client_id=runner.client_id, data=stats)
        recorded = _recorder.written if _recorder is not None else 0
        try:
            runner.send_message("stats", stats)  # the last requests' statistics first
            runner.send_message(STOPPED, {"worker": runner.worker_index, "recorded": recorded})
        except (RPCError, RPCSendError) as e:  # the master is gone: nobody to tell
            log.warning("could not report to the master: %s", e)

    runner.environment.events.test_stop.add_listener(report)  # type: ignore[no-untyped-call]


def _take_one(user: FastHttpUser) -> bool:
    """Count a request against ``LOAD_MAX_REQUESTS``; False (and the run ends) past it."""
    global _sent
    if MAX_REQUESTS and _sent >= MAX_REQUESTS:
        if _sent == MAX_REQUESTS:
            _sent += 1
            runner = user.environment.runner
            if isinstance(runner, WorkerRunner):
                runner.send_message(CAPPED)  # the master ends the run, for every worker
            elif runner is not None:
                gevent.spawn(runner.quit)
        return False
    _sent += 1
    return True


class _Predictor(FastHttpUser):
    """Posts dataset rows on its own schedule and checks every answer."""

    abstract = True
    request_name = KEEP_ALIVE_NAME
    new_connection = False
    max_retries = 0
    connection_timeout = TIMEOUT
    network_timeout = TIMEOUT
    wait_time = constant(0)  # only after a task error: predict() keeps its own schedule
    interval = 1.0 / RPS_PER_USER if RPS_PER_USER > 0 else 0.0
    request_headers: ClassVar[dict[str, str]] = {"Content-Type": "application/json"}

    def on_start(self) -> None:
        # Forked workers' users share ids: the pid keeps their phases apart.
        self.rng = random.Random(f"{SEED}/{os.getpid()}/{id(self)}")
        # The first intended send: a random phase in the first interval.
        self.due = time.monotonic() + self.rng.uniform(0, self.interval)
        self.free_at = 0.0  # when the previous answer was read (monotonic s)

    @task
    def predict(self) -> None:
        """Send on schedule until asked to stop.

        One task that loops, rather than one request per task with Locust's
        ``wait_time`` in between: Locust kills a user that is in its wait at
        once, and the kill can land after the wait ended and a request went
        out. A user that is never in Locust's wait is only asked to stop, and
        does so between requests.
        """
        while True:
            due = self._until_due()
            if not _take_one(self):
                raise StopUser()
            self._post(due)

    def _until_due(self) -> float | None:
        """Sleep until the next intended send and return it (monotonic s; None without a
        rate); StopUser when asked to stop."""
        if not self.interval:
            gevent.sleep(0)  # let the other users run
            self._stop_if_asked()
            return None
        while (delay := self.due - time.monotonic()) > 0:
            gevent.sleep(min(delay, 0.1))
            self._stop_if_asked()
        self._stop_if_asked()
        due, self.due = self.due, self.due + self.interval  # a late one: the next is due at once
        return due

    def _stop_if_asked(self) -> None:
        if self._state == LOCUST_STATE_STOPPING:
            raise StopUser()

    def _post(self, due: float | None) -> None:
        try:
            self._send(due)
        finally:
            if self.new_connection:
                self.client.client.close()  # drop the pool: the next request connects anew
            self.free_at = time.monotonic()

    def _send(self, due: float | None) -> None:
        body = self.rng.choice(BODIES)  # bytes: geventhttpclient sends them as they are
        context: dict[str, Any] = {}
        if due is not None:  # the recorder times the request from when it was due
            now = time.monotonic()
            lag = now - due
            behind = max(0.0, now - max(due, self.free_at))  # no answer to wait for: CPU
            context = {recording.INTENDED_TIME: time.time() - lag, recording.LAG_MS: lag * 1000,
                       recording.BEHIND_MS: behind * 1000}
        started, started_perf = time.time(), time.perf_counter()
        try:
            response = self.client.post(
                PATH, data=body, headers=self.request_headers, name=self.request_name,  # type: ignore[arg-type]
                catch_response=True, allow_redirects=False, context=context,
            )  # fmt: skip
        except BaseException as e:
            # Killed mid-request (GreenletExit when the run ends) or an error Locust does
            # not catch: its request event never fires. Fire it, so that Locust's totals
            # and the record both count a request the server may have read.
            cut = recording.RequestCut(
                f"the run ended with the request under way ({type(e).__name__})")
            self.environment.events.request.fire(
                request_type="POST", name=self.request_name, context=context, response=None,
                exception=cut if isinstance(e, gevent.GreenletExit) else e,
                start_time=started, response_time=(time.perf_counter() - started_perf) * 1000,
                response_length=0, url=PATH,
            )  # fmt: skip
            raise
        with response:
            if response.request_meta["exception"] is None:  # an answer Locust calls a success
                self._check(response)

    def _check(self, response: Any) -> None:
        try:
            status = response.status_code
            if not 200 <= status < 300:
                response.failure(f"HTTP {status}: not a 2xx answer")
                return
            headers = response.headers
            version = (headers.get(VERSION_HEADER) if headers is not None and VERSION_HEADER
                       else None)
            problem, named = read_answer(response.content, version, BATCH_SIZE)
            if VERSION_HEADER is None and named is not None:  # the recorder takes it from here
                response.request_meta["context"][recording.ANSWER_VERSION] = named
            if problem:
                response.failure(f"bad body: {problem}")
        except Exception as e:  # a check that breaks must not lose the request
            response.failure(f"bad body: {type(e).__name__}: {e}")


class InferenceUser(_Predictor):
    """One client with one keep-alive connection."""

    abstract = USERS == 0
    fixed_count = USERS or 0  # unset: weighted, it takes the users the churn class leaves


class NewConnectionUser(_Predictor):
    """One client opening a new TCP connection for every request."""

    abstract = CHURN_USERS == 0
    fixed_count = CHURN_USERS
    request_name = NEW_CONNECTION_NAME
    new_connection = True
    request_headers: ClassVar[dict[str, str]] = {
        "Content-Type": "application/json", "Connection": "close"}
