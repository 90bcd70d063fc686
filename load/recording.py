"""Every request written down: a buffered JSONL recorder for Locust's ``request`` event.

One line per request, in the order requests finished: a
``harness.evidence.Request`` (written by its ``encode_request``, read back by
its ``read_requests``): ``t`` is the request's start (epoch seconds),
``status`` is 0 when no response arrived (then ``error`` says why),
``version`` is the ``X-Model-Version`` header of the pod that answered.
Lines are kept in memory
and written in blocks, then flushed when the test stops, so recording costs
a dict and an ``orjson.dumps`` per request rather than a syscall.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from harness.evidence import Request, encode_request

log = logging.getLogger(__name__)

BUFFER_LINES = 2000
"""Lines kept in memory before a write (a few hundred KiB)."""


class Recorder:
    """Appends one JSON line per request to ``path``; ``close()`` flushes."""

    def __init__(self, path: Path, buffer_lines: int = BUFFER_LINES) -> None:
        self.path = path
        self.buffer_lines = buffer_lines
        self.count = 0
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
        version = headers.get("X-Model-Version") if headers is not None else None
        request = Request(
            t=start_time or 0.0,
            latency_ms=round(float(response_time or 0.0), 3),
            status=status,
            error=None if exception is None else f"{type(exception).__name__}: {exception}",
            version=version,
            ok=exception is None,
            name=name,
        )
        self._lines.append(encode_request(request))
        self.count += 1
        if len(self._lines) >= self.buffer_lines:
            self.flush()

    def flush(self) -> None:
        """Write the buffered lines."""
        with self._lock:
            lines, self._lines = self._lines, []
            if lines and not self._file.closed:
                self._file.write(b"".join(lines))
                self._file.flush()

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


def attach(events: Any, path: Path) -> Recorder:
    """Record every request of a Locust environment's ``events`` to ``path``."""
    recorder = Recorder(path)
    events.request.add_listener(recorder.on_request)
    events.test_stop.add_listener(lambda **_: recorder.flush())
    events.quitting.add_listener(recorder.close)
    log.info("recording every request to %s", path)
    return recorder
