"""The gate as CI meets it: cancelled with SIGTERM at any phase, and run twice at once.

Each case runs the real command (`python -m harness.cli verify`) as a CI job
would and inspects the machine afterwards: no node container, no Locust or
pulumi process, no stack lock, no run lock, no cluster left behind. Two runs
on different cluster names at once must both pass, each with its own report;
a third on a name in use is refused at once and harms nobody. The first of
the two reruns on the name the stopped runs used: a rerun succeeds.

These cases make clusters of their own, so they run before the session's
shared cluster exists (see conftest.py): two rollouts at once on two cores are
enough, a third idle cluster beside them would measure the machine.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kube_helpers import leftovers

from harness import procs, runlock, startup
from harness.deploy import PROJECT
from harness.settings import Settings
from harness.toolchain.cache import Cache

pytestmark = [pytest.mark.timeout(900), pytest.mark.own_clusters]


class Run:
    """`rollout-harness verify` in a child process, its progress lines read as they come."""

    def __init__(self, name: str, report: Path, *extra: str) -> None:
        self.name, self.report = name, report
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "verify", "--name", name,
             "--report-dir", str(report), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, prefix: str, timeout: float = 600) -> str:
        """Block until a progress line starts with `prefix` (after "==> ")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            if line.startswith(f"==> {prefix}"):
                return line
        pytest.fail(f"no line starting {prefix!r}; the run said:\n" + "\n".join(self.lines))

    def finish(self, timeout: float = 600) -> int:
        code = self.process.wait(timeout=timeout)
        while (line := self._queue.get(timeout=10)) is not None:
            self.lines.append(line)
        return code


def nothing_left(settings: Settings, name: str, report: Path) -> None:
    """What a run on cluster `name` writing to `report` may have started is gone: its
    Locust runs in the report folder, its pulumi in the stack's work folder."""
    assert not leftovers(name), leftovers(name)
    state = Cache(settings.cache_dir).state
    theirs = {report.resolve(), (state / "pulumi-work" / name).resolve()}
    running = [procs.command_line(pid) for pid in _all_pids() if _cwd(pid) in theirs]
    assert not [c for c in running if c], running
    locks = list((state / "pulumi" / ".pulumi" / "locks").glob(f"*/{PROJECT}/{name}/*.json"))
    assert not locks, [p.read_text() for p in locks]
    with runlock.held(startup.lock_folder(settings), name):
        pass  # free again


def _cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def _all_pids() -> list[int]:
    return [pid for pid in procs.pids() if pid != os.getpid()]


# the phases, the line that starts each, and how the stop line names it
PHASES = [
    ("toolchain", "checking the toolchain", "the toolchain check"),
    ("cluster", "creating cluster harness-sig", "creating cluster harness-sig"),
    ("pulumi-up", "pulumi up: ml-model 1.0.0 on harness-sig", "pulumi up: ml-model 1.0.0"),
    ("traffic", "traffic: 8 keep-alive", "the traffic phase"),
    ("report", "judging every request", "judging every request"),
]


@pytest.mark.parametrize(("trigger", "phase"), [p[1:] for p in PHASES],
                         ids=[p[0] for p in PHASES])
def test_sigterm_at_any_phase_leaves_nothing_behind(trigger: str, phase: str,
                                                    settings: Settings, tmp_path: Path):
    # the report phase comes after a whole rollout: the least traffic before and after it
    shorter = ("--baseline", "1", "--settle", "1") if phase.startswith("judging") else ()
    run = Run("harness-sig", tmp_path / "report", *shorter)
    run.wait_for(trigger)
    if trigger.startswith("traffic"):
        time.sleep(3)  # well into it: Locust is sending
    run.process.send_signal(signal.SIGTERM)
    code = run.finish()
    said = "\n".join(run.lines)
    assert code == 143, said
    assert run.lines[-1].startswith(f"==> stopped by SIGTERM during {phase}"), said
    assert "Traceback" not in said
    nothing_left(settings, "harness-sig", tmp_path / "report")
    if trigger.startswith("traffic"):
        assert (tmp_path / "report" / "requests.jsonl").stat().st_size > 0, "records flushed"


# Two rollouts at once on two cores slow each other down: measured, each one's p99 rose
# from 10-14 ms before the upgrade to 225-265 ms during it, over the 100 ms floor of the
# latency budget, with 0 failed requests and every other rule holding. The gate is right
# to call that machine slow; what this case judges is isolation, so it widens the floor.
# And in one run of the suite one Locust, starved of CPU, sent 158 of 11,408 requests up to
# 1.9 s behind its schedule with every answer fast: the gate rightly says INCONCLUSIVE (the
# load fell behind). Each run here sends half the default rate, so two fit on two cores,
# and looks a shorter while before and after its rollout (360 and 600 requests, against
# 50 needed): isolation is judged, not the gate's power.
CONTENDED = ("--p99-floor", "1000", "--rate", "10", "--baseline", "3", "--settle", "5")


def test_two_runs_at_once_on_two_names_both_pass_and_a_third_on_a_used_name_is_refused(
        settings: Settings, tmp_path: Path):
    first = Run("harness-sig", tmp_path / "first", *CONTENDED)
    runs = [first]
    try:
        first.wait_for("creating cluster harness-sig")
        second = Run("harness-two", tmp_path / "second", *CONTENDED)
        runs.append(second)
        third = Run("harness-sig", tmp_path / "third", *CONTENDED)
        assert third.finish(timeout=120) == 75, third.lines
        assert third.lines[-1].startswith(
            f"==> error: cluster harness-sig is in use by another run (pid {first.process.pid}"
            ", `rollout-harness verify --name harness-sig"), third.lines
        assert not (tmp_path / "third").exists()
        for run in (first, second):
            code = run.finish(timeout=800)
            assert code == 0, "\n".join(run.lines)
            assert run.lines[-1].startswith("PASS: "), run.lines[-1]
            assert (run.report / "report.html").exists() and (run.report / "junit.xml").exists()
    finally:  # a failed assertion must not leave runs going under the next tests
        for run in runs:
            if run.process.poll() is None:
                run.process.send_signal(signal.SIGTERM)
                run.process.wait(timeout=300)
    urls = {match.group(0) for run in (first, second) for line in run.lines
            if (match := re.search(r"http://127\.0\.0\.1:\d+", line))}
    assert len(urls) == 2, f"each cluster on its own port: {urls}"
    for run in (first, second):
        nothing_left(settings, run.name, run.report)
