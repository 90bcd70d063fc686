"""The OCI runtime shim, built from toolchain/runtime-shim and run for real.

A fake `runc` on PATH records what it was called with, so each test shows
what the real runc would have received.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from harness.toolchain import docker
from harness.toolchain.cache import Cache

CAPS = ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_SYS_RESOURCE", "CAP_NET_ADMIN"]


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return docker.build_shim(Cache(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def fake_runc(tmp_path: Path) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    runc = bindir / "runc"
    runc.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$RECORD"\n')
    runc.chmod(0o755)
    return bindir


def run_shim(shim: Path, bindir: Path, tmp_path: Path, *args: str,
             cwd: Path | None = None) -> list[str]:
    record = tmp_path / "args"
    env = {**os.environ, "PATH": f"{bindir}:/usr/bin:/bin", "RECORD": str(record)}
    subprocess.run([shim, *args], env=env, check=True, cwd=cwd)
    return record.read_text().splitlines()


def spec(caps: list[str]) -> dict[str, object]:
    sets = {name: list(caps) for name in ("bounding", "effective", "permitted", "inheritable")}
    return {"ociVersion": "1.0.2", "process": {"args": ["sh"], "capabilities": sets},
            "hostname": "node"}


def test_create_drops_the_capability_and_keeps_the_rest(shim, fake_runc, tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(spec(CAPS)))
    args = ["--root", "/run/runc", "--log", "/tmp/l", "--systemd-cgroup",
            "create", "--bundle", str(bundle), "--pid-file", "/tmp/p", "ctr1"]
    assert run_shim(shim, fake_runc, tmp_path, *args) == args
    written = json.loads((bundle / "config.json").read_text())
    for name, caps in written["process"]["capabilities"].items():
        assert "CAP_SYS_RESOURCE" not in caps, name
        assert "CAP_SYS_ADMIN" in caps
    assert written["hostname"] == "node"


def test_run_without_bundle_uses_the_working_directory(shim, fake_runc, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(spec(CAPS)))
    run_shim(shim, fake_runc, tmp_path, "run", "ctr2", cwd=tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert "CAP_SYS_RESOURCE" not in written["process"]["capabilities"]["bounding"]


def test_exec_process_file_is_edited(shim, fake_runc, tmp_path):
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["ls"], "capabilities": spec(CAPS)["process"][
        "capabilities"]}))  # type: ignore[index]
    run_shim(shim, fake_runc, tmp_path, "--root", "/r", "exec", "--process", str(process), "c")
    written = json.loads(process.read_text())
    assert "CAP_SYS_RESOURCE" not in written["capabilities"]["effective"]
    assert written["args"] == ["ls"]


def test_other_commands_pass_through_untouched(shim, fake_runc, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(spec(CAPS)))
    before = config.read_text()
    assert run_shim(shim, fake_runc, tmp_path, "state", "ctr1", cwd=tmp_path) == ["state", "ctr1"]
    assert config.read_text() == before
