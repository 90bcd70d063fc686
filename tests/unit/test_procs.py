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


def test_the_tree_below_a_process_is_found_and_stopped_gracefully_first(tmp_path: Path):
    import signal
    import subprocess
    import time

    # a parent that traps SIGINT (as pulumi does) and a child that ignores it
    script = tmp_path / "tree.sh"
    script.write_text("trap 'echo cancelled > %s; exit 0' INT\n"
                      "sh -c 'trap \"\" INT; sleep 60' &\nwait\nwait\n" % (tmp_path / "said"))
    # bash cannot trap a signal ignored when it started, and a job started in the
    # background of a non-interactive shell (a CI script's `cmd &`) has SIGINT ignored
    parent = subprocess.Popen(["bash", str(script)],
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 10
    while len(procs.descendants(parent.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    tree = procs.descendants(parent.pid)
    assert parent.pid in procs.descendants() and len(tree) >= 2
    assert "sleep 60" in procs.command_line(tree[-1])
    assert procs.parent(parent.pid) == os.getpid()
    killed = procs.stop([parent.pid], signal.SIGINT, grace=5)
    parent.wait()
    assert killed == [] and (tmp_path / "said").read_text() == "cancelled\n"
    assert procs.stop(tree, signal.SIGINT, grace=0.5) == tree, "the deaf ones are killed"
    time.sleep(0.2)
    assert not any(procs.running(pid) for pid in tree)
    assert procs.command_line(2**22 + 7) == "" and procs.parent(2**22 + 7) is None


def test_matching_finds_strays_by_their_command_line_but_not_itself(tmp_path: Path):
    import subprocess
    import time

    stray = subprocess.Popen(["sleep", "30.123"])
    try:
        deadline = time.monotonic() + 10  # until the child has exec'd, its cmdline is ours
        while not procs.matching("sleep 30.123") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert procs.matching("sleep 30.123") == [stray.pid]
        assert procs.matching("no such command line anywhere 42") == []
    finally:
        stray.kill()
        stray.wait()
