from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from harness import cluster, errors, procs, progress
from harness.settings import ClusterSettings, ToolchainSettings
from harness.toolchain import rootfs
from harness.toolchain.cache import Cache

CNI = Path(__file__).parents[2] / "toolchain/node-image/rootfs/etc/cni/net.d/10-harness.conflist"


def test_kind_config_maps_the_node_port_to_loopback_only():
    config = yaml.safe_load(cluster.kind_config(ClusterSettings(node_port=30111), 18080))
    (node,) = config["nodes"]
    (mapping,) = node["extraPortMappings"]
    assert mapping == {"containerPort": 30111, "hostPort": 18080,
                       "listenAddress": "127.0.0.1", "protocol": "TCP"}
    assert config["networking"]["disableDefaultCNI"] is True


def test_fixed_cni_range_lies_inside_the_pod_subnet():
    import ipaddress
    import json

    ranges = json.loads(CNI.read_text())["plugins"][0]["ipam"]["ranges"]
    subnet = ipaddress.ip_network(ranges[0][0]["subnet"])
    assert subnet.subnet_of(ipaddress.ip_network(cluster.POD_SUBNET))


def test_mirror_comes_from_deb822_sources(tmp_path: Path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\n")
    assert rootfs.mirror(ToolchainSettings(), tmp_path) == "http://mirror.example/debian"


def test_mirror_from_classic_sources_list_and_setting(tmp_path: Path):
    (tmp_path / "sources.list").write_text(
        "deb [arch=amd64] http://other.example/debian bookworm main\n")
    assert rootfs.mirror(ToolchainSettings(), tmp_path) == "http://other.example/debian"
    chosen = ToolchainSettings(debian_mirror="http://chosen.example/debian")
    assert rootfs.mirror(chosen, tmp_path) == "http://chosen.example/debian"


def test_the_host_port_defaults_to_a_free_one_picked_per_cluster():
    import socket

    assert ClusterSettings().host_port == 0
    picked = procs.free_port()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", picked))  # nothing holds it


def test_kind_config_maps_each_canary_track_to_its_own_loopback_port():
    settings = ClusterSettings()
    config = yaml.safe_load(cluster.kind_config(settings, 18080,
                                                {"baseline": 18081, "canary": 18082}))
    (node,) = config["nodes"]
    assert [(m["containerPort"], m["hostPort"]) for m in node["extraPortMappings"]] == [
        (30080, 18080), (30081, 18081), (30082, 18082)]
    assert {m["listenAddress"] for m in node["extraPortMappings"]} == {"127.0.0.1"}


def test_the_track_node_ports_are_the_programs_canary_defaults():
    from ml_model_program import CanaryConfig

    canary = CanaryConfig("1.1.0")
    assert ClusterSettings().track_node_ports == {
        "baseline": canary.baseline_node_port, "canary": canary.canary_node_port}


def test_three_services_need_three_node_ports():
    with pytest.raises(errors.UsageError, match="three different nodePorts"):
        ClusterSettings(node_port=30081)


def test_free_ports_are_different_and_avoid_the_taken_one():
    picked = procs.free_ports(3, taken=procs.free_port())
    assert len(set(picked)) == 3


# -- reuse or recreate: the canary's mappings -----------------------------------------


class _Kind:
    def __init__(self, name: str, folder: Path) -> None:
        self.name = name
        self.kubeconfig_path = folder / "kubeconfig"
        self.created_with: str | None = None

    def create(self, config_file: Path) -> None:
        self.created_with = config_file.read_text()


def _fake_cluster(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, bindings: dict[int, int],
) -> tuple[SimpleNamespace, _Kind, list[str], io.StringIO]:
    """A healthy leftover whose node maps `bindings` (nodePort → host port)."""
    tools = SimpleNamespace(cache=Cache(tmp_path), node_image="node:x", kind=tmp_path / "kind",
                            kubectl=tmp_path / "kubectl")
    kind = _Kind("c", tmp_path)
    deleted: list[str] = []
    monkeypatch.setattr(cluster, "_kind_cluster", lambda settings, toolchain: kind)
    monkeypatch.setattr(cluster, "status", lambda settings, toolchain: cluster.Status(
        "c", True, True, True, "node:x", "ready"))
    monkeypatch.setattr(cluster, "mapped_port", lambda name, port: bindings.get(port))
    monkeypatch.setattr(cluster, "_delete", lambda k, cache: deleted.append(k.name))
    monkeypatch.setattr(cluster, "wait_ready", lambda kubeconfig, timeout: None)
    said = io.StringIO()
    monkeypatch.setattr(progress, "_stream", said)
    return tools, kind, deleted, said


def test_a_leftover_made_before_canaries_is_reused_when_no_canary_needs_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    tools, _, deleted, said = _fake_cluster(monkeypatch, tmp_path, {30080: 41000})
    made = cluster.up(ClusterSettings(name="c"), tools)
    assert (made.host_port, dict(made.track_ports), made.created) == (41000, {}, False)
    assert deleted == []
    assert "reusing the healthy cluster" in said.getvalue()


def test_a_leftover_with_every_mapping_gives_the_track_ports_back(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    tools, _, deleted, said = _fake_cluster(
        monkeypatch, tmp_path, {30080: 41000, 30081: 41001, 30082: 41002})
    made = cluster.up(ClusterSettings(name="c"), tools, tracks=True)
    assert dict(made.track_ports) == {"baseline": 41001, "canary": 41002}
    assert made.track_url("canary") == "http://127.0.0.1:41002"
    assert deleted == []
    assert "baseline on 127.0.0.1:41001, canary on 127.0.0.1:41002" in said.getvalue()


def test_a_canary_recreates_a_leftover_without_the_track_mappings_and_says_why(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    tools, kind, deleted, said = _fake_cluster(monkeypatch, tmp_path, {30080: 41000})
    made = cluster.up(ClusterSettings(name="c"), tools, tracks=True)
    assert deleted == ["c"]
    line = said.getvalue()
    assert "a canary needs nodePorts 30081, 30082 mapped to the host and it was made before " \
           "canaries, without them); recreating it" in line
    assert made.created and set(made.track_ports) == {"baseline", "canary"}
    mappings = yaml.safe_load(kind.created_with or "")["nodes"][0]["extraPortMappings"]
    ports = {m["containerPort"]: m["hostPort"] for m in mappings}
    assert ports == {30080: made.host_port, 30081: made.track_ports["baseline"],
                     30082: made.track_ports["canary"]}
    assert len(set(ports.values())) == 3


def test_a_cluster_without_track_ports_says_what_to_do():
    made = cluster.Cluster("old", Path("/nowhere"), 41000, "node:x", kind=None)
    with pytest.raises(errors.ClusterError, match="made before canaries"):
        made.track_url("baseline")
