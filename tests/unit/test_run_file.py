"""rollout.yaml: a run described in one file, under the environment and the flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import cli, errors, settings
from harness.settings import RunFile

FILE = """\
deploy:
  program: ./deploy
  version_from: env:MODEL_VERSION
  values:
    gracefulDrain: {enabled: false}
traffic:
  users: 4
  protocol: open-inference-v2
gate:
  from_version: 1.0.0
  to_version: 1.1.0
"""


def run_file(tmp_path: Path, text: str = FILE) -> RunFile:
    path = tmp_path / "rollout.yaml"
    path.write_text(text)
    return RunFile.read(path)


def test_the_file_sets_what_it_names_and_paths_are_relative_to_it(tmp_path: Path) -> None:
    chosen = settings.resolve("rehearse", {}, {}, run_file(tmp_path, FILE.replace(
        "  values:\n    gracefulDrain: {enabled: false}\n", "")))
    assert chosen.deploy.program == tmp_path / "deploy"
    assert chosen.deploy.version_from == "env:MODEL_VERSION"
    assert (chosen.traffic.users, chosen.traffic.protocol) == (4, "open-inference-v2")
    assert (chosen.gate.from_version, chosen.gate.to_version) == ("1.0.0", "1.1.0")
    assert chosen.traffic.churn_users == 4, "what the file leaves out keeps its default"


def test_the_environment_and_then_the_flags_override_it(tmp_path: Path) -> None:
    file = run_file(tmp_path, "traffic:\n  users: 4\n  churn_users: 2\n")
    chosen = settings.resolve("verify", {"traffic.users": "6"}, {"HARNESS_USERS": "5",
                                                                 "HARNESS_CHURN_USERS": "3"}, file)
    assert (chosen.traffic.users, chosen.traffic.churn_users) == (6, 3)


def test_chart_values_are_a_mapping_there(tmp_path: Path) -> None:
    file = run_file(tmp_path, "deploy:\n  values:\n    gracefulDrain: {enabled: false}\n")
    assert settings.resolve("verify", {}, {}, file).deploy.values == {
        "gracefulDrain": {"enabled": False}}


def test_a_set_flag_changes_one_value_of_the_files(tmp_path: Path) -> None:
    """The file describes the release; `--set` changes one value of it (a negative control
    with its drain off), not all of them."""
    file = run_file(tmp_path, "deploy:\n  values:\n    preStopSleepSeconds: 10\n"
                              "    service: {port: 8080}\n")
    chosen = settings.resolve("verify", {"deploy.values": ["preStopSleepSeconds=0",
                                                           "service.nodePort=30080"]}, {}, file)
    assert chosen.deploy.values == {"preStopSleepSeconds": 0,
                                    "service": {"port": 8080, "nodePort": 30080}}


def test_a_team_chart_and_image_from_the_file(tmp_path: Path) -> None:
    (tmp_path / "chart").mkdir()
    file = run_file(tmp_path, """\
deploy:
  chart: chart
  image_repository: example/wine-mlserver
  image_build: image
traffic:
  protocol: open-inference-v2
  model: wine
  answer_version: body
""")
    chosen = settings.resolve("verify", {}, {}, file)
    assert chosen.deploy.chart == tmp_path / "chart"
    assert chosen.deploy.image_build == tmp_path / "image"
    assert chosen.deploy.team_chart
    assert (chosen.model_name, chosen.traffic.answer_version) == ("wine", "body")


@pytest.mark.parametrize(("text", "problem"), [
    ("deploy:\n  chart: c\n  chart_repo: http://127.0.0.1:1\n", "give one"),
    ("deploy:\n  chart: c\n  chart_source: repo\n", "--chart-source repo serves the bundled"),
    ("deploy:\n  image_repository: Not/Valid\n", "image name without tag"),
    ("deploy:\n  chart_repo: ftp://x\n", "http:// or https:// URL"),
    ("traffic:\n  answer_version: footer\n", "takes header:NAME"),
    ("traffic:\n  answer_version: 'header:'\n", "takes header:NAME"),
    ("deploy:\n  program: p\n  chart: c\n", "for the bundled program"),
])
def test_a_team_setting_that_cannot_work_is_one_line(tmp_path: Path, text: str,
                                                     problem: str) -> None:
    with pytest.raises(errors.UsageError, match=problem):
        settings.resolve("verify", {}, {}, run_file(tmp_path, text))


@pytest.mark.parametrize(("text", "problem"), [
    ("trafic:\n  users: 4\n", "trafic is not a group of settings; did you mean traffic?"),
    ("traffic:\n  user: 4\n", "traffic.user is not a setting; did you mean traffic.users?"),
    ("traffic:\n  timeout_seconds: 4\n", "traffic.timeout_seconds is not a setting"),
    ("traffic: 4\n", "traffic must be a mapping of its settings"),
    ("- traffic\n", "must be a mapping of setting groups"),
    ("traffic: [\n", "not YAML"),
])
def test_a_wrong_file_is_one_line_naming_it(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(errors.UsageError) as caught:
        run_file(tmp_path, text)
    assert str(caught.value).startswith(f"{tmp_path / 'rollout.yaml'}: ")
    assert problem in str(caught.value) and "\n" not in str(caught.value)


def test_a_wrong_value_names_the_file_and_the_setting(tmp_path: Path) -> None:
    file = run_file(tmp_path, "traffic:\n  users: -2\n")
    with pytest.raises(errors.UsageError,
                       match=r"rollout.yaml: traffic.users must be at least 0, not -2"):
        settings.resolve("verify", {}, {}, file)


def test_which_file(tmp_path: Path) -> None:
    assert RunFile.find(None, {}, tmp_path) is None, "no file, no error"
    (tmp_path / "rollout.yaml").write_text("traffic:\n  users: 4\n")
    found = RunFile.find(None, {}, tmp_path)
    assert found is not None and found.settings == {"traffic.users": 4}
    other = tmp_path / "other.yaml"
    other.write_text("traffic:\n  users: 5\n")
    named = RunFile.find(None, {"HARNESS_CONFIG": str(other)}, tmp_path)
    assert named is not None and named.settings == {"traffic.users": 5}
    with pytest.raises(errors.UsageError, match=r"missing\.yaml: cannot read it"):
        RunFile.find(str(tmp_path / "missing.yaml"), {}, tmp_path)


def test_or_the_tool_table_of_a_pyproject(tmp_path: Path) -> None:
    project = tmp_path / "pyproject.toml"
    project.write_text('[project]\nname = "team-model"\n')
    assert RunFile.find(None, {}, tmp_path) is None, "a pyproject without the table is not one"
    project.write_text('[project]\nname = "team-model"\n\n[tool.rollout-harness.deploy]\n'
                       'chart = "deploy/chart"\n\n[tool.rollout-harness.traffic]\n'
                       'protocol = "open-inference-v2"\nusers = 4\n')
    found = RunFile.find(None, {}, tmp_path)
    assert found is not None and found.path == project
    chosen = settings.resolve("verify", {}, {}, found)
    assert chosen.deploy.chart == tmp_path / "deploy" / "chart", "relative to the pyproject"
    assert (chosen.traffic.protocol, chosen.traffic.users) == ("open-inference-v2", 4)
    (tmp_path / "rollout.yaml").write_text("traffic:\n  users: 6\n")
    found = RunFile.find(None, {}, tmp_path)
    assert found is not None and found.settings == {"traffic.users": 6}, "rollout.yaml first"


@pytest.mark.parametrize(("text", "problem"), [
    ('[project]\nname = "x"\n', r"no \[tool\.rollout-harness\] table in it"),
    ("[tool.rollout-harness\n", "not TOML"),
    ('[tool.rollout-harness.trafic]\nusers = 4\n', "did you mean traffic"),
])
def test_a_named_pyproject_without_a_usable_table_is_one_line(tmp_path: Path, text: str,
                                                              problem: str) -> None:
    (tmp_path / "pyproject.toml").write_text(text)
    with pytest.raises(errors.UsageError, match=problem):
        RunFile.find(str(tmp_path / "pyproject.toml"), {}, tmp_path)


def test_the_cli_reads_the_file_it_is_given(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("traffic:\n  users: 3\n")
    monkeypatch.delenv("HARNESS_USERS", raising=False)
    args = cli.build_parser().parse_args(["--config", str(path), "verify", "--churn-users", "1"])
    chosen = cli.settings_from(args)
    assert (chosen.traffic.users, chosen.traffic.churn_users) == (3, 1)


def test_the_readme_lists_every_setting_a_file_may_hold() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    rows = {line.split("|")[1].strip(" `"): line for line in readme.splitlines()
            if line.startswith("| `") and line.count("|") == 3}
    missing = [f"{group}.{f.name}" for group, f, opt in settings.options()
               if (opt.flag or opt.env) and f"`{f.name}`" not in rows.get(group, "")]
    assert not missing, f"README.md's run-file table lacks {missing}"
