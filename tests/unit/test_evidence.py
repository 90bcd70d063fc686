"""The evidence without a cluster: pods' lives from events, and the two JSONL files."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from harness import evidence
from harness.evidence import Event, PodLife, Request, pod_lives


def ev(t: float, name: str, action: str = "MODIFIED", *, version: str | None = "1.0.0",
       ready: bool | None = False, terminating: bool = False, kind: str = "Pod") -> Event:
    return Event(t, kind, name, action, version, ready, terminating, "")


# -- pod_lives ----------------------------------------------------------------

OLD, NEW = "1.0.0", "1.1.0"


def rollout() -> list[Event]:
    """Two old pods present at the start, replaced one by one (maxSurge 1, maxUnavailable 0)."""
    return [
        ev(10.0, "old-a", "ADDED", version=OLD, ready=True),
        ev(10.0, "old-b", "ADDED", version=OLD, ready=True),
        ev(10.1, "model", "ADDED", version=None, ready=True, kind="Deployment"),
        ev(12.0, "new-a", "ADDED", version=NEW),
        ev(12.1, "new-a", version=NEW),
        ev(14.0, "new-a", version=NEW, ready=True),
        ev(14.2, "old-a", version=OLD, ready=True, terminating=True),
        ev(14.3, "new-b", "ADDED", version=NEW),
        ev(14.5, "old-a", version=OLD, ready=False, terminating=True),
        ev(14.6, "slice", version=None, ready=None, kind="EndpointSlice"),
        ev(16.0, "new-b", version=NEW, ready=True),
        ev(16.1, "old-b", version=OLD, ready=True, terminating=True),
        ev(19.0, "old-a", "DELETED", version=OLD, terminating=True),
        ev(21.0, "old-b", "DELETED", version=OLD, terminating=True),
    ]


ROLLOUT_LIVES = [
    PodLife("old-a", OLD, 10.0, 10.0, 14.2, 19.0),
    PodLife("old-b", OLD, 10.0, 10.0, 16.1, 21.0),
    PodLife("new-a", NEW, 12.0, 14.0, None, None),
    PodLife("new-b", NEW, 14.3, 16.0, None, None),
]


def test_a_rolling_update_gives_each_pod_its_life():
    assert pod_lives(rollout()) == ROLLOUT_LIVES


@pytest.mark.parametrize("seed", range(5))
def test_the_order_of_arrival_does_not_matter(seed: int):
    events = rollout()
    random.Random(seed).shuffle(events)
    assert pod_lives(events) == ROLLOUT_LIVES


def test_duplicates_from_a_relist_only_confirm_what_is_known():
    events = rollout()
    again = [dataclasses.replace(e, t=e.t + 0.01) for e in events if e.action != "DELETED"]
    assert pod_lives(events + again + [ev(21.5, "old-b", "DELETED", version=OLD)]) == \
        ROLLOUT_LIVES


def test_a_pod_present_from_the_start_was_created_when_first_seen():
    (life,) = pod_lives([ev(5.0, "p", "MODIFIED", ready=True), ev(6.0, "p", ready=True)])
    assert life == PodLife("p", "1.0.0", 5.0, 5.0, None, None)


def test_a_pod_never_ready_has_no_ready_time():
    (life,) = pod_lives([ev(1.0, "bad", "ADDED"), ev(2.0, "bad"),
                         ev(30.0, "bad", terminating=True),
                         ev(31.0, "bad", "DELETED", terminating=True)])
    assert life == PodLife("bad", "1.0.0", 1.0, None, 30.0, 31.0)


def test_a_force_deleted_pod_terminates_when_it_goes():
    (life,) = pod_lives([ev(1.0, "p", "ADDED", ready=True),
                         ev(3.0, "p", "DELETED", ready=True, terminating=True)])
    assert (life.terminating_at, life.gone_at) == (3.0, 3.0)


def test_a_pod_recreated_under_its_name_lives_twice():
    lives = pod_lives([ev(1.0, "db-0", "ADDED", ready=True), ev(2.0, "db-0", "DELETED"),
                       ev(3.0, "db-0", "ADDED"), ev(4.0, "db-0", ready=True)])
    assert lives == [PodLife("db-0", "1.0.0", 1.0, 1.0, None, 2.0),
                     PodLife("db-0", "1.0.0", 3.0, 4.0, None, None)]


def test_at_equal_times_the_deletion_comes_last():
    events = [ev(2.0, "p", "DELETED", terminating=True), ev(2.0, "p", terminating=True),
              ev(1.0, "p", "ADDED")]
    (life,) = pod_lives(events)
    assert life.gone_at == 2.0


def test_the_version_is_taken_from_the_first_event_that_has_it():
    (life,) = pod_lives([ev(1.0, "p", "ADDED", version=None), ev(2.0, "p", version=NEW)])
    assert life.version == NEW


def test_other_kinds_are_not_pods():
    assert pod_lives([ev(1.0, "model-abc", "ADDED", kind="ReplicaSet")]) == []


# -- the JSONL file -----------------------------------------------------------


def test_events_round_trip_through_the_file(tmp_path: Path):
    events = [*rollout(), Event(22.123456789, "Deployment", "model", "MODIFIED", None, None,
                                False, "ready 2/2 — «done»")]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(evidence.encode_event(e) for e in events), encoding="utf-8")
    assert evidence.read_events(path) == sorted(events, key=lambda e: e.t)


def test_a_last_line_cut_off_by_a_kill_is_dropped(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    line = evidence.encode_event(ev(1.0, "p", "ADDED"))
    path.write_text(line + line[: len(line) // 2])
    assert evidence.read_events(path) == [ev(1.0, "p", "ADDED")]


def test_a_broken_line_inside_the_file_is_an_error(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    line = evidence.encode_event(ev(1.0, "p", "ADDED"))
    path.write_text(line + '{"t": 2.0}\n' + line)
    with pytest.raises(evidence.EvidenceError, match=r"events.jsonl:2: not a record of this run"):
        evidence.read_events(path)


def record(t: float, **changes: object) -> Request:
    return dataclasses.replace(Request(t, 2.5, 200, None, "1.0.0", True), **changes)


def test_requests_round_trip_in_start_order(tmp_path: Path):
    path = tmp_path / "requests.jsonl"
    path.write_bytes(b"".join(evidence.encode_request(record(t)) for t in (3.0, 1.0, 2.0)))
    path.write_bytes(path.read_bytes() + evidence.encode_request(
        record(1.5, status=0, ok=False, error="ConnectionResetError: reset", version=None)))
    assert evidence.read_requests(path) == [
        Request(1.0, 2.5, 200, None, "1.0.0", True),
        Request(1.5, 2.5, 0, "ConnectionResetError: reset", None, False),
        Request(2.0, 2.5, 200, None, "1.0.0", True),
        Request(3.0, 2.5, 200, None, "1.0.0", True),
    ]


def test_no_request_file_means_no_requests(tmp_path: Path):
    assert evidence.read_requests(tmp_path / "requests.jsonl") == []


def test_a_damaged_request_line_is_an_evidence_error_naming_the_file(tmp_path: Path):
    path = tmp_path / "requests.jsonl"
    line = evidence.encode_request(record(1.0))
    path.write_bytes(line + b'{"t": 2.0, "ok": true}\n' + line)
    with pytest.raises(evidence.EvidenceError, match=r"requests.jsonl:2: not a record") as e:
        evidence.read_requests(path)
    assert e.value.exit_code == 2, "a damaged record file is a harness error, never a verdict"
