"""A kind cluster made from our own node image is a working Kubernetes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from kube_helpers import eventually, fresh_namespace, http_get_eventually, pod, wait_pod_done
from kubernetes import client

from harness import cluster as clusters
from harness import startup
from harness.settings import Settings
from harness.toolchain import Toolchain


def test_node_is_ready_and_coredns_running(cluster: clusters.Cluster, api: client.ApiClient):
    core = client.CoreV1Api(api)
    nodes = core.list_node().items
    assert len(nodes) == 1
    ready = {c.type: c.status for c in nodes[0].status.conditions}["Ready"]
    assert ready == "True"
    assert nodes[0].status.node_info.kubelet_version == "v1.34.4"
    dns = core.list_namespaced_pod("kube-system", label_selector="k8s-app=kube-dns").items
    assert dns and all(p.status.phase == "Running" for p in dns)


def test_node_runs_the_toolchain_image(cluster: clusters.Cluster, toolchain: Toolchain):
    (container,) = clusters.node_containers(cluster.name)
    image = subprocess.run(["docker", "inspect", "--format", "{{.Config.Image}}", container],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert image == toolchain.node_image


def test_an_image_the_node_has_is_not_loaded_again(cluster: clusters.Cluster,
                                                   toolchain: Toolchain, settings: Settings):
    """kind asks the node's crictl which images it has: without crictl in the node image
    every load sent every image again (12 s for two versions, per rollout)."""
    (container,) = clusters.node_containers(cluster.name)
    startup.load_images(settings, cluster.name, toolchain, ("1.0.0",))
    log_path = toolchain.cache.log("kind-load")
    before = log_path.read_text()
    startup.load_images(settings, cluster.name, toolchain, ("1.0.0",))
    said = log_path.read_text()[len(before):]
    assert 'Image: "rollout-harness/model-server:1.0.0"' in said, said
    assert "found to be already present on all nodes" in said, said
    listed = subprocess.run(["docker", "exec", container, "crictl", "images", "-q"],
                            capture_output=True, text=True, check=True).stdout
    assert listed.strip(), "crictl answers on the node"


def test_a_pod_ip_that_no_longer_exists_stays_on_the_node(cluster: clusters.Cluster):
    """A Service may still send a connection to an exited pod's IP: it must fail on the
    node, not travel on through the node's default gateway into the host's network."""
    (container,) = clusters.node_containers(cluster.name)
    route = subprocess.run(["docker", "exec", container, "ip", "route", "get", "10.244.0.250"],
                           capture_output=True, text=True, check=False)
    said = (route.stdout + route.stderr).lower()
    assert route.returncode != 0 and "no route to host" in said, said


@pytest.fixture(scope="module")
def probe_namespace(api: client.ApiClient) -> Iterator[str]:
    """One namespace for the tests sharing the probe Service and its fixed nodePort."""
    yield from fresh_namespace(api)


@pytest.fixture(scope="module")
def probe_service(api: client.ApiClient, probe_namespace: str, probe_image: str,
                  settings: Settings) -> str:
    """A Deployment of the probe server behind the NodePort mapped to the host."""
    namespace = probe_namespace
    apps = client.AppsV1Api(api)
    labels = {"app": "probe"}
    apps.create_namespaced_deployment(namespace, client.V1Deployment(
        metadata=client.V1ObjectMeta(name="probe"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(
                    name="probe", image=probe_image, image_pull_policy="Never",
                    args=["serve", ":8080"],
                    ports=[client.V1ContainerPort(container_port=8080)],
                    readiness_probe=client.V1Probe(
                        http_get=client.V1HTTPGetAction(path="/", port=8080),
                        period_seconds=1),
                )]),
            ),
        ),
    ))
    client.CoreV1Api(api).create_namespaced_service(namespace, client.V1Service(
        metadata=client.V1ObjectMeta(name="probe"),
        spec=client.V1ServiceSpec(
            type="NodePort", selector=labels,
            ports=[client.V1ServicePort(port=8080, target_port=8080,
                                        node_port=settings.cluster.node_port)],
        ),
    ))

    def available() -> bool:
        status = apps.read_namespaced_deployment("probe", namespace).status
        return status.available_replicas == 2

    eventually(available, 120, "probe deployment available")
    return "probe"


def test_nodeport_answers_on_loopback(cluster: clusters.Cluster, probe_service: str):
    body = http_get_eventually(cluster.base_url + "/", timeout=60)
    assert body.startswith("probe probe-")


def test_pod_reaches_service_by_dns_name(api: client.ApiClient, probe_namespace: str,
                                         probe_service: str, probe_image: str):
    namespace = probe_namespace
    core = client.CoreV1Api(api)
    url = f"http://{probe_service}.{namespace}.svc.cluster.local:8080/"
    core.create_namespaced_pod(namespace, pod("client", probe_image, ["get", url, "60"]))
    phase = wait_pod_done(core, namespace, "client", timeout=120)
    logs = core.read_namespaced_pod_log("client", namespace)
    assert phase == "Succeeded", logs
    assert logs.startswith("probe probe-")


def test_privileged_pod_runs(api: client.ApiClient, namespace: str, probe_image: str):
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(namespace, pod("privileged", probe_image, ["caps"],
                                              privileged=True))
    phase = wait_pod_done(core, namespace, "privileged", timeout=120)
    logs = core.read_namespaced_pod_log("privileged", namespace)
    assert phase == "Succeeded", logs
    cap_sys_admin = 21
    assert (int(logs.strip(), 16) >> cap_sys_admin) & 1, f"CapEff {logs.strip()} lacks SYS_ADMIN"
