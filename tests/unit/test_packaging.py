"""The wheel carries every file the harness reads at run time, and an install reads its own.

The wheel is built from a copy of the checkout's files (tests/wheels.py). It is
installed with --no-deps into a fresh venv made without pip
(this interpreter's pip installs into it with --python): `harness.resources` and
`rollout-harness --version` need no dependencies, so the install takes about a
second. That venv's python, run isolated (-I) from outside the checkout, says
where the files are; they must all be there and none in the checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
import wheels

from harness import resources

REPO = wheels.REPO
SHIPPED_FOLDERS = ("charts", "images", "load", "programs", "toolchain")
"""The folders the wheel carries whole as harness/_shipped/<folder> (pyproject.toml)."""
SHIPPED_PREFIX = "harness/_shipped/"
JUNK = ("load/__pycache__/locustfile.cpython-311.pyc",
        "images/model-server/model_server/__pycache__/app.cpython-311.pyc",
        "images/model-server/wheels/numpy-2.4.6-cp311-none-any.whl",
        "toolchain/pulumi-kubernetes/schema-embed.json")
"""Files a used checkout holds in those folders (all git-ignored) that no wheel may carry."""
PATHS = ("ROOT", "RECIPES", "CHART_DIR", "LOCUSTFILE", "SERVER_DIR", "PROGRAM_DIR")
"""Every path harness.resources exports."""


@pytest.fixture(scope="module")
def files() -> list[str]:
    return wheels.project_files()


@pytest.fixture(scope="module")
def wheel(files: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return wheels.build(files, tmp_path_factory.mktemp("source"),
                        tmp_path_factory.mktemp("dist"), junk=JUNK)


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
    listed = wheels.git("ls-files", "-s", "-z", "--", *SHIPPED_FOLDERS)
    for entry in filter(None, listed.split("\0")):
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
    assert done.stdout.split() == ["rollout-harness", wheels.pyproject()["project"]["version"]]


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


def test_pip_comes_with_the_harness_since_image_builds_run_it() -> None:
    """`images.wheelhouse` runs `python -m pip download` with the harness's own Python; a
    team's venv made by uv has no pip of its own, and a cold cache then could not build
    the model server's image (found on a fresh machine by test_installed.py)."""
    pins = wheels.pyproject()["project"]["dependencies"]
    assert any(pin.split("==")[0] == "pip" for pin in pins), pins
