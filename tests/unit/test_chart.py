"""The ml-model chart: schema checks in pure Python, rendered objects with helm.

The helm tests use the toolchain's helm (``make unit`` runs ``make helm``
first); without it they fail, saying how to get it.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_binary import toolchain_helm

CHART = Path(__file__).resolve().parents[2] / "charts" / "ml-model"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())

pytestmark = pytest.mark.timeout(120)


# --- a small JSON-schema (draft-07 subset) checker, enough for values.schema.json ---

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def schema_errors(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Errors of ``value`` against ``schema``; supports what values.schema.json uses."""
    if "$ref" in schema:
        node: Any = SCHEMA
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        return schema_errors(value, node, path)
    unknown = set(schema) - {
        "$schema", "title", "description", "type", "additionalProperties", "required",
        "definitions", "properties", "enum", "minimum", "maximum", "minLength", "pattern",
        "anyOf", "items",
    }  # fmt: skip
    assert not unknown, f"checker does not support {unknown}"
    if "anyOf" in schema and all(schema_errors(value, s, path) for s in schema["anyOf"]):
        return [f"{path}: matches no alternative"]
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, t) for t in types):
            return [f"{path}: {value!r} is not {'/'.join(types)}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: {value} > {schema['maximum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{path}: too short")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{path}[{i}]")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        errors += [f"{path}: {k} is required" for k in schema.get("required", []) if k not in value]
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(item, properties[key], f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}: unknown key {key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += schema_errors(item, schema["additionalProperties"], f"{path}.{key}")
    return errors


def with_value(dotted: str, value: Any) -> dict[str, Any]:
    values: dict[str, Any] = json.loads(json.dumps(VALUES))
    *parents, last = dotted.split(".")
    node = values
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return values


BAD_VALUES = [
    ("replicaCount", 0),
    ("replicaCount", "three"),
    ("replicaCount", 1.5),
    ("replicas", 3),
    ("gracefulDrain.enable", False),
    ("gracefulDrain.enabled", "no"),
    ("strategy.type", "BlueGreen"),
    ("strategy.rollingUpdate.maxSurge", "lots"),
    ("service.type", "LoadBalancer"),
    ("service.nodePort", 80),
    ("service.nodePort", "30080"),
    ("image.pullPolicy", "Sometimes"),
    ("image.tag", "1.1.0+build"),
    ("drain.seconds", -1),
    ("server.flakyRate", 2),
    ("model.name", "a/b"),
    ("probes.readiness.periodSeconds", 0),
    ("probes.readiness.enabled", "no"),
    ("probes.readiness.enabled", None),
    ("probes.liveness.enabled", False),
    ("gracefulDrain.preStop", "false"),
    ("gracefulDrain.preStop", 0),
    ("gracefulDrain.preStop", None),
    ("server.stallRate", 1.5),
    ("server.stallSeconds", -1),
    ("server.stallSeconds", "2s"),
    ("server.slowMs", -1),
    ("server.slowMs", "20ms"),
    ("track", "blue"),
    ("track", "Canary"),
    ("track", None),
    ("serveAllTracks", "yes"),
    ("serveAllTracks", None),
]


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert (chart["version"], chart["appVersion"]) == ("1.0.0", "1.0.0")


def test_default_values_match_the_schema() -> None:
    assert schema_errors(VALUES, SCHEMA) == []
    assert VALUES["replicaCount"] == 3
    assert VALUES["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    assert (VALUES["service"]["type"], VALUES["service"]["nodePort"]) == ("NodePort", 30080)
    assert VALUES["gracefulDrain"] == {"enabled": True, "preStop": True}
    assert VALUES["probes"]["readiness"]["enabled"] is True
    assert (VALUES["server"]["stallRate"], VALUES["server"]["stallSeconds"]) == (0.1, 2)
    assert (VALUES["track"], VALUES["serveAllTracks"]) == ("stable", False)


@pytest.mark.parametrize(("key", "value"), BAD_VALUES)
def test_schema_rejects_bad_values(key: str, value: Any) -> None:
    assert schema_errors(with_value(key, value), SCHEMA), f"{key}={value!r} was accepted"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("strategy.type", "Recreate"),
        ("service.type", "ClusterIP"),
        ("service.nodePort", None),
        ("gracefulDrain.enabled", False),
        ("gracefulDrain.preStop", False),
        ("probes.readiness.enabled", False),
        ("server.stallSeconds", 0.5),
        ("server.stallRate", 1),
        ("server.slowMs", 20),
        ("server.slowMs", 0.5),
        ("server.slowMs", None),
        ("terminationGracePeriodSeconds", 60),
        ("strategy.rollingUpdate.maxSurge", "25%"),
        ("image.tag", "1.1.0-flaky"),
        ("global", {"anything": 1}),
        ("track", "baseline"),
        ("track", "canary"),
        ("serveAllTracks", True),
    ],
)
def test_schema_accepts_the_documented_switches(key: str, value: Any) -> None:
    assert schema_errors(with_value(key, value), SCHEMA) == []


# --- rendering with helm ---


@pytest.fixture(scope="module")
def helm() -> str:
    return str(toolchain_helm())


def render(helm: str, *sets: str, check: bool = True,
           release: str = "rel") -> subprocess.CompletedProcess[str]:
    """``helm template`` with ``--set`` flags (``--set-json`` for ``key:=json``: floats)."""
    args = [helm, "template", release, str(CHART), "--namespace", "ns"]
    for s in sets:
        key, json_value, value = s.partition(":=")
        args += ["--set-json", f"{key}={value}"] if json_value else ["--set", s]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def objects(helm: str, *sets: str, release: str = "rel") -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(render(helm, *sets, release=release).stdout) if d]
    out = {}
    for doc in docs:
        is_test = doc["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"
        out[("Test" if is_test else "") + doc["kind"]] = doc
    return out


def container(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = objs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    return result


def test_helm_lint_strict(helm: str) -> None:
    result = subprocess.run(
        [helm, "lint", "--strict", str(CHART)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_render(helm: str) -> None:
    objs = objects(helm)
    assert set(objs) == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "TestPod"}
    deployment = objs["Deployment"]["spec"]
    assert deployment["replicas"] == 3
    assert deployment["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    pod = deployment["template"]
    spec = pod["spec"]
    c = container(objs)
    assert c["image"] == "rollout-harness/model-server:1.0.0"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert c["lifecycle"]["preStop"]["exec"]["command"][-1] == "drain"
    assert spec["terminationGracePeriodSeconds"] == 2 + 10 + 5 + 5
    assert c["envFrom"][0]["configMapRef"]["name"] == objs["ConfigMap"]["metadata"]["name"]
    pod_name = {"name": "MODEL_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    assert pod_name in c["env"], "X-Pod-Name comes from the downward API"
    assert re.fullmatch(r"[0-9a-f]{64}", pod["metadata"]["annotations"]["checksum/config"])
    labels = pod["metadata"]["labels"]
    assert labels["rollout-harness/model-version"] == "1.0.0"
    assert labels["app.kubernetes.io/version"] == "1.0.0"
    for key, value in deployment["selector"]["matchLabels"].items():
        assert labels[key] == value
        assert "version" not in key
    config = objs["ConfigMap"]["data"]
    assert config["MODEL_GRACEFUL_DRAIN"] == "true"
    assert config["MODEL_DRAIN_SECONDS"] == "10"
    assert config["MODEL_MAX_BODY_BYTES"] == "1048576"
    assert (config["MODEL_STALL_RATE"], config["MODEL_STALL_SECONDS"]) == ("0.1", "2")
    assert config["MODEL_BAD_BODY_RATE"] == "0.1"
    assert "MODEL_POD_NAME" not in config, "per pod, not per release"
    service = objs["Service"]["spec"]
    assert service["type"] == "NodePort"
    assert service["ports"][0]["nodePort"] == 30080
    assert service["selector"] == deployment["selector"]["matchLabels"]
    test_labels = objs["TestPod"]["metadata"]["labels"]
    assert not all(test_labels.get(k) == v for k, v in service["selector"].items()), (
        "the helm test pod must not match the Service selector"
    )
    pdb = objs["PodDisruptionBudget"]["spec"]
    assert pdb["maxUnavailable"] == 1
    assert pdb["selector"]["matchLabels"] == deployment["selector"]["matchLabels"]


def test_pod_security_restricted(helm: str) -> None:
    objs = objects(helm)
    for pod_spec in (objs["Deployment"]["spec"]["template"]["spec"], objs["TestPod"]["spec"]):
        assert pod_spec["securityContext"]["runAsNonRoot"] is True
        assert pod_spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod_spec["automountServiceAccountToken"] is False
        for c in pod_spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["readOnlyRootFilesystem"] is True
            assert "limits" in c["resources"]


def test_graceful_drain_off_is_the_negative_control(helm: str) -> None:
    objs = objects(helm, "gracefulDrain.enabled=false")
    assert "lifecycle" not in container(objs)
    assert objs["ConfigMap"]["data"]["MODEL_GRACEFUL_DRAIN"] == "false"
    assert objs["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 10


def test_prestop_off_still_drains_on_sigterm(helm: str) -> None:
    objs = objects(helm, "gracefulDrain.preStop=false")
    assert "lifecycle" not in container(objs)
    assert objs["ConfigMap"]["data"]["MODEL_GRACEFUL_DRAIN"] == "true"
    grace = objs["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace == 10 + 5 + 5, "drain + shutdown + margin: the drain still fits"
    objs = objects(helm, "gracefulDrain.preStop=false", "drain.seconds=30")
    assert objs["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 40


def test_prestop_off_with_drain_off_is_drain_off(helm: str) -> None:
    objs = objects(helm, "gracefulDrain.enabled=false", "gracefulDrain.preStop=false")
    assert "lifecycle" not in container(objs)
    assert objs["ConfigMap"]["data"]["MODEL_GRACEFUL_DRAIN"] == "false"
    assert objs["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 10


def test_readiness_probe_can_be_left_out(helm: str) -> None:
    c = container(objects(helm, "probes.readiness.enabled=false"))
    assert "readinessProbe" not in c
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert "readinessProbe" in container(objects(helm, "probes.readiness.enabled=true"))


def test_stall_settings_pass_through(helm: str) -> None:
    objs = objects(helm, "server.stallRate:=0.25", "server.stallSeconds:=1.5")
    config = objs["ConfigMap"]["data"]
    assert (config["MODEL_STALL_RATE"], config["MODEL_STALL_SECONDS"]) == ("0.25", "1.5")
    config = objects(helm, "server.badBodyRate:=0.5")["ConfigMap"]["data"]
    assert config["MODEL_BAD_BODY_RATE"] == "0.5"


def test_slow_ms_passes_through_only_when_set(helm: str) -> None:
    """Unset, the server's default applies and the ConfigMap (and with it the pods'
    config checksum) stays byte-identical to the chart before -slow existed."""
    assert "MODEL_SLOW_MS" not in objects(helm)["ConfigMap"]["data"]
    assert objects(helm, "server.slowMs:=35")["ConfigMap"]["data"]["MODEL_SLOW_MS"] == "35"
    assert objects(helm, "server.slowMs:=0")["ConfigMap"]["data"]["MODEL_SLOW_MS"] == "0"


def test_recreate_strategy(helm: str) -> None:
    strategy = objects(helm, "strategy.type=Recreate")["Deployment"]["spec"]["strategy"]
    assert strategy == {"type": "Recreate"}


def test_cluster_ip_service(helm: str) -> None:
    service = objects(helm, "service.type=ClusterIP")["Service"]["spec"]
    assert service["type"] == "ClusterIP" and "nodePort" not in service["ports"][0]


def test_version_and_name_switches(helm: str) -> None:
    objs = objects(helm, "image.tag=1.1.0-flaky", "model.name=wine", "service.nodePort=30123")
    assert container(objs)["image"].endswith(":1.1.0-flaky")
    labels = objs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert labels["rollout-harness/model-version"] == "1.1.0-flaky"
    assert objs["ConfigMap"]["data"]["MODEL_NAME"] == "wine"
    assert objs["Service"]["spec"]["ports"][0]["nodePort"] == 30123
    assert "--expect-version" in objs["TestPod"]["spec"]["containers"][0]["args"]
    assert "1.1.0-flaky" in objs["TestPod"]["spec"]["containers"][0]["args"]


def test_config_change_rolls_the_pods(helm: str) -> None:
    def checksum(*sets: str) -> str:
        pod = objects(helm, *sets)["Deployment"]["spec"]["template"]
        return str(pod["metadata"]["annotations"]["checksum/config"])

    assert checksum() == checksum()
    assert checksum() != checksum("drain.seconds=20")
    objs = objects(helm, "drain.seconds=20")
    assert objs["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 32


def test_grace_period_override(helm: str) -> None:
    objs = objects(helm, "terminationGracePeriodSeconds=90")
    assert objs["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 90


def test_tests_can_be_left_out(helm: str) -> None:
    assert "TestPod" not in objects(helm, "tests.enabled=false")


@pytest.mark.parametrize(("key", "value"), BAD_VALUES)
def test_helm_rejects_bad_values(helm: str, key: str, value: Any) -> None:
    flag = f"{key}={json.dumps(value)}"
    result = subprocess.run(
        [helm, "template", "rel", str(CHART), "--set-json", flag],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0, f"helm accepted {flag}"
    assert "schema" in result.stderr.lower() or "values don't meet" in result.stderr.lower()


# --- the stable track is the chart as it was ---------------------------------------------

GOLDEN = Path(__file__).parent / "golden"
STABLE_RENDERS = {
    "stable-default.yaml": ("rel", "ns"),
    "stable-controls.yaml": ("rel", "ns", "gracefulDrain.enabled=false",
                             "strategy.type=Recreate", "service.type=ClusterIP"),
    "stable-harness.yaml": ("ml-model", "ml-model", "image.tag=1.1.0-flaky",
                            "service.nodePort=30123", "replicaCount=5", "tests.enabled=false"),
}
"""Renders of the chart before it knew about tracks (helm v3.22.0), by golden file:
release, namespace, then --set flags. `verify` users and existing stacks must see
not one byte changed, or an upgrade would touch their objects."""


@pytest.mark.parametrize("golden", sorted(STABLE_RENDERS))
@pytest.mark.parametrize("track", [None, "stable"])
def test_stable_track_renders_byte_identical_to_the_chart_before_tracks(
        helm: str, golden: str, track: str | None) -> None:
    release, namespace, *sets = STABLE_RENDERS[golden]
    if track:
        sets.append(f"track={track}")
    args = [helm, "template", release, str(CHART), "--namespace", namespace]
    for s in sets:
        args += ["--set", s]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (GOLDEN / golden).read_text()


# --- tracks: stable, baseline and canary releases of one chart ----------------------------

TRACK = "rollout-harness/track"


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def _pod_labels(objs: dict[str, dict[str, Any]]) -> dict[str, str]:
    labels: dict[str, str] = objs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    return labels


def canary_topology(helm: str, stable: int = 3, size: int = 1) -> dict[str, dict[str, Any]]:
    """The three releases as the Pulumi program deploys them during a canary."""
    return {
        "stable": objects(helm, f"replicaCount={stable}", "serveAllTracks=true",
                          release="ml-model"),
        "baseline": objects(helm, "track=baseline", f"replicaCount={size}",
                            "service.nodePort=30081", release="ml-model-baseline"),
        "canary": objects(helm, "track=canary", f"replicaCount={size}", "image.tag=1.1.0",
                          "service.nodePort=30082", release="ml-model-canary"),
    }


@pytest.mark.parametrize(("track", "node_port"), [("baseline", 30081), ("canary", 30082)])
def test_track_release_has_its_own_pods_and_service(
        helm: str, track: str, node_port: int) -> None:
    release = f"ml-model-{track}"
    objs = objects(helm, f"track={track}", f"service.nodePort={node_port}", release=release)
    assert set(objs) == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "TestPod"}
    for kind in ("ConfigMap", "Deployment", "Service", "PodDisruptionBudget"):
        assert objs[kind]["metadata"]["name"].startswith(release)
        assert objs[kind]["metadata"]["labels"][TRACK] == track, kind
    deployment = objs["Deployment"]["spec"]
    own = {"app.kubernetes.io/name": "ml-model", "app.kubernetes.io/instance": release}
    assert deployment["selector"]["matchLabels"] == own, "no track in the immutable selector"
    assert _pod_labels(objs)[TRACK] == track
    service = objs["Service"]
    assert service["metadata"]["name"] == release, "its own Service, not the model Service"
    assert service["spec"]["selector"] == own
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"][0]["nodePort"] == node_port
    assert objs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == own
    assert not _matches(service["spec"]["selector"], objs["TestPod"]["metadata"]["labels"])
    assert f"http://{release}:8080" in objs["TestPod"]["spec"]["containers"][0]["args"]


def test_stable_track_carries_no_track_label(helm: str) -> None:
    """Stable pods are told apart by their release (instance), not by a new label:
    one would change the pod template and roll every stable pod."""
    objs = objects(helm, "serveAllTracks=true")
    for kind in ("ConfigMap", "Deployment", "Service", "PodDisruptionBudget"):
        assert TRACK not in objs[kind]["metadata"]["labels"], kind
    assert TRACK not in _pod_labels(objs)


def test_serving_all_tracks_changes_only_the_model_services_selector(helm: str) -> None:
    before = objects(helm)
    after = objects(helm, "serveAllTracks=true")
    assert after["Service"]["spec"]["selector"] == {
        "app.kubernetes.io/name": "ml-model", "app.kubernetes.io/component": "model-server"}
    assert "app.kubernetes.io/instance" not in after["Service"]["spec"]["selector"]
    for kind in ("ConfigMap", "Deployment", "PodDisruptionBudget", "TestPod"):
        assert after[kind] == before[kind], f"{kind} must not change (stable pods must not roll)"
    assert {**after["Service"], "spec": {}} == {**before["Service"], "spec": {}}
    assert {k: v for k, v in after["Service"]["spec"].items() if k != "selector"} == \
        {k: v for k, v in before["Service"]["spec"].items() if k != "selector"}
    stable_pods = _pod_labels(before)
    assert _matches(before["Service"]["spec"]["selector"], stable_pods)
    assert _matches(after["Service"]["spec"]["selector"], stable_pods), \
        "stable pods stay endpoints while the selector switches, either way"


def test_model_service_shares_traffic_by_pod_ratio(helm: str) -> None:
    """Stable N and baseline = canary = k pods: the model Service's endpoints are all
    N + 2k, so each track takes its pod-ratio share of new connections."""
    topology = canary_topology(helm, stable=3, size=1)
    services = {track: objs["Service"] for track, objs in topology.items()}
    model = services["stable"]
    assert (model["metadata"]["name"], model["spec"]["ports"][0]["nodePort"]) == (
        "ml-model", 30080), "the model Service keeps its name and nodePort"
    selector = model["spec"]["selector"]
    endpoints = {track: objs["Deployment"]["spec"]["replicas"]
                 for track, objs in topology.items() if _matches(selector, _pod_labels(objs))}
    assert endpoints == {"stable": 3, "baseline": 1, "canary": 1}
    share = {track: count / sum(endpoints.values()) for track, count in endpoints.items()}
    assert share == {"stable": 3 / 5, "baseline": 1 / 5, "canary": 1 / 5}
    for objs in topology.values():
        assert not _matches(selector, objs["TestPod"]["metadata"]["labels"])
    assert {s["spec"]["ports"][0]["nodePort"] for s in services.values()} == {
        30080, 30081, 30082}
    assert len({s["metadata"]["name"] for s in services.values()}) == 3


def test_each_release_selects_only_its_own_pods(helm: str) -> None:
    """No Deployment adopts, and no PDB counts, another track's pods: overlapping
    PodDisruptionBudgets would make every eviction of such a pod fail."""
    topology = canary_topology(helm)
    for owner, objs in topology.items():
        for kind in ("Deployment", "PodDisruptionBudget"):
            selector = objs[kind]["spec"]["selector"]["matchLabels"]
            selected = [track for track, other in topology.items()
                        if _matches(selector, _pod_labels(other))]
            assert selected == [owner], (owner, kind, selected)
        if owner != "stable":
            own = objs["Service"]["spec"]["selector"]
            assert [t for t, o in topology.items() if _matches(own, _pod_labels(o))] == [owner]
    assert topology["stable"]["Deployment"]["spec"]["selector"]["matchLabels"] == \
        objects(helm, release="ml-model")["Deployment"]["spec"]["selector"]["matchLabels"], \
        "the stable Deployment's selector is immutable: as before tracks"


def test_canary_pods_run_the_candidate(helm: str) -> None:
    topology = canary_topology(helm)
    assert container(topology["canary"])["image"].endswith(":1.1.0")
    assert _pod_labels(topology["canary"])["rollout-harness/model-version"] == "1.1.0"
    assert container(topology["baseline"])["image"] == container(topology["stable"])["image"]


@pytest.mark.parametrize("track", ["baseline", "canary"])
def test_only_the_stable_release_serves_all_tracks(helm: str, track: str) -> None:
    result = render(helm, f"track={track}", "serveAllTracks=true", check=False)
    assert result.returncode != 0
    assert f"serveAllTracks is for the stable release's model Service, not track {track}" \
        in result.stderr
