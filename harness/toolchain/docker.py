"""The docker engine: use the one that answers, or install and start Debian's.

CI machines and fresh hosts have no engine running. Where we are root and
apt is available we install `docker.io` and start `dockerd` in the
background with its log in the cache. Hosts whose capability bounding set
lacks CAP_SYS_RESOURCE cannot start privileged containers (every kind node
is one), so there dockerd gets the runtime shim from toolchain/runtime-shim
as its default runtime; on normal hosts nothing is changed.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness import errors, procs, progress
from harness.resources import RECIPES
from harness.toolchain import gobuild, versions
from harness.toolchain.cache import Cache, building, recipe_hash

log = logging.getLogger(__name__)

CAP_SYS_RESOURCE = 24
SHIM_RUNTIME = "harness-capshim"
START_TIMEOUT = 60.0


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
            f"but the running docker uses runtime {engine.default_runtime!r}: stop dockerd and "
            "rerun `make toolchain`, which starts it with the shim"
        )


def _start(cache: Cache) -> Engine:
    dockerd = procs.which("dockerd")
    if dockerd is None:
        _install()
        dockerd = procs.which("dockerd")
        if dockerd is None:
            raise errors.DockerUnavailable(
                "docker.io was installed but no dockerd is on PATH or in "
                f"{', '.join(procs.SYSTEM_DIRS)}; start docker by hand"
            )
    cmd = [dockerd]
    if capability_missing():
        shim = build_shim(cache)
        cmd += ["--add-runtime", f"{SHIM_RUNTIME}={shim}", "--default-runtime", SHIM_RUNTIME]
    log_path = cache.log("dockerd")
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=procs.environment(),
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        engine = info()
        if engine is not None:
            return engine
        if process.poll() is not None:
            raise errors.DockerUnavailable(
                f"dockerd exited with code {process.returncode} at start; see {log_path}\n"
                + procs.tail(log_path, 5)
            )
        time.sleep(0.5)
    raise errors.DockerUnavailable(
        f"dockerd did not answer within {START_TIMEOUT:.0f}s; see {log_path}"
    )


def _install() -> None:
    if os.geteuid() != 0 or procs.which("apt-get") is None:
        raise errors.DockerUnavailable(
            "no docker engine is running and this host cannot install one (needs root and "
            "apt-get): install Docker 20.10 or newer and start it, then rerun"
        )
    with progress.step("installing Debian's docker.io"):
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        procs.output(["apt-get", "update", "-q"], what="apt-get update", env=env,
                     timeout=600, error=errors.DockerUnavailable)
        procs.output(["apt-get", "install", "-y", "-q", "docker.io"],
                     what="apt-get install docker.io", env=env, timeout=900,
                     error=errors.DockerUnavailable)


def build_shim(cache: Cache) -> Path:
    """The runtime shim binary, built once per recipe from toolchain/runtime-shim."""
    key = recipe_hash([RECIPES / "runtime-shim"])
    final = cache.tools / f"runtime-shim-{key}"
    binary = final / "runc-capshim"
    if not binary.exists():
        with progress.step("building the OCI runtime shim"), building(final) as tmp:
            gobuild.build(cache, "runtime-shim", ["."], tmp)
            (tmp / "runtime-shim").rename(tmp / "runc-capshim")
    return binary
