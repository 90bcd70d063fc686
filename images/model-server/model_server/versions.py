"""Model versions: semver, and the misbehaviour a pre-release suffix selects.

Negative controls are built, not configured at run time: a
``1.1.0-flaky`` image is flaky wherever it runs, exactly like a real bad
release would be. Other pre-release suffixes (``-rc.1``) behave normally.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)


class Behaviour(enum.Enum):
    """How a build misbehaves; ``NORMAL`` for real releases."""

    NORMAL = "normal"
    NEVER_READY = "never-ready"
    """Loads the model but never passes readiness: the rollout must stall."""
    FLAKY = "flaky"
    """Answers 5xx for a fixed fraction of inputs: the gate must fail."""
    SLOW_START = "slow-start"
    """Becomes ready only after a delay: the gate must still pass."""
    DEGRADED = "degraded"
    """Serves a valid model trained on shuffled labels: accuracy drops."""
    STALL = "stall"
    """Answers a fixed fraction of inputs (``MODEL_STALL_RATE``) correctly, 200, but
    only after ``MODEL_STALL_SECONDS``: a version whose answers stall past the
    client's latency SLO for some inputs. No error, just late: the gate must fail it.
    The event loop is not blocked meanwhile; other requests are answered at once."""
    BAD_BODY = "bad-body"
    """Answers a fixed fraction of inputs (``MODEL_BAD_BODY_RATE``) 200 with no
    prediction in the body — the release whose handler swallows an error into an
    empty answer. Status and headers are right, only the body is wrong: the gate
    must fail it."""
    SLOW = "slow"
    """Answers every prediction correctly, 200, but ``MODEL_SLOW_MS`` later than it
    could: a release slower by a known amount, for a canary's latency comparison to
    find. The event loop is not blocked meanwhile (as for ``STALL``)."""


@dataclass(frozen=True)
class Version:
    """A parsed model version."""

    text: str
    """The version exactly as given, e.g. ``1.1.0-flaky``."""
    major: int
    minor: int
    patch: int
    prerelease: str
    """The pre-release part without the dash, or empty."""

    @property
    def core(self) -> str:
        """``X.Y.Z`` without pre-release or build metadata."""
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def behaviour(self) -> Behaviour:
        """The behaviour the pre-release suffix selects."""
        for behaviour in Behaviour:
            if behaviour is not Behaviour.NORMAL and self.prerelease == behaviour.value:
                return behaviour
        return Behaviour.NORMAL


def parse(text: str) -> Version:
    """Parse a semver string; raise ``ValueError`` naming the bad value."""
    match = _SEMVER.match(text)
    if match is None:
        suffixes = ", ".join(b.value for b in Behaviour if b is not Behaviour.NORMAL)
        raise ValueError(
            f"model version {text!r} is not semver; expected X.Y.Z or X.Y.Z-<suffix>, "
            f"suffixes with a behaviour: {suffixes}"
        )
    major, minor, patch, pre = match.groups()
    return Version(text, int(major), int(minor), int(patch), pre or "")
