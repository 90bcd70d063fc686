"""The ml-model Pulumi program: the model server's Helm chart, version and image aligned.

One program, two ways to run it: `pulumi up` in the project folder
(``programs/ml_model/__main__.py`` reads the stack config) and the harness's
Automation API, which imports this package (installed with the harness) and
runs ``deploy(...)`` inline with the same stack config: the harness writes it
with ``ModelConfig.to_stack_config`` and the program reads it back with
``ModelConfig.from_pulumi_config`` (``from_stack_config``). Either way the chart is
rendered by ``kubernetes.helm.v3.Chart`` and every object becomes a Pulumi
resource, so a changed Deployment is updated and its rollout awaited, bounded
by ``pulumi.com/timeoutSeconds``.

Chart values. ``values`` is passed to the chart as given; the program maps
``image.repository``, ``image.tag`` and ``replicaCount`` on top of it. For
each of those three the precedence is: the dedicated key (``imageRepository``,
``imageTag``, ``replicaCount``) if set, else the same key inside ``values`` if
set, else the dedicated key's default. Setting both to different values is a
``ValueError``: two explicit answers to one question is a mistake, not a
preference. The image tag defaults to ``chartVersion`` because the chart is
packaged with appVersion = version; any other tag must be asked for.

Canary. With ``canary`` set (``CanaryConfig``) the program deploys two more
releases of the same chart beside the stable one, the same size and started
together: ``<releaseName>-baseline`` (stable's chart and image, fresh pods)
and ``<releaseName>-canary`` (the candidate), told apart by the chart's
``track`` value. Their pods take a pod-ratio share of the model Service's
traffic (the stable release gets ``serveAllTracks``), and each has its own
Service on its own nodePort for paired checks. Without ``canary`` the stable
release is rendered exactly as without tracks, and the two releases are gone:
``ModelConfig.aborted()`` and ``promoted()`` (stable at the candidate's
version) both end a canary that way.
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import pulumi
import pulumi_kubernetes as k8s

CHART_NAME = "ml-model"
"""The chart's name in Chart.yaml, also its name in a chart repository."""

DEFAULT_IMAGE_REPOSITORY = "rollout-harness/model-server"
DEFAULT_REPLICA_COUNT = 3
DEFAULT_NAMESPACE = "ml-model"
DEFAULT_RELEASE_NAME = "ml-model"
DEFAULT_TIMEOUT_SECONDS = 300
DEFAULT_NODE_PORT = 30080
"""The chart's ``service.nodePort`` default: the model Service's port on the node."""
DEFAULT_CANARY_REPLICAS = 1
DEFAULT_BASELINE_NODE_PORT = 30081
DEFAULT_CANARY_NODE_PORT = 30082

STABLE, BASELINE, CANARY = "stable", "baseline", "canary"
TRACKS = (STABLE, BASELINE, CANARY)
"""The chart's ``track`` values, in the order ``ModelConfig.releases`` lists them."""

TIMEOUT_ANNOTATION = "pulumi.com/timeoutSeconds"
SKIP_AWAIT_ANNOTATION = "pulumi.com/skipAwait"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
VERSION_LABEL = "rollout-harness/model-version"
"""The pod label that tells a pod's version to whoever watches the rollout (the harness's
watch): the bundled chart sets it, and the program puts it on any other chart's pods."""

CONFIG_KEYS = (
    "chartVersion", "imageRepository", "imageTag", "replicaCount", "namespace", "values",
    "chartPath", "chartRepo", "releaseName", "timeoutSeconds", "hostPort", "nodeAddress",
    "canary",
    "adoptNamespace", "chartName",
)
"""Every stack config key the program reads (in the project's namespace, ``ml-model:``)."""

CANARY_KEYS = (
    "version", "imageTag", "chartPath", "replicas", "baselineNodePort", "canaryNodePort",
    "baselineHostPort", "canaryHostPort",
)
"""The keys of the ``canary`` config value, a JSON object."""

PROGRAM_VALUES = ("track", "serveAllTracks")
"""Chart values the program sets from ``canary``; ``values`` may not set them."""

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
_IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_REPOSITORY = re.compile(
    rf"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$"
)
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_RELEASE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_HOST_LABEL = r"[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^{_HOST_LABEL}(\.{_HOST_LABEL})*$")
_RELEASE_NAME_MAX = 53
"""Helm refuses longer release names."""
_NODE_PORTS = (30000, 32767)
"""Kubernetes' default nodePort range, as the chart's schema allows it."""


@dataclass(frozen=True)
class CanaryConfig:
    """A canary beside the stable release: the ``canary`` stack config value, a JSON
    object with the camelCase keys of ``CANARY_KEYS``.

    Constructing it validates it: a bad value raises ``ValueError`` naming the key
    (``canary.<key>``), the value and what is allowed. What depends on the stable
    release too (ports, names) ``ModelConfig`` checks.
    """

    version: str
    """``version`` (required): the candidate's chart version (SemVer), e.g. ``1.1.0``;
    its image tag unless ``image_tag`` says otherwise."""

    image_tag: str | None = None
    """``imageTag``: the candidate's image tag; unset means ``version``."""

    chart_path: str | None = None
    """``chartPath``: absolute path of the candidate's chart folder or ``.tgz``; unset
    means the stable release's chart source (its ``chartPath``, or ``chartRepo`` at
    ``version``)."""

    replicas: int = DEFAULT_CANARY_REPLICAS
    """``replicas``: pods of the baseline and, as many, of the canary; at least 1.
    With stable at N pods each takes about replicas / (N + 2 * replicas) of the
    model Service's new connections."""

    baseline_node_port: int = DEFAULT_BASELINE_NODE_PORT
    """``baselineNodePort``: the baseline's own Service's nodePort (30000-32767)."""

    canary_node_port: int = DEFAULT_CANARY_NODE_PORT
    """``canaryNodePort``: the canary's own Service's nodePort (30000-32767)."""

    baseline_host_port: int | None = None
    """``baselineHostPort``: port on 127.0.0.1 that reaches ``baseline_node_port``
    (kind's extraPortMappings); makes the baseline's ``serviceUrl`` use it."""

    canary_host_port: int | None = None
    """``canaryHostPort``: the same for ``canary_node_port``."""

    def __post_init__(self) -> None:
        check_chart_version(self.version, "canary.version")
        if self.image_tag is not None:
            _check_image_tag("canary.imageTag", self.image_tag)
        else:
            _check_image_tag("canary.version", self.version,
                             hint="a build suffix (+...) cannot be an image tag: set "
                                  "canary.imageTag")
        if self.chart_path is not None:
            _check_chart_path("canary.chartPath", self.chart_path)
        _check_int("canary.replicas", self.replicas, 1)
        _check_int("canary.baselineNodePort", self.baseline_node_port, *_NODE_PORTS)
        _check_int("canary.canaryNodePort", self.canary_node_port, *_NODE_PORTS)
        if self.baseline_node_port == self.canary_node_port:
            raise ValueError(
                f"canary.baselineNodePort and canary.canaryNodePort must differ: both are "
                f"{self.canary_node_port}"
            )
        for key, port in (("canary.baselineHostPort", self.baseline_host_port),
                          ("canary.canaryHostPort", self.canary_host_port)):
            if port is not None:
                _check_int(key, port, 1, 65535)
        if self.baseline_host_port is not None and \
                self.baseline_host_port == self.canary_host_port:
            raise ValueError(
                f"canary.baselineHostPort and canary.canaryHostPort must differ: both are "
                f"{self.canary_host_port}"
            )

    @property
    def effective_image_tag(self) -> str:
        """The candidate's image tag: ``version`` unless set explicitly."""
        return self.image_tag if self.image_tag is not None else self.version

    @classmethod
    def from_stack_value(cls, raw: str) -> CanaryConfig:
        """The canary from its stack config value (JSON, as ``to_stack_value`` writes it,
        or as ``pulumi config set --path canary.version 1.1.0`` does)."""
        try:
            decoded = json.loads(raw)
        except (TypeError, ValueError) as e:
            raise ValueError(f"canary must be a JSON object, not {raw!r}: {e}") from e
        if not isinstance(decoded, dict):
            raise ValueError(f"canary must be a JSON object like {{\"version\": \"1.1.0\"}}, "
                             f"not {raw!r}")
        unknown = sorted(set(decoded) - set(CANARY_KEYS))
        if unknown:
            raise ValueError(
                f"unknown canary key(s) {', '.join(unknown)}: allowed are "
                f"{', '.join(CANARY_KEYS)}"
            )
        if "version" not in decoded:
            raise ValueError("canary.version is required: the candidate's chart version, "
                             "like 1.1.0")

        def number(key: str) -> Any:
            value = decoded.get(key)
            # `pulumi config set --path canary.replicas 2` stores the string "2"
            if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
                return int(value)
            return value

        fields: dict[str, Any] = {
            "version": decoded["version"],
            "image_tag": decoded.get("imageTag"),
            "chart_path": decoded.get("chartPath"),
            "baseline_host_port": number("baselineHostPort"),
            "canary_host_port": number("canaryHostPort"),
        }
        for key, name in (("replicas", "replicas"), ("baselineNodePort", "baseline_node_port"),
                          ("canaryNodePort", "canary_node_port")):
            if key in decoded:
                fields[name] = number(key)
        return cls(**fields)

    def to_stack_value(self) -> str:
        """The JSON object ``from_stack_value`` reads back as this canary; unset
        (None) fields left out."""
        pairs: dict[str, str | int | None] = {
            "version": self.version,
            "imageTag": self.image_tag,
            "chartPath": self.chart_path,
            "replicas": self.replicas,
            "baselineNodePort": self.baseline_node_port,
            "canaryNodePort": self.canary_node_port,
            "baselineHostPort": self.baseline_host_port,
            "canaryHostPort": self.canary_host_port,
        }
        return json.dumps({key: value for key, value in pairs.items() if value is not None})


@dataclass(frozen=True)
class Release:
    """One Helm release of the chart that ``deploy`` makes (``ModelConfig.releases``)."""

    track: str
    """``stable``, ``baseline`` or ``canary``: the chart's ``track`` value."""
    name: str
    """The Helm release name (and the Pulumi Chart's name)."""
    chart_version: str
    chart_path: str | None
    chart_repo: str | None
    values: dict[str, Any]
    """The chart values, complete: image, replicas, track and service mapped on."""
    fullname: str
    """The chart's fullname for this release: its Deployment's and Service's name."""
    host_port: int | None
    """Port on 127.0.0.1 that reaches this release's Service, if any."""

    @property
    def image_tag(self) -> str:
        return str(self.values["image"]["tag"])


@dataclass(frozen=True)
class ModelConfig:
    """What to deploy and where; one field per stack config key (camelCase there).

    Constructing it validates it: a bad value raises ``ValueError`` naming the
    config key, the value and what is allowed.
    """

    chart_version: str
    """``chartVersion`` (required): the chart's SemVer version, e.g. ``1.2.0`` or
    ``1.1.0-flaky``; picks the chart from ``chart_repo``, and is the image tag
    unless ``image_tag`` says otherwise."""

    chart_path: str | None = None
    """``chartPath``: absolute path of a local chart folder or packaged ``.tgz``.
    Exactly one of ``chart_path`` and ``chart_repo``."""

    chart_repo: str | None = None
    """``chartRepo``: URL of a Helm chart repository (``http://127.0.0.1:PORT``)
    serving chart ``ml-model`` at ``chart_version``. Exactly one of
    ``chart_path`` and ``chart_repo``."""

    image_repository: str | None = None
    """``imageRepository``: the model server image without tag; unset means
    ``values.image.repository`` or else ``rollout-harness/model-server``."""

    image_tag: str | None = None
    """``imageTag``: unset means ``values.image.tag`` or else ``chart_version``
    (the chart's appVersion). A different tag is allowed but must be explicit."""

    replica_count: int | None = None
    """``replicaCount``: pods, at least 1; unset means ``values.replicaCount`` or else 3."""

    namespace: str = DEFAULT_NAMESPACE
    """``namespace``: created by the program; every chart object goes into it."""

    values: Mapping[str, Any] = field(default_factory=dict)
    """``values``: extra chart values (``gracefulDrain.enabled``, ``strategy.type``,
    ``service.type``, ``service.nodePort``, ...), passed through as given."""

    release_name: str = DEFAULT_RELEASE_NAME
    """``releaseName``: the Helm release name; with the chart name it makes the
    objects' names (the chart's fullname)."""

    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    """``timeoutSeconds``: seconds Pulumi awaits the Deployment's rollout (and
    any other object) before failing the update (the ``pulumi.com/timeoutSeconds``
    annotation on every object)."""

    host_port: int | None = None
    """``hostPort``: port on 127.0.0.1 that reaches the Service's nodePort
    (kind's extraPortMappings); makes ``serviceUrl`` ``http://127.0.0.1:PORT``."""

    node_address: str | None = None
    """``nodeAddress``: a node's IP or host name; with a NodePort Service makes
    ``serviceUrl`` ``http://ADDRESS:NODEPORT``."""

    canary: CanaryConfig | None = None
    """``canary``: a baseline and a canary release beside the stable one (see the module
    docstring); unset means none, and removes those of an earlier run."""
    adopt_namespace: bool = False
    """``adoptNamespace``: the namespace exists and belongs to someone else (a team's
    namespace on a shared cluster): the program reads it instead of creating it, so
    destroying the stack leaves it in place."""

    chart_name: str = CHART_NAME
    """``chartName``: the chart's name in ``chart_repo`` (a team's own chart); unset
    means ``ml-model``, the bundled chart."""

    def __post_init__(self) -> None:
        check_chart_version(self.chart_version)
        _check_chart_source(self.chart_path, self.chart_repo)
        if not isinstance(self.values, Mapping):
            raise ValueError(f"values must be an object of chart values, not {self.values!r}")
        object.__setattr__(self, "values", copy.deepcopy(dict(self.values)))
        if self.image_repository is not None:
            _check_image_repository("imageRepository", self.image_repository)
        if self.image_tag is not None:
            _check_image_tag("imageTag", self.image_tag)
        if self.replica_count is not None:
            _check_int("replicaCount", self.replica_count, 1)
        _check_values(self)
        if self.image_tag is None and "image.tag" not in _explicit_values(self.values):
            _check_image_tag("chartVersion", self.chart_version,
                             hint="a build suffix (+...) cannot be an image tag: set imageTag")
        if not isinstance(self.namespace, str) or not _DNS_LABEL.match(self.namespace):
            raise ValueError(
                f"namespace must be a DNS label (lower-case letters, digits and '-', "
                f"at most 63), not {self.namespace!r}"
            )
        if (not isinstance(self.release_name, str) or not _RELEASE_NAME.match(self.release_name)
                or len(self.release_name) > _RELEASE_NAME_MAX):
            raise ValueError(
                f"releaseName must be a Helm release name (lower-case letters, digits, '-' "
                f"and '.', at most {_RELEASE_NAME_MAX}), not {self.release_name!r}"
            )
        _check_int("timeoutSeconds", self.timeout_seconds, 1)
        if not isinstance(self.chart_name, str) or not _DNS_LABEL.match(self.chart_name):
            raise ValueError(f"chartName must be a chart name (lower-case letters, digits "
                             f"and '-'), not {self.chart_name!r}")
        if self.host_port is not None:
            _check_int("hostPort", self.host_port, 1, 65535)
        if self.node_address is not None:
            _check_node_address(self.node_address)
        if self.canary is not None:
            _check_canary(self)

    @classmethod
    def from_pulumi_config(cls, config: pulumi.Config) -> ModelConfig:
        """Reads and validates the stack config (see ``from_stack_config``); unknown
        keys in the project's namespace are an error (a misspelt key would
        otherwise be ignored), a missing ``chartVersion`` is Pulumi's
        ``ConfigMissingError``."""
        _check_keys(_project_keys(config.name), f" in {config.name!r}")
        stack = {key: value for key in CONFIG_KEYS if (value := config.get(key)) is not None}
        stack["chartVersion"] = config.require("chartVersion")
        return cls.from_stack_config(stack)

    @classmethod
    def from_stack_config(cls, config: Mapping[str, str]) -> ModelConfig:
        """The config from stack config values (keys of ``CONFIG_KEYS``, without the
        project's ``ml-model:`` prefix), as ``to_stack_config`` writes them or as
        ``pulumi config set`` does: ``values`` is a JSON object, integers are
        decimal strings, an absent key means the field's default.

        Raises ``ValueError`` naming the key and the value for unknown keys, a
        missing ``chartVersion``, a bad integer, ``values`` that is not a JSON
        object, and everything the constructor rejects.
        """
        _check_keys(config)
        if "chartVersion" not in config:
            raise ValueError(
                "chartVersion is required: the chart's SemVer version, like 1.2.0 or 1.1.0-flaky"
            )
        return cls(
            chart_version=config["chartVersion"],
            chart_path=config.get("chartPath"),
            chart_repo=config.get("chartRepo"),
            image_repository=config.get("imageRepository"),
            image_tag=config.get("imageTag"),
            replica_count=_stack_int(config, "replicaCount"),
            namespace=config.get("namespace", DEFAULT_NAMESPACE),
            values=_stack_values(config),
            release_name=config.get("releaseName", DEFAULT_RELEASE_NAME),
            timeout_seconds=_stack_int(config, "timeoutSeconds", DEFAULT_TIMEOUT_SECONDS),
            host_port=_stack_int(config, "hostPort"),
            node_address=config.get("nodeAddress"),
            canary=CanaryConfig.from_stack_value(config["canary"]) if "canary" in config
            else None,
            adopt_namespace=_stack_bool(config, "adoptNamespace"),
            chart_name=config.get("chartName", CHART_NAME),
        )

    def to_stack_config(self) -> dict[str, str]:
        """The stack config values that ``from_stack_config`` reads back as this
        config: keys of ``CONFIG_KEYS`` (in that order), ``values`` as JSON,
        integers as decimal strings, unset (None) fields left out.

        Raises ``ValueError`` if ``values`` cannot be written as JSON.
        """
        try:
            values = json.dumps(self.values)
        except (TypeError, ValueError) as e:
            raise ValueError(f"values must be JSON-serialisable chart values: {e}") from e
        pairs: dict[str, str | int | None] = {
            "chartVersion": self.chart_version,
            "imageRepository": self.image_repository,
            "imageTag": self.image_tag,
            "replicaCount": self.replica_count,
            "namespace": self.namespace,
            "values": values,
            "chartPath": self.chart_path,
            "chartRepo": self.chart_repo,
            "releaseName": self.release_name,
            "timeoutSeconds": self.timeout_seconds,
            "hostPort": self.host_port,
            "nodeAddress": self.node_address,
            "canary": self.canary.to_stack_value() if self.canary is not None else None,
            "adoptNamespace": "true" if self.adopt_namespace else None,
            "chartName": self.chart_name if self.chart_name != CHART_NAME else None,
        }
        return {key: str(value) for key, value in pairs.items() if value is not None}

    @property
    def effective_image_repository(self) -> str:
        """The image repository the chart gets (see the module docstring for precedence)."""
        return str(self._resolved("image.repository", self.image_repository,
                                  DEFAULT_IMAGE_REPOSITORY))

    @property
    def effective_image_tag(self) -> str:
        """The image tag the chart gets; ``chart_version`` unless set explicitly."""
        return str(self._resolved("image.tag", self.image_tag, self.chart_version))

    @property
    def effective_replica_count(self) -> int:
        """The replica count the chart gets."""
        return int(self._resolved("replicaCount", self.replica_count, DEFAULT_REPLICA_COUNT))

    @property
    def fullname(self) -> str:
        """The chart's fullname for this release: the name of its Deployment and
        Service (Helm's usual ``<chart>.fullname`` helper)."""
        return _fullname(self.release_name, self.values)

    def chart_values(self) -> dict[str, Any]:
        """``values`` with image.repository, image.tag and replicaCount mapped on top;
        with a canary, ``serveAllTracks`` too (the stable release's values)."""
        merged = copy.deepcopy(dict(self.values))
        image = dict(merged.get("image") or {})
        image["repository"] = self.effective_image_repository
        image["tag"] = self.effective_image_tag
        merged["image"] = image
        merged["replicaCount"] = self.effective_replica_count
        if self.canary is not None:
            merged["serveAllTracks"] = True
        return merged

    def releases(self) -> list[Release]:
        """The chart's releases to deploy: stable, then with a canary the baseline and
        the canary (``TRACKS`` order)."""
        stable = Release(STABLE, self.release_name, self.chart_version, self.chart_path,
                         self.chart_repo, self.chart_values(), self.fullname, self.host_port)
        if self.canary is None:
            return [stable]
        canary = self.canary
        baseline = self._track(BASELINE, self.chart_version, self.chart_path, self.chart_repo,
                               self.effective_image_tag, canary.baseline_node_port,
                               canary.baseline_host_port)
        path, repo = self._candidate_source(canary)
        candidate = self._track(CANARY, canary.version, path, repo, canary.effective_image_tag,
                                canary.canary_node_port, canary.canary_host_port)
        return [stable, baseline, candidate]

    def aborted(self) -> ModelConfig:
        """The config that ends a canary without change: stable as it is, the baseline
        and canary releases removed."""
        return dataclasses.replace(self, canary=None)

    def promoted(self) -> ModelConfig:
        """The config that ends a canary by promoting it: stable at the candidate's
        version (its chart source and image tag), the baseline and canary removed.

        Raises ``ValueError`` without a canary.
        """
        if self.canary is None:
            raise ValueError("nothing to promote: this config has no canary")
        canary = self.canary
        values = copy.deepcopy(dict(self.values))
        image = values.get("image")
        if isinstance(image, dict):
            image.pop("tag", None)  # stable's tag; the candidate's is image_tag
            if not image:
                del values["image"]
        path, repo = self._candidate_source(canary)
        return dataclasses.replace(
            self, chart_version=canary.version, image_tag=canary.image_tag, chart_path=path,
            chart_repo=repo, values=values, canary=None)

    def _candidate_source(self, canary: CanaryConfig) -> tuple[str | None, str | None]:
        """(chart path, chart repo) of the candidate: its own chart path, else stable's source."""
        if canary.chart_path is not None:
            return canary.chart_path, None
        return self.chart_path, self.chart_repo

    def _track(self, track: str, chart_version: str, chart_path: str | None,
               chart_repo: str | None, image_tag: str, node_port: int,
               host_port: int | None) -> Release:
        """A baseline or canary release: stable's values, with its track, size, image
        tag and Service port; named ``<releaseName>-<track>``."""
        assert self.canary is not None
        values = self.chart_values()
        del values["serveAllTracks"]
        values["track"] = track
        values["replicaCount"] = self.canary.replicas
        values["image"]["tag"] = image_tag
        values["service"] = {**dict(values.get("service") or {}), "nodePort": node_port}
        if values.get("fullnameOverride"):
            values["fullnameOverride"] = f"{self.fullname}-{track}"
        name = f"{self.release_name}-{track}"
        return Release(track, name, chart_version, chart_path, chart_repo, values,
                       _fullname(name, values), host_port)

    def _resolved(self, dotted: str, dedicated: Any, default: Any) -> Any:
        if dedicated is not None:
            return dedicated
        explicit = _explicit_values(self.values)
        return explicit.get(dotted, default)


POD_SECURITY_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/warn-version": "latest",
}
"""The namespace this program makes admits only pods that meet Pod Security "restricted":
the chart is written to it, and a regression (a dropped securityContext, a root user)
must stop the rollout at admission rather than deploy silently. An adopted namespace
keeps the labels its owners gave it."""


def deploy(config: ModelConfig) -> None:
    """Creates the namespace and the chart's releases, and exports the rollout's state.

    Exports: ``namespace``, ``chartVersion``, ``imageTag``, ``deployment``
    (``readyReplicas``, ``updatedReplicas``, ``replicas``, ``revision``,
    ``image``) and ``serviceUrl`` of the stable release; with a canary also
    ``baseline`` and ``canary``, each with its ``release``, ``chartVersion``,
    ``imageTag``, ``deployment`` and ``serviceUrl`` (its own Service's).
    """
    if config.adopt_namespace:  # read, not managed: a destroy leaves it
        namespace = k8s.core.v1.Namespace.get("namespace", config.namespace)
    else:
        namespace = k8s.core.v1.Namespace(
            "namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=config.namespace,
                                                labels=POD_SECURITY_LABELS),
        )
    pulumi.export("namespace", namespace.metadata.apply(lambda m: _field(m, "name")))
    for release in config.releases():
        status, url = _deploy_release(config, release, namespace)
        if release.track == STABLE:
            pulumi.export("chartVersion", release.chart_version)
            pulumi.export("imageTag", release.image_tag)
            pulumi.export("deployment", status)
            pulumi.export("serviceUrl", url)
        else:
            pulumi.export(release.track, {
                "release": release.name, "chartVersion": release.chart_version,
                "imageTag": release.image_tag, "deployment": status, "serviceUrl": url,
            })


def _deploy_release(
    config: ModelConfig, release: Release, namespace: k8s.core.v1.Namespace
) -> tuple[pulumi.Output[dict[str, Any]], pulumi.Output[str]]:
    """One release's Chart; its Deployment's status and its Service's URL (exports)."""
    _warn_if_local_chart_differs(release)
    chart = k8s.helm.v3.Chart(
        release.name,
        _chart_opts(config, release, _transformations(config, release, namespace)),
        pulumi.ResourceOptions(depends_on=[namespace]),
    )
    wanted = f"{config.namespace}/{release.fullname}"
    deployment = chart.resources.apply(
        lambda resources: _pick(resources, "apps/v1/Deployment", wanted)
    )
    service = chart.resources.apply(lambda resources: _pick(resources, "v1/Service", wanted))
    return (deployment.apply(_deployment_status),
            service.apply(lambda s: _service_url(s, config, release.host_port)))


def _chart_opts(
    config: ModelConfig, release: Release, transformations: list[Any]
) -> k8s.helm.v3.ChartOpts | k8s.helm.v3.LocalChartOpts:
    if release.chart_path is not None:
        return k8s.helm.v3.LocalChartOpts(
            path=release.chart_path,
            namespace=config.namespace,
            values=release.values,
            transformations=transformations,
        )
    return k8s.helm.v3.ChartOpts(
        chart=config.chart_name,
        version=release.chart_version,
        fetch_opts=k8s.helm.v3.FetchOpts(repo=release.chart_repo),
        namespace=config.namespace,
        values=release.values,
        transformations=transformations,
    )


def _transformations(config: ModelConfig, release: Release,
                     namespace: pulumi.Resource) -> list[Any]:
    """Bound every object's await; leave the Services' out; label the pods with
    their version; make every object wait for the namespace (depends_on on the
    Chart component is not passed to its children).

    The Deployment's await is what proves a rollout: every new pod ready, every
    old one gone from the ReplicaSet. A Service's await adds nothing to it and
    costs time: it waits for its endpoints to stay unchanged for 10 s after
    their last change (the provider's fixed "settle"), so it ended every `up`
    that created or relabelled the Service some seconds after the Deployment;
    and with a version that never gets ready it held `pulumi up` until the
    timeout, long after the Deployment's own await had failed on its progress
    deadline, which delayed the rollback. Whoever needs the Service answering
    waits for that itself (the gate and the canary do, before any traffic).
    The bound still goes on every object.

    The version label (``VERSION_LABEL``) is how a watcher tells old pods from new
    ones whatever the chart: a team's chart knows nothing of this harness, so its
    workloads' pod templates get it here, with the value the bundled chart gives it
    (the image tag, ``+`` read as ``_``); a template that has it keeps its own.
    """
    version = release.image_tag.replace("+", "_")[:63].rstrip("-.")

    def bound_await(obj: dict[str, Any], opts: pulumi.ResourceOptions) -> None:
        metadata = obj.get("metadata") or {}
        obj["metadata"] = metadata
        annotations = metadata.get("annotations") or {}
        annotations[TIMEOUT_ANNOTATION] = str(config.timeout_seconds)
        if obj.get("kind") == "Service":
            annotations[SKIP_AWAIT_ANNOTATION] = "true"
        metadata["annotations"] = annotations

    def version_label(obj: dict[str, Any], opts: pulumi.ResourceOptions) -> None:
        if obj.get("kind") not in WORKLOADS:
            return
        template = obj.setdefault("spec", {}).setdefault("template", {})
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        labels.setdefault(VERSION_LABEL, version)

    def after_namespace(obj: dict[str, Any], opts: pulumi.ResourceOptions) -> None:
        opts.depends_on = [namespace]

    return [bound_await, version_label, after_namespace]


WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
"""Kinds whose pod template gets ``VERSION_LABEL``."""


def _pick(resources: Mapping[str, Any], gvk: str, wanted: str) -> Any:
    """The chart's object of this kind: the one named ``wanted`` (NAMESPACE/FULLNAME),
    else the only one. Keys look like ``apps/v1/Deployment:NAMESPACE/NAME``."""
    found = {key.split(":", 1)[1]: value for key, value in resources.items()
             if key.split(":", 1)[0] == gvk}
    if wanted in found:
        return found[wanted]
    if len(found) == 1:
        return next(iter(found.values()))
    raise ValueError(
        f"the chart has {len(found)} {gvk} objects ({', '.join(sorted(found)) or 'none'}) "
        f"and none is {wanted}: cannot tell which one serves the model"
    )


def _deployment_status(deployment: k8s.apps.v1.Deployment) -> pulumi.Output[dict[str, Any]]:
    def status(args: list[Any]) -> dict[str, Any]:
        status, metadata, spec = args
        annotations = _field(metadata, "annotations") or {}
        containers = _field(_field(_field(spec, "template"), "spec"), "containers") or []
        return {
            "readyReplicas": _number(_field(status, "ready_replicas")),
            "updatedReplicas": _number(_field(status, "updated_replicas")),
            "replicas": _number(_field(status, "replicas")),
            "revision": annotations.get(REVISION_ANNOTATION),
            "image": _field(containers[0], "image") if containers else None,
        }

    return pulumi.Output.all(deployment.status, deployment.metadata, deployment.spec).apply(status)


def _service_url(service: k8s.core.v1.Service, config: ModelConfig,
                 host_port: int | None) -> pulumi.Output[str]:
    def url(args: list[Any]) -> str:
        metadata, spec, status = args
        ports = list(_field(spec, "ports") or [])
        port = next((p for p in ports if _field(p, "name") == "http"), ports[0] if ports else None)
        number = _number(_field(port, "port")) or 80
        for entry in _field(_field(status, "load_balancer"), "ingress") or []:
            host = _field(entry, "ip") or _field(entry, "hostname")
            if host:
                return f"http://{_url_host(host)}:{number}"
        if host_port is not None:
            return f"http://127.0.0.1:{host_port}"
        node_port = _number(_field(port, "node_port"))
        if config.node_address and _field(spec, "type") == "NodePort" and node_port:
            return f"http://{_url_host(config.node_address)}:{node_port}"
        return f"http://{_field(metadata, 'name')}.{config.namespace}.svc.cluster.local:{number}"

    return pulumi.Output.all(service.metadata, service.spec, service.status).apply(url)


def _field(obj: Any, name: str) -> Any:
    """A field of a resource output, whether the SDK gave a typed object or a dict
    (snake_case or camelCase keys); None when absent."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)
        return obj.get(name, obj.get(camel))
    return getattr(obj, name, None)


def _number(value: Any) -> int:
    """Kubernetes counts and ports arrive as floats through Pulumi's wire format."""
    return int(value) if value is not None else 0


def _warn_if_local_chart_differs(release: Release) -> None:
    """A local chart whose own version is not ``chart_version`` is deployed anyway
    (the chart folder serves several test versions), but the exported chartVersion
    then names the image, not the chart: say so."""
    if release.chart_path is None:
        return
    chart_yaml = Path(release.chart_path) / "Chart.yaml"
    if not chart_yaml.is_file():
        return
    match = re.search(r"^version:\s*[\"']?([^\"'\s#]+)", chart_yaml.read_text(), re.MULTILINE)
    if match and match.group(1) != release.chart_version:
        pulumi.log.warn(
            f"{release.name}: chartPath {release.chart_path} holds chart version "
            f"{match.group(1)}, deploying it as chartVersion {release.chart_version}"
        )


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


# --- validation -------------------------------------------------------------------------


def check_chart_version(value: Any, key: str = "chartVersion") -> None:
    if not isinstance(value, str) or not _SEMVER.match(value):
        raise ValueError(
            f"{key} must be a SemVer version like 1.2.0 or 1.1.0-flaky, not {value!r}"
        )


def _check_chart_source(path: Any, repo: Any) -> None:
    if (path is None) == (repo is None):
        given = "both" if path is not None else "neither"
        raise ValueError(
            f"exactly one of chartPath (a local chart folder or .tgz) and chartRepo "
            f"(a chart repository URL) is required; got {given} "
            f"(chartPath={path!r}, chartRepo={repo!r})"
        )
    if path is not None:
        _check_chart_path("chartPath", path)
    if repo is not None:
        parsed = urllib.parse.urlparse(str(repo))
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(
                f"chartRepo must be an http(s) URL of a chart repository, "
                f"like http://127.0.0.1:8879, not {repo!r}"
            )


def _check_chart_path(key: str, path: Any) -> None:
    chart = Path(str(path))
    if not isinstance(path, str) or not chart.is_absolute():
        raise ValueError(f"{key} must be an absolute path, not {path!r}")
    is_folder = (chart / "Chart.yaml").is_file()
    is_archive = chart.is_file() and chart.name.endswith((".tgz", ".tar.gz"))
    if not (is_folder or is_archive):
        raise ValueError(
            f"{key} must be a chart folder (with Chart.yaml) or a packaged .tgz, not {path!r}"
        )


def _check_canary(config: ModelConfig) -> None:
    """What a canary must agree on with the stable release: names, ports."""
    canary = config.canary
    if not isinstance(canary, CanaryConfig):
        raise ValueError(f"canary must be a CanaryConfig, not {canary!r}")
    longest = f"{config.release_name}-{BASELINE}"
    if len(longest) > _RELEASE_NAME_MAX:
        raise ValueError(
            f"releaseName {config.release_name!r} is too long for a canary: its release "
            f"{longest!r} would pass Helm's {_RELEASE_NAME_MAX} characters (at most "
            f"{_RELEASE_NAME_MAX - len(BASELINE) - 1} for releaseName)"
        )
    for release in config.releases()[1:]:
        # untruncated: the chart would cut a longer one to 63, maybe to another's name
        name = _fullname(release.name, release.values, truncate=False)
        if len(name) > 63:
            raise ValueError(
                f"the {release.track} release's object names {name!r} must be at most 63 "
                f"characters: shorten releaseName or values.fullnameOverride"
            )
    service = config.values.get("service")
    stable_port = service.get("nodePort", DEFAULT_NODE_PORT) if isinstance(service, Mapping) \
        else DEFAULT_NODE_PORT
    for key, port in (("canary.baselineNodePort", canary.baseline_node_port),
                      ("canary.canaryNodePort", canary.canary_node_port)):
        if port == stable_port:
            raise ValueError(
                f"{key}={port} is the model Service's nodePort (values.service.nodePort, "
                f"default {DEFAULT_NODE_PORT}): give the track a port of its own"
            )
    for key, host_port in (("canary.baselineHostPort", canary.baseline_host_port),
                           ("canary.canaryHostPort", canary.canary_host_port)):
        if host_port is not None and host_port == config.host_port:
            raise ValueError(f"{key}={host_port} is hostPort, the model Service's: give the "
                             f"track a port of its own")


def _fullname(release_name: str, values: Mapping[str, Any], truncate: bool = True) -> str:
    """The chart's ``ml-model.fullname`` helper for a release and its values."""
    override = values.get("fullnameOverride")
    if override:
        full = str(override)
    else:
        name = str(values.get("nameOverride") or CHART_NAME)
        full = release_name if name in release_name else f"{release_name}-{name}"
    return full[:63].rstrip("-") if truncate else full


def check_chart_path(value: Any, key: str = "chartPath") -> None:
    """A chart folder or packaged .tgz, by absolute path (the harness checks --chart with
    it before anything starts)."""
    _check_chart_path(key, value)


def check_image_repository(value: Any, key: str = "imageRepository") -> None:
    """An image name without its tag (the harness checks its settings with it)."""
    _check_image_repository(key, value)


def _check_image_repository(key: str, value: Any) -> None:
    if not isinstance(value, str) or not _IMAGE_REPOSITORY.match(value):
        raise ValueError(
            f"{key} must be an image name without tag, like rollout-harness/model-server "
            f"or 127.0.0.1:5000/model-server, not {value!r}"
        )


def _check_image_tag(key: str, value: Any, hint: str = "") -> None:
    if not isinstance(value, str) or not _IMAGE_TAG.match(value):
        raise ValueError(
            f"{key} {value!r} is not a valid image tag (letters, digits, '_', '.', '-', "
            f"at most 128, not starting with '.' or '-')" + (f": {hint}" if hint else "")
        )


def _check_int(key: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (
            high is not None and value > high):
        allowed = f"an integer from {low} to {high}" if high is not None else \
            f"an integer >= {low}"
        raise ValueError(f"{key} must be {allowed}, not {value!r}")


def _check_node_address(value: Any) -> None:
    if isinstance(value, str):
        try:
            ipaddress.ip_address(value)
            return
        except ValueError:
            if _HOSTNAME.match(value):
                return
    raise ValueError(f"nodeAddress must be an IP address or a host name, not {value!r}")


def _check_values(config: ModelConfig) -> None:
    for key in PROGRAM_VALUES:
        if key in config.values:
            raise ValueError(
                f"values.{key} is set by the program from canary (a baseline and a canary "
                f"beside the stable release), not by values: remove it"
            )
    explicit = _explicit_values(config.values)
    checks: list[tuple[str, str, Any]] = [
        ("image.repository", "imageRepository", config.image_repository),
        ("image.tag", "imageTag", config.image_tag),
        ("replicaCount", "replicaCount", config.replica_count),
    ]
    for dotted, key, dedicated in checks:
        if dotted not in explicit:
            continue
        value = explicit[dotted]
        if dotted == "image.repository":
            _check_image_repository(f"values.{dotted}", value)
        elif dotted == "image.tag":
            _check_image_tag(f"values.{dotted}", value)
        else:
            _check_int(f"values.{dotted}", value, 1)
        if dedicated is not None and dedicated != value:
            raise ValueError(
                f"{key}={dedicated!r} and values.{dotted}={value!r} disagree: set one of them"
            )


def _explicit_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The program-mapped keys that ``values`` sets (not None), by dotted name."""
    found: dict[str, Any] = {}
    image = values.get("image")
    if isinstance(image, Mapping):
        for name in ("repository", "tag"):
            if image.get(name) is not None:
                found[f"image.{name}"] = image[name]
    elif image is not None:
        raise ValueError(f"values.image must be an object, not {image!r}")
    if values.get("replicaCount") is not None:
        found["replicaCount"] = values["replicaCount"]
    return found


def _check_keys(keys: Iterable[str], where: str = "") -> None:
    unknown = sorted(set(keys) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(
            f"unknown config key(s) {', '.join(unknown)}{where}: "
            f"allowed are {', '.join(CONFIG_KEYS)}"
        )


@overload
def _stack_int(config: Mapping[str, str], key: str) -> int | None: ...
@overload
def _stack_int(config: Mapping[str, str], key: str, default: int) -> int: ...
def _stack_int(config: Mapping[str, str], key: str, default: int | None = None) -> int | None:
    raw = config.get(key)
    if raw is None:
        return default
    if not isinstance(raw, str) or not re.fullmatch(r"\s*-?\d+\s*", raw):
        raise ValueError(f"{key} must be an integer, not {raw!r}")
    return int(raw)


def _stack_bool(config: Mapping[str, str], key: str) -> bool:
    raw = config.get(key)
    if raw is None:
        return False
    if raw not in ("true", "false"):
        raise ValueError(f"{key} must be true or false, not {raw!r}")
    return raw == "true"


def _stack_values(config: Mapping[str, str]) -> Any:
    """The decoded ``values`` (JSON ``null`` or absent: none); the constructor
    rejects JSON that is not an object, naming it."""
    raw = config.get("values")
    if raw is None:
        return {}
    try:
        values = json.loads(raw)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"values must be a JSON object of chart values, not {raw!r}: {e}"
        ) from e
    return {} if values is None else values


def _project_keys(project: str) -> list[str]:
    """Config keys set in the project's namespace (``ml-model:KEY`` → ``KEY``)."""
    keys = set(pulumi.runtime.config.CONFIG.get()) | set(pulumi.runtime.config.get_config_env())
    prefix = f"{project}:"
    return [key[len(prefix):] for key in keys if key.startswith(prefix)]
