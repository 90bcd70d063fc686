from __future__ import annotations

from pathlib import Path

import pytest

from harness import errors
from harness.settings import Settings


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
])
def test_bad_values_are_usage_errors_naming_the_value(key: str, value: str, message: str):
    with pytest.raises(errors.UsageError, match=message) as caught:
        Settings.from_env({key: value})
    assert caught.value.exit_code == 64
