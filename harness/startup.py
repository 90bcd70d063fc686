"""The one start-up sequence: toolchain → cluster → model images → stack → chart repository.

`up`, `down`, `verify` and `rehearse` all begin the same way and end the same
way, so they share this context manager instead of each writing its own:
the run holds its cluster name's lock throughout (a second run on the name
is refused), the images of every version under test are built and loaded
once per run, a cluster this run created never inherits a stack of an
earlier cluster of the same name, and on the way out — a signal included —
the cluster goes unless it is kept.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ml_model_program import check_chart_path

from harness import (
    charts,
    cluster,
    deploy,
    errors,
    images,
    progress,
    runlock,
    target,
    toolchain,
    traffic,
)
from harness import settings as settings_module
from harness.cluster import Cluster
from harness.deploy import ModelStack
from harness.program import Program
from harness.settings import Settings
from harness.toolchain import Toolchain
from harness.toolchain.cache import Cache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """Everything a rollout needs, ready."""

    cluster: Cluster
    stack: ModelStack
    chart_repo: str | None
    """URL of the chart repository on 127.0.0.1 (chart source "repo"), else None."""


@contextlib.contextmanager
def prepared(settings: Settings, versions: Sequence[str] = (),
             tracks: bool = False) -> Iterator[Prepared]:
    """A cluster with the model stack and the images of `versions`; afterwards the
    cluster is deleted unless `settings.cluster.keep`. `tracks`: the cluster must map
    a canary's baseline and canary nodePorts to the host (see `cluster.up`)."""
    validate(settings, versions)
    with stack_ready(settings, tracks, versions) as stack, \
            for_versions(settings, stack, versions, loaded=stack.cluster.created) as ready:
        yield ready


@contextlib.contextmanager
def _on_target(settings: Settings) -> Iterator[ModelStack]:
    """stack_ready for an existing cluster (harness/target.py): only the deploy tools,
    no kind, and the cluster stays as it was found."""
    with progress.phase("the toolchain check"):
        progress.say("checking the toolchain (pulumi, its provider, helm) ...")
        deploy_tools = toolchain.ensure_deploy(settings)
    existing = target.connect(settings)
    with runlock.held(lock_folder(settings), existing.name):
        progress.say(f"cluster: context {existing.context} of {existing.kubeconfig}; model "
                     f"traffic to {existing.base_url}")
        stack = ModelStack(settings, existing, Cache(settings.cache_dir), deploy_tools)
        if not settings.target.adopt_namespace:
            stack.check_namespace()
        # others change a shared cluster, or rebuild it under the same context: the
        # stack's state is brought in line with what is there before anything is planned
        with progress.step(f"pulumi refresh: {stack.project} on {existing.name}",
                           log_file=stack.log_path):
            stack.refresh()
        yield stack


@contextlib.contextmanager
def stack_ready(settings: Settings, tracks: bool = False,
                versions: Sequence[str] = ()) -> Iterator[ModelStack]:
    """The first half, for a cluster that serves many rollouts (the pytest plugin's
    session): the name's lock, the toolchain, the cluster and its stack for the block;
    then the cluster goes unless kept. The images of `versions`, when known this early,
    are loaded into a new cluster while it gets ready (for_versions then finds them)."""
    if target.wanted(settings):
        with _on_target(settings) as stack:
            yield stack
        return
    with runlock.held(lock_folder(settings), settings.cluster.name):
        with progress.phase("the toolchain check"):
            progress.say("checking the toolchain ...")
            tools, deploy_tools = toolchain.ensure_all(settings)
            images.require_present(settings, versions)
        made = cluster.up(settings.cluster, tools, tracks, meanwhile=lambda name: load_images(
            settings, name, tools, versions))
        stack = ModelStack(settings, made, tools, deploy_tools)
        try:
            if made.created:
                stack.forget()
            yield stack
        finally:
            if not settings.cluster.keep:
                # the cluster goes, and with it everything the stack made: drop the
                # stack's state instead of destroying object by object (18 s saved)
                with contextlib.suppress(errors.HarnessError):
                    stack.forget()
                cluster.down(settings.cluster, tools)


@contextlib.contextmanager
def for_versions(settings: Settings, stack: ModelStack, versions: Sequence[str],
                 loaded: bool = False) -> Iterator[Prepared]:
    """The second half, per rollout: the images of `versions` loaded into the node and,
    with chart source "repo", the chart served on 127.0.0.1 for the block. `loaded`:
    stack_ready already loaded them while the new cluster got ready."""
    if stack.toolchain is not None and not loaded:  # a target pulls its images itself
        load_images(settings, stack.cluster.name, stack.toolchain, versions)
    with chart_repository(settings, stack, versions) as repo:
        yield Prepared(stack.cluster, stack, repo)


def validate(settings: Settings, versions: Sequence[str]) -> None:
    """What the user gave, checked before anything is built or created: every version
    (`up --version` comes here unchecked) and the --set values against the chart's
    schema. Flags and variables were checked when they were read (harness/settings.py)."""
    target.validate(settings)
    for version in versions:
        settings_module.model_version(version, "--version")
    if settings.deploy.program is not None:
        Program.read(settings.deploy.program, settings.deploy.version_from)
        if settings.deploy.chart_source == "repo":
            raise errors.UsageError("--chart-source repo serves the bundled chart; with "
                                    "--program your program names its own chart")
    chart = settings.deploy.chart
    if chart is not None:
        try:
            check_chart_path(str(chart.resolve()), "--chart")
        except ValueError as e:
            raise errors.UsageError(str(e)) from None
    if settings.traffic.requests is not None:
        traffic.check_requests(settings.traffic.requests)
    if settings.deploy.image_build is not None:
        images.Build.of_folder(settings.deploy.image_repository, settings.deploy.image_build)
    if (settings.deploy.values or chart is not None) and versions and \
            settings.deploy.chart_repo is None:
        helm = toolchain.ensure_tool(settings, "helm") / "helm"
        deploy.check_values(settings, helm, versions[0], Cache(settings.cache_dir).state)


def lock_folder(settings: Settings) -> Path:
    """Where the per-cluster-name run locks live."""
    return Cache(settings.cache_dir).state / "locks"


def load_images(settings: Settings, cluster_name: str, tools: Toolchain,
                versions: Sequence[str]) -> None:
    """Build (unless built from the same sources) and `kind load` each version's image
    (kind skips those the node has)."""
    if not versions:
        return
    with progress.step("building and loading the model images",
                       log_file=tools.cache.log("kind-load")):
        refs = [images.ensure(settings, tools.cache, version)
                for version in dict.fromkeys(versions)]
        images.load(cluster_name, tools.kind, refs, tools.cache)


@contextlib.contextmanager
def chart_repository(settings: Settings, stack: ModelStack,
                     versions: Sequence[str]) -> Iterator[str | None]:
    """With chart source "repo", the chart packaged at each version and served on
    127.0.0.1 for the block; a team's --chart-repo as it is; else nothing (None)."""
    if settings.deploy.chart_repo is not None:
        yield settings.deploy.chart_repo
        return
    if settings.deploy.chart_source != "repo":
        yield None
        return
    for version in versions:
        stack.repository.package(version)
    with charts.serve(stack.repository.folder) as url:
        yield url
