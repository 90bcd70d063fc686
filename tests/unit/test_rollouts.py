"""A rollout is over when the cluster says so, whatever `pulumi up` said."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness import errors, rollouts


def deployment(generation: int = 2, observed: int | None = 2, wanted: int | None = 3,
               replicas: int = 3, updated: int = 3, available: int = 3,
               progressing: str = "NewReplicaSetAvailable") -> client.V1Deployment:
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name="ml-model", generation=generation,
                                     annotations={"deployment.kubernetes.io/revision": "1"}),
        spec=client.V1DeploymentSpec(replicas=wanted, selector=client.V1LabelSelector(),
                                     template=client.V1PodTemplateSpec()),
        status=client.V1DeploymentStatus(
            observed_generation=observed, replicas=replicas, updated_replicas=updated,
            available_replicas=available, ready_replicas=available,
            conditions=[client.V1DeploymentCondition(
                type="Progressing", status="True", reason=progressing,
                message='ReplicaSet "ml-model-6d9" has timed out progressing.')]))


def test_a_rollout_with_every_replica_updated_and_available_is_over():
    assert rollouts.not_over(deployment()) is None


def test_the_status_pulumi_returned_on_in_ci_is_not_over():
    """What the stack's outputs held after the 2.3 s upgrade: the controller had taken in
    the new spec (observedGeneration 2) but made no new ReplicaSet yet: revision 1, none
    of the 3 replicas updated, the old ones all available."""
    seen = deployment(updated=0)
    assert rollouts.not_over(seen) == "0 of 3 replicas updated"


def test_a_spec_the_controller_has_not_seen_is_not_over():
    assert rollouts.not_over(deployment(observed=1)) == (
        "the Deployment controller has not yet taken in the new spec")
    assert rollouts.not_over(deployment(observed=None)) is not None
    unwatched = deployment()
    unwatched.status = None
    assert rollouts.not_over(unwatched) is not None


def test_old_replicas_still_running_are_not_over():
    assert rollouts.not_over(deployment(replicas=4)) == "1 old replica still running"
    assert rollouts.not_over(deployment(replicas=5)) == "2 old replicas still running"


def test_updated_replicas_not_yet_available_are_not_over():
    assert rollouts.not_over(deployment(available=2)) == "2 of 3 updated replicas available"


def test_a_deployment_scaled_to_nothing_is_over():
    assert rollouts.not_over(deployment(wanted=0, replicas=0, updated=0, available=0)) is None


def test_replicas_left_unset_mean_one():
    assert rollouts.not_over(deployment(wanted=None, replicas=1, updated=1,
                                        available=1)) is None
    assert rollouts.not_over(deployment(wanted=None, replicas=1, updated=0,
                                        available=1)) == "0 of 1 replicas updated"


def test_a_rollout_past_its_progress_deadline_is_an_error_not_a_wait():
    with pytest.raises(errors.DeployError,
                       match=r"deployment/ml-model: \[ProgressDeadlineExceeded\] .*timed out"):
        rollouts.not_over(deployment(updated=1, progressing="ProgressDeadlineExceeded"))


OURS = [("ml-model", "ml-model")]


def looks(monkeypatch: pytest.MonkeyPatch, *answers: object) -> list[object]:
    """`unfinished` answering each of `answers` in turn (the last one for ever); an
    exception among them is raised."""
    left = list(answers)

    def unfinished(kubeconfig: Path, context: str | None,
                   deployments: object) -> dict[str, str]:
        answer = left.pop(0) if len(left) > 1 else left[0]
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, dict)
        return answer

    monkeypatch.setattr(rollouts, "unfinished", unfinished)
    return left


def test_await_returns_what_was_not_over_at_first(monkeypatch: pytest.MonkeyPatch):
    early = {"ml-model/ml-model": "0 of 3 replicas updated"}
    looks(monkeypatch, early, {"ml-model/ml-model": "1 old replica still running"}, {})
    assert rollouts.await_over(Path("kc"), None, OURS, timeout=5, poll=0) == early


def test_await_of_rollouts_already_over_returns_nothing(monkeypatch: pytest.MonkeyPatch):
    looks(monkeypatch, {})
    assert rollouts.await_over(Path("kc"), None, OURS, timeout=5, poll=0) == {}


def test_a_rollout_not_over_by_the_timeout_is_one_error_naming_it(
        monkeypatch: pytest.MonkeyPatch):
    looks(monkeypatch, {"ml-model/ml-model": "1 of 3 replicas updated"})
    with pytest.raises(errors.DeployError, match=(
            r"^the rollout is not over after 0s \(deployment ml-model/ml-model: 1 of 3 "
            r"replicas updated\): see `kubectl describe deployment` in its namespace")):
        rollouts.await_over(Path("kc"), None, OURS, timeout=0, poll=0)


def test_an_api_that_does_not_answer_once_is_waited_through(monkeypatch: pytest.MonkeyPatch):
    looks(monkeypatch, ApiException(status=503), ConnectionResetError(), {})
    assert rollouts.await_over(Path("kc"), None, OURS, timeout=5, poll=0) == {
        "(all)": "the API did not answer (ApiException)"}
