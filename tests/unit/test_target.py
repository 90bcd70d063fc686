"""An existing cluster given by kubeconfig and URL: its flags, its name, its context."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness import errors, target
from harness.settings import Settings


def kubeconfig(path: Path, current: str | None = "stage") -> Path:
    contexts = [{"name": name, "context": {"cluster": name, "user": "u"}}
                for name in ("stage", "prod-eu")]
    clusters = [{"name": name, "cluster": {"server": "https://127.0.0.1:1"}}
                for name in ("stage", "prod-eu")]
    config = {"apiVersion": "v1", "kind": "Config", "contexts": contexts,
              "clusters": clusters, "users": [{"name": "u", "user": {"token": "t"}}]}
    if current:
        config["current-context"] = current
    path.write_text(yaml.safe_dump(config))
    return path


def on(path: Path | None = None, **changes: object) -> Settings:
    return Settings().replace("target", kubeconfig=path, **changes)


def test_without_a_kubeconfig_the_harness_makes_its_own_kind_cluster():
    assert not target.wanted(Settings())
    target.validate(Settings())  # nothing to check


@pytest.mark.parametrize(("changes", "said"), [
    ({"url": "http://127.0.0.1:30080"}, "--url only apply to an existing cluster"),
    ({"context": "stage", "adopt_namespace": True},
     "--context, --adopt-namespace only apply to an existing cluster"),
])
def test_target_flags_without_a_kubeconfig_are_refused(changes: dict[str, object], said: str):
    with pytest.raises(errors.UsageError, match=said):
        target.validate(on(None, **changes))


def test_a_kubeconfig_needs_a_url_and_must_exist(tmp_path: Path):
    with pytest.raises(errors.UsageError, match="no such file"):
        target.validate(on(tmp_path / "missing", url="http://h:1"))
    with pytest.raises(errors.UsageError, match="needs --url"):
        target.validate(on(kubeconfig(tmp_path / "k")))
    target.validate(on(kubeconfig(tmp_path / "k"), url="http://h:1"))


def test_the_context_is_the_one_given_else_the_current_one(tmp_path: Path):
    path = kubeconfig(tmp_path / "k")
    assert target.current_context(on(path)) == "stage"
    assert target.current_context(on(path, context="prod-eu")) == "prod-eu"
    with pytest.raises(errors.UsageError, match=r"'nope' is not in .* stage, prod-eu"):
        target.current_context(on(path, context="nope"))
    with pytest.raises(errors.UsageError, match="has no current context: give --context"):
        target.current_context(on(kubeconfig(tmp_path / "n", current=None)))


def test_an_unreadable_kubeconfig_is_one_line(tmp_path: Path):
    bad = tmp_path / "bad"
    bad.write_text("{not: yaml: at all")
    with pytest.raises(errors.UsageError, match="cannot be read"):
        target.current_context(on(bad))


@pytest.mark.parametrize(("context", "name"), [
    ("kind-harness-e2e", "target-kind-harness-e2e"),
    ("arn:aws:eks:eu-west-1:123:cluster/Staging_1",
     "target-arn-aws-eks-eu-west-1-123-cluster-staging-1"),
    ("___", "target-cluster"),
])
def test_a_target_is_named_for_its_context(context: str, name: str):
    made = target.stack_name(context)
    assert made == name and len(made) <= 50
