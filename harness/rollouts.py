"""Whether each Deployment's rollout is over, judged from the cluster, not from Pulumi.

`pulumi up` awaits a Deployment's rollout, and the harness relies on it being over
when `up` returns. pulumi-kubernetes can return early all the same: on this project's
CI an upgrade returned in 2.3 s with the Deployment at revision 1, no pod updated and
the new ReplicaSet not yet made, having read a status the controller wrote before it
began the rollout; and a chart that sets `pulumi.com/skipAwait` makes it return at
once by design. So after `up` the harness asks the cluster what `kubectl rollout
status` asks: has the controller seen the new spec, are all replicas updated and
available, are the old ones gone.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from harness import errors
from harness.cluster import api_client

DEADLINE_REASON = "ProgressDeadlineExceeded"
"""The Progressing condition's reason once a rollout made no progress for its deadline."""


def not_over(deployment: Any) -> str | None:
    """Why `deployment`'s rollout is not over (a person's words), or None when it is.
    The checks and their order are `kubectl rollout status`'s."""
    meta, spec, status = deployment.metadata, deployment.spec, deployment.status
    if status is None or (meta.generation or 0) > (status.observed_generation or 0):
        return "the Deployment controller has not yet taken in the new spec"
    for condition in status.conditions or []:
        if condition.type == "Progressing" and condition.reason == DEADLINE_REASON:
            raise errors.DeployError(
                f"deployment/{meta.name}: [{DEADLINE_REASON}] {condition.message}")
    wanted = spec.replicas if spec.replicas is not None else 1
    updated = status.updated_replicas or 0
    if updated < wanted:
        return f"{updated} of {wanted} replicas updated"
    old = (status.replicas or 0) - updated
    if old > 0:
        return f"{old} old replica{'s' if old != 1 else ''} still running"
    available = status.available_replicas or 0
    if available < updated:
        return f"{available} of {updated} updated replicas available"
    return None


def unfinished(kubeconfig: Path, context: str | None,
               deployments: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Each of `deployments` (namespace, name) whose rollout is not over, with why, keyed
    "namespace/name"; one that is gone has nothing left to roll out."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    found: dict[str, str] = {}
    with api_client(kubeconfig, context) as api:
        apps = client.AppsV1Api(api)
        for namespace, name in deployments:
            try:
                deployment = apps.read_namespaced_deployment(name, namespace,
                                                             _request_timeout=10)
            except ApiException as e:
                if e.status == 404:
                    continue
                raise
            why = not_over(deployment)
            if why is not None:
                found[f"{namespace}/{name}"] = why
    return found


def await_over(kubeconfig: Path, context: str | None, deployments: Sequence[tuple[str, str]],
               timeout: float, poll: float = 0.5) -> dict[str, str]:
    """Wait until the rollout of each of `deployments` (namespace, name) is over; returns
    what was not over at the first look (empty when nothing had to be waited for). A
    rollout still not over after `timeout` seconds, or past its progress deadline, is a
    DeployError naming the Deployment and why."""
    deadline = time.monotonic() + timeout
    first = pending = _look(kubeconfig, context, deployments)
    while pending:
        if time.monotonic() >= deadline:
            said = "; ".join(f"deployment {key}: {why}" for key, why in pending.items())
            raise errors.DeployError(
                f"the rollout is not over after {timeout:.0f}s ({said}): see `kubectl "
                f"describe deployment` in its namespace, and its pods' events")
        time.sleep(poll)
        pending = _look(kubeconfig, context, deployments)
    return first


def _look(kubeconfig: Path, context: str | None,
          deployments: Sequence[tuple[str, str]]) -> dict[str, str]:
    """`unfinished`, with an API that does not answer this once (a starved host) taken
    as not over yet rather than as the end of the run."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return unfinished(kubeconfig, context, deployments)
    except (ApiException, HTTPError, OSError) as e:
        return {"(all)": f"the API did not answer ({type(e).__name__})"}
