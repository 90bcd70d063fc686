"""Fixtures for tests against a real kind cluster made by our toolchain.

The toolchain and the cluster are session-wide (making them takes minutes);
each test gets its own namespace. Nothing here skips: a missing docker or
toolchain is a failure of the set-up, and the set-up builds what is missing.
"""

from __future__ import annotations

import dataclasses
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from harness import cluster as clusters
from harness import toolchain as toolchains
from harness.settings import Settings
from harness.toolchain import gobuild, rootfs

PROBE_IMAGE = "rollout-harness/probe:e2e"


@pytest.fixture(scope="session")
def settings() -> Settings:
    base = Settings.from_env()
    return dataclasses.replace(
        base, cluster=dataclasses.replace(base.cluster, name="harness-e2e", ready_timeout=300)
    )


@pytest.fixture(scope="session")
def toolchain(settings: Settings) -> toolchains.Toolchain:
    return toolchains.ensure(settings)


@pytest.fixture(scope="session")
def cluster(settings: Settings, toolchain: toolchains.Toolchain) -> Iterator[clusters.Cluster]:
    made = clusters.up(settings.cluster, toolchain)
    yield made
    clusters.down(settings.cluster, toolchain)
    left = leftovers(settings.cluster.name)
    assert not left, f"cluster teardown left these behind: {left}"


def leftovers(name: str) -> list[str]:
    """Containers, networks and processes of the cluster still present."""
    found = [f"container {c}" for c in clusters.node_containers(name)]
    networks = subprocess.run(["docker", "network", "ls", "--format", "{{.Name}}"],
                              capture_output=True, text=True, check=True).stdout.split()
    found += [f"network {n}" for n in networks if n == "kind"]
    procs = subprocess.run(["pgrep", "-af", f"kind.*{name}|kubectl.*{name}"],
                           capture_output=True, text=True, check=False).stdout.splitlines()
    found += [f"process {p}" for p in procs if "pgrep" not in p]
    return found


@pytest.fixture(scope="session")
def api(cluster: clusters.Cluster) -> client.ApiClient:
    return config.new_client_from_config(str(cluster.kubeconfig))


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def probe_image(cluster: clusters.Cluster, toolchain: toolchains.Toolchain) -> str:
    """The probe workload, built from tests/e2e/probe and loaded into the node."""
    source = Path(__file__).parent / "probe"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        gobuild.build(toolchain.cache, "probe", ["."], root / "bin", module_dir=source)
        log_path = toolchain.cache.log("image-probe")
        rootfs.import_rootfs(root, PROBE_IMAGE, ('ENTRYPOINT ["/bin/probe"]',), log_path)
    cluster.kind.load_docker_image(PROBE_IMAGE)
    return PROBE_IMAGE
