"""The OCI runtime shim, built from toolchain/runtime-shim and run for real.

The shim is built with the path of a fake runc that records what it was
called with, so each test shows what the real runc would have received. A
decoy `runc` first on PATH fails loudly: the shim must never run it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from harness.resources import RECIPES
from harness.toolchain import docker, gobuild
from harness.toolchain.cache import Cache

CAPS = ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_SYS_RESOURCE", "CAP_NET_ADMIN"]
UINT64_MAX = 18446744073709551615
"""runc's "unlimited"; a float64 round trip makes it 18446744073709551616."""
ABOVE_FLOAT53 = 9007199254740993
"""2**53 + 1: the first integer a float64 cannot hold."""


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shim")
    real = root / "real" / "runc"
    real.parent.mkdir()
    real.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$RECORD"\n')
    real.chmod(0o755)
    return docker.build_shim(Cache(root / "cache"), real)


@pytest.fixture
def decoy(tmp_path: Path) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    runc = bindir / "runc"
    runc.write_text('#!/bin/sh\necho decoy > "$RECORD"\nexit 3\n')
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


def test_create_drops_the_capability_and_keeps_the_rest(shim, decoy, tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(spec(CAPS)))
    args = ["--root", "/run/runc", "--log", "/tmp/l", "--systemd-cgroup",
            "create", "--bundle", str(bundle), "--pid-file", "/tmp/p", "ctr1"]
    assert run_shim(shim, decoy, tmp_path, *args) == args
    written = json.loads((bundle / "config.json").read_text())
    for name, caps in written["process"]["capabilities"].items():
        assert "CAP_SYS_RESOURCE" not in caps, name
        assert "CAP_SYS_ADMIN" in caps
    assert written["hostname"] == "node"


def test_large_integers_stay_exact(shim, decoy, tmp_path):
    document = {**spec(CAPS), "linux": {"resources": {
        "memory": {"limit": UINT64_MAX, "swap": ABOVE_FLOAT53},
        "cpu": {"quota": -1, "period": 100000},
    }}}
    (tmp_path / "config.json").write_text(json.dumps(document))
    run_shim(shim, decoy, tmp_path, "create", "ctr3", cwd=tmp_path)
    text = (tmp_path / "config.json").read_text()
    assert str(UINT64_MAX) in text and str(ABOVE_FLOAT53) in text
    written = json.loads(text)
    assert written["linux"] == document["linux"]
    assert "CAP_SYS_RESOURCE" not in written["process"]["capabilities"]["bounding"]


def test_runc_first_on_path_is_not_run(shim, decoy, tmp_path):
    assert run_shim(shim, decoy, tmp_path, "--version") == ["--version"]


def test_run_without_bundle_uses_the_working_directory(shim, decoy, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(spec(CAPS)))
    run_shim(shim, decoy, tmp_path, "run", "ctr2", cwd=tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert "CAP_SYS_RESOURCE" not in written["process"]["capabilities"]["bounding"]


def test_exec_process_file_is_edited(shim, decoy, tmp_path):
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["ls"], "capabilities": spec(CAPS)["process"][
        "capabilities"]}))  # type: ignore[index]
    run_shim(shim, decoy, tmp_path, "--root", "/r", "exec", "--process", str(process), "c")
    written = json.loads(process.read_text())
    assert "CAP_SYS_RESOURCE" not in written["capabilities"]["effective"]
    assert written["args"] == ["ls"]


def test_other_commands_pass_through_untouched(shim, decoy, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(spec(CAPS)))
    before = config.read_text()
    assert run_shim(shim, decoy, tmp_path, "state", "ctr1", cwd=tmp_path) == ["state", "ctr1"]
    assert config.read_text() == before


def test_relative_runc_is_refused(tmp_path):
    with pytest.raises(ValueError, match="absolute"):
        docker.build_shim(Cache(tmp_path), Path("runc"))


def test_go_unit_tests_pass():
    """main_test.go: number literals, the fixed runc locations, PATH never searched."""
    done = subprocess.run(
        [gobuild.go_binary(), "test", "-count=1", "."], cwd=RECIPES / "runtime-shim",
        capture_output=True, text=True, check=False, timeout=240,
        env={**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0",
             "GOFLAGS": "-mod=readonly -buildvcs=false"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
