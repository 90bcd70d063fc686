"""The docker commands the helper builds, and its clean-up promises; no engine needed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from harness import errors
from harness.toolchain import containers


class Docker:
    """Stands in for procs.run / procs.output; fails the calls whose argv starts with `failing`."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.failing: list[list[str]] = []
        self.answers: dict[str, str] = {}

    def _record(self, cmd: list[Any]) -> list[str]:
        argv = [os.fspath(part) for part in cmd]
        self.calls.append(argv)
        if any(argv[:len(prefix)] == prefix for prefix in self.failing):
            raise errors.BuildError(f"{argv[1]} failed")
        return argv

    def run(self, cmd: list[Any], **_: Any) -> None:
        self._record(cmd)

    def output(self, cmd: list[Any], **_: Any) -> str:
        argv = self._record(cmd)
        return self.answers.get(argv[1], "")

    def verbs(self) -> list[str]:
        return [argv[1] if argv[0] == "docker" else argv[0] for argv in self.calls]


@pytest.fixture
def docker(monkeypatch: pytest.MonkeyPatch) -> Docker:
    fake = Docker()
    monkeypatch.setattr(containers.procs, "run", fake.run)
    monkeypatch.setattr(containers.procs, "output", fake.output)
    return fake


def test_questions_answer_none_or_empty_when_docker_says_no(docker: Docker):
    docker.failing = [["docker", "image"], ["docker", "inspect"], ["docker", "ps"]]
    assert not containers.image_exists("x:1")
    assert containers.label_of("x:1", "some.label") is None
    assert containers.inspect("c1", "{{.State.Running}}") == ""
    assert containers.with_label("k=v") == []


def test_label_of_reads_one_label(docker: Docker):
    docker.answers["image"] = "abc123\n"
    assert containers.label_of("x:1", "io.example/recipe") == "abc123"
    assert docker.calls == [["docker", "image", "inspect", "--format",
                             '{{index .Config.Labels "io.example/recipe"}}', "x:1"]]


def test_with_label_lists_every_container(docker: Docker):
    docker.answers["ps"] = "aaa\nbbb\n"
    assert containers.with_label("io.x-k8s.kind.cluster=one") == ["aaa", "bbb"]
    assert docker.calls == [["docker", "ps", "-aq", "--filter",
                             "label=io.x-k8s.kind.cluster=one"]]


def test_remove_ignores_failure_and_nothing_to_remove(docker: Docker):
    containers.remove()
    assert docker.calls == []
    docker.failing = [["docker", "rm"]]
    containers.remove("a", "b")
    assert docker.calls == [["docker", "rm", "-f", "a", "b"]]


@pytest.mark.parametrize(("attached", "removed"), [("0\n", True), ("2\n", False)])
def test_network_is_removed_only_when_unused(docker: Docker, attached: str, removed: bool):
    docker.answers["network"] = attached
    containers.remove_network_if_unused("kind")
    assert (["docker", "network", "rm", "kind"] in docker.calls) is removed


def test_build_container_is_removed_before_and_after_even_on_failure(docker: Docker):
    with pytest.raises(RuntimeError), containers.build_container("b") as name:
        assert docker.calls == [["docker", "rm", "-f", "b"]]
        raise RuntimeError(name)
    assert docker.calls == [["docker", "rm", "-f", "b"]] * 2


def test_extend_with_a_script_runs_it_then_commits(docker: Docker, tmp_path: Path):
    containers.extend("base:1", "out:1", container="build-x", files=[(tmp_path / "f", "/f")],
                      script="/prepare.sh", changes=("CMD []", "ENV A=b"),
                      log_path=tmp_path / "log")
    assert docker.calls == [
        ["docker", "rm", "-f", "build-x"],
        ["docker", "create", "--name", "build-x", "--entrypoint", "/bin/sh", "base:1",
         "-c", "/prepare.sh"],
        ["docker", "cp", str(tmp_path / "f"), "build-x:/f"],
        ["docker", "start", "-a", "build-x"],
        ["docker", "commit", "--change", "CMD []", "--change", "ENV A=b", "build-x", "out:1"],
        ["docker", "rm", "-f", "build-x"],
    ]


def test_extend_without_a_script_never_starts_the_container(docker: Docker, tmp_path: Path):
    containers.extend("base:1", "out:1", container="c", files=[], changes=(),
                      log_path=tmp_path / "log")
    assert docker.verbs() == ["rm", "create", "commit", "rm"]
    assert docker.calls[1][-2:] == ["base:1", "/bin/true"]


def test_a_failed_step_still_removes_the_build_container(docker: Docker, tmp_path: Path):
    docker.failing = [["docker", "cp"]]
    with pytest.raises(errors.BuildError):
        containers.extend("base:1", "out:1", container="c", files=[("/x", "/x")], changes=(),
                          log_path=tmp_path / "log")
    assert docker.verbs() == ["rm", "create", "cp", "rm"]


def test_import_and_save_are_quoted_pipelines(docker: Docker, tmp_path: Path):
    root = tmp_path / "a root"
    containers.import_rootfs(root, "t:1", ('ENTRYPOINT ["/bin/probe"]',), tmp_path / "log")
    containers.save_into(["a:1", "b:2"], "node", ["ctr", "images", "import", "-"],
                         log_path=tmp_path / "log", what="import")
    (bash_import, bash_save) = docker.calls
    assert bash_import[:4] == ["bash", "-o", "pipefail", "-c"]
    assert bash_import[4] == (f"tar -C '{root}' --numeric-owner -c . | docker import "
                              """--change 'ENTRYPOINT ["/bin/probe"]' - t:1""")
    assert bash_save[4] == "docker save a:1 b:2 | docker exec -i node ctr images import -"


def test_build_passes_args_labels_and_the_classic_builder(docker: Docker, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    seen: dict[str, Any] = {}
    monkeypatch.setattr(containers.procs, "run", lambda cmd, **kw: seen.update(cmd=cmd, **kw))
    containers.build(tmp_path, "m:1", build_args={"A": "1", "B": "2"}, labels={"l": "k"},
                     log_path=tmp_path / "log")
    assert seen["cmd"] == ["docker", "build", "--force-rm", "--build-arg", "A=1",
                           "--build-arg", "B=2", "--label", "l=k", "--tag", "m:1", tmp_path]
    assert seen["env"] == {"DOCKER_BUILDKIT": "0"}
