"""SIGTERM and SIGINT as an exception, so that every `finally` runs on the way out.

CI cancels a job with SIGTERM; Python's default for it is to die on the spot,
which leaves the kind cluster, Locust (still sending load) and a pulumi
holding its stack lock. Raised as an exception instead, the signal unwinds
the run like any error: Locust is stopped through its stop file (its records
flushed), pulumi is asked to cancel, the cluster is deleted unless kept.
`Interrupted` derives from BaseException, as KeyboardInterrupt does, so no
`except Exception` on the way swallows it. Signals that arrive while that
clean-up runs are reported and otherwise ignored: a second Ctrl-C must not
leave half of the mess behind (SIGKILL still stops everything at once).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from types import FrameType

from harness import progress

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_passed_on: list[Callable[[], None]] = []
"""Called from the handler before the exception is raised (see `passed_on`)."""


class Interrupted(BaseException):
    """The run was stopped by a signal; `phase` is what it was doing then."""

    def __init__(self, signum: int, phase: str | None) -> None:
        self.signum = signum
        self.phase = phase
        super().__init__(f"{self.signal_name} during {phase or 'start-up'}")

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process it stopped: 130, 143."""
        return 128 + self.signum


@contextlib.contextmanager
def raised() -> Iterator[None]:
    """Within the block, the first SIGINT or SIGTERM raises `Interrupted`."""

    def first(signum: int, frame: FrameType | None) -> None:
        for s in SIGNALS:
            signal.signal(s, again)
        for hook in list(_passed_on):
            hook()
        raise Interrupted(signum, progress.current())

    def again(signum: int, frame: FrameType | None) -> None:
        progress.say(f"{signal.Signals(signum).name}: already stopping; cleaning up first "
                     "(SIGKILL stops at once and leaves things behind)")

    previous = {s: signal.signal(s, first) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def passed_on(hook: Callable[[], None]) -> Iterator[None]:
    """Within the block, a signal first calls `hook` (which must not block), then raises.

    For a child that has to hear of the signal before this process can unwind: the
    Automation API waits for the pulumi CLI to finish before an exception can leave
    it, so pulumi must be told to cancel from the handler itself."""
    _passed_on.append(hook)
    try:
        yield
    finally:
        _passed_on.remove(hook)
