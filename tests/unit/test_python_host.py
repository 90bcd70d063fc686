"""The Python language host's own choices: which Python runs a program, what it is told,
and where its launcher goes. (The CLI running programs through it: tests/e2e.)"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.toolchain import python_host


def venv(root: Path, name: str) -> Path:
    python = root / name / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    return python


def test_the_projects_virtualenv_runs_the_program(tmp_path: Path) -> None:
    python = venv(tmp_path, "venv")
    found = python_host.program_python(tmp_path, {"virtualenv": "venv"},
                                       {"PULUMI_PYTHON_CMD": "/elsewhere/python"})
    assert found == str(python), "the project's choice comes first"
    elsewhere = venv(tmp_path / "other", "env")
    assert python_host.program_python(tmp_path, {"virtualenv": str(elsewhere.parents[1])},
                                      {}) == str(elsewhere)


def test_a_missing_virtualenv_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(python_host.HostError,
                       match=r"the project's virtualenv 'venv' has no .*venv/bin/python: "
                             r"create it \(python3 -m venv venv\)"):
        python_host.program_python(tmp_path, {"virtualenv": "venv"}, {})


def test_without_a_virtualenv_pulumi_python_cmd_then_python3_on_path(tmp_path: Path) -> None:
    assert python_host.program_python(tmp_path, {}, {"PULUMI_PYTHON_CMD": "/x/python"}) \
        == "/x/python"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python3 = bin_dir / "python3"
    python3.write_text("#!/bin/sh\n")
    python3.chmod(0o755)
    assert python_host.program_python(tmp_path, {}, {"PATH": str(bin_dir)}) == str(python3)
    with pytest.raises(python_host.HostError, match="no python3 on PATH"):
        python_host.program_python(tmp_path, {}, {"PATH": str(tmp_path / "empty")})


def request(**changes: object) -> SimpleNamespace:
    info = SimpleNamespace(root_directory="/p", program_directory="/p", entry_point=".")
    fields = dict(info=info, pwd="/p", program="", monitor_address="127.0.0.1:1",
                  project="plain", stack="dev", organization="", parallel=0, dryRun=False,
                  args=[])
    return SimpleNamespace(**{**fields, **changes})


def test_the_program_is_told_the_engine_the_stack_and_whether_it_previews() -> None:
    command = python_host.exec_command("/v/bin/python", request(dryRun=True), "127.0.0.1:2")
    assert command == [
        "/v/bin/python", "-u", str(python_host.EXEC), "--monitor", "127.0.0.1:1",
        "--engine", "127.0.0.1:2", "--project", "plain", "--stack", "dev",
        "--organization", "organization", "--parallel", "1", "--dry-run", "/p"]
    info = SimpleNamespace(root_directory="/p", program_directory="/p/src",
                           entry_point="main.py")
    command = python_host.exec_command("py", request(info=info, args=["a"]), "e")
    assert command[-2:] == ["/p/src/main.py", "a"] and "--dry-run" not in command
    assert python_host.EXEC.is_file()


def test_the_launcher_is_written_once_and_a_releases_host_is_left_alone(
        tmp_path: Path) -> None:
    launcher = python_host.install(tmp_path)
    assert launcher == tmp_path / python_host.LAUNCHER
    text = launcher.read_text()
    assert "harness.toolchain.python_host" in text and launcher.stat().st_mode & 0o111
    assert python_host.install(tmp_path) == launcher and launcher.read_text() == text
    launcher.write_text("#!/bin/sh\n# written by rollout-harness, an older venv\n")
    assert python_host.install(tmp_path) == launcher and launcher.read_text() == text
    launcher.write_text("\x7fELF a release's host")
    assert python_host.install(tmp_path) is None
    assert launcher.read_text() == "\x7fELF a release's host"
    assert not list(tmp_path.glob(".*.tmp"))
