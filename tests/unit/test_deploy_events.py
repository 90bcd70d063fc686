"""What `ModelStack.up` reads from the engine's events: which Deployments have a rollout
to finish, and how long pulumi spent on them."""

from __future__ import annotations

from typing import Any

from pulumi.automation import events

from harness.deploy import _DeploymentSteps

DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def step(op: str, kind: str = DEPLOYMENT, name: str = "ml-model",
         namespace: str | None = "ml-model", done: bool = True) -> events.EngineEvent:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    new = events.StepEventStateMetadata(kind, f"urn::{name}", "id", "", "provider",
                                        outputs={"metadata": metadata})
    meta = events.StepEventMetadata(events.OpType(op), f"urn::{name}", kind, "provider",
                                    new=new)
    if done:
        return events.EngineEvent(1, 0, res_outputs_event=events.ResOutputsEvent(meta))
    return events.EngineEvent(1, 0, resource_pre_event=events.ResourcePreEvent(meta))


def test_created_and_changed_deployments_are_noted_with_their_namespace():
    steps = _DeploymentSteps()
    for event in (step("update", done=False), step("update"),
                  step("create", name="ml-model-canary"),
                  step("same", name="ml-model-baseline"),
                  step("delete", name="ml-model-old"),
                  step("update", kind="kubernetes:core/v1:Service"),
                  step("create", name="bare", namespace=None)):
        steps(event)
    assert steps.changed == [("ml-model", "ml-model"), ("ml-model", "ml-model-canary"),
                             ("default", "bare")]
    assert steps.seconds is not None


def test_an_update_that_leaves_the_deployment_alone_notes_nothing():
    steps = _DeploymentSteps()
    steps(step("same", done=False))
    steps(step("same"))
    assert (steps.changed, steps.seconds, steps.since_started()) == ([], None, None)
