"""Every request written down: a buffered JSONL recorder for Locust's ``request`` event.

One line per request, in the order requests finished: a
``harness.evidence.Request`` (written by its ``encode_request``, read back by
its ``read_requests``):

- ``t`` is when the request was meant to be sent (epoch seconds): the
  ``intended_time`` the locustfile passes in the request's ``context``, else
  Locust's start time;
- ``latency_ms`` runs from that same moment to the answer: Locust's response
  time plus the ``lag_ms`` the request waited behind a late one (``context``),
  so a stall is charged to every request queued behind it (no coordinated
  omission); ``lag_ms`` is that wait alone, and ``behind_ms`` the part of it no
  earlier answer explains (the load generator itself was late: CPU);
- ``status`` is 0 when no response arrived (then ``error`` says why);
- ``version`` and ``pod`` are the ``X-Model-Version`` (or the recorder's
  ``version_header``) and ``X-Pod-Name`` headers of the pod that answered; a
  version the locustfile read from the answer's body (``ANSWER_VERSION`` in the
  ``context``) comes first;
- ``error`` names what went wrong (see ``describe``).

Lines are kept in memory and written in blocks — when a block is full, and at
the first request a second (``FLUSH_SECONDS``) after the last write, so a
reader following the file (a canary judging an interval) is never more than
about a second behind — then flushed when the test stops, so recording costs a
dict and an ``orjson.dumps`` per request rather than a syscall.
``write_summary`` writes Locust's own totals next to the number of lines
written, for the harness to reconcile the two.

This module does not import Locust (importing it patches the standard library
with gevent), so tests and benchmarks can use the recorder in a plain process.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from harness import protocols
from harness.evidence import Request, encode_request

log = logging.getLogger(__name__)

BUFFER_LINES = 2000
"""Lines kept in memory before a write (a few hundred KiB)."""

FLUSH_SECONDS = 1.0
"""Longest a recorded request waits in memory while others keep coming."""

INTENDED_TIME = "intended_time"
"""``context`` key: when the request was meant to be sent, epoch seconds."""
LAG_MS = "lag_ms"
"""``context`` key: how long after that it was actually sent, milliseconds."""
BEHIND_MS = "behind_ms"
"""``context`` key: how much of that lag came after the client was free to send (after
its previous answer too), milliseconds: the load generator's own lateness."""
DEFAULT_VERSION_HEADER = protocols.version_header(protocols.DEFAULT_VERSION_SOURCE)
"""The header the bundled server names its version in (the protocols' one default)."""
ANSWER_VERSION = "answer_version"
"""``context`` key: the version the answer's body named, for a server that names it there
only."""


class RequestCut(Exception):
    """A request under way when Locust killed its user (the run ended): no answer was read."""


def describe(exception: BaseException) -> str:
    """The ``error`` text of a failed request, naming what happened.

    ``ConnectionRefusedError: ...``, ``ConnectionResetError: ...``, ``timeout: ...``,
    ``bad body: ...`` (a check of the answer, Locust's ``CatchResponseError``),
    ``HTTPConnectionClosed: ...`` (closed without an answer), or for an HTTP
    error whatever Locust gives. geventhttpclient's wrappers are unwrapped:
    ``RetriesExceeded`` (which with ``max_retries = 0`` only carries the cause)
    and an ``HTTPConnectionClosed`` raised for a reset.
    """
    original = getattr(exception, "original", None)  # geventhttpclient's RetriesExceeded
    if isinstance(original, BaseException):
        exception = original
    kind = type(exception).__name__
    if kind == "CatchResponseError":  # response.failure("bad body: ..."): the text says it all
        return str(exception)
    if kind == "HTTPConnectionClosed" and isinstance(exception.__context__, ConnectionError):
        exception = exception.__context__  # a reset while waiting for the answer
        kind = type(exception).__name__
    if isinstance(exception, TimeoutError) or kind == "Timeout":  # socket or gevent timeout
        return f"timeout: {kind}: {exception}"
    return f"{kind}: {exception}"


class Recorder:
    """Appends one JSON line per request to ``path``; ``close()`` flushes.

    ``count`` is the number of requests seen, ``written`` the number of lines
    that reached the file.
    """

    def __init__(self, path: Path, buffer_lines: int = BUFFER_LINES,
                 flush_seconds: float = FLUSH_SECONDS,
                 version_header: str | None = DEFAULT_VERSION_HEADER) -> None:
        self.path = path
        self.version_header = version_header
        self.buffer_lines = buffer_lines
        self.flush_seconds = flush_seconds
        self._flushed = time.monotonic()
        self.count = 0
        self.written = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")
        self._lines: list[bytes] = []
        self._lock = threading.Lock()

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float,
        response_length: int,
        response: Any = None,
        context: Any = None,
        exception: BaseException | None = None,
        start_time: float | None = None,
        **_: Any,
    ) -> None:
        """Locust ``request`` event listener (its arguments, by name)."""
        status = int(getattr(response, "status_code", 0) or 0)
        headers = getattr(response, "headers", None)
        version = pod = None
        if headers is not None:
            version = headers.get(self.version_header) if self.version_header else None
            pod = headers.get("X-Pod-Name")
        t = start_time or 0.0
        latency = float(response_time or 0.0)
        lag = behind = 0.0
        if context:
            t = float(context.get(INTENDED_TIME, t))
            lag = float(context.get(LAG_MS, 0.0))
            behind = float(context.get(BEHIND_MS, 0.0))
            version = context.get(ANSWER_VERSION) or version
            latency += lag
        request = Request(
            t=t,
            latency_ms=round(latency, 3),
            status=status,
            error=None if exception is None else describe(exception),
            version=version,
            ok=exception is None,
            name=name,
            pod=pod,
            lag_ms=round(lag, 3),
            behind_ms=round(behind, 3),
        )
        self._lines.append(encode_request(request))
        self.count += 1
        if (len(self._lines) >= self.buffer_lines
                or time.monotonic() - self._flushed >= self.flush_seconds):
            self.flush()

    def flush(self) -> None:
        """Write the buffered lines."""
        with self._lock:
            lines, self._lines = self._lines, []
            self._flushed = time.monotonic()
            if not lines:
                return
            if self._file.closed:
                log.error("%d requests came after the record was closed: not recorded", len(lines))
                return
            self._file.write(b"".join(lines))
            self._file.flush()
            self.written += len(lines)

    def close(self, **_: Any) -> None:
        """Flush and close; safe to call more than once (test_stop, then quitting)."""
        self.flush()
        with self._lock:
            if not self._file.closed:
                self._file.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def attach(events: Any, path: Path,
           version_header: str | None = DEFAULT_VERSION_HEADER) -> Recorder:
    """Record every request of a Locust environment's ``events`` to ``path``."""
    recorder = Recorder(path, version_header=version_header)
    events.request.add_listener(recorder.on_request)
    events.test_stop.add_listener(lambda **_: recorder.flush())
    events.quitting.add_listener(recorder.close)
    log.info("recording every request to %s", path)
    return recorder


def write_summary(path: Path, requests: int, failures: int, recorded: int,
                  workers: Mapping[int, int] | None = None) -> None:
    """``{"locust_requests", "locust_failures", "recorded"}`` to ``path``, atomically.

    ``requests`` and ``failures`` are Locust's own totals, ``recorded`` the lines
    written to the record: equal ``requests`` and ``recorded`` mean no request
    went unrecorded. A master of Locust workers also writes ``workers``: the lines
    each worker's recorder said it wrote, by worker index (``recorded`` is their sum).
    """
    summary: dict[str, Any] = {"locust_requests": requests, "locust_failures": failures,
                               "recorded": recorded}
    if workers is not None:
        summary["workers"] = {str(worker): lines for worker, lines in sorted(workers.items())}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(summary) + "\n")
    os.replace(partial, path)
