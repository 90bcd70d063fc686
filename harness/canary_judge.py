"""The canary's judge: is the canary worse than a baseline started beside it?

The rollout verdict asks whether any client saw a failure; a canary run asks
more: is the new version slower, or less accurate, than the old one under the
same traffic at the same time? The old version is judged in a *fresh*
baseline (new pods, like the canary's) rather than in the long-running stable
pods, so warm caches and uptime do not pass for a difference between versions.

The run is cut into intervals; each is judged on three metrics, each
classified "pass", "high", "low" or "nodata" as Kayenta does:

- **errors**: a canary request that failed the way `verify` counts failures
  (harness/causes.py) is *critical*: it fails the interval at once, however few
  there are — zero failed requests stays the rule, statistics do not soften it.
  Fisher's exact test of the two error rates is recorded for the report only;
- **latency**: Mann-Whitney U with the Hodges-Lehmann shift and its interval,
  direction-aware (only a slower canary is bad): see `latency`;
- **accuracy**: McNemar's exact test on labelled inputs sent to both versions,
  plus an allowed drop (only a less accurate canary is bad): see `accuracy`.

An interval's score is the weighted share of metrics with data that pass; the
run's decision reads the scores interval by interval (`decide`). Pure
functions over recorded evidence: no I/O, every rule testable on synthetic data.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

from harness.causes import cause
from harness.evidence import Request
from harness.verdict import percentile

Classification = Literal["pass", "high", "low", "nodata"]
Outcome = Literal["promote", "abort", "inconclusive", "continue"]

METRICS = ("errors", "latency", "accuracy")
"""The metrics of every interval, in the order they are reported."""

MAX_PAIRS = 4_000_000
"""Most pairwise differences the Hodges-Lehmann estimate is computed over (32 MB of
float64); larger samples are thinned first (see `hodges_lehmann`)."""


@dataclass(frozen=True)
class JudgeLimits:
    """The judge's thresholds. The defaults follow Kayenta's Mann-Whitney classifier
    and score thresholds, except the stricter confidence (two errors in a hundred
    intervals, not five: a canary run judges several intervals, each a chance of a
    false alarm)."""

    confidence: float = 0.98
    """Confidence of every interval and test: a difference counts only when its
    p-value is below 1 - confidence (0.02)."""
    tolerance: float = 0.25
    """Kayenta's tolerance: the shift's interval must clear zero by this fraction of
    the estimated shift, so a shift the data barely tell from none is not called."""
    allowed_increase: float = 1.1
    """Kayenta's allowed increase, as a ratio of the baseline's median latency: the
    canary is High only when it is, with confidence, slower than
    baseline median x allowed_increase. Not Kayenta's 1.0: two fresh pods of the
    *same* build differ by a few percent (the A/A canary on a real cluster: shifts of
    +0.01 to +0.07 ms on a 1.8 ms median, the last one "significant" at p=0.001 over
    600 requests), so at 1.0 the false-alarm control aborted; 1.1 forgives 10 %."""
    min_samples: int = 50
    """Fewest samples per side (successful requests for latency, canary requests for
    errors, labelled pairs for accuracy) below which a metric has no data."""
    max_accuracy_drop: float = 0.02
    """How far (absolute, 0..1) the canary's accuracy may fall below the baseline's
    before a significant difference counts: two points in a hundred inputs."""
    marginal_score: float = 75.0
    """Kayenta's marginal threshold: an interim interval scoring below it stops the run."""
    pass_score: float = 95.0
    """Kayenta's pass threshold: the final interval must score at least this to promote."""
    slo_ms: float = 1000.0
    """A canary request slower than this failed ("slow"), as in `verify` (its --slo)."""
    weights: Mapping[str, float] = field(default_factory=dict)
    """Score weight per metric name; a metric not named weighs 1."""

    def __post_init__(self) -> None:
        checks = (
            ("confidence", self.confidence, 0 < self.confidence < 1, "between 0 and 1"),
            ("tolerance", self.tolerance, self.tolerance >= 0, "0 or more"),
            ("allowed_increase", self.allowed_increase, self.allowed_increase >= 1,
             "1.0 or more"),
            ("min_samples", self.min_samples, self.min_samples >= 1, "1 or more"),
            ("max_accuracy_drop", self.max_accuracy_drop, 0 <= self.max_accuracy_drop < 1,
             "in [0, 1)"),
            ("marginal_score", self.marginal_score,
             0 <= self.marginal_score <= self.pass_score, "in [0, pass_score]"),
            ("pass_score", self.pass_score, 0 <= self.pass_score <= 100, "in [0, 100]"),
            ("slo_ms", self.slo_ms, self.slo_ms > 0, "above 0"),
        )
        for name, value, ok, allowed in checks:
            if not ok:
                raise ValueError(f"JudgeLimits.{name}={value!r}: must be {allowed}")
        for name, weight in self.weights.items():
            if name not in METRICS or weight < 0:
                raise ValueError(f"JudgeLimits.weights[{name!r}]={weight!r}: the name must be "
                                 f"one of {', '.join(METRICS)} and the weight 0 or more")


@dataclass(frozen=True)
class PairedOutcome:
    """One labelled input sent to both versions."""

    baseline_correct: bool
    canary_correct: bool
    same_prediction: bool


@dataclass(frozen=True)
class ErrorFigures:
    canary_requests: int
    canary_failed: int
    baseline_requests: int
    baseline_failed: int
    causes: dict[str, int]
    """The canary's failures by cause (harness/causes.py)."""
    fisher_p: float | None
    """One-sided (canary's rate higher); None when a side has no requests."""
    odds_ratio: float | None


@dataclass(frozen=True)
class LatencyFigures:
    """Latency of successful requests, ms, each the pod's own time (see `latency`)."""

    canary_n: int
    baseline_n: int
    canary_p50_ms: float | None
    canary_p99_ms: float | None
    baseline_p50_ms: float | None
    baseline_p99_ms: float | None
    shift_ms: float | None
    """Hodges-Lehmann estimate of canary - baseline."""
    shift_low_ms: float | None
    shift_high_ms: float | None
    """The shift's interval at `confidence`."""
    p_value: float | None
    """Mann-Whitney U, two-sided."""
    thinned: bool
    """The shift came from thinned samples (more than MAX_PAIRS differences)."""


@dataclass(frozen=True)
class AccuracyFigures:
    pairs: int
    canary_accuracy: float | None
    baseline_accuracy: float | None
    agreement: float | None
    """Share of inputs both versions predicted alike."""
    baseline_only: int
    """b: baseline right, canary wrong."""
    canary_only: int
    """c: baseline wrong, canary right."""
    p_value: float | None
    """McNemar's exact test, two-sided: binomial b of b + c at 1/2."""


@dataclass(frozen=True)
class MetricResult:
    name: str
    classification: Classification
    detail: str
    """One sentence with the numbers that classified it, for a person."""
    figures: ErrorFigures | LatencyFigures | AccuracyFigures


@dataclass(frozen=True)
class IntervalResult:
    index: int
    metrics: tuple[MetricResult, ...]
    score: float | None
    """0-100; 0 with a critical failure; None when inconclusive (too little data)."""
    critical: int
    """Canary requests that failed: any one fails the interval."""
    reason: str

    def metric(self, name: str) -> MetricResult:
        return next(m for m in self.metrics if m.name == name)


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    """promote, abort or inconclusive; for a run not yet final and not stopped, continue."""
    intervals: tuple[IntervalResult, ...]
    reason: str
    """What decided, with the metric and its numbers."""


# -- one interval ------------------------------------------------------------------


def judge_interval(index: int, canary: Sequence[Request], baseline: Sequence[Request],
                   paired: Sequence[PairedOutcome],
                   limits: JudgeLimits | None = None) -> IntervalResult:
    """Classify the three metrics of one interval and score it.

    Score: 100 x (weight of metrics that pass) / (weight of metrics with data), as
    Kayenta scores a group. With the three metrics at equal weight one metric
    not passing scores 67: below both thresholds, so at the defaults any High or
    Low stops the run; the thresholds matter when weights differ. Nodata on half
    or more of the metrics leaves the interval inconclusive (score None): a score
    over one metric would be a verdict on almost nothing. A critical failure scores 0.
    """
    limits = limits or JudgeLimits()
    metrics = (errors(canary, baseline, limits), latency(canary, baseline, limits),
               accuracy(paired, limits))
    failed = metrics[0].figures
    assert isinstance(failed, ErrorFigures)
    critical = failed.canary_failed
    head = f"interval {index}"
    if critical:
        return IntervalResult(index, metrics, 0.0, critical,
                              f"{head}: critical: {metrics[0].detail}")
    empty = [m for m in metrics if m.classification == "nodata"]
    if 2 * len(empty) >= len(metrics):
        return IntervalResult(index, metrics, None, 0,
                              f"{head}: too little data: "
                              + "; ".join(m.detail for m in empty))
    scored = [m for m in metrics if m.classification != "nodata"]
    total = sum(limits.weights.get(m.name, 1.0) for m in scored)
    if total <= 0:
        return IntervalResult(index, metrics, None, 0,
                              f"{head}: every metric with data weighs 0")
    passed = sum(limits.weights.get(m.name, 1.0) for m in scored if m.classification == "pass")
    score = 100 * passed / total
    bad = [m for m in scored if m.classification != "pass"]
    said = "; ".join(m.detail for m in bad) if bad else "; ".join(m.detail for m in scored)
    return IntervalResult(index, metrics, score, 0,
                          f"{head}: score {score:.0f} ({len(scored) - len(bad)} of "
                          f"{len(scored)} metrics pass): {said}")


def errors(canary: Sequence[Request], baseline: Sequence[Request],
           limits: JudgeLimits) -> MetricResult:
    """High when any canary request failed: critical, whatever the baseline did.

    Fisher's exact test (one-sided: the canary's error rate higher) is kept for the
    report: with the baseline at 0 of 1000 and the canary at 1 of 1000 it says
    p=0.5, nothing, yet a client saw a failure, and the gate exists to stop that.
    Below `min_samples` canary requests with no failure there is no data.
    """
    why = Counter(c for r in canary if (c := cause(r, limits.slo_ms)) is not None)
    failed = sum(why.values())
    base_failed = sum(cause(r, limits.slo_ms) is not None for r in baseline)
    fisher_p = odds = None
    if canary and baseline:
        table = [[failed, len(canary) - failed], [base_failed, len(baseline) - base_failed]]
        result = stats.fisher_exact(table, alternative="greater")
        fisher_p, odds = float(result.pvalue), float(result.statistic)
    figures = ErrorFigures(len(canary), failed, len(baseline), base_failed, dict(why),
                           fisher_p, odds)
    rates = (f"{failed} of {len(canary)} canary requests failed"
             + (f" ({', '.join(f'{n} x {c}' for c, n in why.most_common(3))})" if failed else "")
             + f", baseline {base_failed} of {len(baseline)}"
             + (f", Fisher p={fisher_p:.2g}" if fisher_p is not None else ""))
    if failed:
        return MetricResult("errors", "high", f"errors: {rates}", figures)
    if len(canary) < limits.min_samples:
        return MetricResult("errors", "nodata",
                            f"errors: {len(canary)} canary requests (need {limits.min_samples})",
                            figures)
    return MetricResult("errors", "pass", f"errors: {rates}", figures)


def latency(canary: Sequence[Request], baseline: Sequence[Request],
            limits: JudgeLimits) -> MetricResult:
    """Kayenta's Mann-Whitney classification for a metric where only higher is bad.

    Samples: successful requests, each its pod's own time — latency minus the lag it
    spent queued behind its client's previous answer, which may have come from the
    other version. With d = canary - baseline, its Hodges-Lehmann estimate and
    interval at `confidence` (`hodges_lehmann`), and p from Mann-Whitney U
    (two-sided), the canary is **high** when all three hold:

    1. p < 1 - confidence: the two samples differ;
    2. low > tolerance x |estimate| (Kayenta's bound): the interval clears zero by a
       quarter of the shift, not by a hair;
    3. low > (allowed_increase - 1) x baseline median: it is, with confidence,
       slower than the allowance (none at 1.0, Kayenta's default).

    The mirror image (a faster canary) is reported and passes, as Kayenta passes Low
    for a metric whose direction is "increase". Fewer than `min_samples` successful
    requests on either side: no data.
    """
    canary_ms = [r.answer_ms for r in canary if r.ok]
    baseline_ms = [r.answer_ms for r in baseline if r.ok]
    sides = (f"canary p50 {_ms(percentile(canary_ms, 50))} p99 "
             f"{_ms(percentile(canary_ms, 99))} vs baseline p50 "
             f"{_ms(percentile(baseline_ms, 50))} p99 {_ms(percentile(baseline_ms, 99))} "
             f"(n={len(canary_ms)}/{len(baseline_ms)})")
    if min(len(canary_ms), len(baseline_ms)) < limits.min_samples:
        figures = LatencyFigures(len(canary_ms), len(baseline_ms), percentile(canary_ms, 50),
                                 percentile(canary_ms, 99), percentile(baseline_ms, 50),
                                 percentile(baseline_ms, 99), None, None, None, None, False)
        return MetricResult("latency", "nodata",
                            f"latency: {len(canary_ms)} canary and {len(baseline_ms)} baseline "
                            f"successful requests (need {limits.min_samples} each)", figures)
    p = float(stats.mannwhitneyu(canary_ms, baseline_ms, alternative="two-sided").pvalue)
    p = 1.0 if math.isnan(p) else p
    shift, low, high, thinned = hodges_lehmann(canary_ms, baseline_ms, limits.confidence)
    base_p50 = float(np.median(baseline_ms))
    figures = LatencyFigures(len(canary_ms), len(baseline_ms), percentile(canary_ms, 50),
                             percentile(canary_ms, 99), percentile(baseline_ms, 50),
                             percentile(baseline_ms, 99), shift, low, high, p, thinned)
    alpha = 1 - limits.confidence
    allowance = (limits.allowed_increase - 1) * base_p50
    margin = limits.tolerance * abs(shift)
    said = (f"{sides}, shift {shift:+.2f} ms ({limits.confidence:.0%} CI {low:+.2f} to "
            f"{high:+.2f}), Mann-Whitney p={p:.2g}")
    if p < alpha and low > margin and low > allowance:
        return MetricResult("latency", "high", f"latency: canary slower: {said}", figures)
    if p < alpha and high < -margin:
        return MetricResult("latency", "pass", f"latency: canary faster: {said}", figures)
    return MetricResult("latency", "pass", f"latency: {said}", figures)


def hodges_lehmann(canary: Sequence[float], baseline: Sequence[float],
                   confidence: float) -> tuple[float, float, float, bool]:
    """The shift canary - baseline: (estimate, low, high, thinned).

    The estimate is the median of all n x m differences canary_i - baseline_j. The
    interval is the distribution-free one of the rank-sum test (Hollander, Wolfe &
    Chicken, *Nonparametric Statistical Methods*, 3rd ed., 2014, §4.3; Lehmann,
    *Nonparametrics*, 1975, §2.6): with the differences ordered D(1) <= ... <= D(nm),
    it is [D(C), D(nm + 1 - C)], where C comes from the normal approximation of the
    Mann-Whitney statistic:

        C = round(nm/2 - z(1 - alpha/2) x sqrt(nm (n + m + 1) / 12)),  alpha = 1 - confidence

    (at least 1). Above MAX_PAIRS differences each sample is first thinned, in
    proportion, to evenly spaced order statistics (the (i + 1/2)/k quantiles of the
    sorted sample): deterministic, it keeps each distribution's shape, and the
    interval is then that of the smaller samples — wider than the full samples
    would give, so the error lies toward not calling a shift.
    """
    x = np.sort(np.asarray(canary, dtype=np.float64))
    y = np.sort(np.asarray(baseline, dtype=np.float64))
    thinned = x.size * y.size > MAX_PAIRS
    if thinned:
        keep = math.sqrt(MAX_PAIRS / (x.size * y.size))
        x, y = _thin(x, keep), _thin(y, keep)
    n, m = x.size, y.size
    pairs = n * m
    z = float(stats.norm.ppf(1 - (1 - confidence) / 2))
    c = max(1, round(pairs / 2 - z * math.sqrt(pairs * (n + m + 1) / 12)))
    middle = ((pairs - 1) // 2, pairs // 2)
    ranks = sorted({c - 1, pairs - c, *middle})
    d = np.partition(np.subtract.outer(x, y).ravel(), ranks)
    estimate = (float(d[middle[0]]) + float(d[middle[1]])) / 2
    return estimate, float(d[c - 1]), float(d[pairs - c]), thinned


def _thin(sorted_values: npt.NDArray[np.float64], keep: float) -> npt.NDArray[np.float64]:
    k = max(1, math.floor(sorted_values.size * keep))
    at = ((np.arange(k) + 0.5) * sorted_values.size / k).astype(np.intp)
    return sorted_values[at]


def accuracy(paired: Sequence[PairedOutcome], limits: JudgeLimits) -> MetricResult:
    """McNemar's exact test where only a less accurate canary is bad.

    Only the discordant pairs carry information about the difference: b (baseline
    right, canary wrong) and c (the reverse). Under "no difference" b is binomial
    over b + c at 1/2, so p = binomtest(b, b + c, 0.5) (two-sided). The canary is
    **low** when p < 1 - confidence and its accuracy is more than
    `max_accuracy_drop` below the baseline's ((b - c) / pairs, the point estimate):
    significant *and* large enough to matter. A more accurate canary passes.
    Fewer than `min_samples` pairs: no data.
    """
    pairs = len(paired)
    if pairs < limits.min_samples:
        figures = AccuracyFigures(pairs, None, None, None, 0, 0, None)
        return MetricResult("accuracy", "nodata",
                            f"accuracy: {pairs} labelled pairs (need {limits.min_samples})",
                            figures)
    b = sum(o.baseline_correct and not o.canary_correct for o in paired)
    c = sum(o.canary_correct and not o.baseline_correct for o in paired)
    p = float(stats.binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0
    canary_acc = sum(o.canary_correct for o in paired) / pairs
    baseline_acc = sum(o.baseline_correct for o in paired) / pairs
    agreement = sum(o.same_prediction for o in paired) / pairs
    figures = AccuracyFigures(pairs, canary_acc, baseline_acc, agreement, b, c, p)
    said = (f"canary {canary_acc:.2f} vs baseline {baseline_acc:.2f} on {pairs} inputs, "
            f"McNemar p={p:.2g} (b={b}, c={c}), agreement {agreement:.2f}")
    drop = (b - c) / pairs
    if p < 1 - limits.confidence and drop - limits.max_accuracy_drop > 1e-12:
        return MetricResult("accuracy", "low",
                            f"accuracy: canary worse by {drop:.2f} (allowed "
                            f"{limits.max_accuracy_drop:.2f}): {said}", figures)
    return MetricResult("accuracy", "pass", f"accuracy: {said}", figures)


# -- the run ---------------------------------------------------------------------------


def decide(intervals: Sequence[IntervalResult], limits: JudgeLimits | None = None, *,
           final: bool) -> Decision:
    """The run's decision from its intervals so far, in order.

    A caller judging intervals live calls it after each one, with `final` set for
    the last, and stops on anything but "continue". The first of these decides:

    - an interval with a critical failure: abort;
    - an interim interval (any but the last of a final run) scoring below
      `marginal_score`: abort early;
    - final: the last interval inconclusive → inconclusive (a run never promotes on
      an interval without data); below `pass_score` → abort; else promote.

    Inconclusive interim intervals are skipped: no data is no evidence either way,
    and the final interval must still earn its score.
    """
    limits = limits or JudgeLimits()
    done = tuple(intervals)
    interim = done[:-1] if final else done
    for interval in done:
        if interval.critical:
            return Decision("abort", done, f"abort: {interval.reason}")
    for interval in interim:
        if interval.score is not None and interval.score < limits.marginal_score:
            return Decision("abort", done,
                            f"abort early: interval {interval.index} scored "
                            f"{interval.score:.0f}, below the marginal {limits.marginal_score:g}: "
                            f"{interval.reason}")
    if not final:
        return Decision("continue", done,
                        f"continue: {len(done)} intervals, none below the marginal "
                        f"{limits.marginal_score:g}")
    if not done:
        return Decision("inconclusive", done, "inconclusive: no interval was judged")
    last = done[-1]
    if last.score is None:
        return Decision("inconclusive", done, f"inconclusive: {last.reason}")
    if last.score < limits.pass_score:
        return Decision("abort", done,
                        f"abort: the final interval {last.index} scored {last.score:.0f}, "
                        f"below the pass {limits.pass_score:g}: {last.reason}")
    return Decision("promote", done,
                    f"promote: the final interval {last.index} scored {last.score:.0f} "
                    f"(pass {limits.pass_score:g}), no interval below the marginal "
                    f"{limits.marginal_score:g}: {last.reason}")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"
