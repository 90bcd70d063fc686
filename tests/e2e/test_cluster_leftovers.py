"""A leftover cluster of the same name: reused when healthy, recreated when not.

These run on a cluster of their own (another name and host port), so the
recreation does not pull the session cluster from under the other tests.
"""

from __future__ import annotations

import dataclasses
import io
import subprocess
from collections.abc import Iterator

import pytest
from kube_helpers import leftovers

from harness import cluster as clusters
from harness import progress
from harness.settings import Settings
from harness.toolchain import Toolchain


@pytest.fixture(scope="module")
def own(settings: Settings, toolchain: Toolchain) -> Iterator[Settings]:
    mine = dataclasses.replace(settings, cluster=dataclasses.replace(
        settings.cluster, name="harness-e2e-leftover", host_port=0))
    clusters.up(mine.cluster, toolchain)
    yield mine
    clusters.down(mine.cluster, toolchain)
    assert not leftovers(mine.cluster.name)


def test_healthy_leftover_is_reused(own: Settings, toolchain: Toolchain):
    first = clusters.status(own.cluster, toolchain)
    with progress.redirected(io.StringIO()) as said:
        clusters.up(own.cluster, toolchain)
    assert "reusing the healthy cluster" in said.getvalue()
    assert first.ready and clusters.node_containers(own.cluster.name)


def test_broken_leftover_is_recreated(own: Settings, toolchain: Toolchain):
    (container,) = clusters.node_containers(own.cluster.name)
    subprocess.run(["docker", "stop", "-t", "1", container], check=True, capture_output=True)
    assert not clusters.status(own.cluster, toolchain).ready
    with progress.redirected(io.StringIO()) as said:
        clusters.up(own.cluster, toolchain)
    assert "its node container is not running" in said.getvalue()
    assert "recreating it" in said.getvalue()
    assert clusters.status(own.cluster, toolchain).ready
    assert clusters.node_containers(own.cluster.name) != [container]
