"""The command line: one clear line per error, documented exit codes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from harness import cli, progress
from harness.toolchain import containers, docker


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with progress.redirected(io.StringIO()) as said:
        code = cli.main(argv)
    out = capsys.readouterr().out
    return code, out, said.getvalue()


@pytest.mark.parametrize("engine_running", [False, True])
def test_check_on_an_empty_cache_lists_what_is_missing(tmp_path: Path, capsys,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       engine_running: bool):
    """Whether or not an engine happens to run on this machine, the list is exact."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    engine = docker.Engine(version="20.10.24", default_runtime="runc") if engine_running else None
    monkeypatch.setattr(docker, "info", lambda: engine)
    monkeypatch.setattr(containers, "image_exists", lambda tag: False)
    code, out, _ = run(["toolchain", "--check"], capsys)
    assert code == 1
    assert out.splitlines()[0].split()[:4] == ["component", "version", "source", "took"]
    missing = "missing: kind, kubernetes" if engine_running else "missing: docker, kind, kubernetes"
    assert missing in out and "(run `make toolchain`)" in out
    assert out.rstrip().endswith("node-image (run `make toolchain`)")


def test_no_docker_and_no_way_to_install_it_is_one_line_and_exit_69(
        tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(docker, "info", lambda: None)
    monkeypatch.setattr(docker.procs, "which", lambda name: None)
    monkeypatch.setattr(docker.os, "geteuid", lambda: 1000)
    code, _, said = run(["toolchain"], capsys)
    assert code == 69
    errors = [line for line in said.splitlines() if line.startswith("==> error:")]
    assert len(errors) == 1
    assert "no docker engine is running" in errors[0]
    assert "install Docker 20.10 or newer and start it" in errors[0]


def test_unknown_tool_is_a_usage_error(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    code, _, said = run(["toolchain", "--only", "kubeflow"], capsys)
    assert code == 64
    assert "no tool named 'kubeflow'; tools: kind, kubernetes" in said


def test_bad_environment_value_is_a_usage_error(capsys, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HARNESS_NODE_PORT", "80")
    code, _, said = run(["toolchain", "--check"], capsys)
    assert code == 64
    assert "30000-32767" in said


@pytest.mark.parametrize("argv, says", [
    (["verify", "--from", "1.0.0", "--to", "1.0.0"], "a rollout needs two versions"),
    (["verify", "--users", "-1"], "--users must be at least 0"),
    (["verify", "--users", "0", "--churn-users", "0"], "no traffic, no verdict"),
    (["verify", "--slo", "0"], "--slo must be at least 0.001"),
    (["calibrate", "--runs", "0"], "--runs must be at least 1"),
    (["calibrate", "--controls", "drain-of"], "no control named drain-of"),
    (["rehearse", "--rate", "-1"], "--rate must be at least 0"),
    (["verify", "--baseline", "0"], "--baseline must be at least 1"),
    (["verify", "--set", "novalue"], "--set takes KEY=VALUE"),
    (["verify", "--rollout-timeout", "5"], "--rollout-timeout must be at least 10"),
])
def test_bad_gate_options_are_usage_errors_before_anything_starts(
        argv: list[str], says: str, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    code, _, said = run(argv, capsys)
    assert code == 64
    assert says in said
    assert list(tmp_path.iterdir()) == [], "nothing was built or created"


def test_gate_exit_codes_are_distinct_per_outcome():
    from harness import verify

    assert verify.EXIT_CODES == {"pass": 0, "fail": 1, "inconclusive": 3}


def test_version_prints_the_package_version(capsys):
    from importlib import metadata

    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    version = metadata.version("rollout-harness")
    assert capsys.readouterr().out.strip() == f"rollout-harness {version}"


@pytest.mark.parametrize("command", [[], *([name] for name in cli.COMMANDS)])
def test_every_help_prints(command: list[str], capsys):
    """argparse formats help texts with %: a bare "95%" once crashed the top-level --help."""
    with pytest.raises(SystemExit) as done:
        cli.main([*command, "--help"])
    assert done.value.code == 0
    assert "usage: rollout-harness" in capsys.readouterr().out


def test_help_of_a_flag_shows_its_default_unit_and_variable(capsys):
    with pytest.raises(SystemExit):
        cli.main(["verify", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default 20 req/s; HARNESS_RATE_PER_USER)" in text
    assert "(default 8; HARNESS_USERS)" in text
    assert "--processes N" in text and "(default 1; HARNESS_LOAD_PROCESSES)" in text
    assert "--cluster" in text and "--keep" in text


def test_rehearse_up_and_down_keep_the_cluster_and_verify_does_not():
    parser = cli.build_parser()
    for command, kept in (("verify", False), ("rehearse", True), ("down", True)):
        args = parser.parse_args([command])
        assert cli.settings_from(args).cluster.keep is kept, command
    assert cli.settings_from(parser.parse_args(["verify", "--keep"])).cluster.keep is True


def test_an_unknown_option_is_bad_usage_exit_64(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["verify", "--frm", "1.0.0"])
    assert done.value.code == 64
    assert "unrecognized arguments: --frm" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["1.1", "latest", "v1.1.0"])
def test_a_version_that_is_not_semver_is_refused_before_anything_is_made(
        bad: str, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    code, _, said = run(["verify", "--to", bad], capsys)
    assert code == 64
    assert f"--to: chartVersion must be a SemVer version like 1.2.0 or 1.1.0-flaky, not '{bad}'" \
        in said
    assert list(tmp_path.iterdir()) == []


def test_a_crash_is_one_line_exit_2_and_a_traceback_in_a_file(capsys,
                                                              monkeypatch: pytest.MonkeyPatch):
    def boom(args, settings):
        raise KeyError("oops")

    monkeypatch.setitem(cli.RUNNERS, "toolchain", boom)
    code, _, said = run(["toolchain"], capsys)
    assert code == 2
    (line,) = said.splitlines()
    assert line.startswith("==> error: the harness crashed (KeyError: 'oops'); traceback in ")
    crash = Path(line.split("traceback in ")[1].split(";")[0])
    assert "KeyError: 'oops'" in crash.read_text()
    crash.unlink()


@pytest.fixture
def nothing_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a run gets as far as locking, the toolchain or a cluster."""
    from harness import cluster, runlock, toolchain

    def made(*args: object, **kwargs: object) -> None:
        raise AssertionError("a validation error must come before anything is made")

    for module, name in ((toolchain, "ensure_all"), (cluster, "up"), (runlock, "held")):
        monkeypatch.setattr(module, name, made)


SCHEMA = "==> error: --set values rejected by the chart's schema, nothing was created: at "


@pytest.mark.parametrize(("argv", "line"), [
    (["up", "--version", "1.1"],
     "==> error: --version: chartVersion must be a SemVer version like 1.2.0 or 1.1.0-flaky, "
     "not '1.1'"),
    (["verify", "--set", "strategy.type=BlueGreen"],
     SCHEMA + "'/strategy/type': value must be one of 'RollingUpdate', 'Recreate'"),
    (["rehearse", "--set", "replicas=2"],
     SCHEMA + "'': additional properties 'replicas' not allowed"),
    (["verify", "--set", "server.flakyRate=2"], SCHEMA + "'/server/flakyRate': "),
    (["up", "--version", "1.1.0", "--set", "gracefulDrain.enabled=maybe"],
     SCHEMA + "'/gracefulDrain/enabled': "),
    (["verify", "--name", "Not_A_Name"],
     "==> error: --name: cluster name 'Not_A_Name' must be lower-case letters, digits and '-', "
     "1-50 long"),
    (["verify", "--from", "1.1.0", "--to", "1.1.0"],
     "==> error: --from and --to are both 1.1.0: a rollout needs two versions"),
], ids=["up-version", "set-enum", "set-unknown-key", "set-range", "set-type", "name",
        "same-versions"])
def test_each_validation_error_is_one_line_exit_64_and_nothing_is_made(
        argv: list[str], line: str, capsys, nothing_made: None):
    code, out, said = run(argv, capsys)
    assert (code, out) == (64, "")
    (first,) = said.splitlines()
    assert first.startswith(line), first


def test_a_bad_port_variable_is_one_line_exit_64(capsys, nothing_made: None,
                                                 monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HARNESS_HOST_PORT", "70000")
    assert run(["verify"], capsys)[::2] == (
        64, "==> error: HARNESS_HOST_PORT must be between 1 and 65535, not 70000\n")


def test_engine_stop_with_nothing_started_says_so_and_touches_nothing(
        tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    assert run(["engine", "stop"], capsys)[::2] == (
        0, "==> no engine started by the harness is running: nothing to stop\n")


def test_every_command_has_a_runner_or_is_serve():
    assert cli.RUNNERS.keys() | {"serve"} == cli.COMMANDS.keys()


@pytest.mark.parametrize(("argv", "line"), [
    (["canary", "--stable", "1.0.0", "--candidate", "1.0.0"],
     "==> error: --stable and --candidate are both 1.0.0: a canary needs two versions; for an "
     "A/A run give the same build under another version, e.g. 1.0.0-rebuilt"),
    (["canary", "--weight", "50"], "==> error: --weight must be above 0 and below 50, not 50"),
    (["canary", "--weight", "0%"], "==> error: --weight must be above 0 and below 50, not 0"),
    (["canary", "--confidence", "1"], "==> error: --confidence must be above 0 and below 1"),
    (["canary", "--intervals", "0"], "==> error: --intervals must be at least 1, not 0"),
    (["canary", "--interval", "1"], "==> error: --interval must be at least 5, not 1"),
    (["canary", "--marginal", "96"], "==> error: --marginal 96 is above --pass-score 95"),
    (["canary", "--max-accuracy-drop", "1"],
     "==> error: --max-accuracy-drop must be from 0 and below 1, not 1"),
    (["canary", "--allowed-increase", "0.9"],
     "==> error: --allowed-increase must be at least 1, not 0.9"),
    (["canary", "--candidate", "v2"], "==> error: --candidate: chartVersion must be a SemVer"),
    (["canary", "--intervals", "60"], "==> error: --intervals 60 x --interval 30s, with the "
                                      "rollout timeouts, plan"),
], ids=["same", "weight-50", "weight-0", "confidence", "intervals", "interval", "marginal",
        "drop", "increase", "semver", "too-long"])
def test_bad_canary_options_are_one_line_exit_64_and_nothing_is_made(
        argv: list[str], line: str, capsys, nothing_made: None):
    code, out, said = run(argv, capsys)
    assert (code, out) == (64, "")
    (first,) = said.splitlines()
    assert first.startswith(line), first


def test_canary_help_shows_its_flags_with_defaults_and_variables(capsys):
    with pytest.raises(SystemExit):
        cli.main(["canary", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for said in ("--stable VERSION", "--candidate VERSION",
                 "(default 30s; HARNESS_CANARY_INTERVAL)", "(default 3; HARNESS_CANARY_INTERVALS)",
                 "(default 20 %; HARNESS_CANARY_WEIGHT)",
                 "--confidence", "(default 0.98)", "--marginal", "(default 75)", "--pass-score",
                 "(default 95)", "--max-accuracy-drop", "(default 0.02)", "--allowed-increase",
                 "--users", "--slo", "--keep", "--report-dir"):
        assert said in text, said
    assert "--from" not in text and "--baseline" not in text


def test_make_canary_passes_old_and_new():
    makefile = (Path(__file__).parents[2] / "Makefile").read_text()
    assert ("$(HARNESS) canary --stable $(OLD) --candidate $(NEW) --report-dir $(REPORT) "
            "$(ARGS)") in makefile


def test_runs_checking_values_at_once_each_get_their_own_error(tmp_path: Path):
    """Two runs on other cluster names check their --set values at the same moment: each
    is told about its own (they once shared one file, and swapped errors)."""
    from concurrent.futures import ThreadPoolExecutor

    from harness import deploy, errors, toolchain
    from harness.settings import Settings, chart_values

    wrong = {"strategy.type=BlueGreen": "'/strategy/type'", "replicas=2": "'replicas'"}
    helm = toolchain.ensure_tool(Settings.from_env(), "helm") / "helm"

    def check(assignment: str) -> str:
        settings = Settings.from_env().replace(
            "deploy", values=chart_values([assignment], "--set"))
        with pytest.raises(errors.UsageError) as refused:
            deploy.check_values(settings, helm, "1.0.0", tmp_path)
        return str(refused.value)

    with ThreadPoolExecutor(8) as pool:
        said = list(pool.map(check, list(wrong) * 6))
    for assignment, message in zip(list(wrong) * 6, said, strict=True):
        assert wrong[assignment] in message, (assignment, message)
    assert list(tmp_path.iterdir()) == []
