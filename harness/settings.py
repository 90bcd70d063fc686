"""Settings: every option declared once — its default, unit, flag, environment variable and help.

Small frozen groups in the order data flows (toolchain → cluster → deploy →
traffic → gate → verdict; then calibrate and canary). Each field carries an
`Option` in its metadata; the CLI builds its flags from it (`add_arguments`)
and `resolve` reads a value from the flag, else the `HARNESS_*` variable, else
the default, through the same parser, so a flag and its variable cannot
disagree about what is valid. Nothing here touches the disk or the network: a
Settings value is built and checked before any work starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from harness import errors, protocols
from harness.resources import SERVER_IMAGE

T = TypeVar("T")

Source = Literal["auto", "release", "build"]
SOURCES: tuple[Source, ...] = ("auto", "release", "build")
ChartSource = Literal["folder", "repo"]
CHART_SOURCES: tuple[ChartSource, ...] = ("folder", "repo")

Parse = Callable[[Any, str], Any]
"""(raw value, the flag or variable it came from) → value; raises UsageError naming it."""

CLUSTER_COMMANDS = ("cluster", "up", "down", "verify", "rehearse", "calibrate", "canary")
DEPLOY_COMMANDS = ("up", "verify", "rehearse", "calibrate", "canary")
GATE_COMMANDS = ("verify", "rehearse", "calibrate", "canary")
"""The commands that run live traffic and judge it."""
ROLLOUT_COMMANDS = ("verify", "rehearse")
"""The commands that take the versions to roll between (calibrate's controls name theirs,
canary has --stable and --candidate)."""
PROGRAM_COMMANDS = ("up", "down", "verify", "rehearse")
"""Commands that can run a team's own Pulumi program (the canary and the controls need
the bundled one: they set chart values per release)."""
TEAM_COMMANDS = ("up", "verify", "rehearse")
"""Commands that can deploy a team's chart and image with the bundled program (the canary
and the controls need the bundled chart's tracks and fault builds)."""
CANARY_COMMANDS = ("canary",)


@dataclass(frozen=True)
class Option:
    """How a person sets one field: flag, variable, help; which commands take the flag."""

    help: str
    flag: str | None = None
    aliases: tuple[str, ...] = ()
    env: str | None = None
    commands: tuple[str, ...] = ()
    parse: Parse | None = None
    """None: the value is used as given (a string)."""
    unit: str = ""
    action: Literal["store", "store_true", "append"] = "store"
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    shown_default: str | None = None
    """The default as help shows it, where the value itself reads badly."""
    layered: bool = False
    """A mapping whose flags go on top of the run file's, key by key (chart values: the
    file describes the release, a flag changes one value of it)."""


def option(default: Any = dataclasses.MISSING, *, help: str,
           factory: Callable[[], Any] | None = None, **how: Any) -> Any:
    """A dataclass field with its Option (typed Any so a field's annotation stays exact)."""
    meta = {"option": Option(help=help, **how)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# -- parsers: (raw, name) -> value ------------------------------------------------


def text(raw: Any, name: str) -> str:
    return str(raw)


def path(raw: Any, name: str) -> Path:
    return Path(str(raw)).expanduser()


def choice(allowed: Sequence[str]) -> Parse:
    def parse(raw: Any, name: str) -> str:
        if raw not in allowed:
            raise errors.UsageError(f"{name} {raw!r} is not one of {', '.join(allowed)}")
        return str(raw)
    return parse


def number(least: float, kind: Callable[[str], float] = float) -> Parse:
    def parse(raw: Any, name: str) -> float:
        try:
            value = kind(str(raw))
        except ValueError:
            raise errors.UsageError(f"{name} must be a number, not {raw!r}") from None
        if value < least:
            raise errors.UsageError(f"{name} must be at least {least:g}, not {value:g}")
        return value
    return parse


def integer(least: int) -> Parse:
    return number(least, int)


def within(low: float, high: float, *, above: bool = False, below: bool = False) -> Parse:
    """A number from `low` to `high`; `above`/`below`: that end itself excluded."""
    def parse(raw: Any, name: str) -> float:
        value = float(number(-math.inf)(raw, name))
        if value < low or value > high or (above and value == low) or (below and value == high):
            what = (f"{'above' if above else 'from'} {low:g} "
                    f"{'and below' if below else 'to'} {high:g}")
            raise errors.UsageError(f"{name} must be {what}, not {value:g}")
        return value
    return parse


def processes(raw: Any, name: str) -> int:
    """A count of processes, or -1 for one per CPU core (Locust's --processes)."""
    value = integer(-1)(raw, name)
    if value == 0:
        raise errors.UsageError(f"{name} must be 1 or more, or -1 for one per CPU core, not 0")
    return int(value)


def port(raw: Any, name: str) -> int:
    try:
        value = int(str(raw))
    except ValueError:
        raise errors.UsageError(f"{name} must be a port number, not {raw!r}") from None
    if not 1 <= value <= 65535:
        raise errors.UsageError(f"{name} must be between 1 and 65535, not {value}")
    return value


def host_port(raw: Any, name: str) -> int:
    """A port, or 0 for "any free one"."""
    return 0 if str(raw).strip() == "0" else port(raw, name)


def node_port(raw: Any, name: str) -> int:
    value = port(raw, name)
    if not 30000 <= value <= 32767:
        raise errors.UsageError(
            f"{name} must be in Kubernetes' NodePort range 30000-32767, not {value}")
    return value


def cluster_name(raw: Any, name: str) -> str:
    value = str(raw)
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,48}[a-z0-9])?", value):
        raise errors.UsageError(
            f"{name}: cluster name {value!r} must be lower-case letters, digits and '-', "
            "1-50 long")
    return value


def boolean(raw: Any, name: str) -> bool:
    if isinstance(raw, bool):
        return raw
    lowered = str(raw).strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise errors.UsageError(f"{name} must be true or false, not {raw!r}")


def chart_values(raw: Any, name: str) -> dict[str, Any]:
    """`a.b=c` pairs into nested chart values; scalars read as YAML (true, 3, 0.5). A run
    file gives them as the mapping they are."""
    import yaml

    if isinstance(raw, Mapping):
        return dict(raw)
    values: dict[str, Any] = {}
    for pair in raw:
        key, sep, value = str(pair).partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise errors.UsageError(f"{name} takes KEY=VALUE with a dotted key, not {pair!r}")
        target = values
        *parents, leaf = key.split(".")
        for part in parents:
            child = target.setdefault(part, {})
            if not isinstance(child, dict):
                raise errors.UsageError(f"{name} {pair!r} conflicts with an earlier {name}")
            target = child
        target[leaf] = yaml.safe_load(value) if value else ""
    return values


def version_source(raw: Any, name: str) -> str:
    """``config:KEY`` or ``env:NAME``: where a team's program reads the version."""
    kind, _, key = str(raw).partition(":")
    if kind not in ("config", "env") or not re.fullmatch(r"[A-Za-z_][\w.:-]*", key):
        raise errors.UsageError(f"{name} takes config:KEY or env:NAME (e.g. "
                                f"config:chart_version), not {raw!r}")
    return str(raw)


def answer_version(raw: Any, name: str) -> str:
    """``header:NAME`` or ``body``: where an answer names the version that served it."""
    text = str(raw).strip()
    kind, _, header = text.partition(":")
    token = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"  # an HTTP header name
    if text == protocols.VERSION_FROM_BODY or (kind == "header" and re.fullmatch(token, header)):
        return text
    raise errors.UsageError(f"{name} takes header:NAME (e.g. header:X-Model-Version) or body "
                            f"(the answer's model_version), not {raw!r}")


def image_repository(raw: Any, name: str) -> str:
    """An image name without its tag, checked as the Pulumi program checks it."""
    from ml_model_program import check_image_repository

    try:
        check_image_repository(str(raw), name)
    except ValueError as e:
        raise errors.UsageError(str(e)) from None
    return str(raw)


def model_version(raw: Any, name: str) -> str:
    """A chart version = image tag, checked the way the Pulumi program checks it, before
    anything is built (a bad one would otherwise fail minutes later in an image build)."""
    from ml_model_program import check_chart_version

    try:
        check_chart_version(str(raw))
    except ValueError as e:
        raise errors.UsageError(f"{name}: {e}") from None
    return str(raw)


def default_cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "rollout-harness"


# -- the groups ----------------------------------------------------------------------


@dataclass(frozen=True)
class ToolchainSettings:
    cache_dir: Path = option(
        factory=default_cache_dir, env="HARNESS_CACHE_DIR", parse=path,
        shown_default="~/.cache/rollout-harness",
        help="where tools, images, logs, models and state live")
    source: Source = option(
        "auto", flag="--source", env="HARNESS_TOOLCHAIN_SOURCE", choices=SOURCES,
        parse=choice(SOURCES), commands=("toolchain", *CLUSTER_COMMANDS),
        help="where tools come from: auto (cached, then official release, then built from "
             "Go modules), release (downloads only), build (Go modules only)")
    debian_mirror: str = option(
        "", env="HARNESS_DEBIAN_MIRROR", shown_default="the host's apt source",
        help="Debian mirror for debootstrap")
    download_timeout: float = option(
        20.0, unit="s", help="time before an official download is given up as unreachable")


@dataclass(frozen=True)
class ClusterSettings:
    name: str = option(
        "rollout-harness", flag="--name", aliases=("--cluster",), env="HARNESS_CLUSTER_NAME",
        parse=cluster_name, commands=CLUSTER_COMMANDS, help="kind cluster name")
    node_port: int = option(
        30080, env="HARNESS_NODE_PORT", parse=node_port,
        help="the model Service's fixed nodePort, mapped to the host")
    host_port: int = option(
        0, env="HARNESS_HOST_PORT", parse=host_port, shown_default="0 (a free port)",
        help="port on 127.0.0.1 that reaches node_port; 0 picks a free one when the cluster "
             "is made, so clusters of different names never share one")
    baseline_node_port: int = option(
        30081, parse=node_port,
        help="a canary's baseline Service's fixed nodePort, mapped to a free host port "
             "(the Pulumi program's CanaryConfig default)")
    canary_node_port: int = option(
        30082, parse=node_port,
        help="a canary's candidate Service's fixed nodePort, mapped to a free host port "
             "(the Pulumi program's CanaryConfig default)")
    keep: bool = option(
        False, flag="--keep", env="HARNESS_KEEP_CLUSTER", parse=boolean, action="store_true",
        commands=("verify", "calibrate", "canary"),
        help="keep the cluster after the run instead of deleting it")
    ready_timeout: float = option(
        240.0, unit="s", help="time for the node and coredns to become ready")

    def __post_init__(self) -> None:
        ports = {"HARNESS_NODE_PORT": self.node_port,
                 "the baseline's nodePort": self.baseline_node_port,
                 "the canary's nodePort": self.canary_node_port}
        if len(set(ports.values())) < len(ports):
            said = ", ".join(f"{name} {port}" for name, port in ports.items())
            raise errors.UsageError(f"the model Service and a canary's two Services need "
                                    f"three different nodePorts, not {said}")

    @property
    def track_node_ports(self) -> dict[str, int]:
        """The nodePort of each canary track's own Service, by track."""
        return {"baseline": self.baseline_node_port, "canary": self.canary_node_port}


def dns_label(raw: Any, name: str) -> str:
    value = str(raw)
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", value):
        raise errors.UsageError(f"{name}: {value!r} is not a Kubernetes name (lower-case "
                                "letters, digits and '-', at most 63)")
    return value


def url(raw: Any, name: str) -> str:
    value = str(raw).rstrip("/")
    if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", value):
        raise errors.UsageError(f"{name} must be an http:// or https:// URL, not {raw!r}")
    return value


TARGET_COMMANDS = ("rehearse", "down")
"""The commands that can work on an existing cluster given by its kubeconfig."""


@dataclass(frozen=True)
class TargetSettings:
    """An existing cluster (staging) instead of a kind cluster the harness makes."""

    kubeconfig: Path | None = option(
        None, flag="--kubeconfig", env="HARNESS_KUBECONFIG", parse=path,
        commands=TARGET_COMMANDS, shown_default="none: a kind cluster of its own",
        help="roll out on the existing cluster this kubeconfig reaches (staging): no kind, no "
             "images loaded (the cluster pulls the chart's image itself); needs --url")
    context: str | None = option(
        None, flag="--context", env="HARNESS_KUBE_CONTEXT", parse=text, commands=TARGET_COMMANDS,
        shown_default="the kubeconfig's current context", help="the kubeconfig context to use")
    url: str | None = option(
        None, flag="--url", env="HARNESS_MODEL_URL", parse=url, commands=TARGET_COMMANDS,
        shown_default="none", metavar="URL",
        help="where the model Service answers from this machine (with --kubeconfig), e.g. "
             "http://10.0.0.5:30080")
    adopt_namespace: bool = option(
        False, flag="--adopt-namespace", env="HARNESS_ADOPT_NAMESPACE", parse=boolean,
        action="store_true", commands=TARGET_COMMANDS,
        help="deploy into a namespace that exists and was not made by this harness's stack "
             "(it is then never deleted); without it such a namespace is refused")


@dataclass(frozen=True)
class DeploySettings:
    namespace: str = option(
        "ml-model", flag="--namespace", env="HARNESS_NAMESPACE", parse=dns_label,
        commands=(*DEPLOY_COMMANDS, "down"),
        help="namespace the Pulumi program creates and deploys the chart into")
    chart_source: ChartSource = option(
        "folder", flag="--chart-source", env="HARNESS_CHART_SOURCE", choices=CHART_SOURCES,
        parse=choice(CHART_SOURCES), commands=DEPLOY_COMMANDS,
        help="folder: the chart packaged at the version, from disk; repo: the same package "
             "fetched from a chart repository served on 127.0.0.1")
    chart: Path | None = option(
        None, flag="--chart", env="HARNESS_CHART", parse=path, commands=TEAM_COMMANDS,
        metavar="DIR", shown_default="the bundled chart (charts/ml-model)",
        help="your model's chart (a folder or a packaged .tgz), deployed for each version "
             "with image.repository, image.tag = the version, replicaCount and service.type/"
             "nodePort set (the usual `helm create` values)")
    chart_repo: str | None = option(
        None, flag="--chart-repo", env="HARNESS_CHART_REPO", parse=url,
        commands=TEAM_COMMANDS, metavar="URL", shown_default="none",
        help="a Helm chart repository to fetch your chart from at each version (chart "
             "version = model version), as Pulumi's FetchOpts(repo=URL) does")
    chart_name: str = option(
        "ml-model", flag="--chart-name", env="HARNESS_CHART_NAME", parse=dns_label,
        commands=TEAM_COMMANDS, help="the chart's name in --chart-repo")
    image_repository: str = option(
        SERVER_IMAGE, flag="--image-repository",
        env="HARNESS_IMAGE_REPOSITORY", parse=image_repository, commands=TEAM_COMMANDS,
        metavar="NAME",
        help="the model image without its tag: each version runs NAME:VERSION, loaded into "
             "kind from this host's docker (built first from --image-build, or the bundled "
             "server for the default name; else it must be there already)")
    image_build: Path | None = option(
        None, flag="--image-build", env="HARNESS_IMAGE_BUILD", parse=path,
        commands=TEAM_COMMANDS, metavar="DIR", shown_default="none",
        help="a Docker build context with a Dockerfile, built as NAME:VERSION for each "
             "version with build args MODEL_VERSION and BASE_IMAGE (a Python 3.11 image the "
             "toolchain makes); its requirements.txt's wheels are fetched on this host into "
             "wheels/ in the context, for an offline pip install")
    replicas: int = option(3, help="pods of the model Deployment")
    rollout_timeout: int = option(
        300, flag="--rollout-timeout", parse=integer(10), unit="s", commands=DEPLOY_COMMANDS,
        help="time Pulumi awaits a rollout before it counts as failed "
             "(pulumi.com/timeoutSeconds)")
    values: Mapping[str, Any] = option(
        flag="--set", action="append", metavar="KEY=VALUE", parse=chart_values, factory=dict,
        layered=True,
        commands=DEPLOY_COMMANDS, shown_default="none",
        help="a chart value for every version deployed, e.g. gracefulDrain.enabled=false "
             "(repeatable)")
    program: Path | None = option(
        None, flag="--program", env="HARNESS_PROGRAM", parse=path, commands=PROGRAM_COMMANDS,
        metavar="DIR", shown_default="the bundled program (programs/ml_model)",
        help="your own Pulumi program folder (Pulumi.yaml, runtime python) that deploys the "
             "model: the gate runs it for the old and the new version instead of ours, "
             "telling it the version as --version-from says")
    version_from: str = option(
        "config:chart_version", flag="--version-from", env="HARNESS_VERSION_FROM",
        parse=version_source, commands=PROGRAM_COMMANDS, metavar="config:KEY|env:NAME",
        help="how your --program learns the version to deploy: a stack config key it reads "
             "(pulumi.Config().require(KEY)) or an environment variable")

    def __post_init__(self) -> None:
        if self.program is not None and self.values:
            raise errors.UsageError("--set only applies to the bundled program: with --program "
                                    "your program decides its chart values")
        if self.program is not None and self.team_chart:
            raise errors.UsageError("--chart, --chart-repo and --image-repository are for the "
                                    "bundled program: with --program your program names its "
                                    "chart and image")
        if self.chart is not None and self.chart_repo is not None:
            raise errors.UsageError("--chart and --chart-repo both name the chart: give one")
        if self.chart_source == "repo" and (self.chart is not None or self.chart_repo):
            raise errors.UsageError("--chart-source repo serves the bundled chart: drop it to "
                                    "deploy --chart or --chart-repo")

    @property
    def team_chart(self) -> bool:
        """A chart or an image that is not the bundled model server's."""
        return (self.chart is not None or self.chart_repo is not None
                or self.image_repository != SERVER_IMAGE)


@dataclass(frozen=True)
class TrafficSettings:
    users: int = option(
        8, flag="--users", env="HARNESS_USERS", parse=integer(0), commands=GATE_COMMANDS,
        help="keep-alive clients, each holding one connection")
    churn_users: int = option(
        4, flag="--churn-users", env="HARNESS_CHURN_USERS", parse=integer(0),
        commands=GATE_COMMANDS,
        help="clients opening a new connection for every request: they meet an endpoint "
             "that still routes to an exited or unready pod, which kept-alive sockets skip")
    rate_per_user: float = option(
        20.0, flag="--rate", env="HARNESS_RATE_PER_USER", parse=number(0), unit=" req/s",
        commands=GATE_COMMANDS, help="requests per second per client; 0 = as fast as answers "
                                     "come")
    timeout_seconds: float = option(
        10.0, unit="s", help="connect and read timeout of one request: no answer by then fails")
    max_seconds: int = option(
        1800, unit="s", help="hard bound on the load's length, whatever the run's plan")
    max_requests: int = option(
        2_000_000, help="hard bound on the number of requests (reached only at rate 0); with "
                        "several processes each stops at its share, rounded up")
    protocol: protocols.ProtocolName = option(
        protocols.DEFAULT, flag="--protocol", env="HARNESS_PROTOCOL", choices=protocols.NAMES,
        parse=choice(protocols.NAMES), commands=GATE_COMMANDS,
        help="how the traffic asks for predictions: kserve-v1 (POST /v1/models/<m>:predict) "
             "or open-inference-v2 (POST /v2/models/<m>/infer, as MLServer, Triton and "
             "KServe's runtimes answer)")
    model: str | None = option(
        None, flag="--model", env="HARNESS_MODEL", parse=text, commands=ROLLOUT_COMMANDS,
        metavar="NAME", shown_default="the chart value model.name, else ml-model",
        help="the model's name in the predict path (/v1/models/NAME:predict, "
             "/v2/models/NAME/infer)")
    requests: Path | None = option(
        None, flag="--requests", env="HARNESS_REQUESTS", parse=path, commands=ROLLOUT_COMMANDS,
        metavar="FILE", shown_default="the wine data set",
        help="the inputs the load sends, a JSONL file: one {\"instance\": [feature, ...], "
             "\"label\": L} per line, a row of your model's features; with labels, every "
             "prediction must be one of them")
    answer_version: str = option(
        protocols.DEFAULT_VERSION_SOURCE, flag="--answer-version", env="HARNESS_ANSWER_VERSION",
        parse=answer_version, commands=ROLLOUT_COMMANDS, metavar="header:NAME|body",
        help="where an answer names the version that served it: a response header, or the "
             "body's model_version (MLServer, KServe runtimes); the gate needs it to tell "
             "the versions apart")
    processes: int = option(
        1, flag="--processes", env="HARNESS_LOAD_PROCESSES", parse=processes,
        commands=GATE_COMMANDS, metavar="N",
        help="Locust processes sharing the clients (Locust's --processes: N workers and a "
             "master); -1: one per CPU core; 1: Locust in one process")

    def __post_init__(self) -> None:
        if self.users + self.churn_users < 1:
            raise errors.UsageError("--users and --churn-users are both 0: no traffic, no "
                                    "verdict")

    @property
    def clients(self) -> int:
        return self.users + self.churn_users

    def describe(self) -> str:
        """The load in words, for progress lines and reports: what a person needs to read
        a verdict against (the protocol only when it is not the default)."""
        spread = f" in {self.workers} Locust processes" if self.workers > 1 else ""
        speaking = f" over {self.protocol}" if self.protocol != protocols.DEFAULT else ""
        return (f"{self.users} keep-alive + {self.churn_users} new-connection clients x "
                f"{self.rate_per_user:g} req/s{spread}{speaking}")

    @property
    def workers(self) -> int:
        """Locust processes that run clients: `processes`, -1 read as the CPU cores."""
        return (os.cpu_count() or 1) if self.processes == -1 else self.processes

    @property
    def rate(self) -> float:
        """Planned requests per second over all clients (0: as fast as answers come)."""
        return self.clients * self.rate_per_user

    @property
    def stop_timeout(self) -> float:
        """Time clients get to finish the request under way when the run ends: longer
        than a request can take, so none is cut off unrecorded."""
        return 2 * self.timeout_seconds + 5


@dataclass(frozen=True)
class GateSettings:
    from_version: str = option(
        "1.0.0", flag="--from", commands=ROLLOUT_COMMANDS, parse=model_version,
        help="the version serving before the rollout")
    to_version: str = option(
        "1.1.0", flag="--to", commands=ROLLOUT_COMMANDS, parse=model_version,
        help="the version rolled out")
    baseline_seconds: float = option(
        10.0, flag="--baseline", parse=number(1), unit="s",
        commands=("verify", "rehearse", "calibrate"),
        help="traffic on the old version before the upgrade starts (canary: before the "
             "canary is deployed)")
    settle_seconds: float = option(
        10.0, flag="--settle", parse=number(1), unit="s", commands=GATE_COMMANDS,
        help="traffic after the last old pod is gone (canary: after the promote or abort)")
    drain_timeout: float = option(
        120.0, unit="s",
        help="time old pods may take to disappear once Pulumi reports the rollout done")
    report_dir: Path = option(
        Path("rollout-report"), flag="--report-dir", env="HARNESS_REPORT_DIR", parse=path,
        commands=GATE_COMMANDS,
        help="where the report goes: verdict.json (canary: canary.json), junit.xml, report.html")

    def __post_init__(self) -> None:
        if self.from_version == self.to_version:
            raise errors.UsageError(f"--from and --to are both {self.from_version}: a rollout "
                                    "needs two versions")


@dataclass(frozen=True)
class VerdictSettings:
    """The verdict's thresholds; why each has its value is in harness/verdict.py."""

    min_requests_before: int = option(50, help="requests needed before the upgrade")
    min_requests_after: int = option(50, help="requests needed after the rollout")
    max_gap_seconds: float = option(
        2.0, unit="s", help="longest time without a request starting while pods are replaced")
    min_rate_fraction: float = option(
        0.5, help="the achieved rate must reach this fraction of the planned rate")
    p99_factor: float = option(
        3.0, help="latency budget: rollout p99 <= max(baseline p99 * factor, baseline p99 + "
                  "floor)")
    p99_floor_ms: float = option(
        100.0, flag="--p99-floor", env="HARNESS_P99_FLOOR_MS", parse=number(0), unit=" ms",
        commands=GATE_COMMANDS, help="the latency budget's floor: the rollout's p99 may exceed "
                                     "the baseline's by this much")
    slo_seconds: float = option(
        1.0, flag="--slo", env="HARNESS_SLO_SECONDS", parse=number(0.001), unit="s",
        commands=GATE_COMMANDS,
        help="a request slower than this fails (\"slow\"), whatever its answer")
    power_window_seconds: float = option(
        5.0, unit="s", help="how far before a pod is marked terminating its answers count")
    min_answered_before_exit: int = option(
        20, help="answers a replaced pod must have given in that window")
    min_new_connections_while_exiting: int = option(
        40, help="new-connection requests that must start while a replaced pod terminates")


@dataclass(frozen=True)
class CalibrateSettings:
    runs: int = option(
        10, flag="--runs", parse=integer(1), commands=("calibrate",),
        help="runs of each control, interleaved round by round")
    controls: str = option(
        "all", flag="--controls", commands=("calibrate",), metavar="NAMES",
        help="comma-separated control names (see harness/controls.py), or all, gate "
             "(the rollout controls) or canary (the canary's)")


def percent(raw: Any, name: str) -> float:
    """A canary's traffic share in percent ("20" or "20%"): above 0 and below 50, since
    the baseline takes as much as the canary."""
    return float(within(0, 50, above=True, below=True)(str(raw).strip().rstrip("%"), name))


@dataclass(frozen=True)
class CanarySettings:
    """A canary run (`rollout-harness canary`). The judge's thresholds are
    `harness.canary_judge.JudgeLimits`'s, with its defaults and reasons (`limits`)."""

    stable: str = option(
        "1.0.0", flag="--stable", commands=CANARY_COMMANDS, parse=model_version,
        metavar="VERSION",
        help="the version serving now; a fresh baseline of it runs beside the canary")
    candidate: str = option(
        "1.1.0", flag="--candidate", commands=CANARY_COMMANDS, parse=model_version,
        metavar="VERSION",
        help="the version tried as a canary, promoted if it holds up; for an A/A run give "
             "the stable build under another version, e.g. 1.0.0-rebuilt")
    interval_seconds: float = option(
        30.0, flag="--interval", env="HARNESS_CANARY_INTERVAL", parse=number(5), unit="s",
        commands=CANARY_COMMANDS,
        help="length of one judged interval: the labelled hold-out is sent to baseline and "
             "canary once, paced over it, beside the live traffic")
    intervals: int = option(
        3, flag="--intervals", env="HARNESS_CANARY_INTERVALS", parse=integer(1),
        commands=CANARY_COMMANDS, metavar="N",
        help="intervals judged before the decision; the run stops at the first that fails")
    weight: float = option(
        20.0, flag="--weight", env="HARNESS_CANARY_WEIGHT", parse=percent, unit=" %",
        commands=CANARY_COMMANDS, metavar="PCT",
        help="the canary's share of the live traffic's new connections: the canary and the "
             "baseline get k pods each beside the stable ones, k >= 1 the whole number whose "
             "share k/(stable + 2k) is nearest (ties: fewer pods)")
    confidence: float = option(
        0.98, flag="--confidence", parse=within(0, 1, above=True, below=True),
        commands=CANARY_COMMANDS,
        help="confidence of every test and interval: a difference counts when p < 1 - this")
    marginal_score: float = option(
        75.0, flag="--marginal", parse=within(0, 100),
        commands=CANARY_COMMANDS,
        help="an interval before the last scoring below this aborts the run early")
    pass_score: float = option(
        95.0, flag="--pass-score", parse=within(0, 100),
        commands=CANARY_COMMANDS, help="the last interval must score at least this to promote")
    max_accuracy_drop: float = option(
        0.02, flag="--max-accuracy-drop", parse=within(0, 1, below=True),
        commands=CANARY_COMMANDS,
        help="how far (0-1) the canary's hold-out accuracy may fall below the baseline's "
             "before a significant McNemar difference counts")
    allowed_increase: float = option(
        1.1, flag="--allowed-increase", parse=number(1), commands=CANARY_COMMANDS,
        metavar="RATIO",
        help="the canary is slow only when, with confidence, slower than baseline median x "
             "this (1.0: any confident increase; 1.1 forgives 10 %, the difference two "
             "fresh pods of one build show)")
    decide_only: bool = option(
        False, flag="--no-promote", env="HARNESS_CANARY_NO_PROMOTE", parse=boolean,
        action="store_true", commands=CANARY_COMMANDS,
        help="decide, do not promote: on a promote decision the canary and baseline are "
             "removed and stable stays as it is, for a pipeline that promotes by itself; "
             "exit code 0 still says the candidate is fit to promote")

    def __post_init__(self) -> None:
        if self.stable == self.candidate:
            raise errors.UsageError(
                f"--stable and --candidate are both {self.stable}: a canary needs two versions; "
                f"for an A/A run give the same build under another version, e.g. "
                f"{self.stable.split('+')[0]}-rebuilt")
        if self.marginal_score > self.pass_score:
            raise errors.UsageError(f"--marginal {self.marginal_score:g} is above --pass-score "
                                    f"{self.pass_score:g}")


GROUPS: dict[str, type[Any]] = {
    "toolchain": ToolchainSettings,
    "cluster": ClusterSettings,
    "target": TargetSettings,
    "deploy": DeploySettings,
    "traffic": TrafficSettings,
    "gate": GateSettings,
    "verdict": VerdictSettings,
    "calibrate": CalibrateSettings,
    "canary": CanarySettings,
}


@dataclass(frozen=True)
class Settings:
    toolchain: ToolchainSettings = field(default_factory=ToolchainSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    target: TargetSettings = field(default_factory=TargetSettings)
    deploy: DeploySettings = field(default_factory=DeploySettings)
    traffic: TrafficSettings = field(default_factory=TrafficSettings)
    gate: GateSettings = field(default_factory=GateSettings)
    verdict: VerdictSettings = field(default_factory=VerdictSettings)
    calibrate: CalibrateSettings = field(default_factory=CalibrateSettings)
    canary: CanarySettings = field(default_factory=CanarySettings)

    @property
    def cache_dir(self) -> Path:
        return self.toolchain.cache_dir

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults overridden by `HARNESS_*` variables (the library's entry point)."""
        return resolve(None, {}, os.environ if environ is None else environ)

    @property
    def model_name(self) -> str:
        """The model's name in the predict path: --model, else the chart value model.name
        (the bundled chart's), else ml-model."""
        if self.traffic.model:
            return self.traffic.model
        return str(dict(self.deploy.values.get("model") or {}).get("name", "ml-model"))

    def replace(self, group: str, **changes: Any) -> Settings:
        """A copy with fields of one group changed, e.g. `replace("cluster", keep=True)`."""
        return dataclasses.replace(self, **{group: dataclasses.replace(getattr(self, group),
                                                                      **changes)})


def options() -> list[tuple[str, dataclasses.Field[Any], Option]]:
    """Every declared setting as (group, field, option), in declaration order."""
    return [(group, f, f.metadata["option"]) for group, kind in GROUPS.items()
            for f in dataclasses.fields(kind) if "option" in f.metadata]


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """The flags of `command`, each with its help, default and variable from the table."""
    for group, f, opt in options():
        if opt.flag is None or command not in opt.commands:
            continue
        extra: dict[str, Any] = {}
        if opt.action != "store_true":
            extra["metavar"] = opt.metavar or f.name.split("_")[-1].upper()
        if opt.choices:
            extra["choices"] = opt.choices
        parser.add_argument(opt.flag, *opt.aliases, dest=f"{group}.{f.name}", default=None,
                            action=opt.action, help=_help(f, opt), **extra)


def _help(f: dataclasses.Field[Any], opt: Option) -> str:
    if opt.shown_default is not None:
        shown = opt.shown_default
    elif f.default is not dataclasses.MISSING:
        shown = "off" if f.default is False else f"{f.default:g}" if isinstance(
            f.default, float) else str(f.default)
    else:
        shown = "-"
    shown += opt.unit if shown not in ("off", "none") else ""
    text = f"{opt.help} (default {shown}" + (f"; {opt.env}" if opt.env else "") + ")"
    return text.replace("%", "%%")  # argparse %-formats help


def resolve(command: str | None, given: Mapping[str, Any],
            environ: Mapping[str, str], file: RunFile | None = None) -> Settings:
    """Each field from its flag (given["group.field"], None when absent) if `command` takes
    it, else from its variable, else from the run file, else its default; every value
    through its option's parser (Locust's order: file < environment < command line)."""
    groups: dict[str, Any] = {}
    for group, kind in GROUPS.items():
        values: dict[str, Any] = {}
        for f in dataclasses.fields(kind):
            opt = cast(Option, f.metadata["option"])
            raw, name, base = None, "", None
            if opt.flag and command in opt.commands and given.get(f"{group}.{f.name}") is not None:
                raw, name = given[f"{group}.{f.name}"], opt.flag
            elif opt.env and environ.get(opt.env):
                raw, name = environ[opt.env], opt.env
            elif file is not None and f"{group}.{f.name}" in file.settings:
                raw = file.settings[f"{group}.{f.name}"]
                name, base = f"{file.path}: {group}.{f.name}", file.path.parent
            if raw is not None:
                value = opt.parse(raw, name) if opt.parse else raw
                if base is not None and isinstance(value, Path) and not value.is_absolute():
                    value = base / value  # a path in the file is relative to the file
                key = f"{group}.{f.name}"
                if opt.layered and base is None and file is not None and key in file.settings:
                    below = opt.parse(file.settings[key], f"{file.path}: {key}") if opt.parse \
                        else file.settings[key]
                    value = layered(below, value)
                values[f.name] = value
        groups[group] = kind(**values)
    return Settings(**groups)


def layered(below: Mapping[str, Any], above: Mapping[str, Any]) -> dict[str, Any]:
    """`above` over `below`, nested mappings merged key by key."""
    merged = dict(below)
    for key, value in above.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = layered(merged[key], value)
        else:
            merged[key] = value
    return merged


RUN_FILE = "rollout.yaml"
"""The run file a command reads from the folder it is started in, when there is one."""


@dataclass(frozen=True)
class RunFile:
    """A run described in one file: every setting by its group and name, e.g.

    .. code-block:: yaml

        deploy:
          program: ./deploy            # relative to this file
          version_from: config:chart_version
        traffic:
          protocol: open-inference-v2
        gate:
          from_version: 1.0.0
          to_version: 1.1.0

    The same groups may instead be the ``[tool.rollout-harness]`` table of a project's
    pyproject.toml (``[tool.rollout-harness.traffic]`` ...), where Python projects keep
    their tools' settings. A flag or a HARNESS_* variable overrides the file. Read whole
    and checked before anything starts: an unknown name is one line naming the closest
    known one."""

    path: Path
    settings: Mapping[str, Any]
    """Values by "group.field"."""

    @classmethod
    def read(cls, path: Path) -> RunFile:
        import difflib

        document = _pyproject_table(path) if path.name.endswith(".toml") else _yaml(path)
        if document is None:
            document = {}
        if not isinstance(document, dict):
            raise errors.UsageError(f"{path}: must be a mapping of setting groups "
                                    f"({', '.join(GROUPS)}), not {type(document).__name__}")
        # the settings a person sets (a flag or a variable); the rest are the harness's own
        known = {f"{group}.{f.name}" for group, f, opt in options() if opt.flag or opt.env}
        found: dict[str, Any] = {}
        for group, fields in document.items():
            if group not in GROUPS:
                close = difflib.get_close_matches(str(group), GROUPS, n=1)
                hint = f"; did you mean {close[0]}?" if close else f"; groups: {', '.join(GROUPS)}"
                raise errors.UsageError(f"{path}: {group} is not a group of settings{hint}")
            if not isinstance(fields, dict):
                raise errors.UsageError(f"{path}: {group} must be a mapping of its settings")
            for key, value in fields.items():
                name = f"{group}.{key}"
                if name not in known:
                    close = difflib.get_close_matches(name, known, n=1)
                    hint = f"; did you mean {close[0]}?" if close else ""
                    raise errors.UsageError(f"{path}: {name} is not a setting{hint}")
                found[name] = value
        return cls(path, found)

    @classmethod
    def find(cls, named: str | None, environ: Mapping[str, str],
             folder: Path | None = None) -> RunFile | None:
        """The file named (--config, else HARNESS_CONFIG), else rollout.yaml in `folder`
        (the working directory) when there is one, else None."""
        if named or environ.get("HARNESS_CONFIG"):
            return cls.read(Path(str(named or environ["HARNESS_CONFIG"])).expanduser())
        default = (folder or Path.cwd()) / RUN_FILE
        if default.is_file():
            return cls.read(default)
        project = default.with_name("pyproject.toml")
        if project.is_file() and _pyproject_table(project, required=False) is not None:
            return cls.read(project)
        return None


PYPROJECT_TABLE = "rollout-harness"
"""``[tool.rollout-harness]``: the run file's groups inside a pyproject.toml."""


def _yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except OSError as e:
        raise errors.UsageError(f"{path}: cannot read it ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise errors.UsageError(f"{path}: not YAML ({e})".replace("\n", " ")) from None


def _pyproject_table(path: Path, required: bool = True) -> Any:
    """The ``[tool.rollout-harness]`` table of a TOML file; None (or, when `required`, a
    usage error) when it has none."""
    import tomllib

    try:
        document = tomllib.loads(path.read_text())
    except OSError as e:
        raise errors.UsageError(f"{path}: cannot read it ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise errors.UsageError(f"{path}: not TOML ({e})") from None
    table = document.get("tool", {}).get(PYPROJECT_TABLE)
    if table is None and required:
        raise errors.UsageError(f"{path}: no [tool.{PYPROJECT_TABLE}] table in it")
    return table
