from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import errors, settings
from harness.settings import Settings, TrafficSettings


def test_defaults_need_no_environment():
    settings = Settings.from_env({})
    assert settings.toolchain.source == "auto"
    assert settings.cluster.node_port == 30080
    assert settings.cluster.name == "rollout-harness"


def test_environment_overrides_each_group():
    settings = Settings.from_env({
        "HARNESS_CACHE_DIR": "/tmp/x",
        "HARNESS_TOOLCHAIN_SOURCE": "build",
        "HARNESS_CLUSTER_NAME": "ci-1",
        "HARNESS_NODE_PORT": "30123",
        "HARNESS_HOST_PORT": "18080",
        "HARNESS_KEEP_CLUSTER": "yes",
    })
    assert settings.cache_dir == Path("/tmp/x")
    assert settings.toolchain.source == "build"
    assert (settings.cluster.name, settings.cluster.node_port) == ("ci-1", 30123)
    assert settings.cluster.host_port == 18080
    assert settings.cluster.keep is True


@pytest.mark.parametrize(("key", "value", "message"), [
    ("HARNESS_TOOLCHAIN_SOURCE", "github", "not one of auto, release, build"),
    ("HARNESS_NODE_PORT", "8080", "30000-32767"),
    ("HARNESS_NODE_PORT", "eighty", "must be a port number"),
    ("HARNESS_HOST_PORT", "70000", "between 1 and 65535"),
    ("HARNESS_CLUSTER_NAME", "Bad_Name", "lower-case"),
    ("HARNESS_KEEP_CLUSTER", "maybe", "true or false"),
    ("HARNESS_LOAD_PROCESSES", "0", "1 or more, or -1 for one per CPU core, not 0"),
    ("HARNESS_LOAD_PROCESSES", "-2", "at least -1"),
])
def test_bad_values_are_usage_errors_naming_the_value(key: str, value: str, message: str):
    with pytest.raises(errors.UsageError, match=message) as caught:
        Settings.from_env({key: value})
    assert caught.value.exit_code == 64


def test_set_values_become_nested_chart_values():
    values = settings.chart_values(["gracefulDrain.enabled=false", "strategy.type=Recreate",
                               "replicaCount=2", "model.name=wine"], "--set")
    assert values == {"gracefulDrain": {"enabled": False}, "strategy": {"type": "Recreate"},
                      "replicaCount": 2, "model": {"name": "wine"}}


@pytest.mark.parametrize("bad", ["novalue", "=x", "a..b=1"])
def test_malformed_set_is_a_usage_error(bad: str):
    with pytest.raises(errors.UsageError, match="KEY=VALUE"):
        settings.chart_values([bad], "--set")


def test_every_setting_is_declared_once_with_help_and_a_parser_for_its_flag_or_variable():
    seen_flags: dict[str, set[str]] = {}
    seen_env: set[str] = set()
    for group, f, opt in settings.options():
        assert opt.help, f"{group}.{f.name} has no help"
        if opt.flag or opt.env:
            assert opt.parse is not None or f.type in ("str",), f"{group}.{f.name}"
        if opt.env:
            assert opt.env.startswith("HARNESS_") and opt.env not in seen_env
            seen_env.add(opt.env)
        if opt.flag:
            assert opt.commands, f"{opt.flag} belongs to no command"
            for command in opt.commands:
                assert opt.flag not in seen_flags.setdefault(command, set())
                seen_flags[command].add(opt.flag)


def test_the_traffic_variables_are_read():
    resolved = Settings.from_env({"HARNESS_USERS": "16", "HARNESS_RATE_PER_USER": "0"})
    assert (resolved.traffic.users, resolved.traffic.rate_per_user) == (16, 0.0)


def test_load_processes_are_a_count_or_one_per_core():
    assert Settings.from_env({}).traffic.workers == 1
    assert settings.resolve("verify", {"traffic.processes": "3"}, {}).traffic.workers == 3
    per_core = Settings.from_env({"HARNESS_LOAD_PROCESSES": "-1"}).traffic
    assert per_core.processes == -1 and per_core.workers == (os.cpu_count() or 1)


def test_a_flag_beats_its_variable_and_only_for_the_commands_that_take_it():
    env = {"HARNESS_USERS": "16"}
    given = {"traffic.users": "4"}
    assert settings.resolve("verify", given, env).traffic.users == 4
    assert settings.resolve("up", given, env).traffic.users == 16, "up has no --users"
    assert settings.resolve("verify", {"traffic.users": None}, env).traffic.users == 16


def test_a_bad_flag_names_the_flag_and_a_bad_variable_names_the_variable():
    with pytest.raises(errors.UsageError, match="--users must be at least 0, not -2"):
        settings.resolve("verify", {"traffic.users": "-2"}, {})
    with pytest.raises(errors.UsageError, match="HARNESS_USERS must be a number, not 'many'"):
        settings.resolve("verify", {}, {"HARNESS_USERS": "many"})


def test_the_readme_lists_every_variable():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    missing = [opt.env for _, _, opt in settings.options() if opt.env and opt.env not in readme]
    assert not missing, f"README.md does not list {missing}"


def test_the_load_is_described_in_words():
    assert TrafficSettings().describe() == "8 keep-alive + 4 new-connection clients x 20 req/s"
    assert TrafficSettings(processes=2, protocol="open-inference-v2").describe() == (
        "8 keep-alive + 4 new-connection clients x 20 req/s in 2 Locust processes over "
        "open-inference-v2")


def test_an_unknown_protocol_is_one_line_naming_the_known_ones():
    with pytest.raises(errors.UsageError, match="HARNESS_PROTOCOL 'grpc' is not one of "
                                                "kserve-v1, open-inference-v2"):
        settings.resolve("verify", {}, {"HARNESS_PROTOCOL": "grpc"})
    chosen = settings.resolve("canary", {"traffic.protocol": "open-inference-v2"}, {})
    assert chosen.traffic.protocol == "open-inference-v2"
