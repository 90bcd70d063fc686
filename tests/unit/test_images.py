"""When the model server image is rebuilt: our caching logic, docker calls replaced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness import errors, images
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
    monkeypatch.setattr(images, "wheelhouse", lambda cache, requirements: tmp_path / "wheels")
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


def _team_context(folder: Path, requirements: bool = True) -> Path:
    folder.mkdir()
    (folder / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    if requirements:
        (folder / "requirements.txt").write_text("mlserver==1.7.1\n")
    (folder / "train.py").write_text("print('trained')\n")
    return folder


def test_a_team_image_is_built_from_its_context_with_its_wheels(
        builds: list[list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(rootfs, "ensure", lambda cache, settings, recipe: "base:one")
    asked: list[Path] = []
    monkeypatch.setattr(images, "wheelhouse",
                        lambda cache, requirements: asked.append(requirements) or wheels)
    wheels = tmp_path / "wheels"
    context = _team_context(tmp_path / "image")
    copied: list[list[str]] = []
    real_build = images.containers.build

    def build(where: Path, tag: str, **kwargs: Any) -> None:
        copied.append(sorted(p.name for p in where.iterdir()))
        real_build(where, tag, **kwargs)

    monkeypatch.setattr(images.containers, "build", build)
    settings = Settings().replace("deploy", image_repository="example/wine-mlserver",
                                  image_build=context)
    cache = Cache(tmp_path / "cache")
    assert images.ensure(settings, cache, "1.1.0") == "example/wine-mlserver:1.1.0"
    images.ensure(settings, cache, "1.1.0")  # same sources: not built again
    assert len(builds) == 1 and "MODEL_VERSION=1.1.0" in builds[0]
    assert asked == [context / "requirements.txt"]
    assert copied == [["Dockerfile", "requirements.txt", "train.py", "wheels"]]
    (context / "train.py").write_text("print('trained otherwise')\n")
    images.ensure(settings, cache, "1.1.0")
    assert len(builds) == 2


def test_a_team_context_without_requirements_gets_no_wheels(
        builds: list[list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(rootfs, "ensure", lambda cache, settings, recipe: "base:one")
    monkeypatch.setattr(images, "wheelhouse", lambda cache, requirements: pytest.fail(
        "no requirements.txt, no wheels"))
    settings = Settings().replace("deploy", image_repository="team/model",
                                  image_build=_team_context(tmp_path / "ctx", False))
    assert images.ensure(settings, Cache(tmp_path / "cache"), "2.0.0") == "team/model:2.0.0"


def test_a_context_without_a_dockerfile_is_one_line(tmp_path: Path):
    (tmp_path / "ctx").mkdir()
    settings = Settings().replace("deploy", image_repository="team/model",
                                  image_build=tmp_path / "ctx")
    with pytest.raises(errors.UsageError, match="no Dockerfile in it"):
        images.ensure(settings, Cache(tmp_path / "cache"), "1.0.0")


def test_a_prebuilt_team_image_must_be_in_docker(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch):
    have = {"team/model:1.0.0"}
    monkeypatch.setattr(images.containers, "image_exists", lambda ref: ref in have)
    monkeypatch.setattr(rootfs, "ensure", lambda *a: pytest.fail("no build for a prebuilt"))
    settings = Settings().replace("deploy", image_repository="team/model")
    cache = Cache(tmp_path / "cache")
    assert images.ensure(settings, cache, "1.0.0") == "team/model:1.0.0"
    with pytest.raises(errors.UsageError,
                       match=r"image team/model:1\.1\.0 is not in this host's docker: build "
                             r"or pull it first.*--image-build"):
        images.ensure(settings, cache, "1.1.0")
    with pytest.raises(errors.UsageError, match=r"images team/model:2\.0\.0, team/model:3\.0\.0 "
                                                r"are not in .*build or pull them first"):
        images.require_present(settings, ("1.0.0", "2.0.0", "3.0.0", "2.0.0"))
    images.require_present(settings, ("1.0.0",))
    images.require_present(Settings(), ("9.9.9",))  # the bundled server is built, not looked for
