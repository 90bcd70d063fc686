"""The gate inside a team's own pytest suite: a cluster per session, a rollout per call.

Teams already run their release checks in pytest; this plugin (registered
through the `pytest11` entry point, so installing rollout-harness is enough)
gives them the gate as fixtures::

    def test_release(rollout):
        assert rollout("1.4.0", "1.5.0").passed

    @pytest.mark.rollout(values={"gracefulDrain": {"enabled": False}})
    def test_drain_is_needed(rollout):
        assert rollout("1.4.0", "1.5.0").outcome == "fail"

- `rollout_settings`: the harness's settings from the suite's rollout.yaml (in
  pytest's rootdir) and HARNESS_* variables over it; the cluster's name and
  keeping it come from pytest-kind's own `--cluster-name` and `--keep-cluster`
  when they are given.
- `rollout_cluster`: the kind cluster for the session, made with the
  harness's toolchain and deleted at the end unless kept;
- `model_stack`: the Pulumi stack of the model on that cluster;
- `rollout`: a function `(from_version, to_version, **changes)` that runs the
  gate's rehearsal (deploy, traffic, upgrade, verdict, report in the test's
  tmp_path) and returns a `Rollout`; `changes` (and the `rollout` marker's
  keyword arguments) set `values` (chart values, over those already set) or any
  traffic, gate, verdict or deploy setting by its name, e.g. `users=4` or
  `slo_seconds=0.5`; `config=PATH` takes the deploy, traffic, gate and verdict
  settings from that run file instead of the suite's (a suite that gates several
  models, one rollout.yaml each, on one cluster).

A failing `assert rollout(...).passed` shows the verdict's summary line and
the report's path, which is what a person acts on.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness import errors
from harness.settings import RunFile, Settings, layered, resolve

if TYPE_CHECKING:  # the plugin loads in every pytest run: the heavy imports wait for use
    from harness.cluster import Cluster
    from harness.deploy import ModelStack
    from harness.verdict import Check, Figures, Outcome, Verdict
    from harness.verify import Result

PYTEST_KIND_DEFAULT_NAME = "pytest-kind"
CHANGEABLE = ("traffic", "gate", "verdict", "deploy")
"""The settings groups a rollout's keyword arguments may change."""


@dataclasses.dataclass(frozen=True)
class Rollout:
    """What `rollout(old, new)` returns: the verdict, with the report beside it."""

    verdict: Verdict
    report: Path
    """The folder with report.html, verdict.json and junit.xml."""
    result: Result
    """Everything the run produced: the files written and the evidence judged (every
    request, event and pod life), for a test that looks further than the verdict."""

    @property
    def passed(self) -> bool:
        return self.verdict.outcome == "pass"

    @property
    def outcome(self) -> Outcome:
        return self.verdict.outcome

    @property
    def checks(self) -> tuple[Check, ...]:
        return self.verdict.checks

    @property
    def figures(self) -> Figures:
        return self.verdict.figures

    def __repr__(self) -> str:
        # pytest prints this when `assert rollout(...).passed` fails
        return f"<{self.verdict.summary()}; report: {self.report / 'report.html'}>"


def changed(settings: Settings, changes: dict[str, Any]) -> Settings:
    """`settings` with `config`'s run file in the traffic, gate, verdict and deploy groups,
    `values` over the chart values, and every other keyword set on the field of that name
    in those groups."""
    changes = dict(changes)
    if "config" in changes:
        own = resolve(None, {}, os.environ, RunFile.read(Path(changes.pop("config"))))
        settings = dataclasses.replace(settings, **{g: getattr(own, g) for g in CHANGEABLE})
    if "values" in changes:
        values = layered(settings.deploy.values, dict(changes.pop("values")))
        settings = settings.replace("deploy", values=values)
    for name, value in changes.items():
        groups = [g for g in CHANGEABLE
                  if name in {f.name for f in dataclasses.fields(getattr(settings, g))}]
        if not groups:
            known = sorted(f.name for g in CHANGEABLE
                           for f in dataclasses.fields(getattr(settings, g)))
            raise errors.UsageError(f"rollout(): no setting named {name!r}; settings: values, "
                                    f"{', '.join(known)}")
        settings = settings.replace(groups[0], **{name: value})
    return settings


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "rollout(**changes): settings for the `rollout` fixture in this test, "
                   "e.g. values={...} (chart values), users=4, slo_seconds=0.5")


@pytest.fixture(scope="session")
def rollout_settings(request: pytest.FixtureRequest) -> Settings:
    """The suite's rollout.yaml (in pytest's rootdir, or HARNESS_CONFIG) under HARNESS_*
    variables, with pytest-kind's --cluster-name and --keep-cluster on top."""
    run_file = RunFile.find(None, os.environ, request.config.rootpath)
    settings = resolve(None, {}, os.environ, run_file)
    name = request.config.getoption("cluster_name", default=None)
    if name and name != PYTEST_KIND_DEFAULT_NAME:
        settings = settings.replace("cluster", name=name)
    if request.config.getoption("keep_cluster", default=False):
        settings = settings.replace("cluster", keep=True)
    return settings


@pytest.fixture(scope="session")
def model_stack(rollout_settings: Settings) -> Iterator[ModelStack]:
    """The model's stack on the session's cluster, which goes at the end unless kept."""
    from harness import startup

    with startup.stack_ready(rollout_settings) as stack:
        yield stack


@pytest.fixture(scope="session")
def rollout_cluster(model_stack: ModelStack) -> Cluster:
    """The session's kind cluster, made with the harness's toolchain."""
    return model_stack.cluster


@pytest.fixture
def rollout(request: pytest.FixtureRequest, rollout_settings: Settings,
            model_stack: ModelStack, tmp_path: Path) -> Callable[..., Rollout]:
    """`rollout(from_version, to_version, **changes)`: the gate's rehearsal on the
    session's cluster; the stack is taken down after each, so rollouts do not mix."""
    from harness import startup, verify

    marker = request.node.get_closest_marker("rollout")
    preset = dict(marker.kwargs) if marker else {}
    count = 0

    def run(from_version: str, to_version: str, **changes: Any) -> Rollout:
        nonlocal count
        count += 1
        report = tmp_path / f"rollout-{count}"
        settings = changed(rollout_settings, {**preset, **changes})
        settings = settings.replace("gate", from_version=from_version, to_version=to_version,
                                    report_dir=report)
        startup.validate(settings, (from_version, to_version))
        with startup.for_versions(settings, model_stack, (from_version, to_version)) as ready:
            result = verify.rehearsal(settings, ready)
        return Rollout(result.verdict, report, result)

    return run
