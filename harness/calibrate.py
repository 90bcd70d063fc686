"""Detection measured: every control run N times at the gate's default settings.

One run of a control is an anecdote; a gate that caught a fault 6 times out of
6 may still miss it one time in three. So `calibrate` repeats each control on
one cluster, round by round (so a slow minute of the machine hurts every
control alike, not one), and reports for each the share of runs that gave the
right verdict with its exact 95 % Clopper-Pearson interval, the failed
requests it took to decide, and the run time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import json
import logging
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import canary, errors, progress, startup, verify
from harness import canary_evidence as ce
from harness.controls import FROM_VERSION, AnyControl, CanaryControl, Control, named
from harness.settings import GateSettings, Settings

log = logging.getLogger(__name__)

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Run:
    outcome: str
    requests: int
    failures: int
    seconds: float
    summary: str


@dataclass(frozen=True)
class Row:
    """One control's runs and what they add up to."""

    control: AnyControl
    runs: tuple[Run, ...]

    @property
    def hits(self) -> int:
        """Runs with the right verdict; for a measured control, runs that failed."""
        wanted = "fail" if self.control.expected == "measure" else self.control.expected
        return sum(run.outcome == wanted for run in self.runs)

    @property
    def interval(self) -> tuple[float, float]:
        return clopper_pearson(self.hits, len(self.runs))

    def figures(self) -> dict[str, object]:
        failures = [run.failures for run in self.runs]
        lo, hi = self.interval
        c = self.control
        setup: dict[str, object] = (
            {"values": dict(c.values), "traffic": dict(c.traffic)} if isinstance(c, Control)
            else {"canary": True, "decision": c.decision})
        return {
            "control": c.name, "to_version": c.to_version, **setup, "expected": c.expected,
            "runs": len(self.runs), "verdicts": dict(Counter(r.outcome for r in self.runs)),
            "rate": round(self.hits / len(self.runs), 3) if self.runs else None,
            "interval": [round(lo, 3), round(hi, 3)],
            "median_failed_requests": statistics.median(failures) if failures else None,
            "min_failed_requests": min(failures) if failures else None,
            "median_requests": statistics.median(r.requests for r in self.runs)
            if self.runs else None,
            "median_seconds": round(statistics.median(r.seconds for r in self.runs), 1)
            if self.runs else None,
            "summaries": [r.summary for r in self.runs],
        }


def clopper_pearson(hits: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact binomial interval: conservative, right at 0/n and n/n, where the normal
    approximation claims certainty."""
    from scipy.stats import beta

    if n == 0:
        return 0.0, 1.0
    alpha = 1 - confidence
    lo = float(beta.ppf(alpha / 2, hits, n - hits + 1)) if hits > 0 else 0.0
    hi = float(beta.ppf(1 - alpha / 2, hits + 1, n - hits)) if hits < n else 1.0
    return lo, hi


def calibrate(settings: Settings) -> list[Row]:
    """Every chosen control `settings.calibrate.runs` times on one cluster; the table
    goes to calibration.json and calibration.html in the report folder."""
    if settings.deploy.program is not None:
        raise errors.UsageError(
            "the controls set chart values of the bundled program (drain off, a bad build): "
            "unset HARNESS_PROGRAM (or deploy.program in rollout.yaml) to calibrate")
    if settings.deploy.team_chart:
        raise errors.UsageError(
            "the controls are fault builds of the bundled server and values of the bundled "
            "chart: unset HARNESS_CHART/HARNESS_CHART_REPO/HARNESS_IMAGE_REPOSITORY (or their "
            "deploy. keys in rollout.yaml) to calibrate")
    chosen = named(settings.calibrate.controls)
    runs = settings.calibrate.runs
    folder = settings.gate.report_dir.resolve()
    versions = (FROM_VERSION, *dict.fromkeys(c.to_version for c in chosen))
    results: dict[str, list[Run]] = {c.name: [] for c in chosen}
    tracks = any(isinstance(c, CanaryControl) for c in chosen)
    if tracks:
        canary.check(settings)
    with startup.prepared(settings, versions, tracks=tracks) as ready:
        for round_ in range(1, runs + 1):
            for control in chosen:
                run = _run(settings, ready, control, folder / control.name / str(round_))
                results[control.name].append(run)
                progress.say(f"calibrate {control.name} {round_}/{runs}: {run.summary} "
                             f"({run.seconds:.0f}s)")
                _write(folder, [Row(c, tuple(results[c.name])) for c in chosen], settings)
    return [Row(c, tuple(results[c.name])) for c in chosen]


def rehearse(settings: Settings, ready: startup.Prepared, control: Control,
             report_dir: Path) -> verify.Result:
    """One run of `control` on a prepared cluster, from nothing back to nothing: the gate's
    settings with only the control's versions, chart values and rollout timeout (and,
    for a control of the load itself, its traffic changes)."""
    settings = settings.replace("traffic", **control.traffic)
    deploy = dataclasses.replace(settings.deploy, values=dict(control.values))
    if control.rollout_timeout is not None:
        deploy = dataclasses.replace(deploy, rollout_timeout=control.rollout_timeout)
    gate = dataclasses.replace(settings.gate, from_version=FROM_VERSION,
                               to_version=control.to_version, report_dir=report_dir)
    return verify.rehearsal(dataclasses.replace(settings, deploy=deploy, gate=gate), ready)


def canary_run(settings: Settings, ready: startup.Prepared, control: CanaryControl,
               report_dir: Path, keep_stable: bool = False) -> canary.Result:
    """One canary run of `control` on a prepared cluster, from nothing back to nothing: the
    canary's default analysis, stable FROM_VERSION, the control's candidate.
    `keep_stable`: after an abort, stable FROM_VERSION stays deployed as the abort left
    it, so the next run starts on it as a team's next canary would (and shows that an
    abort leaves a stable to build on); anything else still ends in nothing."""
    settings = settings.replace("canary", stable=FROM_VERSION, candidate=control.candidate,
                                decide_only=not control.promote
                                ).replace("gate", report_dir=report_dir)
    result = None
    try:
        result = canary.run(settings, ready)
        return result
    finally:
        if not (keep_stable and result is not None
                and result.run.decision.outcome == "abort"):
            with contextlib.suppress(errors.HarnessError):
                ready.stack.configured(settings).down()


CANARY_OUTCOMES = {0: "pass", 1: "fail", 3: "inconclusive"}
"""A canary's exit code as a verdict: promoted, aborted (or a promote that failed),
inconclusive; any other is a harness error."""


def _run(settings: Settings, ready: startup.Prepared, control: AnyControl,
         folder: Path) -> Run:
    started = time.monotonic()
    if isinstance(control, CanaryControl):
        run = canary_run(settings, ready, control, folder).run
        # the canary's own requests in the judged intervals, and those of them that failed
        requests, failed = ce.counts([r for iv in run.intervals for r in iv.live[ce.CANARY]],
                                     run.limits.slo_ms)
        return Run(CANARY_OUTCOMES.get(run.exit_code, "error"), requests, failed,
                   round(time.monotonic() - started, 1), run.summary())
    v = rehearse(settings, ready, control, folder).verdict
    return Run(v.outcome, v.figures.requests, v.figures.failures,
               round(time.monotonic() - started, 1), v.summary())


HEAD = ("control", "expected", "verdicts", "rate [95% CI]", "failed req. median (min)",
        "run s")


def _cells(rows: Sequence[Row]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for row in rows:
        f = row.figures()
        verdicts = " ".join(f"{k} {n}" for k, n in sorted(Counter(
            r.outcome for r in row.runs).items()))
        lo, hi = row.interval
        out.append((row.control.name, row.control.expected, verdicts,
                    f"{row.hits}/{len(row.runs)} [{lo:.2f}, {hi:.2f}]",
                    f"{_count(f['median_failed_requests'])} ({_count(f['min_failed_requests'])})",
                    f"{f['median_seconds']}"))
    return out


def _count(value: object) -> str:
    """A count as a count: 49, not 49.0 (a median between two runs may be 48.5)."""
    return f"{value:g}" if isinstance(value, int | float) else "-"


def table(rows: Sequence[Row]) -> str:
    """The plain-text table the command prints and the README quotes."""
    lines = [HEAD, *_cells(rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEAD))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def _write(folder: Path, rows: Sequence[Row], settings: Settings) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    t = settings.traffic
    doc = {"schema": 1, "confidence": CONFIDENCE,
           "traffic": dataclasses.asdict(t), "verdict": dataclasses.asdict(settings.verdict),
           "gate": {k: v for k, v in dataclasses.asdict(settings.gate).items()
                    if k in {f.name for f in dataclasses.fields(GateSettings)}
                    and k != "report_dir"},
           "controls": [row.figures() for row in rows]}
    (folder / "calibration.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in line) + "</tr>"
                    for line in _cells(rows))
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEAD)
    (folder / "calibration.html").write_text(
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>calibration'
        "</title></head><body><h1>Calibration at the gate's settings</h1>"
        f"<p>{t.describe()}; each control's runs interleaved round by round.</p>"
        f"<table><tr>{head}</tr>{cells}</table></body></html>\n")
