"""The progress line people watch while a long step runs.

Library modules log details with `logging`; this is the one place that
writes the short human-facing lines ("==> building kubelet ... 41.2s").
Cold toolchain builds take many minutes, so every step says when it starts
and how long it took, and one that runs long says every half minute that it
still does; the traffic phase says what the load has seen so far.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

log = logging.getLogger(__name__)

_stream: TextIO | None = None
"""None: whatever sys.stderr is at the time (pytest swaps it and closes old ones)."""

STILL_RUNNING_EVERY = 30.0
"""Seconds between the "still running" lines of a long step."""

_phases: list[str] = []
"""The steps under way, outermost first: what an interrupted run was doing."""


@contextmanager
def redirected(stream: TextIO) -> Iterator[TextIO]:
    """Send progress lines to stream for the duration of the block (tests read them)."""
    global _stream
    saved, _stream = _stream, stream
    try:
        yield stream
    finally:
        _stream = saved


def say(message: str) -> None:
    print(f"==> {message}", file=_stream or sys.stderr, flush=True)
    log.debug(message)


def current() -> str | None:
    """The steps and phases under way, outermost first ("the toolchain check / building
    the OCI runtime shim"), or None between them."""
    return " / ".join(_phases) if _phases else None


@contextmanager
def phase(what: str) -> Iterator[None]:
    """A stretch of the run named for a person told it was interrupted, without a line."""
    _phases.append(what)
    try:
        yield
    finally:
        _phases.pop()


@contextmanager
def step(what: str) -> Iterator[None]:
    """Announce a step, then report its duration, or that it failed or was stopped."""
    say(f"{what} ...")
    started = time.monotonic()

    def still() -> str:
        return f"{what}: still running ({_duration(time.monotonic() - started)})"

    try:
        with phase(what), ticker(STILL_RUNNING_EVERY, still):
            yield
    except Exception:
        say(f"{what}: failed after {time.monotonic() - started:.1f}s")
        raise
    except BaseException:  # a signal or Ctrl-C: not a failure of the step
        say(f"{what}: stopped after {time.monotonic() - started:.1f}s")
        raise
    say(f"{what}: done in {time.monotonic() - started:.1f}s")


@contextmanager
def ticker(every: float, line: Callable[[], str]) -> Iterator[None]:
    """While the block runs, say `line()` every `every` seconds (from a thread: the
    block may be a blocking call such as `pulumi up`)."""
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(every):
            try:
                say(line())
            except Exception:  # a progress line must never break the run
                log.debug("progress line failed", exc_info=True)

    thread = threading.Thread(target=tick, name="progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _duration(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"
