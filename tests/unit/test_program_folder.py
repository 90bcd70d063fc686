"""A team's program folder: what the gate reads from it and how it tells it the version."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import errors, settings
from harness.program import Program
from harness.settings import DeploySettings

EXAMPLE = Path(__file__).parents[2] / "examples" / "team-program"


def test_the_example_is_a_python_project_told_its_version_by_config() -> None:
    program = Program.read(EXAMPLE, "config:chart_version")
    assert (program.project, program.folder) == ("team-model", EXAMPLE.resolve())
    assert program.config("1.1.0") == {"chart_version": "1.1.0"}
    assert program.env("1.1.0") == {}


def test_or_by_an_environment_variable() -> None:
    program = Program.read(EXAMPLE, "env:MODEL_VERSION")
    assert program.env("1.1.0") == {"MODEL_VERSION": "1.1.0"} and program.config("1.1.0") == {}


@pytest.mark.parametrize(("pulumi_yaml", "problem"), [
    (None, "no Pulumi.yaml there"),
    ("name: [", "not YAML"),
    ("runtime: python\n", "no project name"),
    ("name: x\nruntime: nodejs\n", "runtime 'nodejs'; the gate runs Python programs"),
    ("name: x\nruntime:\n  name: go\n", "runtime 'go'"),
])
def test_a_folder_that_is_not_a_python_project_is_one_line(
        tmp_path: Path, pulumi_yaml: str | None, problem: str) -> None:
    if pulumi_yaml is not None:
        (tmp_path / "Pulumi.yaml").write_text(pulumi_yaml)
    with pytest.raises(errors.UsageError, match=f"--program {tmp_path}.*{problem}"):
        Program.read(tmp_path, "config:chart_version")


@pytest.mark.parametrize("raw", ["chart_version", "file:x", "config:", "env:1X", "env:A B"])
def test_version_from_takes_config_or_env(raw: str) -> None:
    with pytest.raises(errors.UsageError, match="takes config:KEY or env:NAME"):
        settings.resolve("verify", {"deploy.version_from": raw}, {})


def test_chart_values_belong_to_the_bundled_program() -> None:
    with pytest.raises(errors.UsageError, match="--set only applies to the bundled program"):
        DeploySettings(program=EXAMPLE, values={"replicaCount": 2})
    chosen = settings.resolve("rehearse", {"deploy.program": str(EXAMPLE)},
                              {"HARNESS_VERSION_FROM": "env:MODEL_VERSION"})
    assert chosen.deploy.program == EXAMPLE and chosen.deploy.version_from == "env:MODEL_VERSION"


def test_the_canary_and_the_calibration_need_the_bundled_program() -> None:
    from harness import calibrate, canary

    chosen = settings.Settings().replace("deploy", program=EXAMPLE)
    with pytest.raises(errors.UsageError, match="only the bundled program does: unset "
                                                "HARNESS_PROGRAM"):
        canary.check(chosen)
    with pytest.raises(errors.UsageError, match=r"unset HARNESS_PROGRAM .* to calibrate"):
        calibrate.calibrate(chosen)


def test_a_program_run_refuses_the_bundled_charts_repository(tmp_path: Path) -> None:
    from harness import startup

    chosen = settings.Settings().replace("deploy", program=EXAMPLE, chart_source="repo")
    with pytest.raises(errors.UsageError, match="--chart-source repo serves the bundled chart"):
        startup.validate(chosen, ("1.0.0",))
    with pytest.raises(errors.UsageError, match=r"no Pulumi\.yaml there"):
        startup.validate(settings.Settings().replace("deploy", program=tmp_path), ())
