"""Inference traffic during the rollout: Locust in its own process, every request recorded.

Locust patches the standard library with gevent; the harness talks gRPC to
the Pulumi engine and HTTP to the Kubernetes API from threads. So Locust runs
as a separate process on load/locustfile.py (the same file a person runs by
hand), bounded in time and requests, and is stopped through its stop file so
requests under way are finished and written down rather than cut off.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from harness import errors, procs, resources
from harness.evidence import Request, read_requests
from harness.settings import TrafficSettings

log = logging.getLogger(__name__)

LOCUSTFILE = resources.LOCUSTFILE


class TrafficError(errors.HarnessError):
    """Locust could not run; the message names its log."""


class Traffic:
    """A bounded Locust run against `url`, writing requests.jsonl into `folder`."""

    def __init__(self, url: str, folder: Path, settings: TrafficSettings,
                 model_name: str = "ml-model") -> None:
        self.url = url
        self.settings = settings
        self.model_name = model_name
        folder = folder.resolve()  # Locust runs in the folder: relative paths would nest
        self.record_file = folder / "requests.jsonl"
        self.stop_file = folder / "locust.stop"
        self.log_path = folder / "locust.log"
        self._process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Traffic:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        for stale in (self.record_file, self.stop_file):
            stale.unlink(missing_ok=True)
        s = self.settings
        command = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", self.url,
            "--headless", "--only-summary", "--loglevel", "WARNING",
            "-u", str(s.users), "-r", str(s.users), "-t", f"{s.max_seconds}s",
            "--stop-timeout", str(s.stop_timeout),
        ]
        env = procs.environment({
            "LOAD_RECORD_FILE": str(self.record_file),
            "LOAD_STOP_FILE": str(self.stop_file),
            "LOAD_RPS_PER_USER": str(s.rate_per_user),
            "LOAD_MAX_REQUESTS": str(s.max_requests),
            "LOAD_TIMEOUT_SECONDS": str(s.timeout_seconds),
            "LOAD_MODEL_NAME": self.model_name,
        })
        log.debug("starting locust: %s", command)
        with self.log_path.open("ab") as out:
            self._process = subprocess.Popen(command, env=env, stdout=out,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             cwd=self.record_file.parent)

    def require_running(self) -> None:
        """Raise if Locust already ended (a bad locustfile, an import error)."""
        if self._process is not None and self._process.poll() is not None:
            raise TrafficError(f"the load generator exited early (code {self._process.returncode})"
                               f"; see {self.log_path}\n{procs.tail(self.log_path, 5)}")

    def stop(self) -> None:
        """End the run through the stop file; kill it only if it does not end in time."""
        process, self._process = self._process, None
        if process is None:
            return
        self.stop_file.touch()
        deadline = self.settings.stop_timeout + 20
        try:
            process.wait(timeout=deadline)
        except subprocess.TimeoutExpired as e:
            process.kill()
            process.wait()
            raise TrafficError(f"the load generator did not stop within {deadline}s and was "
                               f"killed; its records may be incomplete; see {self.log_path}") from e
        finally:
            self.stop_file.unlink(missing_ok=True)
        log.debug("locust exited with %s", process.returncode)

    def requests(self) -> list[Request]:
        """Everything Locust recorded, in start order."""
        return read_requests(self.record_file)


def wait_answering(url: str, model_name: str, timeout: float) -> None:
    """Block until the model's ready endpoint answers 200 through the mapped port."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/v1/models/{model_name}", timeout=2) as answer:
                if answer.status == 200:
                    return
                last = f"HTTP {answer.status}"
        except (urllib.error.URLError, OSError) as e:
            last = str(e)
        time.sleep(0.5)
    raise TrafficError(f"the model at {url} did not answer within {timeout:.0f}s ({last})")

