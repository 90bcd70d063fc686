"""The progress line people watch while a long step runs.

Library modules log details with `logging`; this is the one place that
writes the short human-facing lines ("==> building kubelet ... 41.2s").
Cold toolchain builds take many minutes, so every step says when it starts
and how long it took.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

log = logging.getLogger(__name__)

_stream: TextIO | None = None
"""None: whatever sys.stderr is at the time (pytest swaps it and closes old ones)."""


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


@contextmanager
def step(what: str) -> Iterator[None]:
    """Announce a step, then report its duration or that it failed."""
    say(f"{what} ...")
    started = time.monotonic()
    try:
        yield
    except BaseException:
        say(f"{what}: failed after {time.monotonic() - started:.1f}s")
        raise
    say(f"{what}: done in {time.monotonic() - started:.1f}s")
