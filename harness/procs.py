"""Running external commands with their output kept in a log file.

Builds print thousands of lines; a person needs one line saying what failed
and where the full output is. Every command's output goes to a log under the
cache's logs/ folder, and a failure raises with that path and the last lines.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness import errors

log = logging.getLogger(__name__)

TAIL_LINES = 15


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    log_path: Path,
    what: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: int | None = subprocess.DEVNULL,
    timeout: float | None = None,
    error: type[errors.HarnessError] = errors.BuildError,
) -> None:
    """Run cmd, appending its output to log_path; raise `error` if it fails."""
    argv = [os.fspath(part) for part in cmd]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {})}
    log.debug("running %s (log %s)", shlex.join(argv), log_path)
    with log_path.open("ab") as out:
        out.write(f"$ {shlex.join(argv)}\n".encode())
        out.flush()
        try:
            code = subprocess.run(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=stdin,
                env=full_env, cwd=cwd, timeout=timeout, check=False,
            ).returncode
        except FileNotFoundError as e:
            raise error(f"{what}: {argv[0]} is not installed") from e
        except subprocess.TimeoutExpired as e:
            raise error(f"{what}: timed out after {timeout:.0f}s; full output in {log_path}") from e
    if code != 0:
        raise error(f"{what} failed (exit {code}); full output in {log_path}\n{tail(log_path)}")


def output(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 120,
    error: type[errors.HarnessError] = errors.HarnessError,
) -> str:
    """Run a short command and return its stdout; raise `error` with stderr on failure."""
    argv = [os.fspath(part) for part in cmd]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, env={**os.environ, **(env or {})},
            timeout=timeout, check=False, stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as e:
        raise error(f"{what}: {argv[0]} is not installed") from e
    except subprocess.TimeoutExpired as e:
        raise error(f"{what}: timed out after {timeout}s") from e
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise error(f"{what} failed (exit {done.returncode}): {' / '.join(detail[-3:])}")
    return done.stdout


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])
