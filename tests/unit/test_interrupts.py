"""SIGTERM and SIGINT unwind the run: every clean-up runs, the exit code says which signal."""

from __future__ import annotations

import io
import os
import signal
import time
from typing import Any

import pytest

from harness import cli, interrupts, progress


def stopped_at(signum: int, cleaned: list[str], again: bool = False) -> Any:
    """A command that is sent `signum` inside a step; its clean-up is sent another."""

    def command(args: Any, settings: Any) -> int:
        try:
            with progress.step("pulumi up: ml-model 1.1.0 on test"):
                os.kill(os.getpid(), signum)
                time.sleep(5)
                cleaned.append("never: the signal arrives first")
        finally:
            if again:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
            cleaned.append("stack")
        return 0

    return command


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_runs_the_clean_up_and_exits_128_plus_its_number(
        monkeypatch: pytest.MonkeyPatch, signum: int, code: int):
    cleaned: list[str] = []
    monkeypatch.setitem(cli.RUNNERS, "toolchain", stopped_at(signum, cleaned))
    with progress.redirected(io.StringIO()) as said:
        assert cli.main(["toolchain"]) == code
    lines = said.getvalue().splitlines()
    assert cleaned == ["stack"]
    name = signal.Signals(signum).name
    assert lines[-2].startswith("==> pulumi up: ml-model 1.1.0 on test: stopped after ")
    assert lines[-1] == (f"==> stopped by {name} during pulumi up: ml-model 1.1.0 on test; "
                         "what this run started is stopped and removed (a kept cluster stays)")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "handlers restored"


def test_a_second_signal_does_not_cut_the_clean_up_short(monkeypatch: pytest.MonkeyPatch):
    cleaned: list[str] = []
    monkeypatch.setitem(cli.RUNNERS, "toolchain", stopped_at(signal.SIGINT, cleaned, again=True))
    with progress.redirected(io.StringIO()) as said:
        assert cli.main(["toolchain"]) == 130
    assert cleaned == ["stack"]
    assert "==> SIGTERM: already stopping; cleaning up first" in said.getvalue()


def test_the_phase_is_the_innermost_step_under_way():
    assert progress.current() is None
    with progress.redirected(io.StringIO()), progress.phase("traffic"):
        assert progress.current() == "traffic"
        with progress.step("judging"):
            assert progress.current() == "traffic / judging"
        assert progress.current() == "traffic"
    assert progress.current() is None
    error = interrupts.Interrupted(signal.SIGTERM, None)
    assert (error.exit_code, str(error)) == (143, "SIGTERM during start-up")
    assert not isinstance(error, Exception), "no `except Exception` swallows it"


def test_a_child_that_must_hear_of_the_signal_is_told_before_the_unwinding(
        monkeypatch: pytest.MonkeyPatch):
    told: list[str] = []

    def command(args: Any, settings: Any) -> int:
        hook = interrupts.passed_on(lambda: told.append(progress.current() or ""))
        with hook, progress.step("pulumi up: x"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        return 0

    monkeypatch.setitem(cli.RUNNERS, "toolchain", command)
    with progress.redirected(io.StringIO()):
        assert cli.main(["toolchain"]) == 143
    assert told == ["pulumi up: x"]
    assert interrupts._passed_on == []
