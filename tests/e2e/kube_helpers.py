"""Small waits and object builders for e2e tests (check, then poll to a deadline)."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

from kubernetes import client

from harness import cluster as clusters

T = TypeVar("T")


def eventually(check: Callable[[], T | None], timeout: float, what: str, every: float = 1.0) -> T:
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as e:  # the thing waited for may not exist yet
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true after {timeout:.0f}s (last error: {last})")
        time.sleep(every)


def pod(name: str, image: str, args: list[str], *, privileged: bool = False,
        labels: dict[str, str] | None = None) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels or {"app": name}),
        spec=client.V1PodSpec(
            restart_policy="Never",
            containers=[client.V1Container(
                name=name, image=image, image_pull_policy="Never", args=args,
                security_context=client.V1SecurityContext(privileged=privileged),
            )],
        ),
    )


def wait_pod_done(core: client.CoreV1Api, namespace: str, name: str, timeout: float) -> str:
    """Wait until the pod has finished; return its phase."""
    def finished() -> str | None:
        phase = core.read_namespaced_pod(name, namespace).status.phase
        return phase if phase in ("Succeeded", "Failed") else None

    return eventually(finished, timeout, f"pod {namespace}/{name} finished")


def http_get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


def http_get_eventually(url: str, timeout: float) -> str:
    def attempt() -> str | None:
        try:
            return http_get(url)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    return eventually(attempt, timeout, f"GET {url}")


def fresh_namespace(api: client.ApiClient) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def leftovers(name: str) -> list[str]:
    """Containers, networks and processes of the cluster still present."""
    found = [f"container {c}" for c in clusters.node_containers(name)]
    networks = subprocess.run(["docker", "network", "ls", "--format", "{{.Name}}"],
                              capture_output=True, text=True, check=True).stdout.split()
    others = [c for c in subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=io.x-k8s.kind.cluster"],
        capture_output=True, text=True, check=True).stdout.split()]
    if not others:
        found += [f"network {n}" for n in networks if n == "kind"]
    procs = subprocess.run(["pgrep", "-af", f"kind.*{name}|kubectl.*{name}"],
                           capture_output=True, text=True, check=False).stdout.splitlines()
    found += [f"process {p}" for p in procs if "pgrep" not in p]
    return found
