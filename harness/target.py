"""An existing cluster — staging — reached only through a kubeconfig and a URL.

Teams rehearse a release where it will run, not only on a kind cluster this
harness made. There the harness makes nothing and deletes nothing but what its
own stack deployed: no kind, no images loaded (the cluster pulls the chart's
image from wherever the values point), no cluster torn down. Traffic goes to
the URL given, which is how the model Service is reached from this machine
(a NodePort, a load balancer, a port-forward): the harness cannot guess it.

A namespace is the unit a team owns on a shared cluster, so one that exists and
was not made by this harness's stack is refused unless the person says to use
it (`--adopt-namespace`); an adopted namespace is then never deleted.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from harness import errors
from harness.cluster import Cluster, readiness
from harness.settings import Settings

log = logging.getLogger(__name__)


def wanted(settings: Settings) -> bool:
    """Whether this run works on an existing cluster rather than a kind cluster."""
    return settings.target.kubeconfig is not None


def validate(settings: Settings) -> None:
    """The target's flags belong together: checked before anything starts (exit 64)."""
    t = settings.target
    if t.kubeconfig is None:
        given = [flag for flag, value in (("--context", t.context), ("--url", t.url),
                                          ("--adopt-namespace", t.adopt_namespace)) if value]
        if given:
            raise errors.UsageError(f"{', '.join(given)} only apply to an existing cluster: "
                                    "give its --kubeconfig too")
        return
    if not t.kubeconfig.is_file():
        raise errors.UsageError(f"--kubeconfig {t.kubeconfig}: no such file")
    if not t.url:
        raise errors.UsageError("--kubeconfig needs --url: the address at which the model "
                                "Service answers from this machine (e.g. http://HOST:30080)")


def stack_name(context: str) -> str:
    """The stack, lock and folder name of a target: its context, as a cluster name."""
    name = re.sub(r"[^a-z0-9-]+", "-", context.lower()).strip("-")[:44].strip("-")
    return f"target-{name or 'cluster'}"


def current_context(settings: Settings) -> str:
    """The context given, else the kubeconfig's current one; it must be in the file."""
    import yaml

    path = settings.target.kubeconfig
    assert path is not None
    try:
        config = yaml.safe_load(path.read_text())
        names = [str(c["name"]) for c in config.get("contexts") or []]
        current = config.get("current-context") or None
    except (OSError, yaml.YAMLError, AttributeError, KeyError, TypeError) as e:
        raise errors.UsageError(f"--kubeconfig {path} cannot be read as a kubeconfig: "
                                f"{type(e).__name__}: {e}".splitlines()[0]) from e
    chosen = settings.target.context or current
    if not chosen:
        raise errors.UsageError(f"--kubeconfig {path} has no current context: give --context "
                                f"(contexts: {', '.join(names) or 'none'})")
    if chosen not in names:
        raise errors.UsageError(f"--context {chosen!r} is not in {path} (contexts: "
                                f"{', '.join(names) or 'none'})")
    return str(chosen)


def connect(settings: Settings) -> Cluster:
    """The target as a Cluster the rest of the harness uses; its API must answer."""
    assert settings.target.kubeconfig is not None and settings.target.url is not None
    context = current_context(settings)
    kubeconfig = settings.target.kubeconfig.resolve()
    found = readiness(kubeconfig, context)
    if not found.reachable:
        raise errors.ClusterError(f"the Kubernetes API of context {context} does not answer "
                                  f"({found.problem}); is {kubeconfig} right?")
    return Cluster(stack_name(context), kubeconfig, 0, "", None, created=False,
                   context=context, url=settings.target.url)


def namespace_owner(cluster: Cluster, namespace: str, made_uid: str | None) -> None:
    """Refuse a namespace this stack did not make, unless adopted.

    `made_uid`: the uid of the namespace the stack's state says it created, if any.
    A namespace absent from the cluster is free (the program creates it); one that
    exists is the stack's only if it is that very object — a namespace of the same
    name made by someone else after the stack's was deleted has another uid, and a
    stale state (a cluster rebuilt under the same context) must not hand it over.
    """
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    api: Any = client.CoreV1Api(config.new_client_from_config(  # type: ignore[no-untyped-call]
        str(cluster.kubeconfig), context=cluster.context))
    try:
        live = api.read_namespace(namespace, _request_timeout=10)
    except ApiException as e:
        if e.status == 404:
            return
        raise errors.DeployError(f"could not read namespace {namespace} on context "
                                 f"{cluster.context}: {e.status} {e.reason}") from e
    if made_uid and live.metadata.uid == made_uid:
        return
    raise errors.UsageError(
        f"namespace {namespace} exists on context {cluster.context} and was not made by "
        f"this harness; give another --namespace, or --adopt-namespace to deploy into it "
        "(it is then left in place afterwards)")
