"""Building the project's wheel from a copy of the checkout, for the tests that install it
(tests/unit/test_packaging.py: what the wheel holds; tests/e2e/test_installed.py: a
team's suite driving the installed harness).

The copy holds what a clean clone would (files git tracks, plus new ones it does
not ignore), so a build leaves no build/ or egg-info in the checkout. Skipped,
with the reason, where the build cannot run: no git checkout, no pip, or
neither setuptools (>= build-system.requires) here nor an index to fetch it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
UNFETCHED = re.compile(r"^.*(No matching distribution|Could not find a version|"
                       r"Failed to establish|Temporary failure in name resolution|"
                       r"Network is unreachable).*$", re.MULTILINE)
"""pip's words when it cannot get a build dependency from the index."""


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                          check=True, timeout=30).stdout


def project_files() -> list[str]:
    """The checkout's files as a build from a clean clone would see them, plus new ones."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the project's file list comes from git")
    try:
        listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard")
    except subprocess.CalledProcessError:
        pytest.skip(f"{REPO} is not a git checkout: the project's file list comes from git")
    return [name for name in listed.split("\0") if name and (REPO / name).is_file()]


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def setuptools_needed() -> int:
    requires = pyproject()["build-system"]["requires"]
    found = next(filter(None, (re.fullmatch(r"setuptools>=(\d+)", r.replace(" ", ""))
                               for r in requires)), None)
    assert found, f"build-system.requires has no 'setuptools>=N': {requires}"
    return int(found[1])


def _build_command(out: Path) -> tuple[list[str], bool]:
    """pip wheel without build isolation when setuptools here is new enough (offline),
    else with it (pip fetches setuptools from the index or its cache)."""
    try:
        have = int(metadata.version("setuptools").split(".")[0])
    except metadata.PackageNotFoundError:
        have = 0
    isolated = have < setuptools_needed()
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir",
               str(out), "."]
    return (command if isolated else [*command, "--no-build-isolation"]), isolated


def build(files: Iterable[str], source: Path, out: Path,
          junk: Iterable[str] = ()) -> Path:
    """The wheel built from `files` of the checkout copied to `source` (plus `junk`
    files, planted to show they are left out), written to `out`."""
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True,
                      timeout=60, check=False).returncode != 0:
        pytest.skip(f"no pip in {sys.executable}: the wheel is built with `pip wheel`")
    planted = set(junk)
    for name in [*files, *planted]:
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name in planted:
            target.write_bytes(b"junk")
        else:
            shutil.copy2(REPO / name, target)
    command, isolated = _build_command(out)
    done = subprocess.run(command, cwd=source, capture_output=True, text=True, timeout=180,
                          check=False)
    if done.returncode != 0 and isolated and (unfetched := UNFETCHED.search(done.stderr)):
        needed = f"setuptools>={setuptools_needed()}"
        pytest.skip(f"{needed} is not installed here and pip could not fetch it for an "
                    f"isolated build ({unfetched[0].strip()}); `pip install '{needed}'` "
                    "lets the build run offline")
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"
    [built] = out.glob("rollout_harness-*.whl")
    return built
