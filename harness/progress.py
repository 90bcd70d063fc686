"""The progress line people watch while a long step runs.

Library modules log details with `logging`; this is the one place that
writes the short human-facing lines ("==> building kubelet ... 41.2s").
Cold toolchain builds take many minutes, so every step says when it starts
(and where its log is) and how long it took, and one that runs long says
what it is doing while it does: every 10 s on a terminal, where a person is
watching, every 30 s elsewhere, where the lines fill a CI log. What it is
doing is the step's own figure (pods ready per version during `pulumi up`)
or the last line of its log (`go build -v` names each package it compiles).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

log = logging.getLogger(__name__)

_stream: TextIO | None = None
"""None: whatever sys.stderr is at the time (pytest swaps it and closes old ones)."""

STILL_RUNNING_ON_A_TERMINAL = 10.0
STILL_RUNNING_IN_A_LOG = 30.0
"""Seconds between the "still running" lines of a long step, on a terminal and elsewhere."""

DETAIL_WIDTH = 120
"""A log's last line is cut to this many characters: one screen line with the step's name."""

_phases: list[str] = []
"""The steps under way, outermost first: what an interrupted run was doing."""

_steps: list[object] = []
"""A token per step under way: only the innermost one says it still runs (the outer
one's line would only repeat its elapsed time between the inner one's)."""


@contextmanager
def redirected(stream: TextIO) -> Iterator[TextIO]:
    """Send progress lines to stream for the duration of the block (tests read them)."""
    global _stream
    saved, _stream = _stream, stream
    try:
        yield stream
    finally:
        _stream = saved


_writing = threading.Lock()
"""The traffic ticker says its lines from a thread while the run says its own: print()
writes a line and its newline apart, so two lines could run into one."""


def say(message: str) -> None:
    stream = _stream or sys.stderr
    with _writing:
        stream.write(f"==> {message}\n")
        stream.flush()
    log.debug(message)


def still_running_every() -> float:
    """How often a long step says it still runs: often for a person, sparingly for a log."""
    stream = _stream or sys.stderr
    try:
        on_terminal = stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream
        on_terminal = False
    return STILL_RUNNING_ON_A_TERMINAL if on_terminal else STILL_RUNNING_IN_A_LOG


def last_line(path: Path) -> str | None:
    """The last non-blank line of a log, cut to DETAIL_WIDTH; None if there is none yet."""
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 8192))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    if not lines:
        return None
    line = lines[-1]
    return line if len(line) <= DETAIL_WIDTH else line[:DETAIL_WIDTH - 1] + "…"


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
def step(what: str, *, log_file: Path | None = None,
         doing: Callable[[], str | None] | None = None) -> Iterator[None]:
    """Announce a step, then report its duration, or that it failed or was stopped.

    While it runs, a line says how long it has run and what it is doing:
    `doing()` if given (a figure only the step knows), else the last line of
    `log_file`, which the start line names.
    """
    say(f"{what} ... log: {log_file}" if log_file is not None else f"{what} ...")
    started = time.monotonic()
    token = object()

    def still() -> str | None:
        if _steps and _steps[-1] is not token:
            return None
        line = f"{what}: still running ({_duration(time.monotonic() - started)})"
        detail = _detail(doing, log_file)
        return f"{line}: {detail}" if detail else line

    _steps.append(token)
    try:
        with phase(what), ticker(still_running_every(), still):
            yield
    except Exception:
        say(f"{what}: failed after {time.monotonic() - started:.1f}s")
        raise
    except BaseException:  # a signal or Ctrl-C: not a failure of the step
        say(f"{what}: stopped after {time.monotonic() - started:.1f}s")
        raise
    finally:
        _steps.remove(token)
    say(f"{what}: done in {time.monotonic() - started:.1f}s")


@contextmanager
def ticker(every: float, line: Callable[[], str | None]) -> Iterator[None]:
    """While the block runs, say `line()` every `every` seconds (from a thread: the
    block may be a blocking call such as `pulumi up`); a None line is skipped."""
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(every):
            try:
                said = line()
                if said is not None:
                    say(said)
            except Exception:  # a progress line must never break the run
                log.debug("progress line failed", exc_info=True)

    thread = threading.Thread(target=tick, name="progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _detail(doing: Callable[[], str | None] | None, log_file: Path | None) -> str | None:
    if doing is not None:
        try:
            found = doing()
        except Exception:  # a figure that cannot be read now is left out, never fatal
            log.debug("progress detail failed", exc_info=True)
            found = None
        if found:
            return found
    return last_line(log_file) if log_file is not None else None


def _duration(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"
