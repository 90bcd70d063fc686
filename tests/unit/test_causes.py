"""Failures get a cause and a pod: the words a FAIL is explained in."""

from __future__ import annotations

import pytest

from harness.causes import Attribution, attribute, cause, story
from harness.evidence import PodLife, Request


def req(t: float = 10.0, *, status: int = 200, ok: bool = True, error: str | None = None,
        latency_ms: float = 3.0, pod: str | None = "pod-a", lag_ms: float = 0.0) -> Request:
    return Request(t, latency_ms, status, error, "1.0.0" if ok else None, ok, "predict", pod,
                   lag_ms)


@pytest.mark.parametrize(("request_", "expected"), [
    (req(), None),
    (req(latency_ms=999.0), None),
    (req(latency_ms=1000.5), "slow"),
    (req(latency_ms=1900.0, lag_ms=1500.0), "queued"),
    (req(latency_ms=2600.0, lag_ms=1500.0), "slow"),
    (req(latency_ms=999.0, lag_ms=900.0), None),
    (req(status=500, ok=False), "HTTP 500"),
    (req(status=503, ok=False), "HTTP 503"),
    (req(status=200, ok=False, error="CatchResponseError: bad body: not JSON"), "bad body"),
    (req(status=0, ok=False, error="ConnectionRefusedError: [Errno 111] Connection refused",
         pod=None), "refused"),
    (req(status=0, ok=False, error="ConnectionResetError: [Errno 104] Connection reset by peer",
         pod=None), "reset"),
    (req(status=0, ok=False, error="timeout: timed out", pod=None), "timeout"),
    (req(status=0, ok=False, error="ConnectionClosed: connection closed.", pod=None),
     "connection closed"),
    (req(status=0, ok=False, error="RemoteDisconnected: Remote end closed connection", pod=None),
     "connection closed"),
    (req(status=0, ok=False, error="OSError: something else", pod=None), "no response"),
    (req(status=0, ok=False, error="OSError: [Errno 113] No route to host", pod=None),
     "unreachable"),
    (req(status=0, ok=False, pod=None,
         error="RequestCut: the run ended with the request under way (GreenletExit)"),
     "cut at stop"),
    (req(status=0, ok=False, error="timeout: TimeoutError: timed out", pod=None), "timeout"),
    (req(status=0, ok=False, error="HTTPConnectionClosed: connection closed.", pod=None),
     "connection closed"),
])
def test_each_failure_has_one_cause(request_: Request, expected: str | None):
    assert cause(request_, slo_ms=1000.0) == expected


LIVES = [
    PodLife("old-a", "1.0.0", 0.0, 1.0, 20.0, 22.0),
    PodLife("new-a", "1.1.0", 15.0, 19.0, None, None),
]


def test_a_failure_with_an_answer_is_laid_at_the_pod_that_answered():
    (a,) = attribute([(req(30.0, status=500, ok=False, pod="new-a"), "HTTP 500")], LIVES)
    assert (a.pod, a.how, a.count) == ("new-a", "answered", 1)


def test_a_failure_without_an_answer_is_laid_at_the_pod_on_its_way_out():
    failed = [(req(t, status=0, ok=False, error="reset", pod=None), "reset")
              for t in (20.5, 21.0, 23.9)]
    (a,) = attribute(failed, LIVES)
    assert (a.cause, a.pod, a.how, a.count, a.first) == ("reset", "old-a", "exiting", 3, 20.5)


def test_else_at_the_pod_coming_in_else_at_none():
    found = attribute([(req(16.0, status=0, ok=False, error="refused", pod=None), "refused"),
                       (req(50.0, status=0, ok=False, error="refused", pod=None), "refused")],
                      LIVES)
    assert [(a.pod, a.how) for a in found] == [("new-a", "starting"), (None, "unknown")]


def test_the_story_reads_as_what_happened():
    found = [Attribution("connection closed", "old-a", "exiting", 9, 1.0),
             Attribution("reset", "old-b", "exiting", 3, 2.0),
             Attribution("HTTP 500", "new-a", "answered", 2, 3.0)]
    assert story(found) == ("9 x connection closed, 3 x reset as old pods exited; "
                            "2 x HTTP 500 from the pods that answered them")


def test_a_request_queued_behind_a_slow_answer_is_laid_at_no_pod():
    """The stall control's clients wait behind the -stall pods' late answers; their next
    request, answered at once by an old pod, must not make that pod look slow."""
    failed = [(req(30.0, latency_ms=2100.0, pod="new-a"), "slow"),
              (req(30.05, latency_ms=1990.0, lag_ms=1980.0, pod="old-a"), "queued")]
    found = attribute(failed, LIVES)
    assert [(a.cause, a.pod, a.how) for a in found] == [
        ("slow", "new-a", "answered"), ("queued", None, "queued")]
    assert story(found) == ("1 x slow from the pods that answered them; "
                            "1 x queued behind slow answers")
