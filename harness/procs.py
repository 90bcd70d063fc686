"""Running external commands with their output kept in a log file.

Builds print thousands of lines; a person needs one line saying what failed
and where the full output is. Every command's output goes to a log under the
cache's logs/ folder, and a failure raises with that path and the last lines.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness import errors

log = logging.getLogger(__name__)

TAIL_LINES = 15

# Root's tools (dockerd, debootstrap and the chroot, mount and iptables it and
# dockerd call) live here; minimal PATHs (cron, CI runners, `env -i`) omit them.
SYSTEM_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def system_path(path: str | None = None) -> str:
    """PATH (default: this process's) with the system folders it lacks appended."""
    parts = [part for part in (os.environ.get("PATH", "") if path is None else path).split(":")
             if part]
    return ":".join([*parts, *(folder for folder in SYSTEM_DIRS if folder not in parts)])


def which(name: str) -> str | None:
    """shutil.which over `system_path()`: finds dockerd even when PATH lacks /usr/sbin."""
    return shutil.which(name, path=system_path())


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a command we start: ours, `extra`, and a PATH with system folders."""
    env = {**os.environ, **(extra or {})}
    env["PATH"] = system_path(env.get("PATH", ""))
    return env


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
    full_env = environment(env)
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
            argv, capture_output=True, text=True, env=environment(env),
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


def descendants(root: int | None = None) -> list[int]:
    """The processes below `root` (default: this one), parents before children, read
    from /proc: the pulumi CLI the Automation API starts is not ours to hold a handle on."""
    parents = {pid: parent for pid in pids() if (parent := _stat(pid, 1)) is not None}
    found, frontier = [], [os.getpid() if root is None else root]
    while frontier:
        children = sorted(pid for pid, parent in parents.items() if parent in frontier)
        found.extend(children)
        frontier = children
    return found


def group(pgid: int) -> list[int]:
    """The running processes of process group `pgid` (a group outlives its leader: what
    it forked stays in it)."""
    return [pid for pid in pids() if _stat(pid, 2) == pgid and running(pid)]


def stop(pids: Sequence[int], signum: int, grace: float) -> list[int]:
    """Send `signum` to `pids`, wait up to `grace` seconds for them to end, SIGKILL the
    rest; returns the ones that had to be killed."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(running(pid) for pid in pids):
        time.sleep(0.1)
    killed = [pid for pid in pids if running(pid)]
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return killed


def running(pid: int) -> bool:
    """Alive and not a zombie (a child that ended but was not yet reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def parent(pid: int) -> int | None:
    """The parent's pid, or None once `pid` has ended."""
    return _stat(pid, 1)


def _stat(pid: int, field: int) -> int | None:
    """A numeric field of /proc/PID/stat counted after the command name (0: state)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[field])
    except (OSError, IndexError, ValueError):
        return None


def command_line(pid: int) -> str:
    """A process's command line ("" once it has ended)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace").strip()
    except OSError:
        return ""


def matching(*texts: str) -> list[int]:
    """Processes other than this one whose command line holds any of `texts`: a child
    that outlived the command that started it (SIGKILLed) is no longer a descendant."""
    me = os.getpid()
    return [pid for pid in pids() if pid != me and any(text in command_line(pid) for text in texts)]


def pids() -> list[int]:
    """Every process's pid, from /proc."""
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def free_port() -> int:
    """A port nothing listens on now on 127.0.0.1, picked by the kernel: for a process
    about to listen there (a kind port mapping, Locust's master)."""
    return free_ports(1)[0]


def free_ports(count: int, taken: int = 0) -> list[int]:
    """`count` different ports nothing listens on now on 127.0.0.1, none of them `taken`:
    all bound at once, so the kernel cannot hand out one twice."""
    with contextlib.ExitStack() as held:
        ports: list[int] = []
        while len(ports) < count:
            probe = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
            if port != taken:
                ports.append(port)
        return ports
