"""Errors of the deploy layer that need no cluster: one line, naming what to fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helm_binary import toolchain_helm
from ml_model_program import CanaryConfig, ModelConfig

from harness import charts, errors
from harness.cluster import Cluster
from harness.deploy import ModelStack
from harness.resources import CHART_DIR
from harness.settings import Settings
from harness.toolchain import DeployTools, Toolchain
from harness.toolchain.cache import Cache


def unreachable_kubeconfig(path: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "kind-gone",
        "clusters": [{"name": "kind-gone", "cluster": {"server": "https://127.0.0.1:1"}}],
        "contexts": [{"name": "kind-gone", "context": {"cluster": "kind-gone", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "x"}}],
    }))
    return path


def model_stack(tmp_path: Path) -> tuple[ModelStack, Path]:
    """A stack on a cluster whose API is unreachable (no kind needed), and its kubeconfig."""
    kubeconfig = unreachable_kubeconfig(tmp_path / "kubeconfig")
    cache = Cache(tmp_path / "cache")
    cluster = Cluster("gone", kubeconfig, 38080, "node:x", kind=None)  # no kind needed
    stack = ModelStack(Settings(), cluster, Toolchain(tmp_path, tmp_path, "node:x", cache),
                       DeployTools(tmp_path, tmp_path, tmp_path))
    return stack, kubeconfig


def test_unreachable_api_names_the_kubeconfig_and_context(tmp_path: Path):
    stack, kubeconfig = model_stack(tmp_path)
    with pytest.raises(errors.DeployError) as caught:
        stack.up("1.0.0")
    message = str(caught.value)
    assert "Kubernetes API is unreachable" in message
    assert str(kubeconfig) in message and "context kind-gone" in message
    assert caught.value.exit_code == 72


def test_the_stack_config_the_harness_writes_is_what_the_program_reads(tmp_path: Path):
    stack, _ = model_stack(tmp_path)
    config = stack._model_config("1.1.0", {"strategy": {"type": "Recreate"}}, None,
                                 "http://127.0.0.1:8879")
    written = {key: value.value for key, value in stack._stack_config(config).items()}
    assert ModelConfig.from_stack_config(written) == config
    assert written["values"] == (
        '{"strategy": {"type": "Recreate"}, "service": {"type": "NodePort", "nodePort": 30080}}')
    assert (written["hostPort"], written["chartRepo"]) == ("38080", "http://127.0.0.1:8879")
    assert "chartPath" not in written


def test_the_canary_the_harness_writes_is_what_the_program_reads(tmp_path: Path):
    stack, _ = model_stack(tmp_path)
    canary = CanaryConfig(version="1.1.0", replicas=2, canary_host_port=38082)
    config = stack._model_config("1.0.0", {}, None, "http://127.0.0.1:8879", canary)
    written = {key: value.value for key, value in stack._stack_config(config).items()}
    assert ModelConfig.from_stack_config(written) == config
    assert config.canary == canary
    assert json.loads(written["canary"]) == {
        "version": "1.1.0", "replicas": 2, "baselineNodePort": 30081, "canaryNodePort": 30082,
        "canaryHostPort": 38082}
    no_canary = stack._model_config("1.0.0", {}, None, "http://127.0.0.1:8879")
    assert "canary" not in stack._stack_config(no_canary), "up() then removes the stale key"


def test_a_canary_on_the_model_services_ports_is_a_usage_error(tmp_path: Path):
    stack, _ = model_stack(tmp_path)
    with pytest.raises(errors.UsageError, match=r"canary\.canaryNodePort=30080 is the model "):
        stack._model_config("1.0.0", {}, None, "http://127.0.0.1:8879",
                            CanaryConfig(version="1.1.0", canary_node_port=30080))
    with pytest.raises(errors.UsageError, match=r"canary\.baselineHostPort=38080 is hostPort"):
        stack._model_config("1.0.0", {}, None, "http://127.0.0.1:8879",
                            CanaryConfig(version="1.1.0", baseline_host_port=38080))


def test_every_release_of_a_canary_is_rendered_before_anything_changes(tmp_path: Path):
    stack, _ = model_stack(tmp_path)
    stack = ModelStack(stack.settings, stack.cluster, stack.toolchain,
                       DeployTools(tmp_path, tmp_path, toolchain_helm()))
    canary = CanaryConfig(version="1.1.0")
    config = stack._model_config("1.0.0", {}, CHART_DIR, None, canary)
    stack._validate_values({"1.0.0": CHART_DIR, "1.1.0": CHART_DIR}, config)
    bad = stack._model_config("1.0.0", {"probes": {"liveness": {"periodSeconds": 0}}},
                              CHART_DIR, None, canary)
    with pytest.raises(errors.DeployError, match="chart values rejected, nothing was changed"):
        stack._validate_values({"1.0.0": CHART_DIR, "1.1.0": CHART_DIR}, bad)


def test_bad_chart_values_are_a_usage_error(tmp_path: Path):
    stack, _ = model_stack(tmp_path)
    with pytest.raises(errors.UsageError, match=r"values\.replicaCount must be an integer >= 1"):
        stack._model_config("1.0.0", {"replicaCount": 0}, None, "http://127.0.0.1:8879")


def test_version_missing_from_a_repository_lists_the_available_ones(tmp_path: Path):
    (tmp_path / "index.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "entries": {
        "ml-model": [{"version": "1.0.0"}, {"version": "1.1.0"}]}}))
    with charts.serve(tmp_path) as url:
        assert charts.published_versions(url) == ["1.0.0", "1.1.0"]
        with pytest.raises(errors.DeployError, match=r"2\.0\.0 is not in .*1\.0\.0, 1\.1\.0"):
            charts.require_published(url, "2.0.0")
        assert charts.require_published(url, "1.1.0") == f"{url}/ml-model-1.1.0.tgz"


def test_a_chart_is_fetched_where_the_index_says(tmp_path: Path):
    """helm repo index --url writes absolute URLs, without it relative ones; a team's chart
    has its own name."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "wine-mlserver-1.0.0.tgz").write_bytes(b"chart")
    with charts.serve(tmp_path) as url:
        for listed in ("pkg/wine-mlserver-1.0.0.tgz", f"{url}/pkg/wine-mlserver-1.0.0.tgz"):
            (tmp_path / "index.yaml").write_text(yaml.safe_dump({"entries": {"wine-mlserver": [
                {"version": "1.0.0", "urls": [listed]}]}}))
            found = charts.require_published(url, "1.0.0", "wine-mlserver")
            assert found == f"{url}/pkg/wine-mlserver-1.0.0.tgz"
            fetched = charts.download(found, tmp_path / "fetched")
            assert fetched.name == "wine-mlserver-1.0.0.tgz" and fetched.read_bytes() == b"chart"


def test_a_failed_rollout_is_explained_by_the_providers_diagnostics():
    from harness.deploy import _last_error

    output = """
Diagnostics:
  kubernetes:core/v1:Service (ml-model/ml-model):
    error: 1 error occurred:
    \t* the Kubernetes API server reported that "ml-model/ml-model" failed to fully initialize
  kubernetes:apps/v1:Deployment (ml-model/ml-model):
    error: 4 errors occurred:
    \t* the Kubernetes API server reported that "ml-model/ml-model" failed to fully initialize
    \t* [ProgressDeadlineExceeded] ReplicaSet "ml-model-74686f6b67" has timed out progressing.
    \t* Minimum number of Pods to consider the application live was not attained
    \t* [Pod ml-model/ml-model-74686f6b67-s6zcz]: containers with unready status: [model-server]
  pulumi:pulumi:Stack (ml-model-harness-e2e):
    error: update failed
"""
    assert _last_error(output) == (
        '[ProgressDeadlineExceeded] ReplicaSet "ml-model-74686f6b67" has timed out progressing.; '
        "[Pod ml-model/ml-model-74686f6b67-s6zcz]: containers with unready status: [model-server]")
    assert _last_error("error: no stack named 'x' found\n") == "error: no stack named 'x' found"


def test_only_a_lock_of_a_dead_process_on_this_host_is_cleared(tmp_path: Path):
    import io
    import json
    import os

    from harness import progress
    from harness.deploy import PROJECT

    stack, _ = model_stack(tmp_path)
    folder = stack.state / ".pulumi" / "locks" / "organization" / PROJECT / stack.name
    folder.mkdir(parents=True)
    here, dead = os.uname().nodename, 2**22 + 4321
    owners = {"live-here": (os.getpid(), here), "dead-elsewhere": (dead, "build-7"),
              "dead-here": (dead, here)}
    for name, (pid, host) in owners.items():
        (folder / f"{name}.json").write_text(json.dumps({"pid": pid, "hostname": host}))
    with progress.redirected(io.StringIO()) as said:
        stack._clear_stale_lock()
    assert sorted(p.stem for p in folder.iterdir()) == ["dead-elsewhere", "live-here"]
    assert said.getvalue() == (f"==> stack gone: removed the lock left by a killed run "
                               f"(pid {dead}); continuing\n")
