"""Settings: small frozen groups, each field with its unit and default.

Every field can be set from a `HARNESS_*` environment variable; the CLI maps
its flags onto the same fields. Nothing here touches the disk or the network,
so a Settings value can be built and checked before any work starts.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness import errors

Source = Literal["auto", "release", "build"]
SOURCES: tuple[Source, ...] = ("auto", "release", "build")


def default_cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "rollout-harness"


@dataclass(frozen=True)
class ToolchainSettings:
    cache_dir: Path = field(default_factory=default_cache_dir)
    """Where tools, images, logs and state live (HARNESS_CACHE_DIR)."""

    source: Source = "auto"
    """auto: installed, then official release, then build from Go modules;
    release: official downloads only; build: Go modules only
    (HARNESS_TOOLCHAIN_SOURCE)."""

    debian_mirror: str = ""
    """Debian mirror for debootstrap; empty means the host's apt source
    (HARNESS_DEBIAN_MIRROR)."""

    download_timeout: float = 20.0
    """Seconds before an official download is given up as unreachable."""


@dataclass(frozen=True)
class ClusterSettings:
    name: str = "rollout-harness"
    """kind cluster name (HARNESS_CLUSTER_NAME)."""

    node_port: int = 30080
    """The model Service's fixed nodePort, mapped to the host (HARNESS_NODE_PORT)."""

    host_port: int = 30080
    """Port on 127.0.0.1 that reaches node_port (HARNESS_HOST_PORT)."""

    keep: bool = False
    """Keep the cluster after a run instead of deleting it (HARNESS_KEEP_CLUSTER)."""

    ready_timeout: float = 240.0
    """Seconds to wait for the node and coredns to become ready."""


ChartSource = Literal["folder", "repo"]
CHART_SOURCES: tuple[ChartSource, ...] = ("folder", "repo")


@dataclass(frozen=True)
class DeploySettings:
    namespace: str = "ml-model"
    """Namespace the Pulumi program creates and deploys the chart into."""

    chart_source: ChartSource = "folder"
    """folder: the chart packaged at the version, from disk; repo: the same
    package fetched from a chart repository served on 127.0.0.1
    (HARNESS_CHART_SOURCE)."""

    replicas: int = 3
    """Pods of the model Deployment."""

    rollout_timeout: int = 300
    """Seconds Pulumi awaits a rollout (pulumi.com/timeoutSeconds)."""


@dataclass(frozen=True)
class Settings:
    toolchain: ToolchainSettings = field(default_factory=ToolchainSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    deploy: DeploySettings = field(default_factory=DeploySettings)

    @property
    def cache_dir(self) -> Path:
        return self.toolchain.cache_dir

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        toolchain = ToolchainSettings()
        if value := env.get("HARNESS_CACHE_DIR"):
            toolchain = dataclasses.replace(toolchain, cache_dir=Path(value).expanduser())
        if value := env.get("HARNESS_TOOLCHAIN_SOURCE"):
            toolchain = dataclasses.replace(toolchain, source=parse_source(value))
        if value := env.get("HARNESS_DEBIAN_MIRROR"):
            toolchain = dataclasses.replace(toolchain, debian_mirror=value)
        cluster = ClusterSettings()
        if value := env.get("HARNESS_CLUSTER_NAME"):
            cluster = dataclasses.replace(cluster, name=parse_cluster_name(value))
        if value := env.get("HARNESS_NODE_PORT"):
            cluster = dataclasses.replace(cluster, node_port=parse_node_port(value))
        if value := env.get("HARNESS_HOST_PORT"):
            cluster = dataclasses.replace(cluster, host_port=parse_port(value, "HARNESS_HOST_PORT"))
        if value := env.get("HARNESS_KEEP_CLUSTER"):
            cluster = dataclasses.replace(cluster, keep=parse_bool(value, "HARNESS_KEEP_CLUSTER"))
        deploy = DeploySettings()
        if value := env.get("HARNESS_CHART_SOURCE"):
            deploy = dataclasses.replace(deploy, chart_source=parse_chart_source(value))
        return cls(toolchain=toolchain, cluster=cluster, deploy=deploy)


def parse_source(value: str) -> Source:
    for source in SOURCES:
        if value == source:
            return source
    raise errors.UsageError(f"toolchain source {value!r} is not one of {', '.join(SOURCES)}")


def parse_chart_source(value: str) -> ChartSource:
    for source in CHART_SOURCES:
        if value == source:
            return source
    raise errors.UsageError(f"chart source {value!r} is not one of {', '.join(CHART_SOURCES)}")


def parse_port(value: str | int, what: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise errors.UsageError(f"{what} must be a port number, not {value!r}") from None
    if not 1 <= port <= 65535:
        raise errors.UsageError(f"{what} must be between 1 and 65535, not {port}")
    return port


def parse_node_port(value: str | int) -> int:
    port = parse_port(value, "the nodePort")
    if not 30000 <= port <= 32767:
        raise errors.UsageError(
            f"the nodePort must be in Kubernetes' NodePort range 30000-32767, not {port}"
        )
    return port


def parse_cluster_name(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,48}[a-z0-9])?", value):
        raise errors.UsageError(
            f"cluster name {value!r} must be lower-case letters, digits and '-', 1-50 long"
        )
    return value


def parse_bool(value: str, what: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise errors.UsageError(f"{what} must be true or false, not {value!r}")
