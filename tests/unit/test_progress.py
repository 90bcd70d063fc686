"""The progress lines: a step names its log, and while it runs says what it is doing."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness import progress
from harness.cluster import pods_line
from harness.evidence import VERSION_LABEL


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "STILL_RUNNING_IN_A_LOG", 0.05)


def test_a_terminal_hears_every_10s_and_a_log_every_30s():
    with progress.redirected(Terminal()):
        assert progress.still_running_every() == 10.0
    with progress.redirected(io.StringIO()):
        assert progress.still_running_every() == 30.0


def test_the_start_line_names_the_log_and_the_still_line_its_last_line(tmp_path: Path, fast):
    log = tmp_path / "go-build-kubernetes.log"
    log.write_text("k8s.io/apimachinery/pkg/util/runtime\nk8s.io/kubernetes/pkg/kubelet\n\n")
    out = io.StringIO()
    with progress.redirected(out), \
            progress.step("building kubernetes v1.34.4 from Go modules", log_file=log):
        time.sleep(0.2)
    said = lines(out)
    assert said[0] == f"==> building kubernetes v1.34.4 from Go modules ... log: {log}"
    still = [line for line in said if "still running" in line]
    assert still, said
    assert still[0].startswith("==> building kubernetes v1.34.4 from Go modules: still "
                               "running (0s): k8s.io/kubernetes/pkg/kubelet")
    assert said[-1].startswith("==> building kubernetes v1.34.4 from Go modules: done in")


def test_the_steps_own_figure_comes_first_and_a_failing_one_is_left_out(tmp_path: Path, fast):
    log = tmp_path / "pulumi.log"
    log.write_text("Updating (harness):\n")
    answers = iter(["pods ready: 1.0.0 3/3, 1.1.0 0/1"])

    def doing() -> str:
        return next(answers)  # then StopIteration: a figure that cannot be read now

    out = io.StringIO()
    with progress.redirected(out), \
            progress.step("pulumi up: ml-model 1.1.0 on x", log_file=log, doing=doing):
        time.sleep(0.25)
    still = [line for line in lines(out) if "still running" in line]
    assert still[0].endswith(": pods ready: 1.0.0 3/3, 1.1.0 0/1"), still
    assert still[1].endswith(": Updating (harness):"), still


def test_a_log_not_written_yet_leaves_the_elapsed_time_alone(tmp_path: Path, fast):
    out = io.StringIO()
    with progress.redirected(out), progress.step("making image x", log_file=tmp_path / "x.log"):
        time.sleep(0.15)
    still = [line for line in lines(out) if "still running" in line]
    assert still and all(line.endswith(")") for line in still), still


def test_a_long_last_line_is_cut_to_one_screen_line(tmp_path: Path):
    log = tmp_path / "x.log"
    log.write_text("y" * 500 + "\n")
    line = progress.last_line(log)
    assert line is not None and len(line) == progress.DETAIL_WIDTH and line.endswith("…")


def test_only_the_innermost_step_says_it_still_runs(fast):
    out = io.StringIO()
    with progress.redirected(out), progress.step("building and loading the model images"):
        with progress.step("building rollout-harness/model-server:1.1.0"):
            time.sleep(0.2)
        time.sleep(0.15)
    still = [line for line in lines(out) if "still running" in line]
    inner = [line for line in still if "model-server:1.1.0" in line]
    outer = [line for line in still if line not in inner]
    assert inner and outer, still
    # the outer step speaks only once the inner one has ended
    inner_done = next(i for i, line in enumerate(lines(out)) if "model-server:1.1.0: done" in line)
    assert all(lines(out).index(line) > inner_done for line in outer), lines(out)


def test_a_failed_step_ends_its_ticker_and_says_so():
    before = threading.active_count()
    with progress.redirected(io.StringIO()), pytest.raises(RuntimeError), \
            progress.step("judging"):
        raise RuntimeError("boom")
    assert threading.active_count() == before
    assert progress.current() is None


def _pod(version: str | None, ready: bool, terminating: bool = False) -> Any:
    labels = {VERSION_LABEL: version} if version else {}
    return SimpleNamespace(
        metadata=SimpleNamespace(labels=labels,
                                 deletion_timestamp="2026-11-29T00:00:00Z" if terminating
                                 else None),
        status=SimpleNamespace(conditions=[SimpleNamespace(type="Ready",
                                                           status="True" if ready else "False")]))


def test_pods_ready_by_version_during_a_rollout():
    pods = [_pod("1.0.0", True), _pod("1.0.0", True), _pod("1.0.0", True, terminating=True),
            _pod("1.1.0", True), _pod("1.1.0", False)]
    assert pods_line(pods, VERSION_LABEL) == "pods ready: 1.0.0 2/2, 1.1.0 1/2, 1 terminating"
    assert pods_line([_pod(None, False)], VERSION_LABEL) == "pods ready: unlabelled 0/1"
    assert pods_line([], VERSION_LABEL) is None


def test_lines_said_from_threads_at_once_stay_whole_lines():
    """A run said `==> upgrading 1.0.0 -> 1.1.0 under traffic==> traffic: 2,163 requests`
    when the traffic ticker's thread spoke between a line and its newline."""

    class Slow(io.StringIO):
        def write(self, text: str) -> int:  # every write yields the GIL midway
            half = len(text) // 2
            n = super().write(text[:half])
            time.sleep(0.0005)
            return n + super().write(text[half:])

    out = Slow()
    with progress.redirected(out):
        threads = [threading.Thread(target=lambda i=i: [progress.say(f"line {i}-{j}")
                                                        for j in range(20)])
                   for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    lines = out.getvalue().splitlines()
    assert len(lines) == 80 and all(line.startswith("==> line ") for line in lines)
    assert sorted(lines) == sorted(f"==> line {i}-{j}" for i in range(4) for j in range(20))
