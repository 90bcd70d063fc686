"""Server settings from ``MODEL_*`` environment variables (the chart's ConfigMap).

Parsed once at start; a bad value stops the server with a message naming
the variable, the value and what is allowed, instead of misbehaving later.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from model_server import DEFAULT_MODEL_NAME

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """Everything the server reads from its environment. Each field: unit, default, why."""

    model_name: str = DEFAULT_MODEL_NAME
    """``MODEL_NAME``: the ``<name>`` in ``/v1/models/<name>`` and ``/v2/models/<name>``."""
    model_dir: Path = Path("/opt/model")
    """``MODEL_DIR``: where ``train`` wrote the artefacts (the image's build dir)."""
    host: str = "0.0.0.0"
    """``MODEL_HOST``: listen address; all interfaces in a pod, 127.0.0.1 locally."""
    port: int = 8080
    """``MODEL_PORT``: listen port; 0 picks a free one (reported in the log)."""
    graceful_drain: bool = True
    """``MODEL_GRACEFUL_DRAIN``: false exits at once on SIGTERM, dropping connections."""
    drain_seconds: float = 10.0
    """``MODEL_DRAIN_SECONDS``: how long to keep serving after the drain trigger, while
    endpoints converge; responses carry ``Connection: close`` meanwhile."""
    shutdown_timeout_seconds: float = 5.0
    """``MODEL_SHUTDOWN_TIMEOUT_SECONDS``: after the drain period, how long unfinished
    requests may take before their connections are cut."""
    keepalive_seconds: float = 75.0
    """``MODEL_KEEPALIVE_SECONDS``: idle keep-alive connections are closed after this."""
    header_timeout_seconds: float = 10.0
    """``MODEL_HEADER_TIMEOUT_SECONDS``: a request must arrive whole within this."""
    max_body_bytes: int = 1 << 20
    """``MODEL_MAX_BODY_BYTES``: larger bodies get 413 (1 MiB ~ 9000 wine rows)."""
    slow_start_seconds: float = 20.0
    """``MODEL_SLOW_START_SECONDS``: readiness delay of ``-slow-start`` builds."""
    flaky_rate: float = 0.1
    """``MODEL_FLAKY_RATE``: fraction of distinct inputs a ``-flaky`` build answers 500 to."""
    stall_rate: float = 0.1
    """``MODEL_STALL_RATE``: fraction of distinct inputs a ``-stall`` build answers late."""
    stall_seconds: float = 2.0
    """``MODEL_STALL_SECONDS``: how late a ``-stall`` build sends those answers."""
    bad_body_rate: float = 0.1
    """``MODEL_BAD_BODY_RATE``: fraction of distinct inputs a ``-bad-body`` build answers
    200 with an empty prediction list."""
    slow_ms: float = 20.0
    """``MODEL_SLOW_MS``: milliseconds a ``-slow`` build holds back every prediction."""
    pod_name: str = dataclasses.field(default_factory=socket.gethostname)
    """``MODEL_POD_NAME``: sent as ``X-Pod-Name`` on every response, so each answer can
    be attributed to its pod; the chart sets it from the downward API. Default: host name."""
    model_compile: bool = True
    """``MODEL_COMPILE``: predict with the verified numpy fast path; false uses
    scikit-learn's ``predict`` (an escape hatch, and the fair benchmark baseline)."""
    log_level: str = "INFO"
    """``MODEL_LOG_LEVEL``: Python logging level name."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``MODEL_*`` variables; ``overrides`` (e.g. from the CLI) win over them."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            name = env_name(field.name)
            if field.name in overrides:
                values[field.name] = overrides[field.name]
            elif name in env:
                values[field.name] = _PARSERS[field.name](name, env[name])
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Raise ``ValueError`` for values that parse but make no sense."""
        for name in (
            "drain_seconds",
            "shutdown_timeout_seconds",
            "slow_start_seconds",
            "stall_seconds",
            "slow_ms",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("keepalive_seconds", "header_timeout_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be >= 1, got {self.max_body_bytes}")
        for name in ("flaky_rate", "stall_rate", "bad_body_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.pod_name or not all("!" <= c <= "~" for c in self.pod_name):
            raise ValueError(
                f"pod_name {self.pod_name!r} must be non-empty printable ASCII without spaces"
            )
        if not self.model_name or any(c in self.model_name for c in "/:?# "):
            raise ValueError(
                f"model_name {self.model_name!r} must be non-empty, without / : ? # or spaces"
            )


def env_name(field: str) -> str:
    """The environment variable of a field: ``drain_seconds`` -> ``MODEL_DRAIN_SECONDS``."""
    upper = field.upper()
    return upper if upper.startswith("MODEL_") else "MODEL_" + upper


def _number(kind: Callable[[str], T]) -> Callable[[str, str], T]:
    def parse(name: str, text: str) -> T:
        try:
            value = kind(text.strip())
        except ValueError:
            raise ValueError(f"{name}={text!r} is not a valid {kind.__name__}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name}={text!r} must be a finite number")
        return value

    return parse


def _bool(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={text!r} is not a boolean; use true or false")


def _text(name: str, text: str) -> str:
    return text.strip()


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "model_name": _text,
    "model_dir": lambda name, text: Path(text),
    "host": _text,
    "port": _number(int),
    "graceful_drain": _bool,
    "drain_seconds": _number(float),
    "shutdown_timeout_seconds": _number(float),
    "keepalive_seconds": _number(float),
    "header_timeout_seconds": _number(float),
    "max_body_bytes": _number(int),
    "slow_start_seconds": _number(float),
    "flaky_rate": _number(float),
    "stall_rate": _number(float),
    "stall_seconds": _number(float),
    "bad_body_rate": _number(float),
    "slow_ms": _number(float),
    "pod_name": _text,
    "model_compile": _bool,
    "log_level": lambda name, text: text.strip().upper(),
}
