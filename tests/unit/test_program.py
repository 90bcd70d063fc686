"""The ml-model Pulumi program under Pulumi's mocks, rendering the real chart with helm.

`helm.v3.Chart` asks the provider for `kubernetes:helm:template`; the mock
answers the way the provider does: `helm template` of charts/ml-model (from
the folder, or from a chart repository served on loopback for the
`fetch_opts.repo` flow) with the values Pulumi sent, namespaced objects put in
the chart's namespace. So these tests see what `pulumi up` would apply.

Each rendering test (under `pulumi.runtime.test`) returns an Output that
resolves only after every resource is registered; its assertions run inside
`apply`, so a wrong value fails the test.
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import json
import os
import runpy
import site
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import pulumi
import pytest
import yaml
from helm_binary import toolchain_helm
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from harness.toolchain import versions

REPO = Path(__file__).resolve().parents[2]
PROGRAM = REPO / "programs" / "ml_model"
CHART = REPO / "charts" / "ml-model"
PROJECT = "ml-model"
REPO_VERSIONS = ("1.0.0", "1.1.0-flaky")
"""Versions the loopback chart repository serves (packaged from CHART)."""

CLUSTER_SCOPED = {
    "Namespace", "Node", "PersistentVolume", "ClusterRole", "ClusterRoleBinding",
    "StorageClass", "PriorityClass", "CustomResourceDefinition", "IngressClass",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "APIService",
    "RuntimeClass", "CSIDriver", "CSINode", "VolumeAttachment",
}
"""Kinds the provider leaves without a namespace (its decodeYaml sets the rest)."""


class HelmMocks(pulumi.runtime.Mocks):
    """Provider stand-in: renders the chart with helm, echoes resource inputs as state
    and plays the Kubernetes controllers' part (status, revision, load balancer)."""

    def __init__(self) -> None:
        self.helm: Path | None = None
        self.helm_env: dict[str, str] = {}
        self.repos: dict[str, Path] = {}
        """Chart repository URL → folder of packaged charts, for the mock's `--repo`."""
        self.reset()

    def reset(self) -> None:
        self.template_opts: list[dict[str, Any]] = []
        self.states: list[tuple[str, str, dict[str, Any]]] = []
        self.read: list[tuple[str, str]] = []
        """(type, id) of the objects read rather than created (Resource.get)."""
        self.load_balancer: dict[str, str] | None = None

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        if args.token != "kubernetes:helm:template":
            raise NotImplementedError(f"no mock for invoke {args.token}")
        opts = json.loads(args.args["jsonOpts"])
        self.template_opts.append(opts)
        return {"result": self.render(opts)}

    def render(self, opts: dict[str, Any]) -> list[dict[str, Any]]:
        if self.helm is None:
            raise RuntimeError("the test did not request the `helm` fixture")
        namespace = opts.get("namespace") or ""
        # one file per render: a canary's three charts are rendered at once
        fd, name = tempfile.mkstemp(suffix=".json", dir=self.helm_env["HELM_CACHE_HOME"])
        with os.fdopen(fd, "w") as out:
            json.dump(opts.get("values") or {}, out)
        values = Path(name)
        command = [str(self.helm), "template", opts["release_name"]]
        if opts.get("path"):
            command.append(opts["path"])
        else:
            command += [opts["chart"], "--repo", opts["fetch_opts"]["repo"],
                        "--version", opts["version"]]
        # Connected to the cluster, the provider renders for the cluster's version;
        # helm's built-in default (v1.20 unless stamped at build) fails the chart's kubeVersion.
        kube_version = opts.get("kube_version") or versions.KUBERNETES
        command += ["--namespace", namespace or "default", "--values", str(values),
                    "--kube-version", kube_version]
        if not opts.get("include_test_hook_resources"):
            command.append("--skip-tests")  # the provider drops `helm test` hooks by default
        done = subprocess.run(command, capture_output=True, text=True, env=self.helm_env,
                              timeout=60, check=False)
        values.unlink()
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}")
        objects = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
        for obj in objects:
            metadata = obj.setdefault("metadata", {})
            if namespace and obj["kind"] not in CLUSTER_SCOPED and not metadata.get("namespace"):
                metadata["namespace"] = namespace
        return objects

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = json.loads(json.dumps(args.inputs))
        if args.resource_id:  # a read of an object that exists (Resource.get): not created
            self.read.append((args.typ, args.resource_id))
            return args.resource_id, {"metadata": {"name": args.resource_id}}
        if args.custom:
            self.states.append((args.typ, args.name, state))
        if args.typ == "kubernetes:apps/v1:Deployment":
            replicas = state.get("spec", {}).get("replicas", 1)
            state["status"] = {"replicas": replicas, "readyReplicas": replicas,
                               "updatedReplicas": replicas, "observedGeneration": 1}
            annotations = state["metadata"].setdefault("annotations", {})
            annotations["deployment.kubernetes.io/revision"] = "1"
        if args.typ == "kubernetes:core/v1:Service" and self.load_balancer:
            state["status"] = {"loadBalancer": {"ingress": [self.load_balancer]}}
        return args.name, state


MOCKS = HelmMocks()
CONSTRUCTED: list[pulumi.Resource] = []
"""Every resource the program constructs (a stack transformation sees each one)."""
_HOOKED: list[pulumi.Resource | None] = [None]


def _constructed(args: pulumi.ResourceTransformationArgs) -> None:
    CONSTRUCTED.append(args.resource)


def install_mocks() -> None:
    """Our mocks and project name; again before each module run, in case another
    test module set its own mocks meanwhile."""
    pulumi.runtime.set_mocks(MOCKS, project=PROJECT, stack="unit", preview=False)
    root = pulumi.runtime.get_root_resource()
    if root is not _HOOKED[0]:
        pulumi.runtime.register_stack_transformation(_constructed)
        _HOOKED[0] = root


install_mocks()
import ml_model_program as program  # noqa: E402  (after set_mocks, as Pulumi requires)


@pytest.fixture(scope="module", autouse=True)
def _mocks_installed() -> None:
    install_mocks()


Fn = TypeVar("Fn", bound=Callable[..., Any])


def runtime_test(fn: Fn) -> Fn:
    """`pulumi.runtime.test` (awaits the returned Output), typed for mypy."""
    decorate = cast(Callable[[Fn], Fn], pulumi.runtime.test)
    return decorate(fn)


@dataclasses.dataclass(frozen=True)
class Rollout:
    """What one `deploy` produced: its exports, the rendered chart options and
    every registered Kubernetes object (as Pulumi sent it)."""

    exports: dict[str, Any]
    template_opts: list[dict[str, Any]]
    states: list[tuple[str, str, dict[str, Any]]]
    """(type token, resource name, inputs) of every Kubernetes object registered."""

    def objects(self, kind: str) -> list[dict[str, Any]]:
        return [state for typ, _, state in self.states if typ.endswith(f":{kind}")]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.objects(kind)
        assert len(found) == 1, f"expected one {kind}, the chart rendered {len(found)}"
        return found[0]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.objects(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
        return found[0]

    @property
    def container(self) -> dict[str, Any]:
        containers = self.one("Deployment")["spec"]["template"]["spec"]["containers"]
        return dict(containers[0])


def rollout(config: program.ModelConfig, check: Callable[[Rollout], None],
            load_balancer: dict[str, str] | None = None) -> pulumi.Output[Any]:
    """Runs the program; `check` runs inside `apply` once every resource is registered.
    `load_balancer` is the ingress a cloud controller would give LoadBalancer Services."""
    MOCKS.reset()
    MOCKS.load_balancer = load_balancer
    CONSTRUCTED.clear()
    stack = pulumi.runtime.get_root_resource()
    assert stack is not None
    stack.outputs.clear()  # type: ignore[attr-defined]  # one stack for every test: only ours
    program.deploy(config)
    exports = pulumi.Output.all(**stack.outputs)  # type: ignore[attr-defined]

    def registered(values: dict[str, Any]) -> pulumi.Output[None]:
        # Every object is constructed once the exports resolve; wait for their registration.
        urns = [resource.urn for resource in CONSTRUCTED]
        return pulumi.Output.all(*urns).apply(
            lambda _: check(Rollout(values, sorted(MOCKS.template_opts, key=_release_order),
                                    list(MOCKS.states)))
        )

    return exports.apply(registered)


def _release_order(opts: dict[str, Any]) -> int:
    """Stable, baseline, canary: the order `releases()` lists them. The mock records the
    renders in the order their invokes ran, which for three charts at once is not fixed."""
    name = str(opts.get("release_name", ""))
    return 1 if name.endswith("-baseline") else 2 if name.endswith("-canary") else 0


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    binary = toolchain_helm()
    if not (CHART / "Chart.yaml").is_file():
        pytest.fail(f"the chart is missing: {CHART}/Chart.yaml")
    home = tmp_path_factory.mktemp("helm-home")
    MOCKS.helm = binary
    MOCKS.helm_env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"),
                      "HELM_CONFIG_HOME": str(home / "config"),
                      "HELM_DATA_HOME": str(home / "data")}
    (home / "cache").mkdir()
    return binary


@pytest.fixture(scope="session")
def chart_packages(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CHART packaged at REPO_VERSIONS (appVersion = version), as a release would be."""
    folder = tmp_path_factory.mktemp("chart-packages")
    for version in REPO_VERSIONS:
        subprocess.run([str(helm), "package", str(CHART), "--version", version,
                        "--app-version", version, "-d", str(folder)],
                       check=True, capture_output=True, env=MOCKS.helm_env, timeout=60)
    return folder


@pytest.fixture(scope="session")
def chart_repo(helm: Path, chart_packages: Path) -> Iterator[str]:
    """A Helm chart repository on 127.0.0.1 serving the packaged charts."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(chart_packages))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    subprocess.run([str(helm), "repo", "index", str(chart_packages), "--url", url],
                   check=True, capture_output=True, env=MOCKS.helm_env, timeout=60)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture
def local(helm: Path) -> Callable[..., program.ModelConfig]:
    """ModelConfig for the chart folder; keyword arguments override fields."""
    def make(**fields: Any) -> program.ModelConfig:
        return program.ModelConfig(**{"chart_version": "1.0.0", "chart_path": str(CHART),
                                      **fields})
    return make


# --- values mapping -----------------------------------------------------------------------


@runtime_test
def test_image_and_replicas_reach_the_deployment(local: Any) -> pulumi.Output[Any]:
    config = local(chart_version="1.2.0", image_repository="example.test/models/iris",
                   replica_count=5)

    def check(r: Rollout) -> None:
        assert r.container["image"] == "example.test/models/iris:1.2.0"
        assert r.one("Deployment")["spec"]["replicas"] == 5
        assert r.template_opts[0]["values"]["image"] == {
            "repository": "example.test/models/iris", "tag": "1.2.0"}

    return rollout(config, check)


@runtime_test
def test_defaults(local: Any) -> pulumi.Output[Any]:
    def check(r: Rollout) -> None:
        assert r.container["image"] == "rollout-harness/model-server:1.0.0"
        assert r.one("Deployment")["spec"]["replicas"] == 3
        assert r.exports["imageTag"] == "1.0.0"
        assert r.exports["chartVersion"] == "1.0.0"

    return rollout(local(), check)


@runtime_test
def test_values_pass_through_to_rendered_objects(local: Any) -> pulumi.Output[Any]:
    config = local(values={"gracefulDrain": {"enabled": False},
                           "strategy": {"type": "Recreate"}})

    def check(r: Rollout) -> None:
        deployment = r.one("Deployment")
        assert deployment["spec"]["strategy"]["type"] == "Recreate"
        assert "preStop" not in (r.container.get("lifecycle") or {}), \
            "gracefulDrain.enabled=false must remove the preStop hook"
        assert r.template_opts[0]["values"]["gracefulDrain"] == {"enabled": False}

    return rollout(config, check)


@runtime_test
def test_graceful_drain_is_on_by_default(local: Any) -> pulumi.Output[Any]:
    """The control for the test above: the chart's default keeps the preStop hook."""
    def check(r: Rollout) -> None:
        assert "preStop" in (r.container.get("lifecycle") or {})
        assert r.one("Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"

    return rollout(local(), check)


@runtime_test
def test_values_image_tag_is_used_when_image_tag_is_unset(local: Any) -> pulumi.Output[Any]:
    config = local(values={"image": {"tag": "debug", "pullPolicy": "Never"}})

    def check(r: Rollout) -> None:
        assert r.container["image"] == "rollout-harness/model-server:debug"
        assert r.template_opts[0]["values"]["image"]["pullPolicy"] == "Never"
        assert r.exports["imageTag"] == "debug"

    return rollout(config, check)


# --- tag and version alignment ------------------------------------------------------------


@runtime_test
def test_image_tag_defaults_to_chart_version(local: Any) -> pulumi.Output[Any]:
    def check(r: Rollout) -> None:
        assert r.container["image"].endswith(":1.1.0-flaky")
        assert r.exports["imageTag"] == r.exports["chartVersion"] == "1.1.0-flaky"

    return rollout(local(chart_version="1.1.0-flaky"), check)


@runtime_test
def test_explicit_image_tag_is_honoured(local: Any) -> pulumi.Output[Any]:
    def check(r: Rollout) -> None:
        assert r.container["image"] == "rollout-harness/model-server:1.1.0-rc1"
        assert r.exports["imageTag"] == "1.1.0-rc1"
        assert r.exports["chartVersion"] == "1.1.0"

    return rollout(local(chart_version="1.1.0", image_tag="1.1.0-rc1"), check)


# --- namespace ----------------------------------------------------------------------------


@runtime_test
def test_everything_goes_into_the_configured_namespace(local: Any) -> pulumi.Output[Any]:
    def check(r: Rollout) -> None:
        assert [ns["metadata"]["name"] for ns in r.objects("Namespace")] == ["models-a"]
        labels = r.objects("Namespace")[0]["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        assert r.template_opts[0]["namespace"] == "models-a"
        chart_objects = [(typ, state) for typ, _, state in r.states
                         if typ.split(":")[-1] not in CLUSTER_SCOPED]
        assert {typ.split(":")[-1] for typ, _ in chart_objects} >= {"Deployment", "Service"}
        for typ, state in chart_objects:
            assert state["metadata"].get("namespace") == "models-a", (typ, state["metadata"])
        assert r.exports["namespace"] == "models-a"

    return rollout(local(namespace="models-a"), check)


@runtime_test
def test_an_adopted_namespace_is_read_not_created(local: Any) -> pulumi.Output[Any]:
    """A team's namespace on a shared cluster: a destroy must leave it."""
    def check(r: Rollout) -> None:
        assert r.objects("Namespace") == []
        assert ("kubernetes:core/v1:Namespace", "team-ml") in MOCKS.read
        assert r.template_opts[0]["namespace"] == "team-ml"
        assert r.exports["namespace"] == "team-ml"

    return rollout(local(namespace="team-ml", adopt_namespace=True), check)


# --- chart source -------------------------------------------------------------------------


@runtime_test
def test_local_chart_is_given_by_path(local: Any) -> pulumi.Output[Any]:
    def check(r: Rollout) -> None:
        opts = r.template_opts[0]
        assert opts["path"] == str(CHART)
        assert "fetch_opts" not in opts and "chart" not in opts
        assert opts["release_name"] == "ml-model"

    return rollout(local(), check)


@runtime_test
def test_chart_from_repository(chart_repo: str) -> pulumi.Output[Any]:
    config = program.ModelConfig(chart_version="1.1.0-flaky", chart_repo=chart_repo)

    def check(r: Rollout) -> None:
        opts = r.template_opts[0]
        assert opts["fetch_opts"]["repo"] == chart_repo
        assert opts["chart"] == "ml-model"
        assert opts["version"] == "1.1.0-flaky"
        assert "path" not in opts
        assert r.container["image"] == "rollout-harness/model-server:1.1.0-flaky"

    return rollout(config, check)


@runtime_test
def test_packaged_chart_is_given_by_path(chart_packages: Path) -> pulumi.Output[Any]:
    archive = chart_packages / "ml-model-1.1.0-flaky.tgz"
    config = program.ModelConfig(chart_version="1.1.0-flaky", chart_path=str(archive))

    def check(r: Rollout) -> None:
        assert r.template_opts[0]["path"] == str(archive)
        assert r.container["image"] == "rollout-harness/model-server:1.1.0-flaky"

    return rollout(config, check)


# --- rollout await bound ------------------------------------------------------------------


@runtime_test
def test_timeout_annotation_bounds_every_await(local: Any) -> pulumi.Output[Any]:
    """The Service's await watches pods too: unbounded, a never-ready version held
    `pulumi up` for the provider's 10-minute default (found by the gate's e2e)."""

    def check(r: Rollout) -> None:
        annotations = r.one("Deployment")["metadata"]["annotations"]
        assert annotations["pulumi.com/timeoutSeconds"] == "120"
        kinds = set()
        for typ, _, state in r.states:
            # every object of the chart (the program's own Namespace is not awaited)
            if typ.startswith("kubernetes:") and not typ.endswith((":Chart", ":Namespace")):
                kinds.add(typ.rsplit(":", 1)[1])
                assert (state.get("metadata", {}).get("annotations") or {}).get(
                    "pulumi.com/timeoutSeconds") == "120", typ
        assert {"Deployment", "Service", "ConfigMap"} <= kinds

    return rollout(local(timeout_seconds=120), check)


@runtime_test
def test_only_the_services_skip_their_await(local: Any) -> pulumi.Output[Any]:
    """A Service's await only waits out the provider's 10 s endpoint settle (and, for a
    never-ready version, the whole timeout); the Deployment's proves the rollout."""

    def check(r: Rollout) -> None:
        skipping = {typ.rsplit(":", 1)[1] for typ, _, state in r.states
                    if (state.get("metadata", {}).get("annotations") or {}).get(
                        "pulumi.com/skipAwait") == "true"}
        assert skipping == {"Service"}

    return rollout(local(), check)


TEAM_CHART = REPO / "examples" / "mlserver" / "chart"
"""A team's chart, written with no knowledge of this harness."""


@runtime_test
def test_a_teams_chart_gets_the_version_label_on_its_pods(local: Any) -> pulumi.Output[Any]:
    """The watch tells old pods from new by the version label; a team's chart has none of
    its own, so the program puts it on the pod template (the selector is left alone)."""
    config = local(chart_path=str(TEAM_CHART), chart_version="1.1.0",
                   image_repository="example/wine-mlserver")

    def check(r: Rollout) -> None:
        deployment = r.one("Deployment")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels[program.VERSION_LABEL] == "1.1.0"
        assert program.VERSION_LABEL not in deployment["spec"]["selector"]["matchLabels"]
        assert r.container["image"] == "example/wine-mlserver:1.1.0"
        assert r.one("Service")["spec"]["type"] == "ClusterIP", "the chart's own default"

    return rollout(config, check)


@runtime_test
def test_a_version_label_the_chart_sets_is_kept(local: Any) -> pulumi.Output[Any]:
    config = local(chart_path=str(TEAM_CHART), chart_version="1.1.0",
                   values={"podLabels": {program.VERSION_LABEL: "its-own"}})

    def check(r: Rollout) -> None:
        labels = r.one("Deployment")["spec"]["template"]["metadata"]["labels"]
        assert labels[program.VERSION_LABEL] == "its-own"

    return rollout(config, check)


@runtime_test
def test_timeout_annotation_default(local: Any) -> pulumi.Output[Any]:
    def check(r: Rollout) -> None:
        annotations = r.one("Deployment")["metadata"]["annotations"]
        assert annotations["pulumi.com/timeoutSeconds"] == "300"

    return rollout(local(), check)


# --- exports ------------------------------------------------------------------------------


@runtime_test
def test_deployment_status_export(local: Any) -> pulumi.Output[Any]:
    def check(r: Rollout) -> None:
        assert r.exports["deployment"] == {
            "readyReplicas": 2, "updatedReplicas": 2, "replicas": 2, "revision": "1",
            "image": "rollout-harness/model-server:2.0.0",
        }

    return rollout(local(chart_version="2.0.0", replica_count=2), check)


def _service_port(r: Rollout) -> dict[str, Any]:
    ports = r.one("Service")["spec"]["ports"]
    port = dict(next((p for p in ports if p.get("name") == "http"), ports[0]))
    # numbers cross Pulumi's wire format as floats
    return {k: int(v) if isinstance(v, float) else v for k, v in port.items()}


@runtime_test
def test_service_url_host_port(local: Any) -> pulumi.Output[Any]:
    config = local(host_port=38080, node_address="10.0.0.5",
                   values={"service": {"type": "NodePort", "nodePort": 30080}})

    def check(r: Rollout) -> None:
        assert r.exports["serviceUrl"] == "http://127.0.0.1:38080"

    return rollout(config, check)


@runtime_test
def test_service_url_node_address(local: Any) -> pulumi.Output[Any]:
    config = local(node_address="10.0.0.5",
                   values={"service": {"type": "NodePort", "nodePort": 30123}})

    def check(r: Rollout) -> None:
        assert _service_port(r)["nodePort"] == 30123
        assert r.exports["serviceUrl"] == "http://10.0.0.5:30123"

    return rollout(config, check)


@runtime_test
def test_service_url_in_cluster_fallback(local: Any) -> pulumi.Output[Any]:
    config = local(namespace="models-b", node_address="10.0.0.5",
                   values={"service": {"type": "ClusterIP"}})

    def check(r: Rollout) -> None:
        name = r.one("Service")["metadata"]["name"]
        port = _service_port(r)["port"]
        assert r.exports["serviceUrl"] == f"http://{name}.models-b.svc.cluster.local:{port}"

    return rollout(config, check)


@runtime_test
def test_service_url_load_balancer(local: Any) -> pulumi.Output[Any]:
    """A load balancer's ingress wins over hostPort. The chart offers only NodePort and
    ClusterIP, so the mock plays a cloud controller that gave the Service an ingress."""
    config = local(host_port=38080)

    def check(r: Rollout) -> None:
        port = _service_port(r)["port"]
        assert r.exports["serviceUrl"] == f"http://203.0.113.7:{port}"

    return rollout(config, check, load_balancer={"ip": "203.0.113.7"})


# --- the two ways to run the program ------------------------------------------------------


@pytest.fixture
def stack_config() -> Iterator[Callable[[dict[str, str]], None]]:
    saved = dict(pulumi.runtime.config.CONFIG.get())

    def set_config(values: dict[str, str]) -> None:
        pulumi.runtime.set_all_config({f"{PROJECT}:{k}": v for k, v in values.items()})

    yield set_config
    pulumi.runtime.set_all_config(saved)


@runtime_test
def test_main_reads_stack_config(helm: Path, stack_config: Any) -> pulumi.Output[Any]:
    stack_config({"chartVersion": "1.3.0", "chartPath": str(CHART), "replicaCount": "4",
                  "values": json.dumps({"strategy": {"type": "Recreate"}})})
    MOCKS.reset()
    CONSTRUCTED.clear()
    # as pulumi-language-python-exec runs the project folder
    runpy.run_path(str(PROGRAM), run_name="__main__")
    stack = pulumi.runtime.get_root_resource()

    def check(exports: dict[str, Any]) -> None:
        assert exports["deployment"]["image"] == "rollout-harness/model-server:1.3.0"
        assert exports["deployment"]["replicas"] == 4
        assert MOCKS.template_opts[0]["values"]["strategy"] == {"type": "Recreate"}

    return pulumi.Output.all(**stack.outputs).apply(check)  # type: ignore[union-attr]


def test_harness_imports_the_program_folder() -> None:
    """The harness's way: the installed `ml_model_program` is the project folder's
    package (not a copy), so the inline program is what `pulumi up` runs."""
    from harness import deploy

    assert Path(program.__file__).parent == PROGRAM / "ml_model_program"
    assert deploy.ml_model_program is program and deploy.ModelConfig is program.ModelConfig


def test_program_folder_finds_the_program_without_the_install() -> None:
    """`pulumi up` in the folder needs no install of the harness: Pulumi's
    `runpy.run_path(folder)` puts the folder first on sys.path. Here: python
    without `site` (no editable finder), the venv's packages on PYTHONPATH."""
    probe = (
        "import importlib.util, os, sys\n"
        "assert importlib.util.find_spec('ml_model_program') is None, 'installed'\n"
        "sys.path.insert(0, '.')\n"
        "import ml_model_program\n"
        "print(os.path.abspath(ml_model_program.__file__), ml_model_program.ModelConfig.__name__)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(site.getsitepackages())}
    done = subprocess.run([sys.executable, "-S", "-P", "-c", probe], cwd=PROGRAM, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(PROGRAM / "ml_model_program" / "__init__.py"),
                                   "ModelConfig"]


# --- config validation --------------------------------------------------------------------


def test_config_from_stack(stack_config: Any) -> None:
    stack_config({"chartVersion": "1.1.0-flaky", "chartRepo": "http://127.0.0.1:8879",
                  "imageRepository": "models/iris", "replicaCount": "2",
                  "namespace": "canary", "releaseName": "ml-model-canary",
                  "timeoutSeconds": "90", "hostPort": "38080", "nodeAddress": "172.18.0.2",
                  "values": json.dumps({"service": {"type": "NodePort", "nodePort": 30081}})})
    config = program.ModelConfig.from_pulumi_config(pulumi.Config())
    assert config == program.ModelConfig(
        chart_version="1.1.0-flaky", chart_repo="http://127.0.0.1:8879",
        image_repository="models/iris", replica_count=2, namespace="canary",
        release_name="ml-model-canary", timeout_seconds=90, host_port=38080,
        node_address="172.18.0.2", values={"service": {"type": "NodePort", "nodePort": 30081}})
    assert config.effective_image_tag == "1.1.0-flaky"
    assert config.fullname == "ml-model-canary"


def test_config_defaults(stack_config: Any) -> None:
    stack_config({"chartVersion": "1.0.0", "chartPath": str(CHART)})
    config = program.ModelConfig.from_pulumi_config(pulumi.Config())
    assert (config.effective_image_repository, config.effective_image_tag,
            config.effective_replica_count) == ("rollout-harness/model-server", "1.0.0", 3)
    assert (config.namespace, config.release_name, config.timeout_seconds) == (
        "ml-model", "ml-model", 300)
    assert config.host_port is None and config.node_address is None
    assert config.fullname == "ml-model"


@pytest.mark.parametrize(("settings", "words"), [
    ({"chartVersion": "1.0.0"}, ["chartPath", "chartRepo", "neither"]),
    ({"chartVersion": "1.0.0", "chartPath": str(CHART), "chartRepo": "http://127.0.0.1:1"},
     ["chartPath", "chartRepo", "both"]),
    ({"chartVersion": "1.0.0", "chartPath": "charts/ml-model"}, ["chartPath", "absolute"]),
    ({"chartVersion": "1.0.0", "chartRepo": "127.0.0.1:8879"}, ["chartRepo", "http"]),
    ({"chartVersion": "1.0", "chartPath": str(CHART)}, ["chartVersion", "'1.0'", "SemVer"]),
    ({"chartVersion": "v1.0.0", "chartPath": str(CHART)}, ["chartVersion", "'v1.0.0'"]),
    ({"chartVersion": "1.0.0+build.5", "chartPath": str(CHART)}, ["chartVersion", "imageTag"]),
    ({"chartVersion": "1.0.0", "chartPath": str(CHART), "replicaCount": "0"},
     ["replicaCount", "0", ">= 1"]),
    ({"chartVersion": "1.0.0", "chartPath": str(CHART), "replicaCount": "three"},
     ["replicaCount", "'three'", "integer"]),
    ({"chartVersion": "1.0.0", "chartPath": str(CHART), "imageTag": "a:b"}, ["imageTag", "a:b"]),
    ({"chartVersion": "1.0.0", "chartPath": str(CHART), "imageRepository": "Bad Name"},
     ["imageRepository", "Bad Name"]),
    ({"chartVersion": "1.0.0", "chartPath": str(CHART), "namespace": "ML_Model"},
     ["namespace", "ML_Model", "DNS label"]),
    ({"chartVersion": "1.0.0", "chartPath": str(CHART), "timeoutSeconds": "0"},
     ["timeoutSeconds", ">= 1"]),
    ({"chartVersion": "1.0.0", "chartPath": str(CHART), "hostPort": "70000"},
     ["hostPort", "70000", "65535"]),
    ({"chartVersion": "1.0.0", "chartPath": str(CHART), "nodeAddress": "http://x"},
     ["nodeAddress", "http://x"]),
    ({"chartVersion": "1.0.0", "chartPath": str(CHART), "values": "[1, 2]"}, ["values"]),
    ({"chartVersion": "1.0.0", "chartPath": str(CHART), "imageTag": "1.0.0",
      "values": json.dumps({"image": {"tag": "2.0.0"}})}, ["imageTag", "values.image.tag"]),
    ({"chartVersion": "1.0.0", "chartPath": str(CHART),
      "values": json.dumps({"replicaCount": 0})}, ["values.replicaCount", ">= 1"]),
    ({"chartVersion": "1.0.0", "chartPath": str(CHART), "imagetag": "2.0.0"},
     ["unknown", "imagetag", "imageTag"]),
])
@pytest.mark.parametrize("reader", ["pulumi", "stack"])
def test_bad_config_is_a_value_error_naming_key_and_value(
        stack_config: Any, settings: dict[str, str], words: list[str], reader: str) -> None:
    """Both readers: Pulumi's config of the project, and the plain mapping."""
    with pytest.raises(ValueError) as raised:
        if reader == "pulumi":
            stack_config(settings)
            program.ModelConfig.from_pulumi_config(pulumi.Config())
        else:
            program.ModelConfig.from_stack_config(settings)
    for word in words:
        assert word in str(raised.value), f"{word!r} not in: {raised.value}"


@pytest.mark.parametrize(("settings", "message"), [
    ({"chartPath": str(CHART)}, "chartVersion is required"),
    ({"chartVersion": "1.0.0", "chartPath": str(CHART), "values": "{'a': 1}"},
     "values must be a JSON object of chart values, not \"{'a': 1}\""),
    ({"chartVersion": "1.0.0", "chartPath": str(CHART), "values": "7"},
     "values must be an object of chart values, not 7"),
    ({"chartVersion": "1.0.0", "chartPath": str(CHART), "hostPort": "80.5"},
     "hostPort must be an integer, not '80.5'"),
    ({"chartVersion": "1.0.0", "chartPath": str(CHART), "timeoutSeconds": ""},
     "timeoutSeconds must be an integer, not ''"),
    ({"chartVersion": "1.0.0", "chartPath": str(CHART), "chart_path": "x", "ReplicaCount": "1"},
     "unknown config key(s) ReplicaCount, chart_path: allowed are chartVersion, "),
])
def test_bad_stack_config_messages(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        program.ModelConfig.from_stack_config(settings)
    assert message in str(raised.value)


def test_unknown_key_in_pulumi_config_names_the_project(stack_config: Any) -> None:
    stack_config({"chartVersion": "1.0.0", "chartPath": str(CHART), "nodePort": "30080"})
    with pytest.raises(ValueError, match=r"unknown config key\(s\) nodePort in 'ml-model': "):
        program.ModelConfig.from_pulumi_config(pulumi.Config())


def test_json_null_values_are_no_values() -> None:
    config = program.ModelConfig.from_stack_config(
        {"chartVersion": "1.0.0", "chartRepo": "http://127.0.0.1:1", "values": "null"})
    assert config.values == {}


# --- stack config round trip --------------------------------------------------------------


def _configs() -> list[program.ModelConfig]:
    """Configs that between them set every field, and leave every optional one unset."""
    return [
        program.ModelConfig(chart_version="1.0.0", chart_path=str(CHART)),
        program.ModelConfig(chart_version="1.0.0", chart_repo="http://127.0.0.1:8879"),
        program.ModelConfig(
            chart_version="1.1.0-flaky", chart_repo="https://charts.example.test/models",
            image_repository="127.0.0.1:5000/models/iris", image_tag="1.1.0-rc.1",
            replica_count=1, namespace="canary", release_name="ml-model.canary",
            timeout_seconds=90, host_port=65535, node_address="fd00::2", adopt_namespace=True,
            values={"service": {"type": "NodePort", "nodePort": 30081},
                    "gracefulDrain": {"enabled": False, "seconds": 2.5},
                    "tolerations": [{"key": "gpu", "value": None}], "note": "ünïcode \"q\"",
                    "replicaCount": 1, "image": {"repository": "127.0.0.1:5000/models/iris"}}),
        program.ModelConfig(
            chart_version="2.0.0+build.7", chart_path=str(CHART), image_tag="2.0.0",
            node_address="kind-control-plane", host_port=1, timeout_seconds=1,
            values={"image": {"tag": "2.0.0", "pullPolicy": "Never"}, "nameOverride": "x"}),
        program.ModelConfig(chart_version="1.0.0+meta", chart_path=str(CHART),
                            values={"image": {"tag": "meta"}}),
        program.ModelConfig(chart_version="1.0.0", chart_repo="http://127.0.0.1:8879",
                            canary=program.CanaryConfig(version="1.1.0")),
        program.ModelConfig(chart_version="1.1.0", chart_repo="http://127.0.0.1:8879",
                            chart_name="wine-mlserver", image_repository="example/wine"),
        program.ModelConfig(
            chart_version="1.0.0", chart_path=str(CHART), host_port=38080,
            values={"service": {"nodePort": 30090}},
            canary=program.CanaryConfig(
                version="1.1.0+build.2", image_tag="1.1.0-rc.2", chart_path=str(CHART),
                replicas=2, baseline_node_port=30080, canary_node_port=32767,
                baseline_host_port=38081, canary_host_port=38082)),
    ]


@pytest.mark.parametrize("config", _configs(), ids=lambda c: c.chart_version)
def test_stack_config_round_trip(config: program.ModelConfig) -> None:
    stack = config.to_stack_config()
    assert list(stack) == [key for key in program.CONFIG_KEYS if key in stack]
    assert all(isinstance(value, str) for value in stack.values())
    assert program.ModelConfig.from_stack_config(stack) == config


@pytest.mark.parametrize("config", _configs(), ids=lambda c: c.chart_version)
def test_stack_config_round_trip_through_pulumi_config(
        stack_config: Any, config: program.ModelConfig) -> None:
    """What the harness writes with the Automation API, the program reads back."""
    stack_config(config.to_stack_config())
    assert program.ModelConfig.from_pulumi_config(pulumi.Config()) == config


def test_stack_config_covers_every_key() -> None:
    written = set().union(*(config.to_stack_config() for config in _configs()))
    assert written == set(program.CONFIG_KEYS)
    canaries = [json.loads(config.to_stack_config()["canary"]) for config in _configs()
                if config.canary is not None]
    assert set().union(*canaries) == set(program.CANARY_KEYS)


def test_stack_config_format() -> None:
    config = program.ModelConfig(chart_version="1.1.0", chart_repo="http://127.0.0.1:8879",
                                 replica_count=2, host_port=38080,
                                 values={"service": {"nodePort": 30080}})
    assert config.to_stack_config() == {
        "chartVersion": "1.1.0", "replicaCount": "2", "namespace": "ml-model",
        "values": '{"service": {"nodePort": 30080}}', "chartRepo": "http://127.0.0.1:8879",
        "releaseName": "ml-model", "timeoutSeconds": "300", "hostPort": "38080",
    }


def test_values_that_are_not_json_cannot_become_stack_config() -> None:
    config = program.ModelConfig(chart_version="1.0.0", chart_repo="http://127.0.0.1:1",
                                 values={"when": {1, 2}})
    with pytest.raises(ValueError, match="values must be JSON-serialisable chart values"):
        config.to_stack_config()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=12,
)


@st.composite
def _canaries(draw: st.DrawFn) -> program.CanaryConfig:
    """Valid canaries: two distinct nodePorts besides the chart's 30080, distinct host
    ports (or unset), any size."""
    node_ports = draw(st.lists(st.integers(30081, 32767), min_size=2, max_size=2,
                               unique=True))
    host_ports = draw(st.lists(st.none() | st.integers(1, 65535), min_size=2, max_size=2)
                      .filter(lambda ports: ports[0] is None or ports[0] != ports[1]))
    version = draw(st.sampled_from(["1.1.0", "2.0.0-rc.1", "1.0.1-flaky", "3.0.0+b.1"]))
    tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
    return program.CanaryConfig(
        version=version, image_tag=draw(tags if "+" in version else st.none() | tags),
        replicas=draw(st.integers(1, 1000)), baseline_node_port=node_ports[0],
        canary_node_port=node_ports[1], baseline_host_port=host_ports[0],
        canary_host_port=host_ports[1])


_CANARIES = _canaries()


@settings(max_examples=60, deadline=None)
@given(
    values=st.dictionaries(st.text(max_size=10).filter(lambda k: k not in (
        "image", "replicaCount", "track", "serveAllTracks")),
                           _JSON, max_size=4),
    replica_count=st.none() | st.integers(1, 10_000),
    timeout_seconds=st.integers(1, 10**9),
    host_port=st.none() | st.integers(1, 65535),
    image_tag=st.none() | st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
    node_address=st.none() | st.ip_addresses().map(str),
    canary=st.none() | _CANARIES,
)
def test_stack_config_round_trip_property(
        values: dict[str, Any], replica_count: int | None, timeout_seconds: int,
        host_port: int | None, image_tag: str | None, node_address: str | None,
        canary: program.CanaryConfig | None) -> None:
    assume(canary is None or host_port is None
           or host_port not in (canary.baseline_host_port, canary.canary_host_port))
    config = program.ModelConfig(
        chart_version="1.0.0", chart_repo="http://127.0.0.1:8879", values=values,
        replica_count=replica_count, timeout_seconds=timeout_seconds, host_port=host_port,
        image_tag=image_tag, node_address=node_address, canary=canary)
    assert program.ModelConfig.from_stack_config(config.to_stack_config()) == config


def test_values_fill_in_where_dedicated_keys_are_unset() -> None:
    config = program.ModelConfig(
        chart_version="1.0.0", chart_repo="http://127.0.0.1:1",
        values={"image": {"repository": "models/iris", "pullPolicy": "Never"}, "replicaCount": 2})
    assert config.chart_values() == {
        "image": {"repository": "models/iris", "tag": "1.0.0", "pullPolicy": "Never"},
        "replicaCount": 2}
    same = dataclasses.replace(config, image_repository="models/iris", replica_count=2)
    assert same.chart_values() == config.chart_values()
    with pytest.raises(ValueError, match=r"replicaCount=5 and values\.replicaCount=2 disagree"):
        dataclasses.replace(config, replica_count=5)


def test_chart_version_is_required(stack_config: Any) -> None:
    stack_config({"chartPath": str(CHART)})
    with pytest.raises(pulumi.ConfigMissingError, match="chartVersion"):
        program.ModelConfig.from_pulumi_config(pulumi.Config())
    with pytest.raises(ValueError, match="chartVersion is required"):
        program.ModelConfig.from_stack_config({"chartPath": str(CHART)})


def test_config_is_validated_without_pulumi_config() -> None:
    with pytest.raises(ValueError, match="replicaCount must be an integer >= 1, not 0"):
        program.ModelConfig(chart_version="1.0.0", chart_repo="http://127.0.0.1:1",
                            replica_count=0)
    with pytest.raises(ValueError, match="replicaCount must be an integer >= 1, not True"):
        program.ModelConfig(chart_version="1.0.0", chart_repo="http://127.0.0.1:1",
                            replica_count=True)


# --- canary: baseline and canary releases beside the stable one ---------------------------

NAME = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
TRACK = "rollout-harness/track"


def _pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return dict(deployment["spec"]["template"]["metadata"]["labels"])


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def _node_port(service: dict[str, Any]) -> int:
    return int(service["spec"]["ports"][0]["nodePort"])


@runtime_test
def test_canary_deploys_baseline_and_canary_releases(local: Any) -> pulumi.Output[Any]:
    config = local(replica_count=4, host_port=38080,
                   canary=program.CanaryConfig(version="1.1.0", replicas=2,
                                               baseline_host_port=38081,
                                               canary_host_port=38082))

    def check(r: Rollout) -> None:
        assert [o["release_name"] for o in r.template_opts] == [
            "ml-model", "ml-model-baseline", "ml-model-canary"]
        assert [o["path"] for o in r.template_opts] == [str(CHART)] * 3
        stable, baseline, canary = (r.named("Deployment", name) for name in (
            "ml-model", "ml-model-baseline", "ml-model-canary"))
        image = "rollout-harness/model-server:"
        assert [d["spec"]["template"]["spec"]["containers"][0]["image"]
                for d in (stable, baseline, canary)] == [f"{image}1.0.0", f"{image}1.0.0",
                                                         f"{image}1.1.0"]
        assert [d["spec"]["replicas"] for d in (stable, baseline, canary)] == [4, 2, 2]
        assert TRACK not in _pod_labels(stable), "stable pods are not rolled for a label"
        assert (_pod_labels(baseline)[TRACK], _pod_labels(canary)[TRACK]) == (
            "baseline", "canary")
        for d in (stable, baseline, canary):
            assert d["spec"]["selector"]["matchLabels"] == {
                NAME: "ml-model", INSTANCE: d["metadata"]["name"]}
        model = r.named("Service", "ml-model")
        assert _node_port(model) == 30080
        assert all(_selects(model["spec"]["selector"], _pod_labels(d))
                   for d in (stable, baseline, canary)), "the model Service serves all tracks"
        for d, port in ((baseline, 30081), (canary, 30082)):
            own = r.named("Service", d["metadata"]["name"])
            assert _node_port(own) == port
            assert [x["metadata"]["name"] for x in (stable, baseline, canary)
                    if _selects(own["spec"]["selector"], _pod_labels(x))] == [
                d["metadata"]["name"]]
        assert len(r.objects("PodDisruptionBudget")) == 3
        assert r.template_opts[0]["values"]["serveAllTracks"] is True
        assert "track" not in r.template_opts[0]["values"]
        assert r.exports["deployment"]["replicas"] == 4
        assert r.exports["serviceUrl"] == "http://127.0.0.1:38080"
        assert r.exports["imageTag"] == r.exports["chartVersion"] == "1.0.0"
        assert r.exports["baseline"] == {
            "release": "ml-model-baseline", "chartVersion": "1.0.0", "imageTag": "1.0.0",
            "serviceUrl": "http://127.0.0.1:38081",
            "deployment": {"readyReplicas": 2, "updatedReplicas": 2, "replicas": 2,
                           "revision": "1", "image": f"{image}1.0.0"}}
        assert r.exports["canary"] == {
            "release": "ml-model-canary", "chartVersion": "1.1.0", "imageTag": "1.1.0",
            "serviceUrl": "http://127.0.0.1:38082",
            "deployment": {"readyReplicas": 2, "updatedReplicas": 2, "replicas": 2,
                           "revision": "1", "image": f"{image}1.1.0"}}

    return rollout(config, check)


@runtime_test
def test_canary_share_of_the_model_service_is_the_pod_ratio(local: Any) -> pulumi.Output[Any]:
    """Stable N = 3, baseline = canary = k = 1: the model Service's endpoints are the
    5 pods, so each of baseline and canary takes k / (N + 2k) = 1/5 of new connections."""
    config = local(canary=program.CanaryConfig(version="1.1.0"))

    def check(r: Rollout) -> None:
        selector = r.named("Service", "ml-model")["spec"]["selector"]
        endpoints = {d["metadata"]["name"]: int(d["spec"]["replicas"])
                     for d in r.objects("Deployment") if _selects(selector, _pod_labels(d))}
        assert endpoints == {"ml-model": 3, "ml-model-baseline": 1, "ml-model-canary": 1}
        total = sum(endpoints.values())
        assert endpoints["ml-model-canary"] / total == endpoints["ml-model-baseline"] / total \
            == 1 / 5

    return rollout(config, check)


@runtime_test
def test_canary_from_a_chart_repository(chart_repo: str) -> pulumi.Output[Any]:
    """Baseline: stable's chart version from the repository; canary: the candidate's."""
    config = program.ModelConfig(chart_version="1.0.0", chart_repo=chart_repo,
                                 canary=program.CanaryConfig(version="1.1.0-flaky"))

    def check(r: Rollout) -> None:
        assert [(o["release_name"], o["version"], o["fetch_opts"]["repo"])
                for o in r.template_opts] == [("ml-model", "1.0.0", chart_repo),
                                              ("ml-model-baseline", "1.0.0", chart_repo),
                                              ("ml-model-canary", "1.1.0-flaky", chart_repo)]
        canary = r.named("Deployment", "ml-model-canary")
        assert canary["spec"]["template"]["spec"]["containers"][0]["image"].endswith(
            ":1.1.0-flaky")
        assert r.exports["canary"]["chartVersion"] == "1.1.0-flaky"

    return rollout(config, check)


@runtime_test
def test_canary_chart_path_and_image_tag(chart_packages: Path) -> pulumi.Output[Any]:
    archive = chart_packages / "ml-model-1.1.0-flaky.tgz"
    config = program.ModelConfig(
        chart_version="1.0.0", chart_path=str(CHART), values={"image": {"tag": "stable-tag"}},
        canary=program.CanaryConfig(version="1.1.0-flaky", chart_path=str(archive),
                                    image_tag="candidate"))

    def check(r: Rollout) -> None:
        assert [o["path"] for o in r.template_opts] == [str(CHART), str(CHART), str(archive)]
        images = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"]
                  for d in r.objects("Deployment")}
        tag = "rollout-harness/model-server:"
        assert images == {"ml-model": f"{tag}stable-tag", "ml-model-baseline": f"{tag}stable-tag",
                          "ml-model-canary": f"{tag}candidate"}
        assert (r.exports["baseline"]["imageTag"], r.exports["canary"]["imageTag"]) == (
            "stable-tag", "candidate")

    return rollout(config, check)


@runtime_test
def test_canary_values_and_timeout_reach_every_release(local: Any) -> pulumi.Output[Any]:
    config = local(timeout_seconds=77, namespace="models-c",
                   values={"gracefulDrain": {"enabled": False}},
                   canary=program.CanaryConfig(version="1.1.0"))

    def check(r: Rollout) -> None:
        assert [o["namespace"] for o in r.template_opts] == ["models-c"] * 3
        for opts in r.template_opts:
            assert opts["values"]["gracefulDrain"] == {"enabled": False}
        for typ, _, state in r.states:
            if typ.startswith("kubernetes:") and not typ.endswith((":Chart", ":Namespace")):
                assert state["metadata"]["namespace"] == "models-c", typ
                assert state["metadata"]["annotations"]["pulumi.com/timeoutSeconds"] == "77"
        assert len(r.objects("Deployment")) == 3
        assert all("lifecycle" not in d["spec"]["template"]["spec"]["containers"][0]
                   for d in r.objects("Deployment"))

    return rollout(config, check)


@runtime_test
def test_canary_with_a_fullname_override(local: Any) -> pulumi.Output[Any]:
    config = local(values={"fullnameOverride": "wine"},
                   canary=program.CanaryConfig(version="1.1.0"))

    def check(r: Rollout) -> None:
        assert sorted(d["metadata"]["name"] for d in r.objects("Deployment")) == [
            "wine", "wine-baseline", "wine-canary"]
        assert sorted(s["metadata"]["name"] for s in r.objects("Service")) == [
            "wine", "wine-baseline", "wine-canary"]
        assert r.exports["canary"]["deployment"]["replicas"] == 1

    return rollout(config, check)


def _stable_states(r: Rollout) -> dict[str, dict[str, Any]]:
    return {name: state for typ, name, state in r.states
            if "baseline" not in name and "canary" not in name}


@runtime_test
def test_without_canary_stable_is_as_before(local: Any) -> pulumi.Output[Any]:
    """No canary: one release, no track values, no baseline/canary exports."""
    def check(r: Rollout) -> None:
        assert [o["release_name"] for o in r.template_opts] == ["ml-model"]
        values = r.template_opts[0]["values"]
        assert "track" not in values and "serveAllTracks" not in values
        assert r.one("Service")["spec"]["selector"] == {NAME: "ml-model", INSTANCE: "ml-model"}
        assert "baseline" not in r.exports and "canary" not in r.exports

    return rollout(local(), check)


@pytest.mark.parametrize("end", ["aborted", "promoted"])
def test_ending_a_canary_removes_its_releases(end: str) -> None:
    config = program.ModelConfig(
        chart_version="1.0.0", chart_repo="http://127.0.0.1:1", replica_count=5,
        values={"image": {"tag": "a", "pullPolicy": "Never"}},
        canary=program.CanaryConfig(version="1.1.0", image_tag="b", replicas=2))
    ended = getattr(config, end)()
    assert ended.canary is None
    assert [r.track for r in ended.releases()] == ["stable"]
    assert "serveAllTracks" not in ended.chart_values()
    assert ended.replica_count == 5
    if end == "aborted":
        assert ended == dataclasses.replace(config, canary=None)
        assert ended.effective_image_tag == "a"
    else:
        assert (ended.chart_version, ended.effective_image_tag) == ("1.1.0", "b")
        assert ended.values == {"image": {"pullPolicy": "Never"}}
        assert ended.chart_repo == "http://127.0.0.1:1"
    assert program.ModelConfig.from_stack_config(ended.to_stack_config()) == ended
    assert "canary" not in ended.to_stack_config(), "the harness then removes the key"


def test_promoting_takes_the_candidates_chart_source(chart_packages: Path) -> None:
    archive = str(chart_packages / "ml-model-1.1.0-flaky.tgz")
    config = program.ModelConfig(chart_version="1.0.0", chart_repo="http://127.0.0.1:1",
                                 canary=program.CanaryConfig(version="1.1.0-flaky",
                                                             chart_path=archive))
    promoted = config.promoted()
    assert (promoted.chart_path, promoted.chart_repo) == (archive, None)
    assert promoted.effective_image_tag == "1.1.0-flaky"
    with pytest.raises(ValueError, match="nothing to promote"):
        promoted.promoted()


@runtime_test
def test_aborted_canary_deploys_stable_exactly_as_without_one(local: Any) -> pulumi.Output[Any]:
    """What `pulumi up` applies after an abort is what it applied before the canary:
    the stable objects as a config without canary renders them."""
    plain = local(host_port=38080)
    ended = local(host_port=38080, canary=program.CanaryConfig(version="1.1.0")).aborted()
    assert ended == plain

    def check(r: Rollout) -> None:
        assert [o["release_name"] for o in r.template_opts] == ["ml-model"]
        assert r.one("Service")["spec"]["selector"] == {NAME: "ml-model", INSTANCE: "ml-model"}

    return rollout(ended, check)


@runtime_test
def test_promoted_canary_rolls_stable_to_the_candidate(local: Any) -> pulumi.Output[Any]:
    config = local(canary=program.CanaryConfig(version="1.1.0", replicas=2)).promoted()

    def check(r: Rollout) -> None:
        assert [o["release_name"] for o in r.template_opts] == ["ml-model"]
        assert r.container["image"] == "rollout-harness/model-server:1.1.0"
        assert r.one("Deployment")["spec"]["replicas"] == 3, "stable keeps its size"
        assert r.exports["chartVersion"] == r.exports["imageTag"] == "1.1.0"
        assert "canary" not in r.exports

    return rollout(config, check)


def test_canary_stack_config_format() -> None:
    config = program.ModelConfig(chart_version="1.0.0", chart_repo="http://127.0.0.1:8879",
                                 canary=program.CanaryConfig(version="1.1.0",
                                                             canary_host_port=38082))
    assert json.loads(config.to_stack_config()["canary"]) == {
        "version": "1.1.0", "replicas": 1, "baselineNodePort": 30081, "canaryNodePort": 30082,
        "canaryHostPort": 38082}


def test_canary_from_pulumi_config_set_path(stack_config: Any) -> None:
    """`pulumi config set --path canary.version 1.1.0` (and `canary.replicas 2`): the
    program reads the object Pulumi keeps, numbers given as strings included."""
    stack_config({"chartVersion": "1.0.0", "chartPath": str(CHART),
                  "canary": json.dumps({"version": "1.1.0", "replicas": "2",
                                        "canaryNodePort": 30099})})
    config = program.ModelConfig.from_pulumi_config(pulumi.Config())
    assert config.canary == program.CanaryConfig(version="1.1.0", replicas=2,
                                                 canary_node_port=30099)


@pytest.mark.parametrize(("canary", "message"), [
    ("1.1.0", "canary must be a JSON object, not '1.1.0'"),
    ('"1.1.0"', "canary must be a JSON object like"),
    ("{}", "canary.version is required"),
    ('{"version": "1.1.0", "nodePort": 1}',
     "unknown canary key(s) nodePort: allowed are version, imageTag, "),
    ('{"version": "v1.1"}', "canary.version must be a SemVer version like 1.2.0"),
    ('{"version": "1.1.0+b"}', "canary.version '1.1.0+b' is not a valid image tag"),
    ('{"version": "1.1.0", "imageTag": "a:b"}', "canary.imageTag 'a:b' is not a valid"),
    ('{"version": "1.1.0", "replicas": 0}', "canary.replicas must be an integer >= 1, not 0"),
    ('{"version": "1.1.0", "replicas": "two"}', "canary.replicas must be an integer >= 1"),
    ('{"version": "1.1.0", "chartPath": "charts/ml-model"}',
     "canary.chartPath must be an absolute path"),
    ('{"version": "1.1.0", "chartPath": "/nonexistent"}',
     "canary.chartPath must be a chart folder"),
    ('{"version": "1.1.0", "canaryNodePort": 80}',
     "canary.canaryNodePort must be an integer from 30000 to 32767, not 80"),
    ('{"version": "1.1.0", "baselineNodePort": 30082}',
     "canary.baselineNodePort and canary.canaryNodePort must differ: both are 30082"),
    ('{"version": "1.1.0", "baselineNodePort": 30080}',
     "canary.baselineNodePort=30080 is the model Service's nodePort"),
    ('{"version": "1.1.0", "baselineHostPort": 9, "canaryHostPort": 9}',
     "canary.baselineHostPort and canary.canaryHostPort must differ: both are 9"),
    ('{"version": "1.1.0", "canaryHostPort": 38080}',
     "canary.canaryHostPort=38080 is hostPort, the model Service's"),
    ('{"version": "1.1.0", "canaryHostPort": 0}', "canary.canaryHostPort must be an integer"),
])
def test_bad_canary_config_messages(canary: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        program.ModelConfig.from_stack_config(
            {"chartVersion": "1.0.0", "chartPath": str(CHART), "hostPort": "38080",
             "canary": canary})
    assert message in str(raised.value)


def test_canary_port_clash_with_the_model_services_own_node_port() -> None:
    with pytest.raises(ValueError, match=r"canary.canaryNodePort=30123 is the model Service's"):
        program.ModelConfig(chart_version="1.0.0", chart_path=str(CHART),
                            values={"service": {"nodePort": 30123}},
                            canary=program.CanaryConfig(version="1.1.0",
                                                        canary_node_port=30123))
    moved = program.ModelConfig(chart_version="1.0.0", chart_path=str(CHART),
                                values={"service": {"nodePort": 30123}},
                                canary=program.CanaryConfig(version="1.1.0",
                                                            baseline_node_port=30080))
    assert [r.values["service"]["nodePort"] for r in moved.releases()] == [30123, 30080, 30082]


def test_canary_names_must_fit() -> None:
    long_name = "r" * 45
    program.ModelConfig(chart_version="1.0.0", chart_path=str(CHART), release_name=long_name)
    with pytest.raises(ValueError, match=r"releaseName 'r{45}' is too long for a canary: .* "
                                         r"\(at most 44 for releaseName\)"):
        program.ModelConfig(chart_version="1.0.0", chart_path=str(CHART),
                            release_name=long_name, canary=program.CanaryConfig(version="1.1.0"))
    with pytest.raises(ValueError, match=r"the baseline release's object names 'w{58}-baseline' "
                                         r"must be at most 63"):
        program.ModelConfig(chart_version="1.0.0", chart_path=str(CHART),
                            values={"fullnameOverride": "w" * 58},
                            canary=program.CanaryConfig(version="1.1.0"))


@pytest.mark.parametrize("key", ["track", "serveAllTracks"])
def test_track_values_belong_to_the_program(key: str) -> None:
    with pytest.raises(ValueError, match=rf"values.{key} is set by the program from canary"):
        program.ModelConfig(chart_version="1.0.0", chart_path=str(CHART), values={key: "x"})


def test_releases_of_a_canary() -> None:
    config = program.ModelConfig(chart_version="1.0.0", chart_repo="http://127.0.0.1:1",
                                 release_name="wine", host_port=38080,
                                 canary=program.CanaryConfig(version="1.1.0", replicas=2,
                                                             baseline_host_port=38081))
    assert tuple(r.track for r in config.releases()) == program.TRACKS
    stable, baseline, canary = config.releases()
    assert [(r.track, r.name, r.fullname, r.chart_version, r.image_tag, r.host_port)
            for r in (stable, baseline, canary)] == [
        ("stable", "wine", "wine-ml-model", "1.0.0", "1.0.0", 38080),
        ("baseline", "wine-baseline", "wine-baseline-ml-model", "1.0.0", "1.0.0", 38081),
        ("canary", "wine-canary", "wine-canary-ml-model", "1.1.0", "1.1.0", None)]
    assert stable.values == {**config.chart_values(), "serveAllTracks": True}
    for release, port in ((baseline, 30081), (canary, 30082)):
        assert release.values["track"] == release.track
        assert release.values["replicaCount"] == 2
        assert release.values["service"] == {"nodePort": port}
        assert "serveAllTracks" not in release.values
