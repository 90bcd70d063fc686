"""The toolchain: everything `kind create cluster` and `pulumi up` need.

Each component comes from what is cached, else the official release, else
the pinned Go modules and Debian packages in toolchain/. `ensure()` goes in
the order of need: docker first, then kind and the node image, then pulumi,
its Kubernetes provider and helm.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness import errors, progress
from harness.settings import Settings
from harness.toolchain import (
    components,
    containers,
    docker,
    helm,
    kind,
    kubernetes,
    nodeimage,
    pulumi,
    python_host,
    tools,
)
from harness.toolchain.cache import Cache, sweep_stale_temps

__all__ = [
    "Component",
    "DeployTools",
    "Toolchain",
    "check",
    "ensure",
    "ensure_all",
    "ensure_deploy",
    "ensure_tool",
]

BINARY_TOOLS = (
    kind.KIND,
    kubernetes.KUBERNETES,
    kubernetes.ETCD,
    kubernetes.COREDNS,
    kubernetes.PAUSE,
    kubernetes.CRICTL,
    pulumi.PULUMI,
    pulumi.PROVIDER,
    helm.HELM,
)


@dataclass(frozen=True)
class Toolchain:
    """What the cluster layer needs, ready to use."""

    kind: Path
    kubectl: Path
    node_image: str
    cache: Cache


@dataclass(frozen=True)
class DeployTools:
    """What the deploy layer needs, ready to use."""

    pulumi_root: Path
    """Folder with bin/pulumi, as PulumiCommand(root=...) expects."""
    provider: Path
    """The pulumi-resource-kubernetes binary."""
    helm: Path


@dataclass(frozen=True)
class Component:
    name: str
    version: str
    source: str
    """release, build, installed or missing."""
    location: str
    seconds: float | None
    """How long obtaining it took, when this cache obtained it."""

    @property
    def present(self) -> bool:
        return self.source != "missing"


def ensure(settings: Settings) -> Toolchain:
    """Docker, kind, kubectl and the node image: everything `kind create` needs."""
    cache = Cache(settings.cache_dir)
    with _exclusive(cache):
        docker.ensure(cache)
        kind_dir = tools.ensure(cache, settings.toolchain, kind.KIND)
        kube_dir = tools.ensure(cache, settings.toolchain, kubernetes.KUBERNETES)
        node_image = nodeimage.ensure(cache, settings.toolchain)
    return Toolchain(kind=kind_dir / "kind", kubectl=kube_dir / "kubectl",
                     node_image=node_image, cache=cache)


def ensure_deploy(settings: Settings) -> DeployTools:
    """The pulumi CLI, its Kubernetes provider and helm."""
    cache = Cache(settings.cache_dir)
    with _exclusive(cache):
        folders = {tool.component: tools.ensure(cache, settings.toolchain, tool)
                   for tool in (pulumi.PULUMI, pulumi.PROVIDER, helm.HELM)}
        # A CLI built from Go modules has no Python language host: `pulumi up` in a
        # team's program folder needs one (a release's CLI brings its own, left alone).
        python_host.install(folders["pulumi"] / "bin")
    return DeployTools(
        pulumi_root=folders["pulumi"],
        provider=folders["pulumi-kubernetes"] / "pulumi-resource-kubernetes",
        helm=folders["helm"] / "helm",
    )


@contextlib.contextmanager
def _exclusive(cache: Cache) -> Iterator[None]:
    """One toolchain run at a time per cache; a second waits instead of building twice."""
    cache.root.mkdir(parents=True, exist_ok=True)
    with (cache.root / "toolchain.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress.say("another toolchain run is using the cache; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        swept = sweep_stale_temps(cache.root)  # no build of ours runs now: theirs are dead
        if swept:
            progress.say(f"removed {len(swept)} temporary folders left by killed builds")
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_tool(settings: Settings, name: str) -> Path:
    """One binary tool's folder, e.g. helm for the chart's unit tests."""
    by_name = {tool.component: tool for tool in BINARY_TOOLS}
    if name not in by_name:
        raise errors.UsageError(f"no tool named {name!r}; tools: {', '.join(by_name)}")
    cache = Cache(settings.cache_dir)
    with _exclusive(cache):
        return tools.ensure(cache, settings.toolchain, by_name[name])


def shell_env(settings: Settings) -> dict[str, str]:
    """The environment in which a person's own `pulumi`, `helm`, `kubectl` and `kind` are
    this toolchain's (`rollout-harness toolchain --env`): the tools first on PATH, the
    Kubernetes provider installed where that pulumi looks for plugins, and no reaching
    out for updates or plugins. `pulumi up` in a team's Python program folder then works
    on an air-gapped host, the language host beside the CLI included. Needs no docker."""
    deploy = ensure_deploy(settings)
    folders = [ensure_tool(settings, name) for name in ("kind", "kubernetes")]
    cache = Cache(settings.cache_dir)
    home = pulumi.plugin_home(cache)
    pulumi.install_plugin(deploy.provider.parent, home)
    path = [deploy.pulumi_root / "bin", deploy.helm.parent, *folders]
    return {"PATH": os.pathsep.join([*map(str, path), os.environ.get("PATH", "")]),
            **pulumi.cli_env(home)}


def ensure_all(settings: Settings) -> tuple[Toolchain, DeployTools]:
    """Everything, timed: the figures `--check` prints come from here."""
    cache = Cache(settings.cache_dir)
    started = time.monotonic()
    docker.ensure(cache)  # first, so images are judged present or not by a running engine
    before = {c.name for c in check(settings) if c.present}
    ready = ensure(settings), ensure_deploy(settings)
    after = {c.name for c in check(settings) if c.present}
    made = sorted(after - before)
    seconds = round(time.monotonic() - started, 1)
    # cold: nothing but docker was there before; partial: some of it was made
    kind_of_run = "run-cold" if before <= {"docker"} else "run-partial" if made else "run-warm"
    cache.record(kind_of_run, seconds=seconds, made=made)
    progress.say(f"toolchain ready in {seconds:.1f}s"
                 + (f" (made: {', '.join(made)})" if made else " (nothing to make)"))
    return ready


def check(settings: Settings) -> list[Component]:
    """What is there, where it came from and how long it took; changes nothing."""
    cache = Cache(settings.cache_dir)
    engine = docker.info()
    found = [Component(
        "docker", engine.version if engine else "-", "installed" if engine else "missing",
        f"default runtime {engine.default_runtime}" if engine else "no engine answers", None,
    )]
    for tool in BINARY_TOOLS:
        hit = tool.found(cache)
        seconds = cache.recorded(tool.component).get("seconds") if hit else None
        found.append(Component(tool.component, tool.version, hit[0] if hit else "missing",
                               str(hit[1]) if hit else "-", seconds))
    if engine is None:
        return [*found, Component("node-image", "-", "missing", "docker is not running", None)]
    for recipe in (nodeimage.NODE_BASE, components.IPTABLES_BASE):
        tag = recipe.tag()
        source = "build" if containers.image_exists(tag) else "missing"
        found.append(Component(recipe.name, tag.split(":")[1], source, tag, None))
    return [*found, _node_image(cache)]


def _node_image(cache: Cache) -> Component:
    tag = nodeimage.planned_tag(cache)
    if tag is not None and containers.image_exists(tag):
        seconds = cache.recorded("node-image").get("seconds")
        return Component("node-image", tag.split(":")[1], "build", tag, seconds)
    if containers.image_exists(nodeimage.RELEASE_IMAGE):
        return Component("node-image", nodeimage.RELEASE_IMAGE.split(":")[1], "release",
                         nodeimage.RELEASE_IMAGE, None)
    return Component("node-image", "-", "missing", tag or "-", None)
