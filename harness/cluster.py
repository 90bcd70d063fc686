"""kind clusters through pytest-kind's KindCluster, with our kind and node image.

A cluster's kubeconfig lives in the state folder of the cache, never in
~/.kube, so the harness never touches a user's contexts. A leftover cluster
of the same name is reused when healthy and recreated otherwise; a cluster
that does not become ready is deleted before the error is raised.

Three nodePorts are mapped to 127.0.0.1, each to a free host port picked when
the cluster is made (read back from the node when it is reused): the model
Service's, and the two a canary's baseline and candidate Services use for
paired checks. A cluster made before canaries maps only the first; it is
still reused for everything but a canary, which recreates it (saying so).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pytest_kind import KindCluster

from harness import errors, procs, progress
from harness.settings import ClusterSettings
from harness.toolchain import Toolchain, containers
from harness.toolchain.cache import Cache

log = logging.getLogger(__name__)

POD_SUBNET = "10.244.0.0/16"
"""Must contain the node's fixed CNI range (toolchain/node-image/rootfs/etc/cni)."""


@dataclass(frozen=True)
class Cluster:
    name: str
    kubeconfig: Path
    host_port: int
    """127.0.0.1:host_port reaches the model Service's nodePort (0 for a target)."""
    node_image: str
    kind: KindCluster | None
    """None for an existing cluster given by its kubeconfig (harness/target.py)."""
    created: bool = False
    """True when this run made the cluster (False: a healthy one was reused)."""
    track_ports: Mapping[str, int] = field(default_factory=dict)
    """Canary track (baseline, canary) → the 127.0.0.1 port that reaches its Service's
    nodePort; empty for a cluster made before canaries (see `up`)."""
    context: str | None = None
    """The kubeconfig context; None: its current one."""
    url: str | None = None
    """Where the model Service answers, when it is not 127.0.0.1:host_port (a target)."""

    @property
    def base_url(self) -> str:
        return self.url or f"http://127.0.0.1:{self.host_port}"

    def track_url(self, track: str) -> str:
        """http://127.0.0.1:PORT of a canary track's own Service."""
        if track not in self.track_ports:
            raise errors.ClusterError(
                f"cluster {self.name} maps no host port to the {track} Service's nodePort: "
                "it was made before canaries; `rollout-harness cluster down` and run again")
        return f"http://127.0.0.1:{self.track_ports[track]}"


@dataclass(frozen=True)
class Status:
    name: str
    exists: bool
    running: bool
    ready: bool
    node_image: str
    detail: str


def kind_config(settings: ClusterSettings, host_port: int,
                track_ports: Mapping[str, int] | None = None) -> str:
    """The kind config: one node, our CNI, the model Service's nodePort mapped to
    127.0.0.1:`host_port` and, with `track_ports` (track → host port), each canary
    track's nodePort (`settings.track_node_ports`) to its host port."""
    pairs = [(settings.node_port, host_port)]
    for track, port in (track_ports or {}).items():
        pairs.append((settings.track_node_ports[track], port))
    config = {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "networking": {"disableDefaultCNI": True, "podSubnet": POD_SUBNET},
        "nodes": [{
            "role": "control-plane",
            "extraPortMappings": [{
                "containerPort": node_port,
                "hostPort": port,
                "listenAddress": "127.0.0.1",
                "protocol": "TCP",
            } for node_port, port in pairs],
        }],
    }
    return yaml.safe_dump(config, sort_keys=False)


def state_dir(cache: Cache, name: str) -> Path:
    path = cache.state / "clusters" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def kubeconfig(cache: Cache, name: str) -> Path:
    """Where the kind cluster `name` keeps its kubeconfig (there once it was made)."""
    return cache.state / "clusters" / name / "kubeconfig"


def _kind_cluster(settings: ClusterSettings, toolchain: Toolchain) -> KindCluster:
    folder = state_dir(toolchain.cache, settings.name)
    # KindCluster makes a .pytest-kind/NAME folder in the working directory;
    # keep it in our state folder rather than wherever the user stands.
    with contextlib.chdir(folder):
        return KindCluster(
            settings.name,
            kubeconfig=kubeconfig(toolchain.cache, settings.name),
            image=toolchain.node_image,
            kind_path=toolchain.kind,
            kubectl_path=toolchain.kubectl,
        )


def up(settings: ClusterSettings, toolchain: Toolchain, tracks: bool = False,
       meanwhile: Callable[[str], None] | None = None) -> Cluster:
    """A ready cluster: the healthy leftover of the same name, or a new one.

    `meanwhile(name)` runs on a new cluster between its creation and the wait for it to
    be ready: kind has started the node's containerd, so images can be loaded while the
    kubelet and CoreDNS come up (loading takes about as long as that wait).

    A new cluster maps all three nodePorts (model, baseline, canary). A leftover
    made before canaries maps only the model's: it is reused all the same unless
    `tracks` (a canary run needs the other two), which recreates it — the mappings
    of a kind node are fixed when it is made. Why not recreate it always: `verify`
    and `rehearse` users would lose a working cluster (and ~50 s) for ports they do
    not use; from now on every new cluster has them, so this happens once at most.

    A cluster this call began is deleted again if it does not get ready or the run
    is stopped meanwhile (a signal included): half a cluster is never left behind.
    """
    kind = _kind_cluster(settings, toolchain)
    current = status(settings, toolchain)
    if current.exists:
        mapped = mapped_port(settings.name, settings.node_port)
        found = {track: mapped_port(settings.name, node_port)
                 for track, node_port in settings.track_node_ports.items()}
        track_ports = {track: port for track, port in found.items() if port}
        wrong_port = settings.host_port not in (0, mapped)
        lacks_tracks = tracks and len(track_ports) < len(found)
        if current.ready and current.node_image == toolchain.node_image and mapped \
                and not wrong_port and not lacks_tracks:
            on = "".join(f", {track} on 127.0.0.1:{port}" for track, port in track_ports.items())
            progress.say(f"cluster {settings.name}: reusing the healthy cluster of that name "
                         f"(model traffic on 127.0.0.1:{mapped}{on})")
            return Cluster(settings.name, kind.kubeconfig_path, mapped, toolchain.node_image,
                           kind, track_ports=track_ports
                           if len(track_ports) == len(found) else {})
        if wrong_port:
            why = f"it maps port {mapped}, not {settings.host_port}"
        elif lacks_tracks and current.ready:
            ports = ", ".join(str(p) for p in settings.track_node_ports.values())
            why = (f"a canary needs nodePorts {ports} mapped to the host and it was made "
                   "before canaries, without them")
        else:
            why = current.detail
        progress.say(f"cluster {settings.name}: a leftover of that name is unusable "
                     f"({why}); recreating it")
        _delete(kind, toolchain.cache)
    started = time.monotonic()
    host_port, *track_host_ports = procs.free_ports(1 + len(settings.track_node_ports),
                                                    taken=settings.host_port)
    host_port = settings.host_port or host_port
    track_ports = dict(zip(settings.track_node_ports, track_host_ports, strict=True))
    config = state_dir(toolchain.cache, settings.name) / "kind-config.yaml"
    config.write_text(kind_config(settings, host_port, track_ports))
    try:
        with progress.step(f"creating cluster {settings.name} from {toolchain.node_image}"), \
                _kind_network(toolchain.cache):
            try:
                kind.create(config_file=config)
            except subprocess.CalledProcessError as e:
                ports = ", ".join(str(p) for p in (host_port, *track_host_ports))
                raise errors.ClusterError(
                    f"kind could not create cluster {settings.name} (exit {e.returncode}); its "
                    "output is above. Check `docker info` and that ports "
                    f"{ports} on 127.0.0.1 are free"
                ) from e
        if meanwhile is not None:
            meanwhile(settings.name)
        with progress.step(f"waiting for cluster {settings.name} to be ready",
                           doing=lambda: readiness(kind.kubeconfig_path).problem):
            wait_ready(kind.kubeconfig_path, settings.ready_timeout)
    except errors.ClusterError:
        if not settings.keep:
            _delete(kind, toolchain.cache)
        raise
    except BaseException:  # stopped, or a bug: the half-made cluster goes
        _stop_strays(settings.name)
        with contextlib.suppress(errors.HarnessError):
            _delete(kind, toolchain.cache)
        raise
    toolchain.cache.record("cluster-up", seconds=round(time.monotonic() - started, 1),
                           image=toolchain.node_image)
    return Cluster(settings.name, kind.kubeconfig_path, host_port, toolchain.node_image, kind,
                   created=True, track_ports=track_ports)


def _stop_strays(name: str) -> None:
    """Kill what a stopped `kind create` left running: kind is killed at once, but the
    docker commands it ran (docker run, docker exec ... kubeadm init) go on orphaned
    and would make the node again after it was deleted."""
    strays = procs.matching(f"--name={name} ", f"{name}-control-plane",
                            f"io.x-k8s.kind.cluster={name}")
    if strays:
        log.debug("stopping what kind left running: %s", strays)
        procs.stop(strays, signal.SIGKILL, 5.0)


def mapped_port(name: str, node_port: int) -> int | None:
    """The 127.0.0.1 port cluster `name`'s node maps to `node_port`, read off docker."""
    nodes = node_containers(name)
    if not nodes:
        return None
    text = containers.inspect(
        nodes[0], f'{{{{range (index .HostConfig.PortBindings "{node_port}/tcp")}}}}'
                  "{{.HostPort}} {{end}}").split()
    return int(text[0]) if text and text[0].isdigit() else None


def down(settings: ClusterSettings, toolchain: Toolchain) -> None:
    kind = _kind_cluster(settings, toolchain)
    with progress.step(f"deleting cluster {settings.name}"):
        _delete(kind, toolchain.cache)


@contextlib.contextmanager
def _kind_network(cache: Cache) -> Iterator[None]:
    """The `kind` docker network is shared by every cluster: a run deleting the last
    cluster removes it, and must not do so while another run's `kind create` has made
    sure of it but not yet attached its node. Creation and removal take turns."""
    folder = cache.state / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "kind-network.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _delete(kind: KindCluster, cache: Cache) -> None:
    try:
        kind.delete()
    except subprocess.CalledProcessError as e:
        raise errors.ClusterError(
            f"kind could not delete cluster {kind.name} (exit {e.returncode}); remove its "
            "containers with: docker rm -f $(docker ps -aq --filter "
            f"label=io.x-k8s.kind.cluster={kind.name})"
        ) from e
    containers.remove(*node_containers(kind.name))
    # kind leaves its `kind` docker network behind; drop it when no node uses it
    with _kind_network(cache):
        containers.remove_network_if_unused("kind")
    Path(kind.kubeconfig_path).unlink(missing_ok=True)


def node_containers(name: str) -> list[str]:
    return containers.with_label(f"io.x-k8s.kind.cluster={name}")


def status(settings: ClusterSettings, toolchain: Toolchain) -> Status:
    name = settings.name
    nodes = node_containers(name)
    if not nodes:
        return Status(name, False, False, False, "", "no cluster of that name")
    running_text, _, image = containers.inspect(
        nodes[0], "{{.State.Running}}|{{.Config.Image}}").partition("|")
    running = running_text == "true"
    kubeconfig = state_dir(toolchain.cache, name) / "kubeconfig"
    if not running:
        return Status(name, True, False, False, image, "its node container is not running")
    if image != toolchain.node_image:
        return Status(name, True, True, False, image, f"it runs node image {image}")
    if not kubeconfig.exists() or kubeconfig.stat().st_size == 0:
        return Status(name, True, True, False, image, "its kubeconfig is missing")
    found = readiness(kubeconfig)
    return Status(name, True, True, found.ready, image, found.problem or "ready")


@dataclass(frozen=True)
class Readiness:
    """What a look at the cluster found: callers act on `reachable`, people read `detail`."""

    reachable: bool
    """The API server answered."""
    problem: str | None
    """Why the cluster is not ready (node Ready, coredns running), or None when it is."""

    @property
    def ready(self) -> bool:
        return self.problem is None


def readiness(kubeconfig: Path, context: str | None = None) -> Readiness:
    """Whether the API answers, and whether the node and coredns are ready."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    try:
        api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
            str(kubeconfig), context=context)
        api: Any = client.CoreV1Api(api_client)
        nodes = api.list_node(_request_timeout=10).items
        if not nodes:
            return Readiness(True, "no nodes registered")
        for node in nodes:
            conditions = {c.type: c.status for c in node.status.conditions or []}
            if conditions.get("Ready") != "True":
                return Readiness(True, f"node {node.metadata.name} is not Ready")
        pods = api.list_namespaced_pod(
            "kube-system", label_selector="k8s-app=kube-dns", _request_timeout=10
        ).items
        running = [p for p in pods if p.status.phase == "Running" and all(
            cs.ready for cs in p.status.container_statuses or [])]
        if not pods or len(running) < len(pods):
            return Readiness(True, f"coredns: {len(running)} of {len(pods)} pods running and "
                                   "ready")
    except (ApiException, OSError, ValueError) as e:
        return Readiness(False, f"the API server does not answer ({type(e).__name__})")
    except Exception as e:  # urllib3 errors derive from Exception only
        return Readiness(False, f"the API server does not answer ({type(e).__name__}: {e})")
    return Readiness(True, None)


@contextlib.contextmanager
def api_client(kubeconfig: Path, context: str | None) -> Iterator[Any]:
    """A Kubernetes API client for one look at the cluster, closed after it (its pool
    would otherwise outlive the look)."""
    from kubernetes import config

    made = config.new_client_from_config(  # type: ignore[no-untyped-call]
        str(kubeconfig), context=context)
    try:
        yield made
    finally:
        made.close()


def pods_ready(kubeconfig: Path, context: str | None, namespace: str) -> str | None:
    """"pods ready: 1.0.0 2/3, 1.1.0 1/1, 1 terminating": a rollout's progress as a person
    follows it, by the model-version label; None while the namespace has no pods."""
    from kubernetes import client

    from harness.evidence import VERSION_LABEL

    with api_client(kubeconfig, context) as api:
        pods = client.CoreV1Api(api).list_namespaced_pod(namespace, _request_timeout=5).items
    return pods_line(pods, VERSION_LABEL)


def drop_pods(kubeconfig: Path, context: str | None, namespace: str) -> int:
    """Stop every pod of the namespace's workloads now, not after their graceful exit:
    the workloads scaled to 0 (nothing replaces the pods), then the pods deleted with
    a grace period of 0. For a rollout that is over on a cluster of our own, where no
    client is left to drain for: `pulumi destroy` then finds no pod to wait for (it
    waited ~16 s per rollout for the chart's preStop and the namespace's pods). Returns
    the pods deleted; a namespace that is not there is 0."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    with api_client(kubeconfig, context) as api:
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        scale = {"spec": {"replicas": 0}}
        for name in _names(apps.list_namespaced_deployment(namespace, _request_timeout=10)):
            apps.patch_namespaced_deployment_scale(name, namespace, scale)
        for name in _names(apps.list_namespaced_stateful_set(namespace, _request_timeout=10)):
            apps.patch_namespaced_stateful_set_scale(name, namespace, scale)
        pods = _names(core.list_namespaced_pod(namespace, _request_timeout=10))
        for pod in pods:
            try:
                core.delete_namespaced_pod(pod, namespace, grace_period_seconds=0,
                                           _request_timeout=10)
            except ApiException as e:
                if e.status != 404:  # gone meanwhile: what was asked
                    raise
        return len(pods)


def _names(listing: Any) -> list[str]:
    return [item.metadata.name for item in listing.items]


def pods_line(pods: list[Any], version_label: str) -> str | None:
    if not pods:
        return None
    counts: dict[str, list[int]] = {}
    terminating = 0
    for pod in pods:
        if pod.metadata.deletion_timestamp is not None:
            terminating += 1
            continue
        version = (pod.metadata.labels or {}).get(version_label) or "unlabelled"
        ready = any(c.type == "Ready" and c.status == "True"
                    for c in (pod.status.conditions if pod.status else None) or [])
        tally = counts.setdefault(version, [0, 0])
        tally[0] += ready
        tally[1] += 1
    parts = [f"{version} {ready}/{total}" for version, (ready, total) in sorted(counts.items())]
    if terminating:
        parts.append(f"{terminating} terminating")
    return "pods ready: " + ", ".join(parts)


def wait_ready(kubeconfig: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    found = readiness(kubeconfig)
    while not found.ready:
        if time.monotonic() > deadline:
            raise errors.ClusterError(
                f"the cluster was not ready after {timeout:.0f}s: {found.problem}"
            )
        time.sleep(2)
        found = readiness(kubeconfig)
