"""The report: one verdict told three ways — to a program, to CI and to a person.

A canary run is told the same three ways (`write_canary`; canary.json is described
at `canary_doc`).

Every file is written under a temporary name and renamed, so a reader (a CI
step, a browser reloading) never sees half a report. All three come from the
same `series`, so the JSON and the picture cannot disagree.

``verdict.json`` (``"schema": 1``; times ``*_s`` are seconds from
``marks.started``, the upgrade's start; other times are epoch seconds):

- ``schema``, ``outcome`` ("pass" | "fail" | "inconclusive"), ``summary``;
- ``checks``: ``[{name, outcome, detail}]`` in the verdict's order;
- ``figures``: every field of `verdict.Figures`, plus ``completed_s``;
- ``by_version``: requests per answering version ("none": no answer);
- ``plan``: the versions and rate of `verdict.Plan`, and every limit it judged by;
- ``marks``: ``started, finished, ended, rollout_error, rolled_back`` and
  ``started_s, finished_s, ended_s``;
- ``first_failures``: up to ten ``{at_seconds, cause, status, error, version, pod,
  latency_ms}``;
- ``failures``: ``[{cause, pod, how, count, first_s}]``: every failure by cause and the pod
  it is laid at (``how``: answered, exiting, starting, queued, unknown; see harness/causes.py);
- ``pods``: ``[{name, version, created_s, ready_s, terminating_s, gone_s}]``;
- ``events``: ``[{t_s, kind, name, action, version, ready, terminating, detail}]``;
- ``series``: ``{bucket_seconds, buckets: [{t, requests, failures, p50_ms, p99_ms,
  by_version}]}`` with ``t`` the bucket's left edge in seconds from the start.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.causes import cause
from harness.evidence import CpuSample, Event, PodLife, Request
from harness.verdict import STARVED_IDLE, Verdict, percentile

if TYPE_CHECKING:  # the canary's judge imports scipy: verify's report does without it
    from harness.canary_evidence import CanaryRun, IntervalEvidence
    from harness.canary_judge import Decision, IntervalResult

SCHEMA = 1
BUCKET_SECONDS = 1.0
SUITE = "rollout-gate"
CANARY_SUITE = "canary"


@dataclass(frozen=True)
class Written:
    json: Path
    junit: Path
    html: Path


@dataclass(frozen=True)
class Bucket:
    """One slice of the traffic, the unit of every curve in the report."""

    t: float
    """Left edge, seconds from the upgrade's start."""
    requests: int
    failures: int
    p50_ms: float | None
    p99_ms: float | None
    """Of successful requests only, as the verdict's latency rule measures them."""
    by_version: dict[str, int]
    """Requests a version answered, whatever the status; no answer, no version."""


def write(folder: Path, verdict: Verdict, requests: Sequence[Request],
          lives: Sequence[PodLife], events: Sequence[Event],
          host: Sequence[CpuSample] = ()) -> Written:
    """`host`: the host's idle CPU while the load ran, drawn under the latency it explains
    (none recorded: no such panel)."""
    folder.mkdir(parents=True, exist_ok=True)
    buckets = series(requests, verdict.marks.started, BUCKET_SECONDS,
                     verdict.plan.limits.slo_seconds * 1000)
    out = Written(folder / "verdict.json", folder / "junit.xml", folder / "report.html")
    _atomic(out.json, _json(verdict, buckets, lives, events).encode())
    _atomic(out.junit, _junit(verdict))
    _atomic(out.html, _html(verdict, buckets, lives, events, host).encode())
    return out


def series(requests: Sequence[Request], start: float, bucket: float = 1.0,
           slo_ms: float = math.inf) -> list[Bucket]:
    """Requests in fixed slices from the first to the last; empty slices are kept as gaps."""
    if bucket <= 0:
        raise ValueError(f"bucket must be a positive number of seconds, not {bucket!r}")
    slots: dict[int, list[Request]] = {}
    for r in requests:
        slots.setdefault(math.floor((r.t - start) / bucket), []).append(r)
    if not slots:
        return []
    return [_bucket(k * bucket, slots.get(k, []), slo_ms)
            for k in range(min(slots), max(slots) + 1)]


def _bucket(t: float, rs: Sequence[Request], slo_ms: float) -> Bucket:
    ok = [r.latency_ms for r in rs if r.ok]
    failed = sum(cause(r, slo_ms) is not None for r in rs)
    return Bucket(round(t, 6), len(rs), failed, percentile(ok, 50),
                  percentile(ok, 99), dict(Counter(r.version for r in rs if r.version)))


def _atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _rel(t: float | None, start: float) -> float | None:
    return None if t is None else round(t - start, 3)


# -- verdict.json ----------------------------------------------------------------


def _json(v: Verdict, buckets: Sequence[Bucket], lives: Sequence[PodLife],
          events: Sequence[Event]) -> str:
    s, m = v.marks.started, v.marks
    doc = {
        "schema": SCHEMA, "outcome": v.outcome, "summary": v.summary(),
        "checks": [asdict(c) for c in v.checks],
        "figures": {**asdict(v.figures), "completed_s": _rel(v.figures.completed, s)},
        "by_version": v.figures.by_version,
        "plan": {"from_version": v.plan.from_version, "to_version": v.plan.to_version,
                 "rate": v.plan.rate, **asdict(v.plan.limits)},
        "marks": {**asdict(m), "started_s": 0.0, "finished_s": _rel(m.finished, s),
                  "ended_s": _rel(m.ended, s)},
        "first_failures": list(v.first_failures),
        "failures": [{"cause": a.cause, "pod": a.pod, "how": a.how, "count": a.count,
                      "first_s": _rel(a.first, s)} for a in v.figures.attributions],
        "pods": [{"name": p.name, "version": p.version, "created_s": _rel(p.created, s),
                  "ready_s": _rel(p.ready_at, s), "terminating_s": _rel(p.terminating_at, s),
                  "gone_s": _rel(p.gone_at, s)} for p in lives],
        "events": [{"t_s": _rel(e.t, s), "kind": e.kind, "name": e.name, "action": e.action,
                    "version": e.version, "ready": e.ready, "terminating": e.terminating,
                    "detail": e.detail} for e in events],
        "series": {"bucket_seconds": BUCKET_SECONDS, "buckets": [asdict(b) for b in buckets]},
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


# -- junit.xml -------------------------------------------------------------------

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _x(text: str) -> str:
    """Error text from sockets may hold control characters that XML 1.0 cannot carry."""
    return _NOT_XML.sub("\ufffd", text)


def _junit(v: Verdict) -> bytes:
    """One test case per check; inconclusive is an error, so CI never shows it green."""
    n = Counter(c.outcome for c in v.checks)
    counts = {"tests": str(len(v.checks)), "failures": str(n["fail"]),
              "errors": str(n["inconclusive"])}
    root = ET.Element("testsuites", {"name": SUITE, **counts})
    suite = ET.SubElement(root, "testsuite", {"name": SUITE, "skipped": "0", **counts})
    props = ET.SubElement(suite, "properties")
    for key, value in (("from_version", v.plan.from_version), ("to_version", v.plan.to_version),
                       ("outcome", v.outcome), ("summary", v.summary())):
        ET.SubElement(props, "property", name=key, value=_x(value))
    for c in v.checks:
        case = ET.SubElement(suite, "testcase", classname=SUITE, name=_x(c.name), time="0")
        if c.outcome != "pass":
            tag, kind = ("failure", "fail") if c.outcome == "fail" else ("error", "inconclusive")
            ET.SubElement(case, tag, type=kind, message=_x(c.detail)).text = _x(c.detail)
    out = [v.summary(), *(json.dumps(f, ensure_ascii=False) for f in v.first_failures)]
    ET.SubElement(suite, "system-out").text = _x("\n".join(out))
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


# -- report.html -----------------------------------------------------------------

_W, _LEFT, _RIGHT, _PANEL, _GAP, _LANE = 1000, 190, 20, 110, 34, 13
_FROM, _TO, _OTHER, _RED, _OK = "#2f6db5", "#e8871e", "#9a9a9a", "#d62728", "#9fb4cf"
_CSS = """body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1040px}
header{padding:12px 20px;border-radius:6px;color:#fff}
header.pass{background:#2e8b57}header.fail{background:#c0392b}header.inconclusive{background:#b7791f}
h1{font-size:44px;margin:0}.summary{font-size:17px;margin:4px 0 0}
ul.checks{list-style:none;padding:0}
ul.checks li{margin:6px 0;padding-left:8px;border-left:6px solid}
li.pass{border-color:#2e8b57}li.fail{border-color:#c0392b}li.inconclusive{border-color:#b7791f}
svg text{font:11px system-ui,sans-serif}table{border-collapse:collapse}
td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


@dataclass(frozen=True)
class _Axis:
    """Seconds from the upgrade's start onto pixels, shared by every panel."""

    lo: float
    hi: float

    def x(self, t: float) -> float:
        t = min(max(t, self.lo), self.hi)
        return round(_LEFT + (t - self.lo) / (self.hi - self.lo) * (_W - _LEFT - _RIGHT), 1)


def _html(v: Verdict, buckets: Sequence[Bucket], lives: Sequence[PodLife],
          events: Sequence[Event], host: Sequence[CpuSample]) -> str:
    checks = "".join(f'<li class="{_e(c.outcome)}"><b>{_e(c.name)}</b>: {_e(c.detail)}</li>'
                     for c in v.checks)
    columns = ("at_seconds", "cause", "status", "error", "version", "pod", "latency_ms")
    first = _table(["at s", "cause", "status", "error", "version", "pod", "latency ms"],
                   [[f.get(k) for k in columns] for f in v.first_failures])
    failures = _failures(v, lives)
    evs = _table(["t s", "kind", "name", "action", "version", "ready", "detail"],
                 [[_rel(e.t, v.marks.started), e.kind, e.name, e.action, e.version, e.ready,
                   e.detail] for e in events])
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>rollout gate: {_e(v.outcome.upper())}</title><style>{_CSS}</style></head>"
            f'<body><header class="{_e(v.outcome)}"><h1>{_e(v.outcome.upper())}</h1>'
            f'<p class="summary">{_e(v.summary())}</p></header><ul class="checks">{checks}</ul>'
            f"{failures}<h2>Timeline</h2>{_svg(v, buckets, lives, events, host)}"
            f"<details><summary>First failures ({len(v.first_failures)})</summary>{first}"
            f"</details><details><summary>Watch events ({len(events)})</summary>{evs}</details>"
            "</body></html>\n")


def _table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{''.join(f'<th>{_e(h)}</th>' for h in head)}</tr>{cells}</table>"


def _svg(v: Verdict, buckets: Sequence[Bucket], lives: Sequence[PodLife],
         events: Sequence[Event], host: Sequence[CpuSample]) -> str:
    s = v.marks.started
    marks = [("upgrade start", 0.0), ("pulumi finished", _rel(v.marks.finished, s)),
             ("rollout completed", _rel(v.figures.completed, s))]
    ends = [t for _, t in marks if t is not None] + [_rel(v.marks.ended, s) or 0.0]
    lo = min([0.0] + [b.t for b in buckets[:1]])
    axis = _Axis(lo, max([lo + 1.0, *ends] + [b.t + BUCKET_SECONDS for b in buckets[-1:]]))
    panels = 5 if host else 4
    tops = [74 + i * (_PANEL + _GAP) for i in range(panels)]
    lanes, bottom = _lanes(axis, lives, events, v, tops[-1] + _PANEL + _GAP)
    parts = [_grid(axis, 60, bottom), _rate(axis, buckets, tops[0]),
             _failed(axis, buckets, tops[1]), _latency(axis, buckets, tops[2])]
    if host:
        parts.append(_idle(axis, host, s, tops[3]))
    parts += [_share(axis, buckets, v, tops[-1]), lanes, _markers(axis, marks, bottom)]
    defs = ('<defs><pattern id="stripes" width="6" height="6" patternUnits="userSpaceOnUse" '
            'patternTransform="rotate(45)"><rect width="3" height="6" fill="#fff" '
            'fill-opacity="0.6"/></pattern></defs>')
    return (f'<svg width="{_W}" height="{bottom + 30}" viewBox="0 0 {_W} {bottom + 30}" '
            f'role="img">{defs}{"".join(parts)}</svg>')


def _grid(axis: _Axis, top: float, bottom: float) -> str:
    span = axis.hi - axis.lo
    step = next((s for s in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600) if span / s <= 12),
                1800.0)
    out = []
    for k in range(math.ceil(axis.lo / step), math.floor(axis.hi / step) + 1):
        x = axis.x(k * step)
        out.append(f'<line x1="{x}" x2="{x}" y1="{top}" y2="{bottom}" stroke="#eee"/>'
                   f'<text x="{x}" y="{bottom + 14}" text-anchor="middle">{k * step:g}</text>')
    out.append(f'<text x="{_W - _RIGHT}" y="{bottom + 28}" text-anchor="end">'
               "seconds from the upgrade's start</text>")
    return "".join(out)


def _frame(top: float, title: str, ymax: float, unit: str) -> str:
    return (f'<text x="{_LEFT}" y="{top - 6}" font-weight="bold">{_e(title)}</text>'
            f'<text x="{_LEFT - 6}" y="{top + 10}" text-anchor="end">{ymax:g} {_e(unit)}</text>'
            f'<text x="{_LEFT - 6}" y="{top + _PANEL}" text-anchor="end">0</text>'
            f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{top + _PANEL}" y2="{top + _PANEL}" '
            'stroke="#888"/>')


def _nice(value: float) -> float:
    """A round axis maximum at or above value, so the labels read at a glance."""
    if value <= 0:
        return 1.0
    mag = 10.0 ** math.floor(math.log10(value))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= value)


def _bar(axis: _Axis, t: float, y: float, h: float, fill: str, tip: str) -> str:
    x = axis.x(t)
    w = max(1.0, round(axis.x(t + BUCKET_SECONDS) - x - 1, 1))
    return (f'<rect x="{x}" y="{round(y, 1)}" width="{w}" height="{round(h, 1)}" fill="{fill}">'
            f"<title>{_e(tip)}</title></rect>")


def _rate(axis: _Axis, buckets: Sequence[Bucket], top: float) -> str:
    ymax = _nice(max([b.requests / BUCKET_SECONDS for b in buckets] or [0]))
    out = [_frame(top, "requests/s (failed in red)", ymax, "/s")]
    for b in buckets:
        h_all, base = b.requests / BUCKET_SECONDS / ymax * _PANEL, top + _PANEL
        h_bad = max(2.0, h_all * b.failures / b.requests) if b.failures else 0.0
        h_ok = max(0.0, h_all - h_bad)
        tip = f"{b.t:g}s: {b.requests} requests, {b.failures} failed"
        out.append(_bar(axis, b.t, base - h_ok, h_ok, _OK, tip))
        if h_bad:
            out.append(_bar(axis, b.t, base - h_ok - h_bad, h_bad, _RED, tip))
    return "".join(out)


def _failed(axis: _Axis, buckets: Sequence[Bucket], top: float) -> str:
    """Failures on a scale of their own: one failed request among thousands is a full
    bar here, where on the rate panel it is a sliver."""
    worst = max([b.failures for b in buckets] or [0])
    out = [_frame(top, "failed requests per second" + ("" if worst else ": none"),
                  _nice(worst), "/s")]
    for b in buckets:
        if b.failures:
            h = b.failures / _nice(worst) * _PANEL
            out.append(_bar(axis, b.t, top + _PANEL - h, h, _RED,
                            f"{b.t:g}s: {b.failures} of {b.requests} failed"))
    return "".join(out)


def _failures(v: Verdict, lives: Sequence[PodLife]) -> str:
    """Each cause laid at its pod, with that pod's life around it."""
    if not v.figures.attributions:
        return ""
    s = v.marks.started
    life = {p.name: p for p in lives}
    rows = []
    for a in v.figures.attributions:
        pod = life.get(a.pod or "")
        rows.append([a.count, a.cause, a.pod or "-", a.how, _rel(a.first, s),
                     _rel(pod.ready_at, s) if pod else None,
                     _rel(pod.terminating_at, s) if pod else None,
                     _rel(pod.gone_at, s) if pod else None])
    table = _table(["requests", "cause", "pod", "how", "first at s", "pod ready s",
                    "pod terminating s", "pod gone s"], rows)
    return f'<h2 class="fail">Failed requests by cause and pod</h2>{table}'


def _latency(axis: _Axis, buckets: Sequence[Bucket], top: float) -> str:
    """Steps, not a smooth line: each value holds for its whole bucket, gaps stay gaps."""
    ymax = _nice(max([b.p99_ms for b in buckets if b.p99_ms is not None] or [0]))
    out = [_frame(top, "latency per second: p50 (grey), p99 (purple)", ymax, "ms")]
    for values, colour in (([b.p50_ms for b in buckets], "#555"),
                           ([b.p99_ms for b in buckets], "#8e44ad")):
        runs: list[list[str]] = [[]]
        for b, ms in zip(buckets, values, strict=True):
            if ms is None:
                runs.append([])
                continue
            y = round(top + _PANEL - ms / ymax * _PANEL, 1)
            runs[-1] += [f"{axis.x(b.t)},{y}", f"{axis.x(b.t + BUCKET_SECONDS)},{y}"]
        out += [f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" '
                'stroke-width="1.5"/>' for run in runs if run]
    return "".join(out)


def _idle(axis: _Axis, host: Sequence[CpuSample], start: float, top: float) -> str:
    """Under the latency it explains: the host's idle CPU, red where under the share the
    latency rule calls starved (then answers timed the host, not the release)."""
    out = [_frame(top, f"host CPU idle, % of all cores (red: under {STARVED_IDLE:.0%}: "
                       "answers then timed the host)", 100, "%")]
    for c in host:
        x0, x1 = axis.x(c.started - start), axis.x(c.t - start)
        # a starved moment has next to no bar of its own: a pale band the panel's height
        starved = c.idle < STARVED_IDLE
        h = _PANEL if starved else round(max(1.0, c.idle * _PANEL), 1)
        look = f'fill="{_RED}" fill-opacity="0.35"' if starved else f'fill="{_OTHER}"'
        out.append(f'<rect x="{x0}" y="{round(top + _PANEL - h, 1)}" '
                   f'width="{round(max(1.0, x1 - x0), 1)}" height="{h}" {look}>'
                   f"<title>{_e(f'{c.t - start:.1f}s: {c.idle:.0%} idle')}</title></rect>")
    return "".join(out)


def _share(axis: _Axis, buckets: Sequence[Bucket], v: Verdict, top: float) -> str:
    old, new = v.plan.from_version, v.plan.to_version
    out = [_frame(top, "version share", 1, "")]
    for i, (version, colour) in enumerate(((old, _FROM), (new, _TO), ("other", _OTHER))):
        y = top + 30 + 16 * i
        out.append(f'<rect x="{_LEFT - 16}" y="{y - 9}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{_LEFT - 22}" y="{y}" text-anchor="end">{_e(version[:24])}</text>')
    for b in buckets:
        total, y = sum(b.by_version.values()), float(top)
        n_old, n_new = b.by_version.get(old, 0), b.by_version.get(new, 0)
        tip = f"{b.t:g}s: " + ", ".join(f"{k}: {n}" for k, n in sorted(b.by_version.items()))
        for n, colour in ((n_new, _TO), (total - n_old - n_new, _OTHER), (n_old, _FROM)):
            if n:
                out.append(_bar(axis, b.t, y, n / total * _PANEL, colour, tip))
                y += n / total * _PANEL
    return "".join(out)


def _lanes(axis: _Axis, lives: Sequence[PodLife], events: Sequence[Event], v: Verdict,
           top: float) -> tuple[str, float]:
    """A row per pod, then one for the other objects watched, so causes line up with effects."""
    s, end = v.marks.started, axis.hi + v.marks.started
    colours = {v.plan.from_version: _FROM, v.plan.to_version: _TO}
    out = [f'<text x="{_LEFT}" y="{top - 6}" font-weight="bold">pods: starting (pale), '
           "ready (solid), terminating (striped); ticks are watch events</text>"]
    rows = sorted(lives, key=lambda p: p.created)
    for i, p in enumerate(rows):
        y, colour = top + i * _LANE, colours.get(p.version or "", _OTHER)
        stop = p.gone_at if p.gone_at is not None else end
        serving = p.terminating_at if p.terminating_at is not None else stop
        ready = p.ready_at if p.ready_at is not None else serving
        out.append(_label(y, p.name, f"{p.name} ({p.version})"))
        fill = f'fill="{colour}"'
        for a, b, look in ((p.created, ready, f'{fill} fill-opacity="0.3"'), (ready, serving, fill),
                           (serving, stop, fill), (serving, stop, 'fill="url(#stripes)"')):
            x0, x1 = axis.x(a - s), axis.x(b - s)
            out.append(f'<rect x="{x0}" y="{y + 1}" width="{round(max(0.0, x1 - x0), 1)}" '
                       f'height="{_LANE - 2}" {look}/>')
        out.extend(_ticks(axis, [e for e in events if e.kind == "Pod" and e.name == p.name], s, y))
    y = top + len(rows) * _LANE
    out.append(_label(y, "other objects", "ReplicaSet, EndpointSlice and Deployment events"))
    out.extend(_ticks(axis, [e for e in events if e.kind != "Pod"], s, y))
    return "".join(out), y + _LANE + 6


def _label(y: float, text: str, tip: str) -> str:
    return (f'<text x="{_LEFT - 6}" y="{y + 10}" text-anchor="end">{_e(text[-30:])}'
            f"<title>{_e(tip)}</title></text>")


def _ticks(axis: _Axis, events: Sequence[Event], start: float, y: float) -> list[str]:
    return [f'<line x1="{axis.x(e.t - start)}" x2="{axis.x(e.t - start)}" y1="{y}" '
            f'y2="{y + _LANE}" stroke="#222"><title>'
            f"{_e(f'{e.t - start:+.2f}s {e.kind} {e.name} {e.action} {e.detail}')}</title></line>"
            for e in events]


def _markers(axis: _Axis, marks: Sequence[tuple[str, float | None]], bottom: float) -> str:
    """Dashed lines through every panel; labels stepped down so close marks stay legible."""
    out = []
    for i, (label, t) in enumerate(marks):
        if t is not None:
            x = axis.x(t)
            side = f'x="{x - 3}" text-anchor="end"' if x > _W - 140 else f'x="{x + 3}"'
            out.append(f'<line x1="{x}" x2="{x}" y1="{4 + 14 * i}" y2="{bottom}" stroke="#222" '
                       f'stroke-dasharray="4 3"/><text {side} y="{14 + 14 * i}">{_e(label)}</text>')
    return "".join(out)


# -- a canary run: canary.json, junit.xml, report.html ---------------------------------------


def write_canary(folder: Path, run: CanaryRun) -> Written:
    """A canary run told three ways, like a verdict: canary.json (`canary_doc`), junit.xml
    (a case per interval, the decision, a case per live-traffic check) and report.html
    (the decision and what decided it, the interval table, the live traffic's checks)."""
    folder.mkdir(parents=True, exist_ok=True)
    doc = canary_doc(run)
    out = Written(folder / "canary.json", folder / "junit.xml", folder / "report.html")
    _atomic(out.json, (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode())
    _atomic(out.junit, _canary_junit(run, doc))
    _atomic(out.html, _canary_html(run, doc).encode())
    return out


def canary_doc(run: CanaryRun) -> dict[str, Any]:
    """canary.json (``"schema": 1``; ``*_s`` are seconds from the canary's start):

    - ``kind`` "canary", ``outcome`` (the decision: promote | abort | inconclusive),
      ``exit_code``, ``summary``; ``stable``, ``candidate``, ``stable_pods``,
      ``canary_pods`` (as many baseline pods), ``share`` (each one's share of new
      connections);
    - ``decision``: ``{outcome, reason, interval, metrics: [{name, classification,
      detail}]}`` — the interval that decided and its metrics that did not pass (all of
      them for a promote); ``audit``: ``{outcome, reason}`` on the complete record;
    - ``intervals``: one row per judged interval, cut from the complete record (see
      `_interval_row`);
    - ``ending``: ``{action: promote | remove, error, started_s, finished_s}``;
    - ``live``: ``{outcome, summary, checks: [{name, outcome, detail}]}``: the live traffic
      by `verify`'s rules (a promote: its rollout; a removal: the stable side);
    - ``canary_outside``: ``{requests, failed}`` the canary answered after its last
      interval; ``limits``: the judge's thresholds; ``times``.
    """
    from harness import canary_evidence as ce

    start = run.times.canary_started
    rows = [_interval_row(item, ce.judge(item, run.limits), run.limits.slo_ms, start)
            for item in run.intervals]
    t = run.times
    return {
        "schema": SCHEMA, "kind": "canary", "outcome": run.decision.outcome,
        "exit_code": run.exit_code, "summary": run.summary(), "stable": run.stable,
        "candidate": run.candidate, "stable_pods": run.stable_pods,
        "canary_pods": run.canary_pods,
        "share": round(ce.share(run.canary_pods, run.stable_pods), 4),
        "decision": {"outcome": run.decision.outcome, "reason": run.decision.reason,
                     **_decided_by(run.decision)},
        "audit": {"outcome": run.audit.outcome, "reason": run.audit.reason},
        "intervals": rows,
        "ending": {"action": run.ending, "error": run.ending_error,
                   "started_s": _rel(t.ending_started, start),
                   "finished_s": _rel(t.ending_finished, start)},
        "live": {"outcome": run.live.outcome, "summary": run.live.summary,
                 "checks": [asdict(c) for c in run.live.checks]},
        "canary_outside": {"requests": run.canary_outside[0], "failed": run.canary_outside[1]},
        "limits": {k: v for k, v in asdict(run.limits).items() if k != "weights"},
        "times": {"traffic_started_s": _rel(t.traffic_started, start), "canary_started_s": 0.0,
                  "canary_ready_s": _rel(t.canary_ready, start),
                  "ending_started_s": _rel(t.ending_started, start),
                  "ending_finished_s": _rel(t.ending_finished, start),
                  "ended_s": _rel(t.ended, start), "canary_started": start},
    }


def _decided_by(decision: Decision) -> dict[str, Any]:
    """The interval that decided, and its metrics that did not pass (a promote: all)."""
    if not decision.intervals:
        return {"interval": None, "metrics": []}
    chosen = next((i for i in decision.intervals if i.critical), None)
    if chosen is None and decision.outcome == "abort":
        chosen = next((i for i in decision.intervals if i.score is not None
                       and any(m.classification in ("high", "low") for m in i.metrics)), None)
    chosen = chosen or decision.intervals[-1]
    shown = [m for m in chosen.metrics if decision.outcome == "promote"
             or m.classification != "pass"] or list(chosen.metrics)
    return {"interval": chosen.index,
            "metrics": [{"name": m.name, "classification": m.classification,
                         "detail": m.detail} for m in shown]}


def _interval_row(item: IntervalEvidence, result: IntervalResult, slo_ms: float,
                  start: float) -> dict[str, Any]:
    """One interval: its time; each side's requests, failures, p50 and p99 (ms, the pod's
    own time of successful requests, live and paired); the latency shift (canary -
    baseline, Hodges-Lehmann) with its interval and Mann-Whitney p; each side's hold-out
    accuracy, McNemar p, agreement; the output schema compared; the stable side's and
    unattributed live requests; each metric's classification; the score and reason."""
    from harness import canary_evidence as ce
    from harness import pairing
    from harness.canary_judge import AccuracyFigures, ErrorFigures, LatencyFigures

    errors = result.metric("errors").figures
    lat = result.metric("latency").figures
    acc = result.metric("accuracy").figures
    assert isinstance(errors, ErrorFigures) and isinstance(lat, LatencyFigures)
    assert isinstance(acc, AccuracyFigures)
    schema = pairing.summary(item.pairs)
    stable = item.live.get(ce.STABLE, ())
    unknown = item.live.get(ce.UNKNOWN, ())
    return {
        "index": item.window.index,
        "start_s": _rel(item.window.start, start), "end_s": _rel(item.window.end, start),
        "canary": {"requests": errors.canary_requests, "failed": errors.canary_failed,
                   "causes": errors.causes, "p50_ms": _r(lat.canary_p50_ms),
                   "p99_ms": _r(lat.canary_p99_ms)},
        "baseline": {"requests": errors.baseline_requests, "failed": errors.baseline_failed,
                     "p50_ms": _r(lat.baseline_p50_ms), "p99_ms": _r(lat.baseline_p99_ms)},
        "fisher_p": errors.fisher_p,
        "latency": {"shift_ms": _r(lat.shift_ms), "shift_low_ms": _r(lat.shift_low_ms),
                    "shift_high_ms": _r(lat.shift_high_ms), "p_value": lat.p_value,
                    "thinned": lat.thinned},
        "accuracy": {"pairs": acc.pairs, "canary": acc.canary_accuracy,
                     "baseline": acc.baseline_accuracy, "mcnemar_p": acc.p_value,
                     "agreement": acc.agreement, "baseline_only": acc.baseline_only,
                     "canary_only": acc.canary_only},
        "schema": {"compared": schema.schema_compared, "differs": schema.schema_differs,
                   "first_difference": schema.first_difference},
        "stable_live": {"requests": len(stable),
                        "failed": sum(cause(r, slo_ms) is not None for r in stable)},
        "unattributed_failed": sum(cause(r, slo_ms) is not None for r in unknown),
        "metrics": {m.name: m.classification for m in result.metrics},
        "details": {m.name: m.detail for m in result.metrics},
        "score": result.score, "critical": result.critical, "reason": result.reason,
    }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _canary_junit(run: CanaryRun, doc: dict[str, Any]) -> bytes:
    """A case per interval (a metric high or low: failure; no score: error), the
    decision (abort: failure; inconclusive: error) and a case per live-traffic check."""
    cases: list[tuple[str, str, str]] = []  # (name, outcome pass/fail/inconclusive, detail)
    for row in doc["intervals"]:
        bad = any(v in ("high", "low") for v in row["metrics"].values())
        outcome = "fail" if bad or row["critical"] else (
            "inconclusive" if row["score"] is None else "pass")
        cases.append((f"interval {row['index']}", outcome, row["reason"]))
    decided = {"promote": "pass", "abort": "fail", "inconclusive": "inconclusive"}
    cases.append(("decision", decided.get(run.decision.outcome, "inconclusive"),
                  run.decision.reason))
    cases += [(f"live traffic: {c.name}", c.outcome, c.detail) for c in run.live.checks]
    n = Counter(outcome for _, outcome, _ in cases)
    counts = {"tests": str(len(cases)), "failures": str(n["fail"]),
              "errors": str(n["inconclusive"])}
    root = ET.Element("testsuites", {"name": CANARY_SUITE, **counts})
    suite = ET.SubElement(root, "testsuite", {"name": CANARY_SUITE, "skipped": "0", **counts})
    props = ET.SubElement(suite, "properties")
    for key, value in (("stable", run.stable), ("candidate", run.candidate),
                       ("outcome", run.decision.outcome), ("exit_code", str(run.exit_code)),
                       ("summary", run.summary())):
        ET.SubElement(props, "property", name=key, value=_x(value))
    for name, outcome, detail in cases:
        case = ET.SubElement(suite, "testcase", classname=CANARY_SUITE, name=_x(name), time="0")
        if outcome != "pass":
            tag, kind = ("failure", "fail") if outcome == "fail" else ("error", "inconclusive")
            ET.SubElement(case, tag, type=kind, message=_x(detail)).text = _x(detail)
    ET.SubElement(suite, "system-out").text = _x(run.summary())
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


_CANARY_CSS = """header.promote{background:#2e8b57}header.abort{background:#c0392b}
header.promote.unproven{background:#b7791f}header.promote.failed{background:#c0392b}
td.high,td.low{background:#f4c7c3}td.nodata{background:#fbe7c6}td.num{text-align:right}
table.intervals td{white-space:nowrap}"""


def _canary_html(run: CanaryRun, doc: dict[str, Any]) -> str:
    outcome = run.decision.outcome
    extra = {0: "", 3: " unproven"}.get(run.exit_code, " failed") if outcome == "promote" else ""
    decided = doc["decision"]
    metrics = "".join(f'<li class="{"pass" if m["classification"] == "pass" else "fail"}">'
                      f'<b>{_e(m["name"])}</b> ({_e(m["classification"])}): {_e(m["detail"])}'
                      "</li>" for m in decided["metrics"])
    said = (f"<p>Decided at interval {_e(decided['interval'])} by:</p>"
            f'<ul class="checks">{metrics}</ul>' if decided["interval"] is not None else "")
    audit = ("" if run.audit.outcome == run.decision.outcome else
             f"<p><b>On the complete record the decision would be {_e(run.audit.outcome)}"
             f"</b>: {_e(run.audit.reason)}</p>")
    live = "".join(f'<li class="{_e(c.outcome)}"><b>{_e(c.name)}</b>: {_e(c.detail)}</li>'
                   for c in run.live.checks)
    what = "The promote's rollout" if run.ending == "promote" else "The stable side"
    link = ('<p>The rollout judged as <code>verify</code> judges one, with its timeline: '
            '<a href="promote/report.html">promote/report.html</a>.</p>'
            if run.ending == "promote" else "")
    outside = run.canary_outside
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>canary: {_e(run.word)}</title><style>{_CSS}\n{_CANARY_CSS}</style></head>"
            f'<body><header class="{_e(outcome)}{extra}"><h1>{_e(run.word)}</h1>'
            f'<p class="summary">{_e(run.stable)} → {_e(run.candidate)}, exit code '
            f"{run.exit_code}</p></header><h2>Decision</h2><p>{_e(run.decision.reason)}</p>"
            f"{said}{audit}<h2>Intervals</h2>{_interval_table(doc['intervals'])}"
            f"<p>{run.canary_pods} canary and {run.canary_pods} baseline pod(s) beside "
            f"{run.stable_pods} stable: about {doc['share']:.0%} of new connections each. "
            f"Latency: the pod's own time of successful requests. The canary answered "
            f"{outside[0]} requests after its last interval, {outside[1]} failed.</p>"
            f"<h2>Live traffic: {_e(run.live.outcome.upper())}</h2><p>{what}: "
            f'{_e(run.live.summary)}</p><ul class="checks">{live}</ul>{link}'
            "</body></html>\n")


def _interval_table(rows: Sequence[dict[str, Any]]) -> str:
    head = ["#", "s", "canary req / failed", "baseline req / failed", "canary p50 / p99 ms",
            "baseline p50 / p99 ms", "shift ms [interval]", "Mann-Whitney p",
            "accuracy canary / baseline", "McNemar p", "agreement", "schema differs",
            "errors", "latency", "accuracy", "score"]
    body = []
    for row in rows:
        c, b, lat, acc = row["canary"], row["baseline"], row["latency"], row["accuracy"]
        cells = [
            (row["index"], "num"), (f"{row['start_s']:.0f} to {row['end_s']:.0f}", "num"),
            (f"{c['requests']} / {c['failed']}", "num"),
            (f"{b['requests']} / {b['failed']}", "num"),
            (f"{_f(c['p50_ms'])} / {_f(c['p99_ms'])}", "num"),
            (f"{_f(b['p50_ms'])} / {_f(b['p99_ms'])}", "num"),
            (f"{_f(lat['shift_ms'], '+.2f')} [{_f(lat['shift_low_ms'], '+.2f')}, "
             f"{_f(lat['shift_high_ms'], '+.2f')}]", "num"),
            (_f(lat["p_value"], ".2g"), "num"),
            (f"{_f(acc['canary'], '.2f')} / {_f(acc['baseline'], '.2f')} "
             f"(n={acc['pairs']})", "num"),
            (_f(acc["mcnemar_p"], ".2g"), "num"), (_f(acc["agreement"], ".2f"), "num"),
            (f"{row['schema']['differs']} of {row['schema']['compared']}", "num"),
            *((row["metrics"][m], row["metrics"][m]) for m in ("errors", "latency", "accuracy")),
            (_f(row["score"], ".0f"), "num"),
        ]
        body.append("<tr>" + "".join(f'<td class="{_e(k)}" title="{_e(row["reason"])}">'
                                     f"{_e(v)}</td>" for v, k in cells) + "</tr>")
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f'<table class="intervals"><tr>{header}</tr>{"".join(body)}</table>'


def _f(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)
