"""The watch without a cluster: objects to events, and the list-then-watch loop against
scripted streams (its gaps included)."""

from __future__ import annotations

import datetime
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from harness import errors, evidence
from harness import watch as watching
from harness.evidence import VERSION_LABEL, Event
from harness.watch import event_from

NOW = datetime.datetime(2026, 5, 1, 12, 0, tzinfo=datetime.UTC)


def ev(t: float, name: str, action: str = "MODIFIED", *, version: str | None = "1.0.0",
       ready: bool | None = False, terminating: bool = False, kind: str = "Pod") -> Event:
    return Event(t, kind, name, action, version, ready, terminating, "")


# -- objects to events --------------------------------------------------------


def meta(name: str, *, labels: dict[str, str] | None = None, deleting: bool = False,
         generation: int | None = None, rv: str = "1") -> client.V1ObjectMeta:
    return client.V1ObjectMeta(name=name, labels=labels, generation=generation,
                               resource_version=rv,
                               deletion_timestamp=NOW if deleting else None)


def v1_pod(name: str, *, phase: str | None = "Running", ready: bool = True,
           deleting: bool = False, restarts: int = 0, rv: str = "1") -> client.V1Pod:
    labels = {"app": "model", VERSION_LABEL: "1.1.0"}
    status = None
    if phase is not None:
        status = client.V1PodStatus(
            phase=phase,
            conditions=[client.V1PodCondition(type="PodScheduled", status="True"),
                        client.V1PodCondition(type="Ready", status="True" if ready else "False")],
            container_statuses=[client.V1ContainerStatus(
                name="model-server", image="model:1.1.0", image_id="", ready=ready,
                restart_count=restarts)],
        )
    return client.V1Pod(metadata=meta(name, labels=labels, deleting=deleting, rv=rv),
                        status=status)


def test_a_ready_pod():
    assert event_from("Pod", "ADDED", v1_pod("model-1"), 7.5) == Event(
        7.5, "Pod", "model-1", "ADDED", "1.1.0", True, False, "phase Running, ready")


def test_a_pod_not_yet_scheduled_has_no_status():
    event = event_from("Pod", "ADDED", v1_pod("model-1", phase=None), 1.0)
    assert (event.ready, event.detail) == (False, "phase unknown, not ready")


def test_a_terminating_pod_with_restarts():
    event = event_from("Pod", "MODIFIED",
                       v1_pod("model-1", ready=False, deleting=True, restarts=2), 1.0)
    assert (event.ready, event.terminating) == (False, True)
    assert event.detail == "phase Running, not ready, restarts 2, terminating"


def test_a_pod_as_the_api_server_sends_it():
    """Field names line up with the wire format the watch deserializes."""
    raw = {"metadata": {"name": "model-7f9-x", "resourceVersion": "42",
                        "deletionTimestamp": "2026-05-01T12:00:00Z",
                        "labels": {"rollout-harness/model-version": "1.0.0"}},
           "status": {"phase": "Running",
                      "conditions": [{"type": "Ready", "status": "True"}]}}
    pod = client.ApiClient().deserialize(json.dumps(raw), "V1Pod", "application/json")
    assert event_from("Pod", "MODIFIED", pod, 1.0) == Event(
        1.0, "Pod", "model-7f9-x", "MODIFIED", "1.0.0", True, True,
        "phase Running, ready, terminating")


def test_a_replica_set_carries_the_version():
    rs = client.V1ReplicaSet(
        metadata=meta("model-7f9", labels={VERSION_LABEL: "1.0.0"}),
        spec=client.V1ReplicaSetSpec(replicas=3, selector=client.V1LabelSelector()),
        status=client.V1ReplicaSetStatus(replicas=3, ready_replicas=2, available_replicas=1),
    )
    assert event_from("ReplicaSet", "MODIFIED", rs, 2.0) == Event(
        2.0, "ReplicaSet", "model-7f9", "MODIFIED", "1.0.0", None, False,
        "replicas 3/3, ready 2, available 1")


def test_an_endpoint_slice_counts_its_endpoints_by_condition():
    def endpoint(conditions: client.V1EndpointConditions | None) -> client.V1Endpoint:
        return client.V1Endpoint(addresses=["10.244.0.9"], conditions=conditions)

    es = client.V1EndpointSlice(
        address_type="IPv4", metadata=meta("model-abcde"),
        endpoints=[
            endpoint(None),
            endpoint(client.V1EndpointConditions(ready=True, serving=True, terminating=False)),
            endpoint(client.V1EndpointConditions(ready=False, serving=True, terminating=True)),
            endpoint(client.V1EndpointConditions(ready=False, serving=False, terminating=True)),
        ],
    )
    assert event_from("EndpointSlice", "MODIFIED", es, 3.0) == Event(
        3.0, "EndpointSlice", "model-abcde", "MODIFIED", None, None, False,
        "endpoints 4: ready 2, serving 3, terminating 2")


def test_an_empty_endpoint_slice():
    es = client.V1EndpointSlice(address_type="IPv4", metadata=meta("model-abcde"))
    assert event_from("EndpointSlice", "ADDED", es, 3.0).detail == \
        "endpoints 0: ready 0, serving 0, terminating 0"


def v1_deployment(*, generation: int = 2, observed: int = 2, total: int = 3, updated: int = 3,
                  available: int = 3, ready: int = 3) -> client.V1Deployment:
    return client.V1Deployment(
        metadata=meta("model", generation=generation),
        spec=client.V1DeploymentSpec(replicas=3, selector=client.V1LabelSelector(),
                                     template=client.V1PodTemplateSpec()),
        status=client.V1DeploymentStatus(observed_generation=observed, replicas=total,
                                         updated_replicas=updated, available_replicas=available,
                                         ready_replicas=ready),
    )


def test_a_rolled_out_deployment_is_ready():
    event = event_from("Deployment", "MODIFIED", v1_deployment(), 4.0)
    assert (event.ready, event.version) == (True, None)
    assert event.detail == "ready 3/3 updated 3 available 3 total 3"


@pytest.mark.parametrize(("status", "why"), [
    ({"observed": 1}, "the controller has not seen the new spec"),
    ({"total": 4, "available": 4, "ready": 4}, "an old pod is still there"),
    ({"updated": 2}, "one pod is not updated"),
    ({"available": 2, "ready": 2}, "one pod is not available"),
])
def test_a_deployment_mid_rollout_is_not_ready(status: dict[str, int], why: str):
    assert event_from("Deployment", "MODIFIED", v1_deployment(**status), 4.0).ready is False, why


def test_a_deployment_without_status_yet():
    deployment = v1_deployment()
    deployment.status = None
    event = event_from("Deployment", "ADDED", deployment, 4.0)
    assert event.ready is False
    assert event.detail == "ready 0/3 updated 0 available 0 total 0, new spec not yet observed"


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="'Service': expected one of Pod, ReplicaSet"):
        event_from("Service", "ADDED", v1_pod("p"), 1.0)


# -- the list-then-watch loop, against scripted streams -------------------------


def listing(rv: str, *pods: client.V1Pod) -> Any:
    return client.V1PodList(items=list(pods), metadata=client.V1ListMeta(resource_version=rv))


def raw(action: str, pod: client.V1Pod) -> dict[str, Any]:
    return {"type": action, "object": pod}


class ScriptedWatch:
    """Plays one script entry per `stream` call: events to yield, or an exception to raise.
    An exhausted script ends the stream like a server-side timeout, after `idle` seconds
    (or at once when stopped)."""

    script: ClassVar[list[Any]] = []
    made: ClassVar[list[ScriptedWatch]] = []
    idle = 0.02

    def __init__(self) -> None:
        self.resource_version: str | None = None
        self.calls: list[str | None] = []
        self._stopped = threading.Event()
        ScriptedWatch.made.append(self)

    def stream(self, list_fn: Any, namespace: str, *, resource_version: str | None,
               **kwargs: Any) -> Iterator[dict[str, Any]]:
        self.calls.append(resource_version)
        self.resource_version = resource_version
        if not self.script:
            self._stopped.wait(self.idle)
            return
        entry = self.script.pop(0)
        if isinstance(entry, BaseException):
            raise entry
        for item in entry:
            if item["type"] == "BOOKMARK":
                self.resource_version = item["object"]["metadata"]["resourceVersion"]
            else:
                self.resource_version = item["object"].metadata.resource_version
            yield item

    def stop(self) -> None:
        self._stopped.set()


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> type[ScriptedWatch]:
    monkeypatch.setattr(watching, "kwatch", SimpleNamespace(Watch=ScriptedWatch))
    monkeypatch.setattr(watching, "BACKOFF_SECONDS", (0.001, 0.002))
    monkeypatch.setattr(ScriptedWatch, "script", [])
    monkeypatch.setattr(ScriptedWatch, "made", [])
    return ScriptedWatch


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.clock = 0.0

    def __call__(self, make: Any) -> Event:
        self.clock += 1.0
        event: Event = make(self.clock)
        self.events.append(event)
        return event

    def seen(self) -> list[tuple[str, str, str]]:
        return [(e.action, e.name, e.detail) for e in self.events]


def run_stream(lists: list[Any], recorder: Recorder) -> watching._Stream:
    """Runs a Pod stream until the lists and the watch script are played out."""
    stopping = threading.Event()

    def list_fn(namespace: str, **kwargs: Any) -> Any:
        entry = lists.pop(0)
        if isinstance(entry, BaseException):
            raise entry
        return entry

    stream = watching._Stream("Pod", list_fn, "ns", recorder, stopping)
    original = ScriptedWatch.stream

    def stream_then_stop(self: ScriptedWatch, *args: Any, **kwargs: Any) -> Any:
        if not self.script and not lists:
            stopping.set()
        return original(self, *args, **kwargs)

    stream.watch.stream = stream_then_stop.__get__(stream.watch)
    thread = threading.Thread(target=stream.run, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the stream did not stop"
    return stream


def test_list_then_watch_from_the_listed_version(scripted: type[ScriptedWatch]):
    scripted.script = [[raw("MODIFIED", v1_pod("a", ready=False, rv="11")),
                        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}},
                        raw("DELETED", v1_pod("a", ready=False, deleting=True, rv="16"))]]
    recorder = Recorder()
    stream = run_stream([listing("10", v1_pod("a", rv="9"))], recorder)
    assert recorder.seen() == [("ADDED", "a", "phase Running, ready"),
                               ("MODIFIED", "a", "phase Running, not ready"),
                               ("DELETED", "a", "phase Running, not ready, terminating")]
    (watch,) = scripted.made
    assert watch.calls[:2] == ["10", "16"]
    assert stream.listed.is_set()
    assert stream.errors == 0


def test_410_gone_lists_again_and_records_only_what_changed(scripted: type[ScriptedWatch],
                                                            caplog: pytest.LogCaptureFixture):
    scripted.script = [ApiException(status=410, reason="Expired: too old resource version")]
    recorder = Recorder()
    first = listing("10", v1_pod("same", rv="5"), v1_pod("changed", rv="6"),
                    v1_pod("vanished", rv="7"))
    second = listing("20", v1_pod("same", rv="5"), v1_pod("changed", ready=False, rv="18"),
                     v1_pod("new", rv="19"))
    with caplog.at_level(logging.INFO, logger="harness.watch"):
        stream = run_stream([first, second], recorder)
    assert recorder.seen() == [
        ("ADDED", "same", "phase Running, ready"),
        ("ADDED", "changed", "phase Running, ready"),
        ("ADDED", "vanished", "phase Running, ready"),
        ("MODIFIED", "changed", "phase Running, not ready"),
        ("ADDED", "new", "phase Running, ready"),
        ("DELETED", "vanished", "phase Running, ready, deleted while the watch was down"),
    ]
    assert stream.errors == 0, "410 Gone is how watches end, not a failure"
    assert "410 Gone" in caplog.text
    assert scripted.made[0].calls == ["10", "20"]


@pytest.mark.parametrize("failure", [
    ApiException(status=500, reason="Internal Server Error"),
    ProtocolError("Connection broken", ConnectionResetError(104, "reset")),
    ConnectionRefusedError(111, "Connection refused"),
])
def test_a_failed_watch_is_logged_counted_and_resumed(scripted: type[ScriptedWatch],
                                                      caplog: pytest.LogCaptureFixture,
                                                      failure: Exception):
    scripted.script = [failure, [raw("MODIFIED", v1_pod("a", ready=False, rv="12"))]]
    recorder = Recorder()
    stream = run_stream([listing("10", v1_pod("a", rv="9"))], recorder)
    assert stream.errors == 1
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "watch of Pods in ns failed" in caplog.text
    assert scripted.made[0].calls[:2] == ["10", "10"], "resumed, not listed again"
    assert [e.action for e in recorder.events] == ["ADDED", "MODIFIED"]


def test_a_failure_opens_a_gap_that_the_next_watch_closes(scripted: type[ScriptedWatch]):
    scripted.script = [ConnectionRefusedError(111, "Connection refused"),
                       [raw("MODIFIED", v1_pod("a", ready=False, rv="12"))]]
    stream = run_stream([listing("10", v1_pod("a", rv="9"))], Recorder())
    (gap,) = stream.gaps
    assert gap.kind == "Pod" and "ConnectionRefusedError" in gap.reason
    assert gap.ended is not None and gap.ended >= gap.started


def test_410_gone_opens_no_gap(scripted: type[ScriptedWatch]):
    scripted.script = [ApiException(status=410, reason="Expired")]
    stream = run_stream([listing("10", v1_pod("a", rv="5")), listing("20", v1_pod("a", rv="5"))],
                        Recorder())
    assert stream.gaps == []


def test_a_failed_list_is_retried(scripted: type[ScriptedWatch]):
    recorder = Recorder()
    stream = run_stream([ApiException(status=403, reason="Forbidden"),
                         listing("10", v1_pod("a"))], recorder)
    assert stream.errors == 1
    assert stream.last_error == "API error 403 Forbidden"
    assert [e.action for e in recorder.events] == ["ADDED"]


def test_a_bug_in_the_conversion_is_logged_with_its_traceback(scripted: type[ScriptedWatch],
                                                              caplog: pytest.LogCaptureFixture):
    broken = client.V1Pod(metadata=None)
    recorder = Recorder()
    stream = run_stream([listing("10", broken), listing("11")], recorder)
    assert stream.errors == 1
    (record,) = caplog.records
    assert record.exc_info is not None and record.exc_info[0] is AttributeError


def test_a_failure_caused_by_stopping_is_no_error(scripted: type[ScriptedWatch]):
    stopping = threading.Event()
    recorder = Recorder()

    def list_fn(namespace: str, **kwargs: Any) -> Any:
        stopping.set()
        raise ProtocolError("socket shut down")

    stream = watching._Stream("Pod", list_fn, "ns", recorder, stopping)
    stream.run()
    assert stream.errors == 0


# -- the Watcher ---------------------------------------------------------------


def fake_lists(monkeypatch: pytest.MonkeyPatch, pods: list[Any]) -> None:
    def lists(api: Any) -> dict[str, Any]:
        def list_pods(namespace: str, **kwargs: Any) -> Any:
            entry = pods[0] if len(pods) == 1 else pods.pop(0)
            if isinstance(entry, BaseException):
                raise entry
            return entry

        def list_nothing(namespace: str, **kwargs: Any) -> Any:
            return SimpleNamespace(items=[], metadata=client.V1ListMeta(resource_version="1"))

        return {"Pod": list_pods, "ReplicaSet": list_nothing, "EndpointSlice": list_nothing,
                "Deployment": list_nothing}

    monkeypatch.setattr(watching, "_list_functions", lists)


def test_the_watcher_writes_what_it_keeps(scripted: type[ScriptedWatch],
                                          monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    fake_lists(monkeypatch, [listing("10", v1_pod("a", rv="9"), v1_pod("b", rv="8"))])
    out = tmp_path / "run" / "events.jsonl"
    with watching.Watcher(client.ApiClient(), "ns", out) as watcher:
        listed = watcher.events()
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 1.0, "stopping is prompt"
    assert [(e.action, e.name) for e in listed] == [("ADDED", "a"), ("ADDED", "b")]
    assert evidence.read_events(out) == watcher.events() == listed
    assert watcher.errors == 0


def test_the_watcher_gives_up_when_it_cannot_list(scripted: type[ScriptedWatch],
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path):
    monkeypatch.setattr(watching, "START_SECONDS", 0.3)
    fake_lists(monkeypatch, [ConnectionRefusedError(111, "Connection refused")])
    watcher = watching.Watcher(client.ApiClient(), "ns", tmp_path / "events.jsonl")
    with pytest.raises(errors.ClusterError,
                       match=r"could not list its Pods within 0s \(\d+ failures, last: "
                             r"ConnectionRefusedError"):
        watcher.__enter__()
    assert watcher.errors >= 1
