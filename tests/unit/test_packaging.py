"""The wheel carries every file the harness reads at run time, and an install reads its own.

The wheel is built from a copy of the checkout's files (what git tracks, plus new
files it does not ignore), so the build leaves no build/ or egg-info in the
checkout. It is installed with --no-deps into a fresh venv made without pip
(this interpreter's pip installs into it with --python): `harness.resources` and
`rollout-harness --version` need no dependencies, so the install takes about a
second. That venv's python, run isolated (-I) from outside the checkout, says
where the files are; they must all be there and none in the checkout.

Skipped, with the reason, where the build cannot run: no git checkout, no pip
(22.3 or later), or neither setuptools (>= build-system.requires) here nor an
index to fetch it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from harness import resources

REPO = Path(__file__).resolve().parents[2]
SHIPPED_FOLDERS = ("charts", "images", "load", "programs", "toolchain")
"""The folders the wheel carries whole as harness/_shipped/<folder> (pyproject.toml)."""
SHIPPED_PREFIX = "harness/_shipped/"
JUNK = ("load/__pycache__/locustfile.cpython-311.pyc",
        "images/model-server/model_server/__pycache__/app.cpython-311.pyc",
        "images/model-server/wheels/numpy-2.4.6-cp311-none-any.whl",
        "toolchain/pulumi-kubernetes/schema-embed.json")
"""Files a used checkout holds in those folders (all git-ignored) that no wheel may carry."""
UNFETCHED = re.compile(r"^.*(No matching distribution|Could not find a version|"
                       r"Failed to establish|Temporary failure in name resolution|"
                       r"Network is unreachable).*$", re.MULTILINE)
"""pip's words when it cannot get a build dependency from the index."""
PATHS = ("ROOT", "RECIPES", "CHART_DIR", "LOCUSTFILE", "SERVER_DIR", "PROGRAM_DIR")
"""Every path harness.resources exports."""


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                          check=True, timeout=30).stdout


def _project_files() -> list[str]:
    """The checkout's files as a build from a clean clone would see them, plus new ones."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the project's file list comes from git")
    try:
        listed = _git("ls-files", "-z", "--cached", "--others", "--exclude-standard")
    except subprocess.CalledProcessError:
        pytest.skip(f"{REPO} is not a git checkout: the project's file list comes from git")
    return [name for name in listed.split("\0") if name and (REPO / name).is_file()]


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _setuptools_needed() -> int:
    requires = _pyproject()["build-system"]["requires"]
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
    isolated = have < _setuptools_needed()
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir",
               str(out), "."]
    return (command if isolated else [*command, "--no-build-isolation"]), isolated


@pytest.fixture(scope="module")
def files() -> list[str]:
    return _project_files()


@pytest.fixture(scope="module")
def wheel(files: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True,
                      timeout=60, check=False).returncode != 0:
        pytest.skip(f"no pip in {sys.executable}: the wheel is built with `pip wheel`")
    source = tmp_path_factory.mktemp("source")
    for name in [*files, *JUNK]:
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name in JUNK:
            target.write_bytes(b"junk")
        else:
            shutil.copy2(REPO / name, target)
    out = tmp_path_factory.mktemp("dist")
    command, isolated = _build_command(out)
    done = subprocess.run(command, cwd=source, capture_output=True, text=True, timeout=180,
                          check=False)
    if done.returncode != 0 and isolated and (unfetched := UNFETCHED.search(done.stderr)):
        needed = f"setuptools>={_setuptools_needed()}"
        pytest.skip(f"{needed} is not installed here and pip could not fetch it for an "
                    f"isolated build ({unfetched[0].strip()}); `pip install '{needed}'` "
                    "lets the build run offline")
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"
    [built] = out.glob("rollout_harness-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh venv outside the checkout holding the wheel and nothing else."""
    home = tmp_path_factory.mktemp("venv")
    venv.create(home, with_pip=False, symlinks=True)
    python = home / "bin" / "python"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--no-deps", "--no-index", str(wheel)],
        capture_output=True, text=True, timeout=120, check=False)
    if "no such option: --python" in done.stderr:
        pytest.skip("this pip cannot install into another venv (--python needs pip 22.3)")
    assert done.returncode == 0, done.stderr
    return python


def _shipped(files: list[str]) -> list[str]:
    return sorted(name for name in files if name.split("/", 1)[0] in SHIPPED_FOLDERS)


def _executable(files: list[str]) -> set[str]:
    """The shipped files a clean clone would have executable: git's mode, or for a file
    git does not track yet, the checkout's."""
    modes: dict[str, str] = {}
    for entry in filter(None, _git("ls-files", "-s", "-z", "--", *SHIPPED_FOLDERS).split("\0")):
        meta, name = entry.split("\t", 1)
        modes[name] = meta.split()[0]
    return {name for name in _shipped(files) if modes.get(name) == "100755"
            or (name not in modes and os.access(REPO / name, os.X_OK))}


def test_the_wheel_holds_every_file_of_the_shipped_folders_and_no_junk(
        wheel: Path, files: list[str]) -> None:
    with zipfile.ZipFile(wheel) as archive:
        entries = {info.filename: info for info in archive.infolist()}
    carried = sorted(name.removeprefix(SHIPPED_PREFIX) for name in entries
                     if name.startswith(SHIPPED_PREFIX))
    expected = _shipped(files)
    assert {"charts/ml-model/.helmignore", "load/recording.py",
            "programs/ml_model/Pulumi.yaml", "toolchain/kind/go.sum",
            "images/model-server/Dockerfile"} <= set(expected)
    assert carried == expected
    assert not set(JUNK) & set(carried)
    executable = {name.removeprefix(SHIPPED_PREFIX) for name, info in entries.items()
                  if name.startswith(SHIPPED_PREFIX) and (info.external_attr >> 16) & 0o111}
    assert executable == _executable(files)


def test_an_installed_wheel_reads_its_own_files_not_the_checkout(
        installed: Path, files: list[str]) -> None:
    probe = ("import json, sys, harness, harness.resources as r\n"
             "print(json.dumps({'harness': harness.__file__,\n"
             "                  **{name: str(getattr(r, name)) for name in sys.argv[1:]}}))\n")
    outside = installed.parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run([str(installed), "-I", "-c", probe, *PATHS], cwd=outside, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    where = {name: Path(value) for name, value in json.loads(done.stdout).items()}
    assert where["ROOT"] == where["harness"].parent / "_shipped"
    for name, path in where.items():
        assert path.exists(), f"{name}: {path} is missing"
        assert path.is_relative_to(outside) and not path.is_relative_to(REPO), f"{name}: {path}"
    root = where["ROOT"]
    assert [name for name in _shipped(files) if not (root / name).is_file()] == []
    assert {name for name in _shipped(files)
            if os.access(root / name, os.X_OK)} == _executable(files)


def test_the_installed_command_line_runs_outside_the_checkout(installed: Path) -> None:
    done = subprocess.run([str(installed.with_name("rollout-harness")), "--version"],
                          cwd=installed.parents[1], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["rollout-harness", _pyproject()["project"]["version"]]


def test_a_checkout_reads_its_folders_in_place() -> None:
    """The editable install (make setup) and a bare checkout have no copy to read."""
    if not Path(resources.__file__).resolve().is_relative_to(REPO):
        pytest.skip(f"harness is imported from an install ({resources.__file__}), "
                    "not from this checkout")
    assert not resources.SHIPPED.exists()
    assert resources.ROOT == REPO
    for name in PATHS:
        path = getattr(resources, name)
        assert path.exists() and path.is_relative_to(REPO), f"{name}: {path}"
