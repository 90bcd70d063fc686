"""A model server in a child process on 127.0.0.1, for tests, load tests and benchmarks.

Modelled on Locust's own test helper: wrap ``Popen``, drain the output in a
background thread, wait for the "listening on" line with a timeout (the
server binds port 0 and reports the port it got), and put the last lines
of output into every failure message.
"""

from __future__ import annotations

import collections
import http.client
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

_LISTENING = re.compile(r"listening on http://[^:]+:(\d+)")


class ServerProcess:
    """``python -m model_server serve`` on ``127.0.0.1:0`` with the given ``MODEL_*`` env."""

    def __init__(
        self,
        model_dir: Path,
        env: Mapping[str, str] | None = None,
        python: str = sys.executable,
    ) -> None:
        self.model_dir = model_dir
        # INFO at least: the port is read from the "listening on" log line.
        self.env = {**os.environ, **(env or {}), "MODEL_LOG_LEVEL": "INFO"}
        self.python = python
        self.port = 0
        self.process: subprocess.Popen[str] | None = None
        self._lines: collections.deque[str] = collections.deque(maxlen=200)
        self._port_found = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        """The last lines the server printed."""
        return "".join(self._lines)

    def start(self, timeout: float = 60.0) -> ServerProcess:
        """Start the process and wait until it reports its port."""
        command = [self.python, "-m", "model_server", "serve", "--host", "127.0.0.1", "--port", "0",
                   "--model-dir", str(self.model_dir)]  # fmt: skip
        self.process = subprocess.Popen(
            command, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self._reader = threading.Thread(target=self._drain_output, daemon=True)
        self._reader.start()
        if not self._port_found.wait(timeout) or not self.port:
            self.kill()
            raise RuntimeError(f"server did not report its port within {timeout}s:\n{self.output}")
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll ``/readyz`` until it answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.output}")
            if self.get("/readyz")[0] == 200:
                return
            time.sleep(0.05)
        raise RuntimeError(f"server not ready within {timeout}s:\n{self.output}")

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """One GET on a fresh connection; status 0 if the connection failed."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            return 0, b""
        finally:
            conn.close()

    def send_signal(self, sig: int) -> None:
        """Signal the server process (SIGTERM to start a drain)."""
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit; raise with its output if it does not."""
        assert self.process is not None
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"server did not exit within {timeout}s:\n{self.output}") from None
        if self._reader is not None:
            self._reader.join(5.0)
        return code

    def kill(self) -> None:
        """Kill the process if it still runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10.0)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGINT (no drain period), then kill after ``timeout``; return the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self.start() if self.process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _drain_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.append(line)
            if not self._port_found.is_set() and (match := _LISTENING.search(line)):
                self.port = int(match.group(1))
                self._port_found.set()
        self._port_found.set()  # exited without a port: let start() fail now
