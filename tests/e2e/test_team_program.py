"""The gate over a team's own Pulumi program folder, its model asked over the Open
Inference Protocol.

examples/team-program is written as a team writes its deployment, with no knowledge of
this harness: the chart from a Helm repository (here one served on 127.0.0.1), at the
version in its stack config, two replicas, its own Service. The gate runs that folder
for the old and the new version through the Automation API, exactly as `pulumi up`
would, and judges the rollout under the default load, which asks the wine model over v2
(POST /v2/models/ml-model/infer, every answer held to the v2 output shape).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from harness import charts, controls
from harness import toolchain as toolchains
from harness.cluster import Cluster
from harness.pytest_plugin import Rollout

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

EXAMPLE = Path(__file__).parents[2] / "examples" / "team-program"


@pytest.fixture
def chart_repo(tmp_path: Path, deploy_tools: toolchains.DeployTools) -> Iterator[str]:
    repository = charts.Repository.of_current_chart(tmp_path / "repo", deploy_tools.helm,
                                                    tmp_path / "helm.log")
    for version in (controls.FROM_VERSION, "1.1.0"):
        repository.package(version)
    with charts.serve(repository.folder) as url:
        yield url


def test_a_teams_own_program_is_gated_over_the_open_inference_protocol(
        tmp_path: Path, chart_repo: str, cluster: Cluster,
        rollout: Callable[..., Rollout], monkeypatch: pytest.MonkeyPatch):
    # The team's Python with its requirements (requirements.txt): here ours, which pins
    # the same pulumi and pulumi-kubernetes; PULUMI_PYTHON_CMD as pulumi's own host reads it.
    monkeypatch.setenv("PULUMI_PYTHON_CMD", sys.executable)
    program = tmp_path / "team-program"
    shutil.copytree(EXAMPLE, program)
    stack_config = program / f"Pulumi.{cluster.name}.yaml"
    stack_config.write_text(yaml.safe_dump({"config": {"team-model:chart_repo": chart_repo}}))

    result = rollout(controls.FROM_VERSION, "1.1.0", program=program,
                     protocol="open-inference-v2").result
    verdict = result.verdict
    assert verdict.outcome == "pass", verdict.checks
    assert verdict.figures.failures == 0, verdict.figures.errors
    assert verdict.figures.by_version.keys() == {controls.FROM_VERSION, "1.1.0"}
    assert verdict.figures.replaced_pods == 2, "the program's two replicas, not ours three"
    assert all(c.outcome == "pass" for c in verdict.checks), verdict.checks
    config = yaml.safe_load(stack_config.read_text())["config"]
    assert config["team-model:chart_version"] == "1.1.0", "told as `pulumi config set` would"
    assert config["team-model:chart_repo"] == chart_repo, "its own settings left as they were"
    assert (program / "Pulumi.yaml").read_text() == (EXAMPLE / "Pulumi.yaml").read_text()
