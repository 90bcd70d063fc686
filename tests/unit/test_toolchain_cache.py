from __future__ import annotations

from pathlib import Path

import pytest

from harness.toolchain.cache import Cache, building, recipe_hash


def test_building_renames_only_on_success(tmp_path: Path):
    final = tmp_path / "tool"
    with building(final) as tmp:
        (tmp / "bin").write_text("ok")
        assert not final.exists()
    assert (final / "bin").read_text() == "ok"


def test_interrupted_build_leaves_nothing_that_looks_finished(tmp_path: Path):
    final = tmp_path / "tool"
    with pytest.raises(KeyboardInterrupt), building(final) as tmp:
        (tmp / "half").write_text("x")
        raise KeyboardInterrupt
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_rebuild_replaces_a_previous_copy(tmp_path: Path):
    final = tmp_path / "tool"
    for content in ("one", "two"):
        with building(final) as tmp:
            (tmp / "bin").write_text(content)
    assert (final / "bin").read_text() == "two"


def test_recipe_hash_follows_file_content_and_values(tmp_path: Path):
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    (recipe / "go.mod").write_text("module a\n")
    first = recipe_hash([recipe], "v1")
    assert recipe_hash([recipe], "v1") == first
    assert recipe_hash([recipe], "v2") != first
    (recipe / "go.mod").write_text("module b\n")
    assert recipe_hash([recipe], "v1") != first


def test_records_round_trip_and_tolerate_garbage(tmp_path: Path):
    cache = Cache(tmp_path)
    cache.record("kind", source="build", seconds=12.5)
    assert cache.recorded("kind")["seconds"] == 12.5
    (cache.records / "broken.json").write_text("{not json")
    assert cache.recorded("broken") == {}
    assert cache.recorded("absent") == {}
