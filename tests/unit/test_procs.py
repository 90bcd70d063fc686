"""Commands we start: system folders on PATH, failures as one line with the log."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from harness import errors, procs


def test_system_folders_are_appended_once_and_in_order():
    assert procs.system_path("/usr/bin:/bin") == "/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
    assert procs.system_path("/usr/sbin:/usr/bin") == "/usr/sbin:/usr/bin:/usr/local/sbin:/sbin"
    assert procs.system_path("") == "/usr/local/sbin:/usr/sbin:/sbin"


def test_which_finds_a_daemon_outside_a_minimal_path(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch):
    fake_sbin = tmp_path / "sbin"
    fake_sbin.mkdir()
    daemon = fake_sbin / "fake-daemon"
    daemon.write_text("#!/bin/sh\necho $PATH\n")
    daemon.chmod(daemon.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(procs, "SYSTEM_DIRS", (str(fake_sbin),))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert procs.which("fake-daemon") == str(daemon)
    assert os.environ["PATH"] == "/usr/bin:/bin"  # our own process is left as it was
    # and what we start sees the folder too, so its own children find their tools
    said = procs.output(["fake-daemon"], what="fake daemon")
    assert said.strip() == f"/usr/bin:/bin:{fake_sbin}"


def test_a_failed_command_names_itself_and_its_log(tmp_path: Path):
    log_path = tmp_path / "logs" / "fail.log"
    with pytest.raises(errors.BuildError) as caught:
        procs.run(["sh", "-c", "echo first; echo last words >&2; exit 3"],
                  log_path=log_path, what="the failing step")
    message = str(caught.value)
    assert message.startswith(f"the failing step failed (exit 3); full output in {log_path}")
    assert "last words" in message
    assert "$ sh -c" in log_path.read_text()


def test_a_missing_program_is_named():
    with pytest.raises(errors.HarnessError, match="no-such-tool-here is not installed"):
        procs.output(["no-such-tool-here"], what="probe")
