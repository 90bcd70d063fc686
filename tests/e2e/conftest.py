"""Fixtures for tests against a real kind cluster made by our toolchain.

The session's cluster and model stack are the pytest plugin's (harness/pytest_plugin.py),
the same fixtures a team's suite gets: `rollout_settings` is overridden here to
name the cluster, and the gate's cases run through its `rollout` fixture. The
toolchain and the cluster are session-wide (making them takes minutes); each
test gets its own namespace. Nothing here skips: a missing docker or toolchain
is a failure of the set-up, and the set-up builds what is missing.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from kube_helpers import fresh_namespace
from kubernetes import client, config

from harness import cluster as clusters
from harness import toolchain as toolchains
from harness.settings import Settings
from harness.toolchain import containers, gobuild

PROBE_IMAGE = "rollout-harness/probe:e2e"


@pytest.fixture(scope="session")
def rollout_settings() -> Settings:
    """The plugin's settings (HARNESS_* variables), on the e2e cluster's own name."""
    base = Settings.from_env()
    return dataclasses.replace(
        base, cluster=dataclasses.replace(base.cluster, name="harness-e2e", ready_timeout=300)
    )


@pytest.fixture(scope="session")
def settings(rollout_settings: Settings) -> Settings:
    return rollout_settings


@pytest.fixture(scope="session")
def toolchain(settings: Settings) -> toolchains.Toolchain:
    return toolchains.ensure(settings)


@pytest.fixture(scope="session")
def cluster(rollout_cluster: clusters.Cluster) -> clusters.Cluster:
    """The plugin's session cluster (deleted at the end; test_cluster_leftovers.py shows
    that a deletion leaves nothing behind)."""
    return rollout_cluster


@pytest.fixture(scope="session")
def api(cluster: clusters.Cluster) -> client.ApiClient:
    return config.new_client_from_config(str(cluster.kubeconfig))


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    yield from fresh_namespace(api)


@pytest.fixture(scope="session")
def probe_image(cluster: clusters.Cluster, toolchain: toolchains.Toolchain) -> str:
    """The probe workload, built from tests/e2e/probe and loaded into the node."""
    source = Path(__file__).parent / "probe"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        gobuild.build(toolchain.cache, "probe", ["."], root / "bin", module_dir=source)
        log_path = toolchain.cache.log("image-probe")
        containers.import_rootfs(root, PROBE_IMAGE, ('ENTRYPOINT ["/bin/probe"]',), log_path)
    cluster.kind.load_docker_image(PROBE_IMAGE)
    return PROBE_IMAGE


@pytest.fixture(scope="session")
def deploy_tools(settings: Settings) -> toolchains.DeployTools:
    return toolchains.ensure_deploy(settings)
