"""The pytest plugin's own logic: options, settings, the rollout function and its result.

The cluster, stack and rehearsal are replaced here (they are the harness's own
functions, e2e-tested elsewhere); what is tested is how the plugin wires a
team's test to them.
"""

from __future__ import annotations

import pytest

from harness import errors, pytest_plugin
from harness.settings import Settings

pytest_plugins = ["pytester"]

FAKES = '''
import contextlib, types
import pytest
from harness import startup, verify
from harness.verdict import Check, Figures, Plan, Verdict
from harness.evidence import Marks

SEEN = []

@contextlib.contextmanager
def stack_ready(settings):
    SEEN.append(("cluster", settings.cluster.name, settings.cluster.keep))
    yield types.SimpleNamespace(cluster="c", toolchain="t")

@contextlib.contextmanager
def for_versions(settings, stack, versions):
    yield types.SimpleNamespace(stack=stack)

def rehearsal(settings, ready):
    SEEN.append(("rollout", settings.gate.from_version, settings.gate.to_version,
                 dict(settings.deploy.values), settings.traffic.users,
                 settings.gate.report_dir.name))
    flaky = "flaky" in settings.gate.to_version
    figures = Figures(100, 5 if flaky else 0, {}, {}, None, 1.0, None, None, None, None,
                      None, 3)
    plan = Plan(settings.gate.from_version, settings.gate.to_version, 240.0)
    verdict = Verdict("fail" if flaky else "pass",
                      (Check("no failed requests", "fail" if flaky else "pass", "x"),),
                      figures, plan, Marks(0.0, 1.0, 2.0))
    return types.SimpleNamespace(verdict=verdict)

@pytest.fixture(autouse=True, scope="session")
def _fakes():
    mp = pytest.MonkeyPatch()
    mp.setattr(startup, "stack_ready", stack_ready)
    mp.setattr(startup, "for_versions", for_versions)
    mp.setattr(startup, "validate", lambda settings, versions: None)
    mp.setattr(verify, "rehearsal", rehearsal)
    yield
    mp.undo()
    print("SEEN", SEEN)
'''


def test_a_teams_test_gets_a_verdict_with_its_report_and_a_readable_failure(
        pytester: pytest.Pytester):
    pytester.makeconftest(FAKES)
    pytester.makepyfile('''
        import pytest

        def test_release(rollout):
            first = rollout("1.0.0", "1.1.0")
            assert first.passed and first.outcome == "pass"
            assert first.checks[0].name == "no failed requests"
            assert first.report.name == "rollout-1"

        @pytest.mark.rollout(values={"gracefulDrain": {"enabled": False}}, users=2)
        def test_marked(rollout):
            assert rollout("1.0.0", "1.1.0", users=3).passed

        def test_bad_release(rollout):
            assert rollout("1.0.0", "1.1.0-flaky").passed
    ''')
    result = pytester.runpytest_inprocess("--cluster-name", "team-gate", "--keep-cluster", "-s")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        "*assert False*",
        "*where False = <FAIL: 5 of 100 requests failed*; report: */rollout-1/report.html>.passed",
    ])
    seen = next(line for line in result.outlines if "SEEN [" in line)
    assert "('cluster', 'team-gate', True)" in seen, "pytest-kind's options, one cluster"
    assert seen.count("'cluster'") == 1
    assert "('rollout', '1.0.0', '1.1.0', {'gracefulDrain': {'enabled': False}}, 3, " \
           "'rollout-1')" in seen, "the marker's settings, the call's on top"


def test_without_pytest_kind_options_the_harness_settings_hold(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HARNESS_CLUSTER_NAME", "from-env")
    pytester.makeconftest(FAKES)
    pytester.makepyfile('''
        def test_release(rollout_settings, rollout_cluster):
            assert rollout_settings.cluster.name == "from-env"
            assert rollout_settings.cluster.keep is False
            assert rollout_cluster == "c"
    ''')
    pytester.runpytest_inprocess().assert_outcomes(passed=1)


def test_the_suites_rollout_yaml_sets_the_gate_under_the_variables(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HARNESS_CHURN_USERS", "2")
    pytester.makeconftest(FAKES)
    pytester.makefile(".yaml", rollout="traffic:\n  users: 3\n  churn_users: 9\n"
                                       "  protocol: open-inference-v2\n")
    pytester.makepyfile('''
        def test_release(rollout_settings):
            t = rollout_settings.traffic
            assert (t.users, t.churn_users, t.protocol) == (3, 2, "open-inference-v2")
    ''')
    pytester.runpytest_inprocess().assert_outcomes(passed=1)


def test_a_change_names_a_setting_or_is_refused_with_the_list():
    settings = pytest_plugin.changed(Settings(), {"values": {"a": 1}, "users": 4,
                                                  "slo_seconds": 0.5, "rollout_timeout": 60})
    assert settings.deploy.values == {"a": 1} and settings.traffic.users == 4
    assert (settings.verdict.slo_seconds, settings.deploy.rollout_timeout) == (0.5, 60)
    with pytest.raises(errors.UsageError, match=r"no setting named 'userz'; settings: values, "):
        pytest_plugin.changed(Settings(), {"userz": 4})


def test_a_rollout_can_take_its_settings_from_a_run_file_of_its_own(tmp_path, monkeypatch):
    """One suite, one cluster, several models: each rollout names its model's rollout.yaml;
    the cluster stays the session's, and values given to the rollout go over the file's."""
    monkeypatch.delenv("HARNESS_USERS", raising=False)
    (tmp_path / "chart").mkdir()
    (tmp_path / "rollout.yaml").write_text(
        "deploy:\n  chart: chart\n  image_repository: example/wine-mlserver\n"
        "  values: {preStopSleepSeconds: 10, service: {port: 8080}}\n"
        "traffic:\n  model: wine\n  users: 6\n")
    session = Settings().replace("cluster", name="suite-cluster")
    settings = pytest_plugin.changed(session, {"config": tmp_path / "rollout.yaml",
                                               "values": {"preStopSleepSeconds": 0}})
    assert settings.cluster.name == "suite-cluster"
    assert settings.deploy.chart == tmp_path / "chart"
    assert (settings.model_name, settings.traffic.users) == ("wine", 6)
    assert settings.deploy.values == {"preStopSleepSeconds": 0, "service": {"port": 8080}}


def test_the_marker_is_declared(pytester: pytest.Pytester):
    result = pytester.runpytest_inprocess("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.rollout(**changes): *"])
