from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.toolchain.cache import Cache, building, recipe_hash, sweep_stale_temps


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


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_sweep_removes_temporaries_of_dead_processes_only(tmp_path: Path):
    dead, live = dead_pid(), os.getpid()
    (tmp_path / "tools" / f".kind-v1.tmp-{dead}" / "bin").mkdir(parents=True)
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / f".kind.json.tmp-{dead}").write_text("{}")
    (tmp_path / f".toolchain.tmp-{dead}").write_text("")
    kept = [
        tmp_path / "tools" / f".helm-v3.tmp-{live}",
        tmp_path / "records" / f".helm.json.tmp-{live}",
        tmp_path / "tools" / "kind-v1",
        tmp_path / "tools" / f"kind.tmp-{dead}",
        tmp_path / "tools" / f".kind.tmp-{dead}x",
        tmp_path / "work" / "rootfs" / f".deep.tmp-{dead}",
    ]
    for path in kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    removed = sweep_stale_temps(tmp_path)
    assert sorted(removed) == sorted([
        tmp_path / "tools" / f".kind-v1.tmp-{dead}",
        tmp_path / "records" / f".kind.json.tmp-{dead}",
        tmp_path / f".toolchain.tmp-{dead}",
    ])
    assert not any(path.exists() for path in removed)
    assert all(path.exists() for path in kept)


def test_sweep_unlinks_a_stale_symlink_without_following_it(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    cache = tmp_path / "cache"
    cache.mkdir()
    link = cache / f".x.tmp-{dead_pid()}"
    link.symlink_to(outside)
    assert sweep_stale_temps(cache) == [link]
    assert (outside / "precious").read_text() == "keep"


def test_sweep_of_an_absent_cache_is_empty(tmp_path: Path):
    assert sweep_stale_temps(tmp_path / "absent") == []


def test_a_killed_build_is_swept(tmp_path: Path):
    """The building() temporary of a process killed mid-build is what the sweep is for."""
    code = ("import sys, time\nfrom pathlib import Path\n"
            "from harness.toolchain.cache import building\n"
            "with building(Path(sys.argv[1])) as tmp:\n"
            "    (tmp / 'half').write_text('x')\n"
            "    print(tmp, flush=True)\n"
            "    time.sleep(60)\n")
    process = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "tools" / "kind")],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    tmp = Path(process.stdout.readline().strip())
    assert sweep_stale_temps(tmp_path) == []
    process.kill()
    process.wait()
    assert sweep_stale_temps(tmp_path) == [tmp]
    assert not (tmp_path / "tools" / "kind").exists()


def test_scratch_folders_of_builds_are_named_for_the_sweep(tmp_path: Path):
    import subprocess
    import sys

    from harness.toolchain.cache import scratch, sweep_stale_temps

    with scratch(tmp_path) as mine:
        assert sweep_stale_temps(tmp_path) == [], "a live build's scratch stays"
        assert Path(mine).exists()
    code = ("import os, sys; from harness.toolchain.cache import scratch; "
            "t = scratch(sys.argv[1]); print(t.name, flush=True); os._exit(9)")  # no clean-up
    left = Path(subprocess.run([sys.executable, "-c", code, str(tmp_path)],
                               capture_output=True, text=True).stdout.strip())
    assert left.exists()
    assert sweep_stale_temps(tmp_path) == [left] and not left.exists()
