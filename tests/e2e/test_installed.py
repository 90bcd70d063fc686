"""The harness as a team uses it: installed from its wheel into a fresh venv, driven by
the pytest plugin from the team's own project, outside this checkout.

The team's suite is two lines per test; its good rollout must pass and the same
rollout without graceful drain must fail *as a pytest failure* whose message is
the verdict's summary and the report's path. The venv gets the wheel with its
pinned dependencies from the index and pytest, installed by uv (a few seconds
with its cache; pip took about 40); nothing of the checkout is on its path.
The cluster is the plugin's own, named with pytest-kind's --cluster-name, and
gone afterwards.
"""

from __future__ import annotations

import os
import subprocess
import venv
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import wheels
from kube_helpers import leftovers
from uv import find_uv_bin

pytestmark = [pytest.mark.timeout(1500), pytest.mark.own_clusters]

CLUSTER = "harness-team"

TEAM_SUITE = '''\
import pytest


def test_release(rollout):
    assert rollout("1.0.0", "1.1.0").passed


@pytest.mark.rollout(values={"gracefulDrain": {"enabled": False}})
def test_release_without_drain(rollout):
    assert rollout("1.0.0", "1.1.0").passed
'''


def _pinned(name: str) -> str:
    """`name==version` as the project pins it (its dev extra)."""
    pins = wheels.pyproject()["project"]["optional-dependencies"]["dev"]
    return next(p for p in pins if p.split("==")[0] == name)


def test_a_teams_suite_passes_a_good_rollout_and_fails_a_bad_one(tmp_path: Path) -> None:
    wheel = wheels.build(wheels.project_files(), tmp_path / "source", tmp_path / "dist")
    home = tmp_path / "venv"
    venv.create(home, with_pip=False, symlinks=True)
    python = home / "bin" / "python"
    installed = subprocess.run(
        # --system-certs: the index is trusted as pip trusts it (a proxy's CA included)
        [find_uv_bin(), "pip", "install", "--quiet", "--system-certs", "--python", str(python),
         str(wheel), _pinned("pytest")], capture_output=True, text=True, timeout=600,
        check=False)
    assert installed.returncode == 0, installed.stderr

    project = tmp_path / "team"
    (project / "tests").mkdir(parents=True)
    (project / "tests" / "test_release.py").write_text(TEAM_SUITE)
    junit = tmp_path / "team.xml"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PYTEST"))}
    ran = subprocess.run(
        [str(python), "-m", "pytest", "-p", "no:cacheprovider", "--cluster-name", CLUSTER,
         f"--junitxml={junit}", "tests"],
        cwd=project, env=env, capture_output=True, text=True, timeout=1400, check=False)
    said = f"{ran.stdout[-6000:]}\n{ran.stderr[-3000:]}"
    assert ran.returncode == 1, said  # pytest: some tests failed

    cases = {case.get("name"): case for case in ET.parse(junit).getroot().iter("testcase")}
    assert set(cases) == {"test_release", "test_release_without_drain"}, said
    assert not list(cases["test_release"]), said  # no failure, error or skip inside
    [failure] = cases["test_release_without_drain"].findall("failure")
    message = failure.get("message", "") + (failure.text or "")
    assert "FAIL:" in message and "failed" in message and "report.html" in message, message
    where = Path(subprocess.run(
        [str(python), "-I", "-c", "import harness; print(harness.__file__)"], cwd=project,
        env=env, capture_output=True, text=True, check=True, timeout=60).stdout.strip())
    assert where.is_relative_to(home) and not where.is_relative_to(wheels.REPO), where
    assert not leftovers(CLUSTER), leftovers(CLUSTER)
