from __future__ import annotations

import pytest

from harness import errors
from harness.toolchain import docker

FULL = "CapBnd:\t000001ffffffffff\n"
NO_SYS_RESOURCE = "CapBnd:\t000001fffeffffff\n"


def test_missing_sys_resource_is_detected():
    assert docker.capability_missing(NO_SYS_RESOURCE)
    assert not docker.capability_missing(FULL)


def test_status_without_capbnd_is_not_treated_as_missing():
    assert not docker.capability_missing("Name:\tbash\n")


def test_old_engine_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(docker, "capability_missing", lambda *a: False)
    with pytest.raises(errors.DockerUnavailable, match=r"19\.03\.1 is too old.*20\.10"):
        docker._check(docker.Engine("19.03.1", "runc"))


def test_engine_without_shim_on_a_host_missing_the_capability(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(docker, "capability_missing", lambda *a: True)
    with pytest.raises(errors.DockerUnavailable, match=r"CAP_SYS_RESOURCE.*make toolchain"):
        docker._check(docker.Engine("20.10.24", "runc"))
    docker._check(docker.Engine("20.10.24", docker.SHIM_RUNTIME))


def test_unreadable_version_is_a_clear_error():
    with pytest.raises(errors.DockerUnavailable, match="cannot read"):
        docker.parse_version("unknown")
    assert docker.parse_version("28.2.2") == (28, 2)
