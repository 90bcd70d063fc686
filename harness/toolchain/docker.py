"""The docker engine: use the one that answers, or install and start Debian's.

CI machines and fresh hosts have no engine running. Where we are root and
apt is available we install `docker.io` and start `dockerd` in the
background with its log in the cache. Hosts whose capability bounding set
lacks CAP_SYS_RESOURCE cannot start privileged containers (every kind node
is one), so there dockerd gets the runtime shim from toolchain/runtime-shim
as its default runtime; on normal hosts nothing is changed.

Each change to the host is announced on the progress line before it is made
and written to the cache's state/engine.json, so `stop_engine` can undo
what the harness did, and only that.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from harness import errors, procs, progress
from harness.resources import RECIPES
from harness.toolchain import gobuild, versions
from harness.toolchain.cache import Cache, building, recipe_hash, write_json

log = logging.getLogger(__name__)

CAP_SYS_RESOURCE = 24
SHIM_RUNTIME = "harness-capshim"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
"""Seconds dockerd gets after SIGTERM; it stops its containers first."""
RUNC_LOCATIONS = ("/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc", "/usr/local/bin/runc")
"""Where Debian's runc, Docker's containerd.io and local builds put runc, in that order."""
NOTHING_TO_STOP = "no engine started by the harness is running: nothing to stop"


class EngineStopError(errors.HarnessError):
    """The dockerd the harness started could not be stopped; the message says why."""

    exit_code = 69


class EngineState(TypedDict, total=False):
    """state/engine.json: what the harness changed on the host, so it can be undone."""

    pid: int
    """The dockerd the harness started; absent once it is known to have exited."""
    command: list[str]
    """Its command line, compared with /proc/PID/cmdline so a reused pid is never signalled."""
    log: str
    shim: str
    """The runtime shim dockerd got as its default runtime, if it got one."""
    runc: str
    """The runc the shim runs."""
    installed: list[str]
    """Packages apt-get installed for docker.io (docker.io first); absent if none."""


@dataclass(frozen=True)
class Engine:
    version: str
    default_runtime: str


def capability_missing(status_text: str | None = None, cap: int = CAP_SYS_RESOURCE) -> bool:
    """True when `cap` is outside this process's capability bounding set."""
    text = status_text if status_text is not None else Path("/proc/self/status").read_text()
    match = re.search(r"^CapBnd:\s*([0-9a-fA-F]+)", text, re.MULTILINE)
    if match is None:
        return False
    return not (int(match.group(1), 16) >> cap) & 1


def parse_version(text: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", text.strip())
    if match is None:
        raise errors.DockerUnavailable(f"cannot read the docker engine version from {text!r}")
    return int(match.group(1)), int(match.group(2))


def info() -> Engine | None:
    """The running engine, or None if no engine answers."""
    try:
        out = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}|{{.DefaultRuntime}}"],
            capture_output=True, text=True, timeout=20, check=False,
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 or "|" not in out.stdout:
        return None
    version, runtime = out.stdout.strip().split("|", 1)
    return Engine(version=version, default_runtime=runtime)


def ensure(cache: Cache) -> Engine:
    """Return a running, usable engine, starting (and installing) one if needed."""
    engine = info()
    if engine is None:
        with progress.step("starting the docker engine"):
            engine = _start(cache)
    _check(engine)
    return engine


def _check(engine: Engine) -> None:
    if parse_version(engine.version) < versions.MIN_DOCKER:
        need = ".".join(map(str, versions.MIN_DOCKER))
        raise errors.DockerUnavailable(
            f"docker engine {engine.version} is too old: kind needs {need} or newer; upgrade docker"
        )
    if capability_missing() and engine.default_runtime != SHIM_RUNTIME:
        raise errors.DockerUnavailable(
            "this host lacks CAP_SYS_RESOURCE, so privileged kind nodes need the runtime shim, "
            f"but the running docker uses runtime {engine.default_runtime!r}: stop dockerd "
            "(`rollout-harness engine stop` if the harness started it) and rerun "
            "`make toolchain`, which starts it with the shim"
        )


def _start(cache: Cache) -> Engine:
    dockerd = procs.which("dockerd")
    if dockerd is None:
        _install(cache)
        dockerd = procs.which("dockerd")
        if dockerd is None:
            raise errors.DockerUnavailable(
                "docker.io was installed but no dockerd is on PATH or in "
                f"{', '.join(procs.SYSTEM_DIRS)}; start docker by hand"
            )
    cmd = [dockerd]
    state: EngineState = {}
    if capability_missing():
        runc = find_runc()
        shim = build_shim(cache, runc)
        progress.say(f"dockerd gets the runtime shim {shim} (which runs {runc}) as its default "
                     "runtime because this host lacks CAP_SYS_RESOURCE")
        cmd += ["--add-runtime", f"{SHIM_RUNTIME}={shim}", "--default-runtime", SHIM_RUNTIME]
        state = {"shim": str(shim), "runc": str(runc)}
    log_path = cache.log("dockerd")
    progress.say(f"starting dockerd in the background (it creates /var/lib/docker, the docker0 "
                 f"bridge and iptables rules; log: {log_path}; `rollout-harness engine stop` "
                 "stops it)")
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=procs.environment(),
        )
    _save_state(cache, {**state, "pid": process.pid, "command": cmd, "log": str(log_path)},
                drop=("pid", "command", "log", "shim", "runc"))
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        engine = info()
        if engine is not None:
            return engine
        if process.poll() is not None:
            _save_state(cache, {}, drop=("pid", "command"))
            raise errors.DockerUnavailable(
                f"dockerd exited with code {process.returncode} at start; see {log_path}\n"
                + procs.tail(log_path, 5)
            )
        time.sleep(0.5)
    raise errors.DockerUnavailable(
        f"dockerd did not answer within {START_TIMEOUT:.0f}s; see {log_path}; "
        "`rollout-harness engine stop` stops it"
    )


def _install(cache: Cache) -> None:
    if os.geteuid() != 0 or procs.which("apt-get") is None:
        raise errors.DockerUnavailable(
            "no docker engine is running and this host cannot install one (needs root and "
            "apt-get): install Docker 20.10 or newer and start it, then rerun"
        )
    progress.say("installing Debian's docker.io with apt-get (changes the host: apt-get update "
                 "refreshes the package lists, then docker.io and the packages it needs are "
                 "installed and stay installed)")
    with progress.step("installing Debian's docker.io"):
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        procs.output(["apt-get", "update", "-q"], what="apt-get update", env=env,
                     timeout=600, error=errors.DockerUnavailable)
        plan = procs.output(["apt-get", "install", "-s", "-q", "docker.io"],
                            what="apt-get install -s docker.io", env=env, timeout=120,
                            error=errors.DockerUnavailable)
        packages = planned_packages(plan) or ["docker.io"]
        progress.say(f"apt-get installs {len(packages)} packages: {' '.join(packages)}")
        _save_state(cache, {"installed": packages})
        procs.output(["apt-get", "install", "-y", "-q", "docker.io"],
                     what="apt-get install docker.io", env=env, timeout=900,
                     error=errors.DockerUnavailable)


def planned_packages(simulation: str) -> list[str]:
    """Package names from `apt-get install -s` output ("Inst NAME ..."), docker.io first."""
    names = re.findall(r"^Inst (\S+)", simulation, re.MULTILINE)
    return sorted(names, key=lambda name: name != "docker.io")


def find_runc(locations: tuple[str, ...] = RUNC_LOCATIONS) -> Path:
    """The real runc by absolute path; PATH is not searched (it may hold another runc)."""
    for candidate in map(Path, locations):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise errors.DockerUnavailable(
        f"no runc in {', '.join(locations)}, which the runtime shim needs: install runc "
        "(`apt-get install runc`) and rerun"
    )


def build_shim(cache: Cache, runc: Path) -> Path:
    """The runtime shim binary, built once per recipe and runc path from toolchain/runtime-shim.

    The runc path is compiled in (`main.runcPath`): the shim then depends on
    no environment variable or flag that dockerd, containerd and its shim
    might not pass on.
    """
    if not runc.is_absolute() or "'" in str(runc):
        raise ValueError(f"runc must be an absolute path without quotes, not {str(runc)!r}")
    key = recipe_hash([RECIPES / "runtime-shim"], str(runc))
    final = cache.tools / f"runtime-shim-{key}"
    binary = final / "runc-capshim"
    if not binary.exists():
        with progress.step("building the OCI runtime shim",
                           log_file=gobuild.log_path(cache, "runtime-shim")), \
                building(final) as tmp:
            gobuild.build(cache, "runtime-shim", ["."], tmp,
                          ldflags=f"-X 'main.runcPath={runc}'")
            (tmp / "runtime-shim").rename(tmp / "runc-capshim")
    return binary


def stop_engine(cache: Cache, *, timeout: float = STOP_TIMEOUT) -> str:
    """Stop the dockerd the harness started, if it runs; return one line saying what was done.

    This is `rollout-harness engine stop`. It reads state/engine.json and
    signals the recorded pid only while /proc says it is still that dockerd
    with the recorded command line, so an engine someone else started (or a
    process that got the pid later) is never touched. dockerd gets SIGTERM
    and up to `timeout` seconds to stop its containers and exit. The state
    file is then removed. Packages the harness installed are not removed:
    the line says how to remove them. Raises EngineStopError when the state
    file is unreadable, the signal is not permitted or dockerd outlives the
    timeout (the state file is then kept, so a rerun tries again).
    """
    path = cache.state / "engine.json"
    state = _read_state(path)
    pid = state.get("pid")
    done = NOTHING_TO_STOP
    if pid is not None and _is_recorded_dockerd(pid, state.get("command", [])):
        try:
            os.kill(pid, signal.SIGTERM)
        except PermissionError as e:
            raise EngineStopError(
                f"not permitted to stop dockerd (pid {pid}), which the harness started as "
                "root: rerun `rollout-harness engine stop` as root"
            ) from e
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                raise EngineStopError(
                    f"dockerd (pid {pid}) is still running {timeout:.0f}s after SIGTERM; see "
                    f"{state.get('log', 'its log')}; wait for it or `kill -KILL {pid}`, then "
                    "rerun `rollout-harness engine stop`"
                )
            time.sleep(0.2)
        done = f"stopped dockerd (pid {pid}), which the harness started"
        if "shim" in state:
            done += " with the runtime shim as its default runtime"
        done += "; images and containers in /var/lib/docker are kept"
    elif pid is not None:
        done = f"the dockerd the harness started (pid {pid}) is no longer running: nothing to stop"
    installed = state.get("installed", [])
    if installed:
        others = len(installed) - 1
        brought = f" and the {others} packages it brought" if others > 1 else (
            " and the package it brought" if others == 1 else "")
        done += ("; docker.io, which the harness installed with apt-get, stays installed: "
                 f"`apt-get remove docker.io && apt-get autoremove` removes it{brought}")
    path.unlink(missing_ok=True)
    return done


def _read_state(path: Path) -> EngineState:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise EngineStopError(f"cannot read {path} ({e}): delete it, then stop a dockerd the "
                              "harness started by hand") from e
    if not isinstance(data, dict):
        raise EngineStopError(f"{path} holds no JSON object: delete it, then stop a dockerd "
                              "the harness started by hand")
    state: EngineState = {}
    if isinstance(data.get("pid"), int) and data["pid"] > 0:
        state["pid"] = data["pid"]
    if _strings(data.get("command")):
        state["command"] = data["command"]
    if _strings(data.get("installed")):
        state["installed"] = data["installed"]
    for key in ("log", "shim", "runc"):
        if isinstance(data.get(key), str):
            state[key] = data[key]
    return state


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _save_state(cache: Cache, changes: EngineState, drop: tuple[str, ...] = ()) -> None:
    """Update state/engine.json: drop the keys in drop, then add changes."""
    path = cache.state / "engine.json"
    state = _read_state(path)
    for key in drop:
        state.pop(key, None)  # type: ignore[misc]
    write_json(path, {**state, **changes})


def _is_recorded_dockerd(pid: int, command: list[str]) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    except OSError:
        return False
    return (bool(command) and Path(command[0]).name == "dockerd"
            and [os.fsdecode(a) for a in argv] == command and _alive(pid))


def _alive(pid: int) -> bool:
    """True while pid exists and is not a zombie (our own child is one until reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
