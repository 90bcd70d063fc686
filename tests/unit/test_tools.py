"""Where a tool comes from: cache, release, or a build from Go modules."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from harness import errors, progress
from harness.settings import ToolchainSettings
from harness.toolchain import downloads, gobuild, tools
from harness.toolchain.cache import Cache

HELLO = """package main

import "fmt"

func main() { fmt.Println("hello") }
"""


@pytest.fixture
def module(tmp_path: Path) -> Path:
    folder = tmp_path / "hello"
    folder.mkdir()
    (folder / "go.mod").write_text("module example.local/hello\n\ngo 1.24\n")
    (folder / "main.go").write_text(HELLO)
    return folder


def make_tool(module: Path, release: tools.ReleaseFetcher | None) -> tools.Tool:
    return tools.Tool(component="hello", version="v1", module="hello", packages=(".",),
                      binaries={"hello": "hello"}, release=release, recipe_dir=module)


def unreachable(folder: Path, timeout: float) -> None:
    raise downloads.Unreachable("https://example.invalid/hello is unreachable")


def test_auto_falls_back_to_a_build_when_the_release_is_unreachable(tmp_path, module):
    cache = Cache(tmp_path / "cache")
    with progress.redirected(io.StringIO()) as said:
        tool = make_tool(module, unreachable)
        folder = tools.ensure(cache, ToolchainSettings(source="auto"), tool)
    assert (folder / "hello").is_file()
    assert "building from Go modules" in said.getvalue()
    assert cache.recorded("hello")["source"] == "build"


def test_release_only_does_not_build(tmp_path, module):
    cache = Cache(tmp_path / "cache")
    with pytest.raises(downloads.Unreachable):
        tools.ensure(cache, ToolchainSettings(source="release"), make_tool(module, unreachable))
    assert tools.Tool.found(make_tool(module, unreachable), cache) is None


def test_release_download_is_used_when_reachable(tmp_path, module):
    def release(folder: Path, timeout: float) -> None:
        (folder / "hello").write_text("#!/bin/sh\necho released\n")

    cache = Cache(tmp_path / "cache")
    with progress.redirected(io.StringIO()):
        folder = tools.ensure(cache, ToolchainSettings(source="auto"), make_tool(module, release))
    assert folder.name.endswith("-release")
    assert cache.recorded("hello")["source"] == "release"


def test_warm_cache_builds_nothing(tmp_path, module):
    cache = Cache(tmp_path / "cache")
    tool = make_tool(module, None)
    with progress.redirected(io.StringIO()):
        first = tools.ensure(cache, ToolchainSettings(source="build"), tool)
    with progress.redirected(io.StringIO()) as said:
        assert tools.ensure(cache, ToolchainSettings(source="build"), tool) == first
    assert said.getvalue() == ""


def test_failed_go_build_names_the_module_and_the_log(tmp_path, module):
    (module / "main.go").write_text("package main\n\nfunc main() { undefined() }\n")
    cache = Cache(tmp_path / "cache")
    with pytest.raises(errors.BuildError) as caught, progress.redirected(io.StringIO()):
        tools.ensure(cache, ToolchainSettings(source="build"), make_tool(module, None))
    message = str(caught.value)
    assert "go build of module toolchain/hello failed" in message
    assert str(cache.log("go-build-hello")) in message
    assert "undefined" in message
    assert tools.Tool.found(make_tool(module, None), cache) is None


def test_missing_go_is_a_clear_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(gobuild.Path, "exists", lambda self: False)
    with pytest.raises(errors.ToolchainError, match=r"needs Go 1\.24"):
        gobuild.go_binary()
