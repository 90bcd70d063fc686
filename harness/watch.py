"""The rollout timeline, from Kubernetes watches on the model's namespace.

The verdict judges requests against what the cluster did at that moment: which
pods existed, which were ready, which were terminating, what the endpoints
held. Polling would blur that; watches give every change as it happens. Each
kind is listed first (the state at the start, and the resourceVersion to watch
from) and then watched; a watch that ends or expires (410 Gone) is resumed or
re-listed, so a long rollout never loses its thread.

The watches run in daemon threads of the harness's own process (Locust, and
its gevent patching, live in another process). Every observation is a frozen
`Event`, written at once to a JSONL file so that a killed run still leaves
its timeline behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from kubernetes import client as kclient
from kubernetes import watch as kwatch
from kubernetes.client.exceptions import ApiException

from harness import errors
from harness.evidence import (
    ACTIONS,
    VERSION_LABEL,
    Event,
    FinalState,
    WatchGap,
    encode_event,
    event_order,
)

log = logging.getLogger(__name__)

KINDS = ("Pod", "ReplicaSet", "EndpointSlice", "Deployment")

WATCH_SECONDS = 5
"""Server-side length of one watch request, in seconds: a stop that comes before the
socket exists (so cannot be shut) still takes effect within this time."""
CONNECT_SECONDS = 5.0
"""Client-side connect timeout of every request, in seconds."""
LIST_READ_SECONDS = 10.0
"""Client-side read timeout of a list, in seconds: bounds a stop during a list."""
START_SECONDS = 30.0
"""How long `Watcher.__enter__` waits for every kind's initial list, in seconds."""
STOP_SECONDS = WATCH_SECONDS + 2.0
"""How long `Watcher.__exit__` waits for the threads to end, in seconds, all together: a
stop that finds no socket to shut waits out the watch request."""
BACKOFF_SECONDS = (0.5, 5.0)
"""First and longest wait after a failed list or watch, in seconds (doubling)."""


# -- objects to events --------------------------------------------------------


def event_from(kind: str, action: str, obj: Any, t: float) -> Event:
    """The Event for one object of a watch or list (a kubernetes client model)."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: expected one of {', '.join(KINDS)}")
    if action not in ACTIONS:
        raise ValueError(f"action {action!r}: expected one of {', '.join(ACTIONS)}")
    meta = obj.metadata
    terminating = meta.deletion_timestamp is not None
    version: str | None = None
    ready: bool | None = None
    if kind == "Pod":
        version = (meta.labels or {}).get(VERSION_LABEL)
        ready, detail = _pod(obj)
    elif kind == "ReplicaSet":
        version = (meta.labels or {}).get(VERSION_LABEL)
        detail = _replica_set(obj)
    elif kind == "EndpointSlice":
        detail = _endpoint_slice(obj)
    else:
        ready, detail = _deployment(obj)
    if terminating:
        detail += ", terminating"
    return Event(t, kind, meta.name, action, version, ready, terminating, detail)


def pod_ready(pod: Any) -> bool:
    """The pod's Ready condition is True."""
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _pod(pod: Any) -> tuple[bool, str]:
    status = pod.status
    ready = pod_ready(pod)
    phase = (status.phase if status else None) or "unknown"
    detail = f"phase {phase}, {'ready' if ready else 'not ready'}"
    restarts = sum(c.restart_count or 0 for c in (status.container_statuses if status else None)
                   or [])
    if restarts:
        detail += f", restarts {restarts}"
    return ready, detail


def _replica_set(rs: Any) -> str:
    desired = rs.spec.replicas if rs.spec and rs.spec.replicas is not None else 1
    status = rs.status
    current = (status.replicas if status else None) or 0
    ready = (status.ready_replicas if status else None) or 0
    available = (status.available_replicas if status else None) or 0
    return f"replicas {current}/{desired}, ready {ready}, available {available}"


def _endpoint_slice(slice_: Any) -> str:
    endpoints = slice_.endpoints or []
    ready = serving = terminating = 0
    for endpoint in endpoints:
        conditions = endpoint.conditions
        # the API's defaults: nil ready and serving mean true, nil terminating false
        ready += conditions is None or conditions.ready is not False
        serving += conditions is None or conditions.serving is not False
        terminating += conditions is not None and conditions.terminating is True
    return (f"endpoints {len(endpoints)}: ready {ready}, serving {serving}, "
            f"terminating {terminating}")


def _deployment(deployment: Any) -> tuple[bool, str]:
    spec, status = deployment.spec, deployment.status
    desired = spec.replicas if spec and spec.replicas is not None else 1
    generation = deployment.metadata.generation or 0
    observed = (status.observed_generation if status else None) or 0
    total = (status.replicas if status else None) or 0
    updated = (status.updated_replicas if status else None) or 0
    available = (status.available_replicas if status else None) or 0
    ready_replicas = (status.ready_replicas if status else None) or 0
    rolled_out = observed >= generation and updated == desired == available and total == desired
    detail = (f"ready {ready_replicas}/{desired} updated {updated} available {available} "
              f"total {total}")
    if observed < generation:
        detail += ", new spec not yet observed"
    return rolled_out, detail


# -- watching -----------------------------------------------------------------


Sink = Callable[[Callable[[float], Event]], Event]
"""Records the event made for the time of recording; returns it."""


class _Stream:
    """One kind's list-then-watch loop. Only its own thread touches it, but for
    `stop` (from the Watcher) and the counters (read by anyone)."""

    def __init__(self, kind: str, list_fn: Callable[..., Any], namespace: str, sink: Sink,
                 stopping: threading.Event) -> None:
        self.kind = kind
        self.list_fn = list_fn
        self.namespace = namespace
        self.sink = sink
        self.stopping = stopping
        self.listed = threading.Event()
        """Set once the first list has been recorded."""
        self.errors = 0
        self.last_error: str | None = None
        self.gaps: list[WatchGap] = []
        """Times this stream was down, the last one open (ended None) until it recovers."""
        self.resource_version: str | None = None
        self.seen: dict[str, tuple[str | None, Event]] = {}
        """Name → (resourceVersion, last event) of the objects that exist, so that a
        re-list records only what changed while no watch was running."""
        self.watch: Any = kwatch.Watch()  # type: ignore[no-untyped-call]
        """One Watch for all reconnections: `stop` must reach the current one."""

    def stop(self) -> None:
        """Shut the watch's socket under the blocked read (the watch ends at once)."""
        self.watch.stop()

    def run(self) -> None:
        backoff = BACKOFF_SECONDS[0]
        while not self.stopping.is_set():
            try:
                if self.resource_version is None:
                    self._list()
                    self.listed.set()
                    self._recovered()
                self._watch()
                self._recovered()
                backoff = BACKOFF_SECONDS[0]
            except ApiException as e:
                if self.stopping.is_set():
                    break
                if e.status == 410:
                    log.info("watch of %ss in %s: resourceVersion %s expired (410 Gone); "
                             "listing again", self.kind, self.namespace, self.resource_version)
                    self.resource_version = None
                    continue
                self._failed(f"API error {e.status} {e.reason}", backoff, trace=False)
                backoff = min(backoff * 2, BACKOFF_SECONDS[1])
            except Exception as e:  # urllib3 errors derive from Exception only
                if self.stopping.is_set():  # stopping shuts the socket under the read
                    break
                network = type(e).__module__.startswith(("urllib3", "http", "ssl", "socket"))
                self._failed(f"{type(e).__name__}: {e}", backoff,
                             trace=not (network or isinstance(e, OSError)))
                backoff = min(backoff * 2, BACKOFF_SECONDS[1])

    def _failed(self, what: str, backoff: float, trace: bool) -> None:
        self.errors += 1
        self.last_error = what
        if not self.gaps or self.gaps[-1].ended is not None:
            self.gaps.append(WatchGap(self.kind, time.time(), None, what))
        # a bug (not a network failure) gets its traceback
        log.warning("watch of %ss in %s failed (%s); retrying in %.1fs", self.kind,
                    self.namespace, what, backoff, exc_info=trace)
        self.stopping.wait(backoff)

    def _list(self) -> None:
        listing = self.list_fn(self.namespace, _request_timeout=(CONNECT_SECONDS,
                                                                 LIST_READ_SECONDS))
        present: set[str] = set()
        for obj in listing.items:
            name = obj.metadata.name
            present.add(name)
            known = self.seen.get(name)
            if known is not None and known[0] == obj.metadata.resource_version:
                continue
            self._observe("MODIFIED" if known else "ADDED", obj)
        for name in sorted(set(self.seen) - present):
            _, last = self.seen.pop(name)
            self.sink(_gone_unwatched(last))
        self.resource_version = listing.metadata.resource_version

    def _watch(self) -> None:
        if self.stopping.is_set():
            return
        stream: Generator[dict[str, Any], None, None] = self.watch.stream(
            self.list_fn, self.namespace, resource_version=self.resource_version,
            timeout_seconds=WATCH_SECONDS, allow_watch_bookmarks=True,
            _request_timeout=(CONNECT_SECONDS, WATCH_SECONDS + LIST_READ_SECONDS))
        with contextlib.closing(stream):  # leaving early closes the response now, not at gc
            for raw in stream:
                if raw["type"] in ACTIONS:
                    self._observe(raw["type"], raw["object"])
                # BOOKMARKs only move the resourceVersion, which the Watch keeps
                if self.stopping.is_set():
                    break
        self.resource_version = self.watch.resource_version or self.resource_version

    def _recovered(self) -> None:
        """A list or watch went through: close the open gap, if any."""
        if self.gaps and self.gaps[-1].ended is None:
            self.gaps[-1] = dataclasses.replace(self.gaps[-1], ended=time.time())

    def _observe(self, action: str, obj: Any) -> None:
        self._recovered()
        event = self.sink(lambda t: event_from(self.kind, action, obj, t))
        if action == "DELETED":
            self.seen.pop(event.name, None)
        else:
            self.seen[event.name] = (obj.metadata.resource_version, event)


def _gone_unwatched(last: Event) -> Callable[[float], Event]:
    def make(t: float) -> Event:
        return dataclasses.replace(last, t=t, action="DELETED",
                                   detail=last.detail + ", deleted while the watch was down")
    return make


def _list_functions(api: Any) -> dict[str, Callable[..., Any]]:
    core, apps = kclient.CoreV1Api(api), kclient.AppsV1Api(api)
    return {
        "Pod": core.list_namespaced_pod,
        "ReplicaSet": apps.list_namespaced_replica_set,
        "EndpointSlice": kclient.DiscoveryV1Api(api).list_namespaced_endpoint_slice,
        "Deployment": apps.list_namespaced_deployment,
    }


class Watcher:
    """Context manager: watches Pods, ReplicaSets, EndpointSlices and Deployments of one
    namespace in daemon threads, appending each Event to a JSONL file and to memory.

    Entering returns only once every kind has been listed, so nothing that
    happens after the `with` line is missed. Failures of a watch are logged and
    retried until the exit; `gaps()` gives the times they left uncovered, so the
    verdict can tell a complete timeline from one with holes. The file is
    started afresh.
    """

    def __init__(self, api: kclient.ApiClient, namespace: str, out: Path) -> None:
        self.api = api
        self.namespace = namespace
        self.out = out
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._file: TextIO | None = None
        self._stopping = threading.Event()
        self._streams: list[_Stream] = []
        self._threads: list[threading.Thread] = []
        self._clients: list[Any] = []
        self._started = 0.0

    @property
    def errors(self) -> int:
        """Failed lists and watches so far (each one retried); 410 Gone is not one."""
        return sum(stream.errors for stream in self._streams)

    def gaps(self) -> list[WatchGap]:
        """The times a kind's watch was down, in order: the verdict will not judge a
        rollout on a timeline with holes in it."""
        return sorted((gap for stream in self._streams for gap in stream.gaps),
                      key=lambda gap: gap.started)

    def events(self) -> list[Event]:
        with self._lock:
            return sorted(self._events, key=event_order)

    def __enter__(self) -> Watcher:
        self._started = time.monotonic()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.out.open("w", encoding="utf-8")
        for kind in KINDS:
            # a client per stream: stopping a watch shuts its socket, which must not
            # be one the caller's client (or another stream) goes on to use
            api = kclient.ApiClient(configuration=self.api.configuration)
            self._clients.append(api)
            stream = _Stream(kind, _list_functions(api)[kind], self.namespace, self._append,
                             self._stopping)
            self._streams.append(stream)
            self._threads.append(threading.Thread(
                target=stream.run, name=f"watch-{kind}-{self.namespace}", daemon=True))
        for thread in self._threads:
            thread.start()
        deadline = time.monotonic() + START_SECONDS
        for stream in self._streams:
            if not stream.listed.wait(max(0.0, deadline - time.monotonic())):
                self._shut_down()
                raise errors.ClusterError(
                    f"watching namespace {self.namespace}: could not list its {stream.kind}s "
                    f"within {START_SECONDS:.0f}s ({stream.errors} failures, last: "
                    f"{stream.last_error}); is the API server reachable?")
        log.info("watching namespace %s: %d objects listed in %.1fs", self.namespace,
                 len(self._events), time.monotonic() - self._started)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._shut_down()
        log.info("watched namespace %s for %.1fs: %d events, %d watch errors", self.namespace,
                 time.monotonic() - self._started, len(self._events), self.errors)

    def _append(self, make: Callable[[float], Event]) -> Event:
        """Time, keep and write one event; the lock keeps memory and file in order of t."""
        with self._lock:
            event = make(time.time())
            if self._file is None:  # a straggler after the exit: kept from the record
                return event
            self._events.append(event)
            self._file.write(encode_event(event))
            self._file.flush()
            return event

    def _shut_down(self) -> None:
        self._stopping.set()
        for stream in self._streams:
            stream.stop()
        deadline = time.monotonic() + STOP_SECONDS
        for thread, client in zip(self._threads, self._clients, strict=True):
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("%s did not stop within %.0fs; left to end with the process",
                            thread.name, STOP_SECONDS)
            else:
                client.close()
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def final_state(api: kclient.ApiClient, namespace: str) -> FinalState:
    """Ready pods by model version (terminating ones not counted), and the replicas the
    Deployments ask for: what serves once the run is over."""
    pods = kclient.CoreV1Api(api).list_namespaced_pod(namespace).items
    ready: dict[str, int] = {}
    for pod in pods:
        meta = pod.metadata
        if meta is not None and meta.deletion_timestamp is None and pod_ready(pod):
            version = (meta.labels or {}).get(VERSION_LABEL, "unknown")
            ready[version] = ready.get(version, 0) + 1
    deployments = kclient.AppsV1Api(api).list_namespaced_deployment(namespace).items
    desired = sum(d.spec.replicas or 0 for d in deployments)
    return FinalState(desired, ready)
