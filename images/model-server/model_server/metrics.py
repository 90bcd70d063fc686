"""Prometheus text exposition (format 0.0.4), written by hand.

Why not prometheus-client: it would be one more runtime dependency and a
lock per observation, for five metrics in a single-threaded event loop. Here
an observation is a dict lookup, a bisect and two additions.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
"""Latency histogram upper bounds in seconds; ``+Inf`` is implied."""

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0


@dataclass
class Metrics:
    """The server's metrics; mutated only from the event loop thread."""

    requests: dict[tuple[str, int], int] = field(default_factory=dict)
    """Finished requests by (route, status code)."""
    latency: dict[str, _Histogram] = field(default_factory=dict)
    """Time from request head parsed to response written, by route."""
    in_flight: int = 0
    """Requests whose head arrived and whose response is not yet written."""
    draining: bool = False
    ready: bool = False
    info: dict[str, str] = field(default_factory=dict)
    """Constant labels of ``model_info`` (name, version, behaviour, estimator)."""

    def observe(self, route: str, status: int, seconds: float) -> None:
        """Count one finished request."""
        key = (route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.latency.get(route)
        if histogram is None:
            histogram = self.latency[route] = _Histogram()
        histogram.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        histogram.total += seconds

    def render(self) -> bytes:
        """The exposition text."""
        out: list[str] = []
        labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(self.info.items()))
        out += [
            "# HELP model_info The model this server serves.",
            "# TYPE model_info gauge",
            f"model_info{{{labels}}} 1",
            "# HELP model_requests_total HTTP requests answered, by route and status code.",
            "# TYPE model_requests_total counter",
        ]
        for (route, code), n in sorted(self.requests.items()):
            out.append(f'model_requests_total{{route="{route}",code="{code}"}} {n}')
        out += [
            "# HELP model_request_duration_seconds Time from request head to response written.",
            "# TYPE model_request_duration_seconds histogram",
        ]
        for route, h in sorted(self.latency.items()):
            cumulative = 0
            for bound, n in zip((*BUCKETS, None), h.counts, strict=True):
                cumulative += n
                le = "+Inf" if bound is None else repr(bound)
                bucket = f'route="{route}",le="{le}"'
                out.append(f"model_request_duration_seconds_bucket{{{bucket}}} {cumulative}")
            out.append(f'model_request_duration_seconds_sum{{route="{route}"}} {h.total!r}')
            out.append(f'model_request_duration_seconds_count{{route="{route}"}} {cumulative}')
        out += [
            "# HELP model_requests_in_flight Requests received and not yet answered.",
            "# TYPE model_requests_in_flight gauge",
            f"model_requests_in_flight {self.in_flight}",
            "# HELP model_draining 1 while the server drains before shutdown.",
            "# TYPE model_draining gauge",
            f"model_draining {int(self.draining)}",
            "# HELP model_ready 1 while the readiness endpoint answers 200.",
            "# TYPE model_ready gauge",
            f"model_ready {int(self.ready)}",
        ]
        return ("\n".join(out) + "\n").encode()
