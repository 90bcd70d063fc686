"""`pulumi up` from the CLI in a plain Python program folder, with the toolchain's pulumi.

A CLI built from Go modules has no Python language host of its own; the toolchain
puts ours beside it. These run the CLI exactly as a person would after
`eval "$(rollout-harness toolchain --env)"`, in a folder holding only Pulumi.yaml
and __main__.py (a local state backend, no cluster needed): the
program's config and secrets reach it, its outputs come back, a program that raises
fails the update with its traceback, and the project's virtualenv is the Python that
runs it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import cli
from harness import toolchain as toolchains
from harness.settings import Settings
from harness.toolchain import python_host

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

PROGRAM = """\
import pulumi
config = pulumi.Config()
pulumi.export("answer", config.get_int("x") or 42)
pulumi.export("secret_length", config.require_secret("token").apply(len))
"""


def run(command: list[str], env: dict[str, str], *args: str,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    executable = shutil.which(command[0], path=env["PATH"])
    assert executable is not None
    result = subprocess.run([executable, *command[1:], *args], env=env, capture_output=True,
                            text=True, timeout=240)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture
def project(tmp_path: Path, settings: Settings) -> tuple[list[str], dict[str, str], Path]:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "__main__.py").write_text(PROGRAM)
    exported = dict(line.removeprefix("export ").split("=", 1)
                    for line in cli.shell_exports(settings).splitlines())
    env = {key: shlex.split(value)[0] for key, value in exported.items()}
    assert "pulumi" in env["PATH"].split(os.pathsep)[0]
    env.update({
        "HOME": str(tmp_path),
        "PULUMI_BACKEND_URL": (tmp_path / "state").as_uri(),
        "PULUMI_CONFIG_PASSPHRASE": "not-a-secret",
    })
    (tmp_path / "state").mkdir()
    (folder / "Pulumi.yaml").write_text(
        f"name: plain\nruntime:\n  name: python\n  options:\n    virtualenv: {sys.prefix}\n")
    command = ["pulumi", "--non-interactive", "--cwd", str(folder)]
    run(command, env, "stack", "init", "dev")
    run(command, env, "config", "set", "x", "7")
    run(command, env, "config", "set", "--secret", "token", "abcdef")
    return command, env, folder


def test_the_toolchains_pulumi_has_our_python_host_beside_it(
        deploy_tools: toolchains.DeployTools):
    launcher = deploy_tools.pulumi_root / "bin" / python_host.LAUNCHER
    assert launcher.exists() and os.access(launcher, os.X_OK)


def test_pulumi_up_from_the_cli_runs_a_plain_python_program(
        project: tuple[list[str], dict[str, str], Path]):
    command, env, _ = project
    up = run(command, env, "up", "--yes", "--skip-preview")
    assert "+ 1 created" in up.stdout, up.stdout
    assert "warning" not in up.stdout.lower(), "found beside the CLI, not on PATH"
    outputs = run(command, env, "stack", "output", "--json", "--show-secrets")
    assert outputs.stdout.replace(" ", "").replace("\n", "") == \
        '{"answer":7,"secret_length":6}'
    preview = run(command, env, "preview", "--diff")
    assert "1 unchanged" in preview.stdout, preview.stdout
    run(command, env, "destroy", "--yes")


def test_a_program_that_raises_fails_the_update_with_its_traceback(
        project: tuple[list[str], dict[str, str], Path]):
    command, env, folder = project
    (folder / "__main__.py").write_text(PROGRAM + "raise ValueError('chart_version missing')\n")
    up = run(command, env, "up", "--yes", "--skip-preview", check=False)
    assert up.returncode != 0
    assert "the program raised an exception" in up.stdout, up.stdout
    assert "ValueError: chart_version missing" in up.stdout, up.stdout


def test_a_python_without_the_sdk_is_one_clear_error(
        project: tuple[list[str], dict[str, str], Path], tmp_path: Path):
    command, env, folder = project
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    (folder / "Pulumi.yaml").write_text(
        f"name: plain\nruntime:\n  name: python\n  options:\n    virtualenv: {bare}\n")
    up = run(command, env, "up", "--yes", "--skip-preview", check=False)
    assert up.returncode != 0
    assert f"{bare}/bin/python has no pulumi SDK to run the program: name the project's " \
        "virtualenv" in up.stdout + up.stderr, up.stdout


def test_a_virtualenv_that_is_not_there_is_one_clear_error(
        project: tuple[list[str], dict[str, str], Path]):
    command, env, folder = project
    (folder / "Pulumi.yaml").write_text(
        "name: plain\nruntime:\n  name: python\n  options:\n    virtualenv: venv\n")
    up = run(command, env, "up", "--yes", "--skip-preview", check=False)
    assert up.returncode != 0
    assert f"the project's virtualenv 'venv' has no {folder}/venv/bin/python" in up.stdout + \
        up.stderr, up.stdout
