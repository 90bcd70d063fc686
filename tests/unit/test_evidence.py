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


# -- one record from several Locust processes --------------------------------------------


def test_workers_parts_merge_into_the_record_whole_and_in_worker_order(tmp_path: Path):
    path = tmp_path / "requests.jsonl"
    lines = {worker: [evidence.encode_request(record(worker + i / 10)) for i in range(3)]
             for worker in (0, 1, 10)}
    for worker, part in lines.items():
        evidence.part_record(path, worker).write_bytes(b"".join(part))
    evidence.part_record(path, 1).write_bytes(b"".join(lines[1]) + lines[1][0][:9])  # killed
    (tmp_path / "requests.worker-x.jsonl").write_bytes(b"not a part")
    assert list(evidence.part_records(path)) == [0, 1, 10], "by index, not by name"
    assert evidence.merge_parts(path) == {0: 3, 1: 3, 10: 3}
    assert path.read_bytes() == b"".join(lines[0] + lines[1] + lines[10])
    assert evidence.part_records(path) == {}, "the parts are gone"
    assert evidence.merge_parts(path) == {}, "merging again changes nothing"
    assert len(evidence.read_requests(path)) == 9


def test_parts_beside_an_existing_record_are_not_merged_into_it(tmp_path: Path):
    path = tmp_path / "requests.jsonl"
    path.write_bytes(evidence.encode_request(record(1.0)))
    evidence.part_record(path, 0).write_bytes(evidence.encode_request(record(2.0)))
    with pytest.raises(evidence.EvidenceError, match="would mix two runs"):
        evidence.merge_parts(path)
    assert len(evidence.read_requests(path)) == 1


def test_the_order_of_lines_does_not_change_what_is_read(tmp_path: Path):
    """Two workers may record requests with the same start: every field breaks the tie."""
    same_start = [record(1.0, pod="b"), record(1.0, pod="a"), record(1.0, latency_ms=1.0),
                  record(1.0, status=0, ok=False, error="RequestCut: x", version=None)]
    path = tmp_path / "requests.jsonl"
    read = []
    for order in (same_start, same_start[::-1]):
        path.write_bytes(b"".join(evidence.encode_request(r) for r in order))
        read.append(evidence.read_requests(path))
    assert read[0] == read[1]


def test_the_summary_of_a_master_names_each_workers_lines(tmp_path: Path):
    path = tmp_path / "load-summary.json"
    assert evidence.worker_tally(path) == {}
    path.write_text('{"locust_requests": 5, "locust_failures": 0, "recorded": 5}')
    assert evidence.worker_tally(path) == {}
    path.write_text('{"locust_requests": 5, "locust_failures": 0, "recorded": 5, '
                    '"workers": {"0": 3, "1": 2}}')
    assert evidence.worker_tally(path) == {0: 3, 1: 2}
    assert evidence.read_tally(path) == evidence.Tally(5, 0, 5)
    path.write_text('{"workers": ["0"]}')
    with pytest.raises(evidence.EvidenceError, match="not a load summary"):
        evidence.worker_tally(path)
