"""When the model server image is rebuilt: our caching logic, docker calls replaced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness import images
from harness.settings import Settings
from harness.toolchain import containers, rootfs
from harness.toolchain.cache import Cache


@pytest.fixture
def builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record docker builds; labels answer as a real engine would after each build."""
    labels: dict[str, str] = {}
    made: list[list[str]] = []

    def run(cmd: list[Any], **_: Any) -> None:
        argv = [str(part) for part in cmd]
        made.append(argv)
        label = argv[argv.index("--label") + 1].split("=", 1)[1]
        labels[argv[argv.index("--tag") + 1]] = label

    monkeypatch.setattr(containers.procs, "run", run)
    monkeypatch.setattr(containers, "label_of", lambda ref, label: labels.get(ref))
    monkeypatch.setattr(images, "wheelhouse", lambda cache: tmp_path / "wheels")
    (tmp_path / "wheels").mkdir()
    return made


def test_an_image_is_built_once_then_reused(builds: list[list[str]], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(rootfs, "ensure", lambda cache, settings, recipe: "base:one")
    cache = Cache(tmp_path / "cache")
    assert images.ensure(Settings(), cache, "1.0.0") == "rollout-harness/model-server:1.0.0"
    images.ensure(Settings(), cache, "1.0.0")
    assert len(builds) == 1
    assert "BASE_IMAGE=base:one" in builds[0] and "MODEL_VERSION=1.0.0" in builds[0]


def test_a_new_base_image_rebuilds_the_model_image(builds: list[list[str]], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch):
    """The base's tag carries its recipe hash; the image must follow it, or an edited
    base recipe would never reach the cluster."""
    cache = Cache(tmp_path / "cache")
    monkeypatch.setattr(rootfs, "ensure", lambda cache, settings, recipe: "base:one")
    images.ensure(Settings(), cache, "1.0.0")
    monkeypatch.setattr(rootfs, "ensure", lambda cache, settings, recipe: "base:two")
    images.ensure(Settings(), cache, "1.0.0")
    assert [b[b.index("--build-arg") + 1] for b in builds] == ["BASE_IMAGE=base:one",
                                                                 "BASE_IMAGE=base:two"]
