from __future__ import annotations

from pathlib import Path

import yaml

from harness import cluster, procs
from harness.settings import ClusterSettings, ToolchainSettings
from harness.toolchain import rootfs

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
