"""The host's CPU sampler: counters read, each interval written at once, nothing when
/proc/stat cannot be read."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from harness.evidence import CpuSample, encode_cpu_sample, read_cpu_samples
from harness.hostcpu import HostCpu


def write_stat(path: Path, idle: int, busy: int) -> None:
    """A /proc/stat whose first line has `idle` idle and `busy` other ticks (atomically)."""
    fresh = path.with_suffix(".new")
    # user nice system idle iowait irq softirq steal guest guest_nice
    fresh.write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    os.replace(fresh, path)


def test_each_interval_is_the_share_of_ticks_left_idle(tmp_path: Path) -> None:
    stat, out = tmp_path / "stat", tmp_path / "host-cpu.jsonl"
    write_stat(stat, idle=1000, busy=5000)
    with HostCpu(out, interval=0.05, source=stat) as host:
        time.sleep(0.12)  # intervals with no tick are not written
        write_stat(stat, idle=1030, busy=5070)
        time.sleep(0.12)
        written = out.read_bytes()  # written as it goes, before the context ends
    samples = host.samples()
    assert [s.idle for s in samples] == [0.3]
    assert written.count(b"\n") == 1
    sample = samples[0]
    assert 0.04 <= sample.seconds <= 0.2 and sample.started == pytest.approx(
        sample.t - sample.seconds)


def test_iowait_counts_as_idle(tmp_path: Path) -> None:
    stat, out = tmp_path / "stat", tmp_path / "host-cpu.jsonl"
    stat.write_text("cpu  100 0 0 100 0 0 0 0 0 0\n")
    with HostCpu(out, interval=0.05, source=stat) as host:
        time.sleep(0.08)
        stat.write_text("cpu  150 0 0 120 30 0 0 0 0 0\n")
        time.sleep(0.12)
    assert [s.idle for s in host.samples()] == [0.5]


def test_an_unreadable_source_samples_nothing_and_writes_no_file(tmp_path: Path) -> None:
    out = tmp_path / "host-cpu.jsonl"
    with HostCpu(out, interval=0.05, source=tmp_path / "missing") as host:
        time.sleep(0.1)
    assert host.samples() == [] and not out.exists()


def test_a_source_that_is_not_proc_stat_samples_nothing(tmp_path: Path) -> None:
    stat, out = tmp_path / "stat", tmp_path / "host-cpu.jsonl"
    stat.write_text("intr 1 2 3\n")
    with HostCpu(out, source=stat) as host:
        pass
    assert host.samples() == []


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="no /proc/stat on this system")
def test_this_hosts_cpu_is_sampled(tmp_path: Path) -> None:
    with HostCpu(tmp_path / "host-cpu.jsonl", interval=0.05) as host:
        time.sleep(0.3)
    samples = host.samples()
    assert samples and all(0.0 <= s.idle <= 1.0 for s in samples)


def test_samples_read_back_in_time_order(tmp_path: Path) -> None:
    path = tmp_path / "host-cpu.jsonl"
    later, earlier = CpuSample(20.5, 0.5, 0.0), CpuSample(20.0, 0.5, 0.25)
    path.write_bytes(encode_cpu_sample(later) + encode_cpu_sample(earlier))
    assert read_cpu_samples(path) == [earlier, later]
    assert read_cpu_samples(tmp_path / "none.jsonl") == []
