"""The evidence of a run: what traffic and watch wrote down, and what the verdict reads.

Producers (the Locust recorder, the watch) and consumers (the verdict, the
report) each depend on this module and not on one another, so the pure
verdict never imports the Kubernetes client and the request line has one
schema, one writer and one reader. Nothing here does I/O but the JSONL
readers and writers (and the merge of several Locust processes' records into
one), and the module imports nothing heavy: the Locust process imports it too.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from harness import errors

log = logging.getLogger(__name__)
T = TypeVar("T")

VERSION_LABEL = "rollout-harness/model-version"
"""Set by the chart (_helpers.tpl) on the Deployment, its ReplicaSets and pods."""

NEW_CONNECTION = "predict-new-connection"
"""The request name of the clients that open a new connection for every request."""

ACTIONS = ("ADDED", "MODIFIED", "DELETED")
"""Watch actions in life-cycle order (ties in time are broken by it)."""


class EvidenceError(errors.HarnessError):
    """A record file cannot be read: the run is not judged."""


# -- requests (requests.jsonl) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """One request: a line of requests.jsonl as the recorder writes it (in the order
    requests finished) and as the verdict and the report read it::

        {"t": 1764400000.123, "latency_ms": 2.41, "status": 200, "error": null,
         "version": "1.1.0", "ok": true, "name": "predict", "pod": "ml-model-7d9f-x2x",
         "lag_ms": 0.0, "behind_ms": 0.0}
    """

    t: float
    """Start, epoch seconds."""
    latency_ms: float
    status: int
    """0 when no response arrived; `error` then says why."""
    error: str | None
    version: str | None
    """The X-Model-Version of the pod that answered."""
    ok: bool
    name: str = "predict"
    """Locust's name for the request: which kind of client sent it (see load/locustfile.py)."""
    pod: str | None = None
    """The X-Pod-Name of the pod that answered; None when no answer came."""
    lag_ms: float = 0.0
    """How long after `t` the request actually went out (part of `latency_ms`): the time
    its client spent still waiting for its previous answer. It tells a slow pod from a
    request that only queued behind one."""
    behind_ms: float = 0.0
    """How late the load generator itself sent it: past both its intended time and its
    client's previous answer, so no wait on the server explains it — the generator's
    process was waiting for CPU. Answers read in such moments are timed late by the
    instrument, not the release (the latency rule leaves them out)."""

    @property
    def answer_ms(self) -> float:
        """From the moment the request went out to its answer: the release's latency, without
        the client's own wait (which the failed-request rule judges, as "queued")."""
        return self.latency_ms - self.lag_ms

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Request:
        return cls(float(record["t"]), float(record["latency_ms"]), int(record["status"]),
                   record.get("error"), record.get("version"), bool(record["ok"]),
                   str(record.get("name", "predict")), record.get("pod"),
                   float(record.get("lag_ms", 0.0)), float(record.get("behind_ms", 0.0)))


def encode_request(request: Request) -> bytes:
    """The one writer of a requests.jsonl line (orjson writes dataclasses as they are)."""
    return orjson.dumps(request) + b"\n"


def read_requests(path: Path) -> list[Request]:
    """Every request of a requests.jsonl, in start order; no file means no requests."""
    if not path.exists():
        return []
    found = _read_jsonl(path, lambda raw: Request.from_record(orjson.loads(raw)))
    return sorted(found, key=request_order)


def request_order(request: Request) -> tuple[Any, ...]:
    """Start order, with every field after `t` breaking ties: a total order, so that what
    is read off a record (and the verdict) does not depend on the order of its lines —
    one Locust process writes them as requests finish, several as each one's finished."""
    r = request
    return (r.t, r.latency_ms, r.status, r.error or "", r.version or "", r.ok, r.name,
            r.pod or "", r.lag_ms, r.behind_ms)


# -- one record from several Locust processes -------------------------------------------


def part_record(record: Path, worker: int) -> Path:
    """Where the Locust worker with index `worker` writes its share of `record`:
    requests.jsonl → requests.worker-0.jsonl. One file per worker, so no two processes
    ever write to one file."""
    return record.with_name(f"{record.stem}.worker-{worker}{record.suffix}")


def part_records(record: Path) -> dict[int, Path]:
    """The worker parts of `record` on disk, by worker index."""
    pattern = re.compile(rf"{re.escape(record.stem)}\.worker-(\d+){re.escape(record.suffix)}")
    found = {}
    for path in record.parent.glob(f"{record.stem}.worker-*{record.suffix}"):
        if match := pattern.fullmatch(path.name):
            found[int(match[1])] = path
    return dict(sorted(found.items()))


def merge_parts(record: Path) -> dict[int, int]:
    """Concatenate the worker parts of `record` into `record`, then remove them; returns
    the lines taken from each part, by worker index ({} when there were none).

    Each part is taken whole, in its own order (the order its requests finished),
    workers by index: no order across processes is better than another, since
    readers sort by `request_order`. A last line without its newline (a worker killed
    mid-write) is left out, as `read_requests` would. The merge is written under
    another name and renamed, so `record` is never half-merged.
    """
    parts = part_records(record)
    if not parts:
        return {}
    if record.exists():
        raise EvidenceError(f"{record} exists beside worker records {parts[min(parts)].name} "
                            "...: merging them would mix two runs")
    taken: dict[int, int] = {}
    partial = record.with_name(f".{record.name}.partial")
    with partial.open("wb") as out:
        for worker, path in parts.items():
            data = path.read_bytes()
            whole = data[:data.rfind(b"\n") + 1]
            if len(whole) < len(data):
                log.warning("%s: dropped its unfinished last line", path)
            out.write(whole)
            taken[worker] = whole.count(b"\n")
    os.replace(partial, record)
    for path in parts.values():
        path.unlink()
    return taken


@dataclass(frozen=True)
class Tally:
    """Locust's own count of the requests it made (load-summary.json), to hold the
    record against: a request Locust made that is not in requests.jsonl is evidence lost."""

    locust_requests: int
    locust_failures: int
    recorded: int
    """Lines the recorder says it wrote; with Locust workers, the sum of what each
    worker's recorder said it wrote, as the master heard it."""


def read_tally(path: Path) -> Tally | None:
    """The load's summary; None when Locust wrote none (it did not end by itself)."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        return Tally(int(data["locust_requests"]), int(data["locust_failures"]),
                     int(data["recorded"]))
    except (ValueError, KeyError, TypeError) as e:
        raise EvidenceError(f"{path}: not a load summary ({e}); the run cannot be "
                            "judged") from e


def worker_tally(path: Path) -> dict[int, int]:
    """The lines each Locust worker said it recorded, by worker index, as its master
    wrote them into the load's summary; {} without workers (or without a summary)."""
    if not path.exists():
        return {}
    try:
        workers = json.loads(path.read_text()).get("workers") or {}
        return {int(worker): int(lines) for worker, lines in workers.items()}
    except (ValueError, AttributeError, TypeError) as e:
        raise EvidenceError(f"{path}: not a load summary ({e}); the run cannot be "
                            "judged") from e


# -- the rollout's timeline (events.jsonl) ---------------------------------------


@dataclass(frozen=True)
class Event:
    """One observation from a watch stream, as written to events.jsonl."""

    t: float
    """Epoch seconds (time.time()) when observed; requests are timed on the same clock."""
    kind: str
    """Pod, ReplicaSet, EndpointSlice or Deployment."""
    name: str
    action: str
    """ADDED, MODIFIED or DELETED (an object's first sight after a list is ADDED)."""
    version: str | None
    """The model-version label of a Pod or ReplicaSet; None for other kinds."""
    ready: bool | None
    """Pod: its Ready condition; Deployment: rolled out (all replicas updated and
    available, no old ones left); None for other kinds."""
    terminating: bool
    """deletionTimestamp set: the object is on its way out."""
    detail: str
    """Short text for a person reading the timeline."""


def encode_event(event: Event) -> str:
    """The one writer of an events.jsonl line."""
    return json.dumps(dataclasses.asdict(event)) + "\n"


def read_events(path: Path) -> list[Event]:
    """The events of a file written by a Watcher, ordered by t."""
    return sorted(_read_jsonl(path, lambda raw: Event(**json.loads(raw))), key=event_order)


def event_order(event: Event) -> tuple[float, int]:
    """By time; at equal times the life cycle's order, so a tie cannot undo a deletion."""
    return event.t, ACTIONS.index(event.action) if event.action in ACTIONS else len(ACTIONS)


@dataclass(frozen=True)
class WatchGap:
    """A time when one kind's watch was down: changes then were seen late, or not at all."""

    kind: str
    started: float
    """The first failure, epoch seconds."""
    ended: float | None
    """When the stream was listed or watched again; None if it never came back."""
    reason: str


@dataclass(frozen=True)
class PodLife:
    """One pod from first sight to disappearance, derived from events."""

    name: str
    version: str | None
    created: float
    """First observation: creation, or the start of the watch for pods already there."""
    ready_at: float | None
    """First time seen Ready; None if it never was."""
    terminating_at: float | None
    """First time seen with a deletionTimestamp."""
    gone_at: float | None
    """Its DELETED event; None if it outlived the watch."""


def pod_lives(events: Sequence[Event]) -> list[PodLife]:
    """Each pod's life, ordered by created.

    Events are taken in order of t whatever their order in `events`. Repeated
    ADDED or MODIFIED events (from a re-list) only confirm what is known; only
    the first time a state is seen counts. After a pod is gone, only an ADDED
    of the same name begins a new life (a pod recreated under its old name);
    anything else about it is a late duplicate and ignored.
    """
    lives: list[PodLife] = []
    current: dict[str, int] = {}
    for event in sorted((e for e in events if e.kind == "Pod"), key=event_order):
        index = current.get(event.name)
        if index is None or (lives[index].gone_at is not None and event.action == "ADDED"):
            current[event.name] = index = len(lives)
            lives.append(PodLife(event.name, event.version, event.t, None, None, None))
        life = lives[index]
        if life.gone_at is not None:
            continue
        lives[index] = dataclasses.replace(
            life,
            version=_first(life.version, event.version),
            ready_at=_first(life.ready_at, event.t if event.ready else None),
            terminating_at=_first(life.terminating_at, event.t if event.terminating else None),
            gone_at=event.t if event.action == "DELETED" else None,
        )
    return sorted(lives, key=lambda life: (life.created, life.name))


def _first(known: T | None, seen: T | None) -> T | None:
    return known if known is not None else seen


# -- what the harness did, and how it ended ------------------------------------------


@dataclass(frozen=True)
class Marks:
    """When the harness started and finished the upgrade (epoch seconds)."""

    started: float
    finished: float | None
    """When `pulumi up` of the new version returned; None if it failed."""
    ended: float
    """When traffic was stopped."""
    rollout_error: str | None = None
    rolled_back: bool = False


@dataclass(frozen=True)
class FinalState:
    """The namespace after the run: what serves now."""

    desired_replicas: int
    ready_by_version: dict[str, int]


# -- the host's spare CPU (host-cpu.jsonl) --------------------------------------------


@dataclass(frozen=True, slots=True)
class CpuSample:
    """The host's CPU over one short interval, as harness/hostcpu.py writes it::

        {"t": 1764400000.5, "seconds": 0.5, "idle": 0.031}

    On a kind cluster the node, the load generator and the deployer share the host's
    cores: an interval with no idle CPU is one in which every answer may have waited
    for a core, whatever the release did."""

    t: float
    """End of the interval, epoch seconds (the requests' clock)."""
    seconds: float
    """Length of the interval."""
    idle: float
    """Share of all the host's cores left idle over the interval, 0-1."""

    @property
    def started(self) -> float:
        return self.t - self.seconds


def encode_cpu_sample(sample: CpuSample) -> bytes:
    """The one writer of a host-cpu.jsonl line."""
    return orjson.dumps(sample) + b"\n"


def read_cpu_samples(path: Path) -> list[CpuSample]:
    """The samples of a host-cpu.jsonl, in time order; no file means none were taken."""
    if not path.exists():
        return []
    found = _read_jsonl(path, lambda raw: CpuSample(**orjson.loads(raw)))
    return sorted(found, key=lambda s: s.t)


@dataclass(frozen=True)
class RunEvidence:
    """All one run wrote down, as the verdict reads it. Kept with the run's result, so
    the same real run can be judged again — by a test asking whether a rule would have
    caught evidence lost on the way, or by a person trying another threshold."""

    requests: tuple[Request, ...]
    lives: tuple[PodLife, ...]
    marks: Marks
    final: FinalState
    gaps: tuple[WatchGap, ...]
    tally: Tally | None
    host: tuple[CpuSample, ...] = ()
    """The host's CPU while the load ran (none when it could not be read)."""


# -- reading JSONL ---------------------------------------------------------------------


def _read_jsonl(path: Path, make: Callable[[bytes], T]) -> list[T]:
    """Each line through `make`. A run killed mid-write leaves a last line without its
    newline: that one is dropped; any other line that does not parse is an error."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    found: list[T] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            found.append(make(line))
        except (ValueError, TypeError, KeyError) as e:
            if number == len(lines):
                log.warning("%s: dropped its unfinished last line", path)
                continue
            raise EvidenceError(f"{path}:{number}: not a record of this run ({e}); the run "
                                "cannot be judged from a damaged file") from e
    return found
