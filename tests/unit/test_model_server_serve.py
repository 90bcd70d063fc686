"""``rollout-harness serve``: trains into the cache once, then serves in the foreground."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from harness import errors, serve
from harness.settings import Settings

pytestmark = pytest.mark.timeout(120)


def test_model_cache_dir_follows_harness_cache_dir() -> None:
    settings = Settings.from_env({"HARNESS_CACHE_DIR": "/tmp/hc"})
    assert serve.model_cache_dir(settings, "1.1.0") == Path("/tmp/hc/models/1.1.0")


def test_ensure_model_trains_once(tmp_path: Path) -> None:
    directory = serve.ensure_model("1.0.0", tmp_path / "m")
    stamp = (directory / "metadata.json").stat().st_mtime_ns
    assert serve.ensure_model("1.0.0", directory) == directory
    assert (directory / "metadata.json").stat().st_mtime_ns == stamp, "not retrained"
    serve.ensure_model("1.1.0", directory)
    assert '"version": "1.1.0"' in (directory / "metadata.json").read_text()
    with pytest.raises(errors.UsageError, match="not semver"):
        serve.ensure_model("latest", tmp_path / "x")


def test_cli_serve_runs_in_the_foreground(tmp_path: Path) -> None:
    cli = Path(sys.executable).with_name("rollout-harness")
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path)}
    process = subprocess.Popen(
        [str(cli), "serve", "--version", "1.0.0", "--port", "0"],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        port = 0
        for line in process.stderr:
            if match := re.search(r"listening on http://127\.0\.0\.1:(\d+)", line):
                port = int(match.group(1))
                break
        assert port, "no listening line"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=2) as r:
                    assert b'"model_version":"1.0.0"' in r.read()
                    break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert (tmp_path / "models" / "1.0.0" / "metadata.json").exists()
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
