"""The host's spare CPU while the load runs, sampled from /proc/stat.

On a kind cluster the node's pods, the control plane, Locust and the deployer
all share the host's cores. When none is idle, every answer may have waited
for one: a latency over budget then says the host was too small, not that the
release was slow. The verdict needs to know when that was, so a thread of the
harness's own process reads the host's CPU counters every `INTERVAL_SECONDS`
and writes each interval at once to a JSONL file (a killed run still leaves
what was sampled): one line of /proc/stat read, one line written, twice a second.

Where /proc/stat cannot be read (not Linux), nothing is sampled and the
verdict judges latency as it would without this.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from harness.evidence import CpuSample, encode_cpu_sample, read_cpu_samples

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 0.5
"""Length of one sample: shorter than a pod's start-up, long enough to count ticks."""
PROC_STAT = Path("/proc/stat")


def _counters(path: Path) -> tuple[int, int] | None:
    """(idle, total) clock ticks of all cores since boot; None if unreadable."""
    try:
        with path.open() as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return ticks[3] + ticks[4], sum(ticks)


class HostCpu:
    """Sample the host's CPU into `path` while the context is open."""

    def __init__(self, path: Path, interval: float = INTERVAL_SECONDS,
                 source: Path = PROC_STAT) -> None:
        self.path, self.interval, self.source = path, interval, source
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._out: BinaryIO | None = None

    def __enter__(self) -> HostCpu:
        first = _counters(self.source)
        if first is None:
            log.info("%s unreadable: the host's CPU is not sampled", self.source)
            return self
        self._out = self.path.open("wb")
        self._thread = threading.Thread(target=self._run, args=(first, time.time()),
                                        name="host-cpu", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 2)
        if self._out is not None:
            self._out.close()

    def samples(self) -> list[CpuSample]:
        return read_cpu_samples(self.path)

    def _run(self, previous: tuple[int, int], at: float) -> None:
        assert self._out is not None
        while not self._stop.wait(self.interval):
            now, counters = time.time(), _counters(self.source)
            if counters is None:
                return
            idle, total = counters[0] - previous[0], counters[1] - previous[1]
            if total > 0:
                sample = CpuSample(round(now, 3), round(now - at, 3), round(idle / total, 4))
                self._out.write(encode_cpu_sample(sample))
                self._out.flush()
            previous, at = counters, now
