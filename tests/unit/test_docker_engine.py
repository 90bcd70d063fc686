from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import errors, progress
from harness.toolchain import docker
from harness.toolchain.cache import Cache, write_json

FULL = "CapBnd:\t000001ffffffffff\n"
NO_SYS_RESOURCE = "CapBnd:\t000001fffeffffff\n"


def test_missing_sys_resource_is_detected():
    assert docker.capability_missing(NO_SYS_RESOURCE)
    assert not docker.capability_missing(FULL)


def test_status_without_capbnd_is_not_treated_as_missing():
    assert not docker.capability_missing("Name:\tbash\n")


def test_old_engine_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(docker, "capability_missing", lambda *a: False)
    with pytest.raises(errors.DockerUnavailable, match=r"19\.03\.1 is too old.*20\.10"):
        docker._check(docker.Engine("19.03.1", "runc"))


def test_engine_without_shim_on_a_host_missing_the_capability(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(docker, "capability_missing", lambda *a: True)
    with pytest.raises(errors.DockerUnavailable, match=r"CAP_SYS_RESOURCE.*make toolchain"):
        docker._check(docker.Engine("20.10.24", "runc"))
    docker._check(docker.Engine("20.10.24", docker.SHIM_RUNTIME))


def test_unreadable_version_is_a_clear_error():
    with pytest.raises(errors.DockerUnavailable, match="cannot read"):
        docker.parse_version("unknown")
    assert docker.parse_version("28.2.2") == (28, 2)


# Host changes: announced first, recorded, undone by stop_engine and only for what we started.

@pytest.fixture
def fake_dockerd(tmp_path: Path) -> Path:
    """A python named dockerd: /proc shows the command line exactly as it was started."""
    path = tmp_path / "bin" / "dockerd"
    path.parent.mkdir()
    path.symlink_to(os.path.realpath(sys.executable))
    return path


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()


def start(processes: list[subprocess.Popen[str]], command: list[str]) -> subprocess.Popen[str]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    processes.append(process)
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    return process


def sleeper(dockerd: Path, ignore_term: bool = False) -> list[str]:
    code = "import signal, time\n"
    if ignore_term:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    return [str(dockerd), "-c", code + "print('ready', flush=True)\ntime.sleep(60)\n"]


def save(cache: Cache, **state: object) -> Path:
    write_json(cache.state / "engine.json", state)
    return cache.state / "engine.json"


def test_nothing_recorded_means_nothing_to_stop(tmp_path: Path):
    assert docker.stop_engine(Cache(tmp_path)) == docker.NOTHING_TO_STOP


def test_stop_terminates_the_dockerd_we_started(tmp_path, fake_dockerd, started):
    cache = Cache(tmp_path)
    command = sleeper(fake_dockerd)
    process = start(started, command)
    state = save(cache, pid=process.pid, command=command, log="/l", shim="/s",
                 installed=["docker.io", "containerd", "runc"])
    line = docker.stop_engine(cache)
    assert process.wait(timeout=5) == -signal.SIGTERM
    assert line.startswith(f"stopped dockerd (pid {process.pid})")
    assert "runtime shim" in line
    assert line.endswith("; docker.io, which the harness installed with apt-get, stays "
                         "installed: `apt-get remove docker.io && apt-get autoremove` removes "
                         "it and the 2 packages it brought")
    assert not state.exists()


def test_a_process_with_another_command_line_is_never_signalled(tmp_path, fake_dockerd, started):
    cache = Cache(tmp_path)
    process = start(started, sleeper(fake_dockerd))
    state = save(cache, pid=process.pid, command=[str(fake_dockerd), "--other"])
    line = docker.stop_engine(cache)
    assert line == f"the dockerd the harness started (pid {process.pid}) is no longer running: " \
        "nothing to stop"
    assert process.poll() is None
    assert not state.exists()


def test_a_process_not_named_dockerd_is_never_signalled(tmp_path, started):
    cache = Cache(tmp_path)
    command = sleeper(Path(os.path.realpath(sys.executable)))
    process = start(started, command)
    save(cache, pid=process.pid, command=command)
    assert "no longer running" in docker.stop_engine(cache)
    assert process.poll() is None


def test_dockerd_outliving_the_timeout_is_reported_and_kept(tmp_path, fake_dockerd, started):
    cache = Cache(tmp_path)
    command = sleeper(fake_dockerd, ignore_term=True)
    process = start(started, command)
    state = save(cache, pid=process.pid, command=command, log="/l")
    with pytest.raises(docker.EngineStopError, match=rf"pid {process.pid}.*still running"):
        docker.stop_engine(cache, timeout=0.5)
    assert process.poll() is None
    assert state.exists()


def test_unreadable_state_is_an_error_naming_the_file(tmp_path):
    cache = Cache(tmp_path)
    cache.state.mkdir()
    (cache.state / "engine.json").write_text("{not json")
    with pytest.raises(docker.EngineStopError, match=r"engine\.json"):
        docker.stop_engine(cache)


def test_installed_packages_are_named_even_when_no_dockerd_runs(tmp_path):
    cache = Cache(tmp_path)
    save(cache, installed=["docker.io"])
    line = docker.stop_engine(cache)
    assert line.startswith(docker.NOTHING_TO_STOP)
    assert "stays installed" in line and "brought" not in line


def test_start_announces_each_change_before_making_it(tmp_path, fake_dockerd, monkeypatch,
                                                     started):
    cache = Cache(tmp_path)
    save(cache, installed=["docker.io"], pid=1, command=["/old/dockerd"], log="/old")
    monkeypatch.setattr(docker.procs, "which", lambda name: str(fake_dockerd))
    monkeypatch.setattr(docker, "capability_missing", lambda *a: True)
    monkeypatch.setattr(docker, "find_runc", lambda: Path("/usr/sbin/runc"))
    monkeypatch.setattr(docker, "build_shim", lambda c, runc: Path("/cache/shim"))
    monkeypatch.setattr(docker, "info", lambda: docker.Engine("28.2.2", docker.SHIM_RUNTIME))
    said_before: list[str] = []
    real_popen = subprocess.Popen

    def popen(cmd: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        said_before.append(stream.getvalue())
        process = real_popen([str(fake_dockerd), "-c", "pass"], **kwargs)
        started.append(process)
        return process

    monkeypatch.setattr(docker.subprocess, "Popen", popen)
    with progress.redirected(io.StringIO()) as stream:
        docker._start(cache)
    assert said_before[0].splitlines() == [
        "==> dockerd gets the runtime shim /cache/shim (which runs /usr/sbin/runc) as its "
        "default runtime because this host lacks CAP_SYS_RESOURCE",
        f"==> starting dockerd in the background (it creates /var/lib/docker, the docker0 "
        f"bridge and iptables rules; log: {cache.logs / 'dockerd.log'}; "
        "`rollout-harness engine stop` stops it)",
    ]
    state = json.loads((cache.state / "engine.json").read_text())
    assert state["command"] == [str(fake_dockerd), "--add-runtime",
                                f"{docker.SHIM_RUNTIME}=/cache/shim", "--default-runtime",
                                docker.SHIM_RUNTIME]
    assert state["shim"] == "/cache/shim" and state["runc"] == "/usr/sbin/runc"
    assert isinstance(state["pid"], int) and state["pid"] != 1
    assert state["installed"] == ["docker.io"]


def test_apt_simulation_lists_docker_io_first():
    plan = ("NOTE: simulation\nInst containerd (1.6 Debian:12)\nInst docker.io (20.10 Debian:12)\n"
            "Inst runc (1.1 Debian:12)\nConf containerd (1.6 Debian:12)\n")
    assert docker.planned_packages(plan) == ["docker.io", "containerd", "runc"]


def test_runc_is_found_by_absolute_path_only(tmp_path, monkeypatch):
    plain = tmp_path / "plain"
    plain.write_text("")
    runc = tmp_path / "runc"
    runc.write_text("#!/bin/sh\n")
    runc.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert docker.find_runc((str(tmp_path / "absent"), str(plain), str(runc))) == runc
    with pytest.raises(errors.DockerUnavailable, match="no runc in"):
        docker.find_runc((str(tmp_path / "absent"), str(plain)))


def test_install_announces_and_records_packages_before_installing(tmp_path, monkeypatch):
    cache = Cache(tmp_path)
    monkeypatch.setattr(docker.os, "geteuid", lambda: 0)
    monkeypatch.setattr(docker.procs, "which", lambda name: f"/usr/bin/{name}")
    calls: list[tuple[list[str], str, dict[str, Any]]] = []

    def output(cmd: list[str], **kwargs: Any) -> str:
        state = cache.state / "engine.json"
        calls.append((cmd, stream.getvalue(), json.loads(state.read_text()) if state.exists()
                      else {}))
        return "Inst runc (1.1)\nInst docker.io (20.10)\n" if "-s" in cmd else ""

    monkeypatch.setattr(docker.procs, "output", output)
    with progress.redirected(io.StringIO()) as stream:
        docker._install(cache)
    (update, said_first, _), _, (install, said_last, recorded) = calls
    assert update[:2] == ["apt-get", "update"]
    assert said_first.startswith("==> installing Debian's docker.io with apt-get (changes the "
                                 "host: apt-get update")
    assert install[:3] == ["apt-get", "install", "-y"]
    assert "==> apt-get installs 2 packages: docker.io runc\n" in said_last
    assert recorded == {"installed": ["docker.io", "runc"]}
