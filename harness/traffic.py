"""Inference traffic during the rollout: Locust in its own process, every request recorded.

Locust patches the standard library with gevent; the harness talks gRPC to
the Pulumi engine and HTTP to the Kubernetes API from threads. So Locust runs
as a separate process on load/locustfile.py (the same file a person runs by
hand), bounded in time and requests, and is stopped through its stop file so
requests under way are finished and written down rather than cut off.

With `processes` > 1 Locust forks that many workers beside a master
(Locust's --processes). Each worker records its own users' requests into its
own file (requests.worker-N.jsonl) and the master writes Locust's totals,
summed over the workers; when the run has ended, the parts are merged into
the one requests.jsonl the verdict reads, and held against those totals like
a single process's record.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from harness import errors, procs, protocols, resources
from harness.evidence import (
    EvidenceError,
    Request,
    Tally,
    merge_parts,
    part_record,
    part_records,
    read_requests,
    read_tally,
    worker_tally,
)
from harness.settings import TrafficSettings

log = logging.getLogger(__name__)

LOCUSTFILE = resources.LOCUSTFILE

WORKERS_GRACE = 10.0
"""Seconds Locust's workers get to end after their master did."""


class TrafficError(errors.HarnessError):
    """Locust could not run, or its record cannot be trusted; the message names its log."""


class Traffic:
    """A bounded Locust run against `url`, writing requests.jsonl into `folder`.

    `planned_seconds` is how long the run may need; Locust's own time and request
    bounds follow from it (and from the settings' hard bounds), so a run is never
    cut short by a bound that ignores its plan.
    """

    def __init__(self, url: str, folder: Path, settings: TrafficSettings,
                 model_name: str = "ml-model", planned_seconds: float = 600.0) -> None:
        self.url = url
        self.settings = settings
        self.model_name = model_name
        self.seconds = max(1, min(settings.max_seconds, math.ceil(planned_seconds)))
        self.max_requests = (min(settings.max_requests, math.ceil(settings.rate * self.seconds
                                                                  * 2))
                             if settings.rate > 0 else settings.max_requests)
        self.workers = settings.workers
        """Locust processes that run clients (1: Locust alone, no master)."""
        self.requests_per_worker = math.ceil(self.max_requests / self.workers)
        """Each worker's share of the request bound, rounded up: they cannot share one count,
        so together they stop within `workers` - 1 requests of it."""
        folder = folder.resolve()  # Locust runs in the folder: relative paths would nest
        self.record_file = folder / "requests.jsonl"
        self.summary_file = folder / "load-summary.json"
        self.stop_file = folder / "locust.stop"
        self.log_path = folder / "locust.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._read = _Counts()
        folder.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Traffic:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop(judged=error is None)  # an error already under way is the one to see

    def start(self) -> None:
        for stale in (self.record_file, self.summary_file, self.stop_file,
                      *part_records(self.record_file).values()):
            stale.unlink(missing_ok=True)
        s = self.settings
        command = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", self.url,
            "--headless", "--only-summary", "--loglevel", "WARNING",
            "-u", str(s.clients), "-r", str(s.clients), "-t", f"{self.seconds}s",
            "--stop-timeout", f"{s.stop_timeout:g}",
            # failed requests are the gate's evidence, not Locust's error: a non-zero
            # exit then means Locust itself went wrong
            "--exit-code-on-error", "0",
        ]
        if self.workers > 1:
            # The master listens for its workers on 127.0.0.1 only, on a port of its own:
            # Locust's default (5557 on every interface) would let a second run's workers
            # join the first run's master.
            port = str(procs.free_port())
            command += ["--processes", str(self.workers), "--master-bind-host", "127.0.0.1",
                        "--master-bind-port", port, "--master-port", port]
        env = procs.environment({
            "LOAD_RECORD_FILE": str(self.record_file),
            "LOAD_SUMMARY_FILE": str(self.summary_file),
            "LOAD_STOP_FILE": str(self.stop_file),
            "LOAD_PARENT_PID": str(os.getpid()),  # Locust ends if we are killed
            "LOAD_USERS": str(s.users),
            "LOAD_CHURN_USERS": str(s.churn_users),
            "LOAD_RPS_PER_USER": str(s.rate_per_user),
            "LOAD_MAX_REQUESTS": str(self.requests_per_worker),  # a bound per process
            "LOAD_TIMEOUT_SECONDS": str(s.timeout_seconds),
            "LOAD_MODEL_NAME": self.model_name,
            "LOAD_PROTOCOL": s.protocol,
            "LOAD_ANSWER_VERSION": s.answer_version,
            **({"LOAD_DATA_FILE": str(s.requests.resolve())} if s.requests else {}),
        })
        self._read.at = time.monotonic()
        log.debug("starting locust: %s", command)
        with self.log_path.open("ab") as out:
            # Workers are forked into Locust's process group: its own group, so that the
            # harness can wait for every one of them (and kill them all if need be).
            self._process = subprocess.Popen(command, env=env, stdout=out,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             cwd=self.record_file.parent,
                                             process_group=0 if self.workers > 1 else None)

    def require_running(self) -> None:
        """Raise if Locust already ended (a bad locustfile, an import error, a bound met)."""
        if self._process is not None and self._process.poll() is not None:
            raise TrafficError(
                f"the load generator ended before the run did (code {self._process.returncode}"
                f", bounds {self.seconds}s / {self.max_requests} requests); see {self.log_path}"
                f"\n{procs.tail(self.log_path, 5)}")

    def stop(self, judged: bool = True) -> None:
        """End the run through the stop file; kill it only if it does not end in time.

        Locust's exit code is checked (when the record is going to be `judged`): with
        --exit-code-on-error 0, anything but 0 means the load generator itself failed,
        and its record is not evidence.
        """
        process, self._process = self._process, None
        if process is None:
            return
        self.stop_file.touch()
        deadline = self.settings.stop_timeout + 20
        try:
            process.wait(timeout=deadline)
        except subprocess.TimeoutExpired as e:
            self._kill(process)
            self._merge(judged=False)  # what there is, for a person to read
            raise TrafficError(f"the load generator did not stop within {deadline:g}s and was "
                               f"killed; its records may be incomplete; see {self.log_path}") from e
        finally:
            self.stop_file.unlink(missing_ok=True)
        self._await_workers(process.pid)
        self._merge(judged)
        log.debug("locust exited with %s", process.returncode)
        if process.returncode != 0 and judged:
            raise TrafficError(f"the load generator failed (exit {process.returncode}); its "
                               f"record {self.record_file} is not judged; see {self.log_path}"
                               f"\n{procs.tail(self.log_path, 5)}")

    def _await_workers(self, group: int) -> None:
        """After the master: its workers, which write their records' last lines as they
        quit (a master exits without waiting for them)."""
        if self.workers == 1:
            return
        deadline = time.monotonic() + WORKERS_GRACE
        while (left := procs.group(group)) and time.monotonic() < deadline:
            time.sleep(0.05)
        if left:
            procs.stop(left, signal.SIGKILL, 5)
            log.warning("Locust workers %s did not end with their master and were killed; "
                        "their records may be short", left)

    def _kill(self, process: subprocess.Popen[bytes]) -> None:
        if self.workers > 1:
            procs.stop(sorted({process.pid, *procs.group(process.pid)}), signal.SIGKILL, 5)
        else:
            process.kill()
        process.wait()

    def _merge(self, judged: bool) -> None:
        """The workers' records into requests.jsonl, each held against what the worker
        said it wrote (the master's summary): a short or missing one is named here; the
        verdict finds the whole short of Locust's totals and is INCONCLUSIVE."""
        if self.workers == 1:
            return
        try:
            taken = merge_parts(self.record_file)
            said = worker_tally(self.summary_file)
        except (EvidenceError, OSError) as e:
            if not judged:  # an error already under way is the one to see
                log.warning("the workers' records were not merged: %s", e)
                return
            raise TrafficError(f"the workers' records cannot be merged: {e}") from e
        for worker in sorted(taken.keys() | said.keys()):
            if taken.get(worker) != said.get(worker):
                log.warning("worker %d: %s held %s lines, the worker said it wrote %s", worker,
                            part_record(self.record_file, worker).name,
                            taken.get(worker, "no"), said.get(worker, "nothing"))
        log.debug("merged %s lines from workers %s", sum(taken.values()), sorted(taken))

    def progress_line(self) -> str:
        """What the load has met so far, for the person watching: read from the record
        (or the workers' records) as it grows, so it costs a read of the new lines only."""
        before, at = self._read.requests, time.monotonic()
        if self.workers > 1:  # not the merged record: its lines were counted in the parts
            self._read.update(*part_records(self.record_file).values())
        else:
            self._read.update(self.record_file)
        rate = (self._read.requests - before) / max(1e-3, at - self._read.at)
        self._read.at = at
        return (f"traffic: {self._read.requests:,} requests recorded, {self._read.failed:,} "
                f"failed, {rate:,.0f} req/s")

    def requests(self) -> list[Request]:
        """Everything Locust recorded, in start order."""
        return read_requests(self.record_file)

    def tally(self) -> Tally | None:
        """Locust's own totals, written when it ended."""
        return read_tally(self.summary_file)


class _Counts:
    """Whole lines of growing requests.jsonl files counted so far, and where reading each
    stopped."""

    def __init__(self) -> None:
        self.offsets: dict[Path, int] = {}
        self.requests = 0
        self.failed = 0
        self.at = 0.0

    def update(self, *paths: Path) -> None:
        for path in paths:
            offset = self.offsets.get(path, 0)
            try:
                with path.open("rb") as record:
                    record.seek(offset)
                    chunk = record.read()
            except FileNotFoundError:
                continue
            whole = chunk[:chunk.rfind(b"\n") + 1]
            self.offsets[path] = offset + len(whole)
            self.requests += whole.count(b"\n")
            self.failed += whole.count(b'"ok":false')


def check_requests(path: Path) -> int:
    """The rows of a --requests file, checked as the load will read them: one JSON object
    per line with an "instance" (a list of numbers) and optionally a "label". Returns how
    many; a file the load could not use is one line naming the line that is wrong."""
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise errors.UsageError(f"--requests {path}: cannot read it ({e.strerror})") from None
    count = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            raise errors.UsageError(f"--requests {path}:{number}: not JSON ({e})") from None
        instance = record.get("instance") if isinstance(record, dict) else None
        if not (isinstance(instance, list) and instance and all(
                isinstance(x, int | float) and not isinstance(x, bool) for x in instance)):
            raise errors.UsageError(f"--requests {path}:{number}: needs \"instance\": a list "
                                    f"of numbers (the model's features), not {line[:80]!r}")
        count += 1
    if not count:
        raise errors.UsageError(f"--requests {path}: no rows in it")
    return count


def wait_answering(url: str, model_name: str, timeout: float,
                   protocol: str = protocols.DEFAULT) -> None:
    """Block until the model's ready endpoint (the protocol's) answers 200 at `url`."""
    ready = f"{url}{protocols.by_name(protocol).ready_path(model_name)}"
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(ready, timeout=2) as answer:
                if answer.status == 200:
                    return
                last = f"HTTP {answer.status}"
        except (urllib.error.URLError, OSError) as e:
            last = str(e)
        time.sleep(0.5)
    raise TrafficError(f"the model at {url} did not answer within {timeout:.0f}s ({last})")

