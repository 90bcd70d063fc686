"""Deploying and upgrading the model chart with the Pulumi program, inline.

The harness runs programs/ml_model exactly as `pulumi up` would: the stack
config holds the program's settings and the inline program reads them with
`ModelConfig.from_pulumi_config`, so one program serves both ways of running
it. State is a local file backend in the cache; each stack (one per cluster)
has its own generated passphrase, stored with mode 0600.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import secrets
import signal
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_model_program
from ml_model_program import CONFIG_KEYS, CanaryConfig, ModelConfig
from pulumi import automation as auto

from harness import charts, errors, interrupts, procs, progress, rollouts, target
from harness.cluster import Cluster, drop_pods, pods_ready, readiness
from harness.program import Program
from harness.resources import CHART_DIR
from harness.settings import Settings
from harness.toolchain import DeployTools, Toolchain, pulumi
from harness.toolchain.cache import Cache

log = logging.getLogger(__name__)

PROJECT = "ml-model"


@dataclass(frozen=True)
class Outcome:
    """What one `up` did: the program's exports, the changes, the time taken."""

    version: str
    outputs: dict[str, Any]
    changes: dict[str, int]
    seconds: float
    rollout_seconds: float | None
    """Of `seconds`, the time Pulumi spent updating and awaiting the Deployment."""


def _inline_program() -> None:
    import pulumi as sdk

    ml_model_program.deploy(ModelConfig.from_pulumi_config(sdk.Config()))


class ModelStack:
    """The model's Pulumi stack on one cluster."""

    def __init__(self, settings: Settings, cluster: Cluster, toolchain: Toolchain | Cache,
                 tools: DeployTools) -> None:
        """`toolchain`: kind's (which images are loaded with), or for a cluster the
        harness did not make (harness/target.py) only the cache."""
        self.settings = settings
        self.cluster = cluster
        self.toolchain = toolchain if isinstance(toolchain, Toolchain) else None
        self.tools = tools
        self.cache = toolchain.cache if isinstance(toolchain, Toolchain) else toolchain
        self.state = self.cache.state / "pulumi"
        self.name = cluster.name
        self.program = (Program.read(settings.deploy.program, settings.deploy.version_from)
                        if settings.deploy.program is not None else None)
        """A team's own program folder, run instead of the bundled program."""
        self.project = self.program.project if self.program is not None else PROJECT
        self.log_path = self.cache.log(f"pulumi-{self.name}")
        # per cluster name: runs on two clusters at once never write the same files
        self.repository = charts.Repository.of_current_chart(
            self.cache.state / "charts" / self.name, tools.helm, self.cache.log("helm"))

    def configured(self, settings: Settings) -> ModelStack:
        """The same stack deployed with other settings (a control's rollout timeout)."""
        return ModelStack(settings, self.cluster, self.toolchain or self.cache, self.tools)

    # -- public operations -------------------------------------------------

    def up(self, version: str, values: Mapping[str, Any] | None = None,
           chart_repo: str | None = None, canary: CanaryConfig | None = None) -> Outcome:
        """Deploy `version` (chart and image aligned), or upgrade to it; await the rollout.

        `canary`: a baseline and a canary release beside it (its images built and
        loaded by the caller); its chart comes from the same source as `version`'s
        unless `canary.chart_path` names one. None removes those of an earlier `up`.
        """
        self._require_api()
        if self.program is not None:
            return self._up_program(self.program, version, values, chart_repo, canary)
        chart_path, chart_file = self._chart(version, chart_repo)
        chart_files = {version: chart_file}
        if canary is not None:
            if canary.chart_path is not None:
                chart_files[canary.version] = Path(canary.chart_path)
            else:
                candidate_path, chart_files[canary.version] = self._chart(canary.version,
                                                                          chart_repo)
                if candidate_path is not None:
                    canary = dataclasses.replace(canary, chart_path=str(candidate_path))
        config = self._model_config(version, dict(values or {}), chart_path, chart_repo, canary)
        self._validate_values(chart_files, config)
        stack = self._stack()
        wanted = self._stack_config(config)
        # a key this run leaves unset must not linger from an earlier one (chartPath
        # from a folder run would contradict chartRepo)
        stale = [key for key in CONFIG_KEYS if key not in wanted]
        if stale:
            stack.remove_all_config(stale)
        stack.set_all_config(wanted)
        return self._up(stack, version)

    def _up_program(self, program: Program, version: str, values: Mapping[str, Any] | None,
                    chart_repo: str | None, canary: CanaryConfig | None) -> Outcome:
        """`up` of a team's own program: it is told the version, and decides the rest."""
        if canary is not None:
            raise errors.UsageError(
                "a canary deploys a baseline and a candidate beside the stable release, "
                "which only the bundled program does: run it without --program")
        if values or chart_repo:
            raise errors.UsageError(
                "chart values and the harness's chart repository are the bundled program's; "
                "with --program your program decides its chart, its values and its images")
        stack = self._stack(version)
        config = program.config(version)
        if config:
            stack.set_all_config({k: auto.ConfigValue(value=v) for k, v in config.items()})
        return self._up(stack, version)

    def _up(self, stack: auto.Stack, version: str) -> Outcome:
        started = time.monotonic()
        steps = _DeploymentSteps()
        with progress.step(f"pulumi up: {self.project} {version} on {self.name}",
                           log_file=self.log_path, doing=self._pods_ready):
            result = self._run(lambda: stack.up(on_output=self._output, on_event=steps,
                                                color="never"), f"pulumi up of {version}")
            if self._await_rollouts(started, steps.changed):
                steps.seconds = steps.since_started()
                # the stack's outputs hold the Deployments as pulumi last read them, before
                # their rollout: read the cluster again so that state and outputs are true
                result = self._run(lambda: stack.up(on_output=self._output, refresh=True,
                                                    color="never"),
                                   f"pulumi up --refresh of {version}")
        return Outcome(version, _plain(result.outputs), dict(result.summary.resource_changes or {}),
                       round(time.monotonic() - started, 1), steps.seconds)

    def _await_rollouts(self, started: float, changed: list[tuple[str, str]]) -> bool:
        """After `pulumi up`: wait for what it may not have awaited (harness/rollouts.py),
        the Deployments it created or changed (a namespace may hold others, not ours).
        True when a rollout was not over as pulumi returned."""
        if not changed:
            return False
        left = max(self.settings.deploy.rollout_timeout - (time.monotonic() - started),
                   MIN_ROLLOUT_WAIT)
        early = rollouts.await_over(self.cluster.kubeconfig, self.cluster.context, changed,
                                    left)
        if early:
            said = "; ".join(f"{name}: {why}" for name, why in early.items())
            log.warning("pulumi up returned before the rollout was over (%s); awaited it", said)
        return bool(early)

    def up_or_roll_back(self, version: str, previous: str, values: Mapping[str, Any],
                        chart_repo: str | None, what: str) -> tuple[str | None, bool]:
        """`up` to `version` under traffic; if that fails, `up` back to `previous`, so the
        traffic goes on meeting a served model. Returns (the error, or None; whether the
        rollback worked), for a verdict that says both."""
        try:
            self.up(version, values, chart_repo=chart_repo)
        except errors.DeployError as e:
            progress.say(f"the {what} failed; rolling back to {previous}")
            try:
                self.up(previous, values, chart_repo=chart_repo)
            except errors.DeployError as again:
                return f"{e}; the rollback failed too: {again}", False
            return str(e), True
        return None, False

    def check_namespace(self) -> None:
        """On a cluster the harness did not make: refuse a namespace the stack did not
        create (harness/target.py). Before any refresh, which would take in whatever
        object now has the name."""
        namespace = self.settings.deploy.namespace
        target.namespace_owner(self.cluster, namespace,
                               self._namespace_made(self._stack(), namespace))

    def preview(self) -> dict[str, int]:
        """Planned changes against the current config (an unchanged stack plans none)."""
        self._require_api()
        stack = self._stack()
        result = self._run(lambda: stack.preview(on_output=self._output, color="never"),
                           "pulumi preview")
        return dict(result.change_summary)

    def refresh(self) -> dict[str, int]:
        self._require_api()
        stack = self._stack()
        result = self._run(lambda: stack.refresh(on_output=self._output, color="never"),
                           "pulumi refresh")
        return dict(result.summary.resource_changes or {})

    def down(self) -> None:
        """Destroy everything the stack deployed, then forget the stack. On a kind cluster
        of our own the pods are stopped first, without their graceful exit (`drop_pods`);
        on a cluster we were given (staging) they drain as they would in production."""
        self._require_api()
        stack = self._stack()
        with progress.step(f"pulumi destroy: {self.project} on {self.name}",
                           log_file=self.log_path):
            if self.toolchain is not None:
                self._drop_pods()
            self._run(lambda: stack.destroy(on_output=self._output, color="never"),
                      "pulumi destroy")
            # a team's folder keeps its Pulumi.<stack>.yaml: its own settings are in it
            stack.workspace.remove_stack(self.name, preserve_config=self.program is not None)

    def forget(self) -> None:
        """Drop the stack's state without touching the cluster.

        For a cluster this run has just created: the state describes objects of
        an earlier cluster of the same name, and `up` would try to update them.
        """
        stack = self._stack()
        self._run(lambda: stack.workspace.remove_stack(
            self.name, force=True, preserve_config=self.program is not None),
                  f"forgetting stack {self.name}")

    # -- the pieces ----------------------------------------------------------

    def _chart(self, version: str, chart_repo: str | None) -> tuple[Path | None, Path]:
        """(chart folder for the program or None for the repository, packaged chart)."""
        name = self.settings.deploy.chart_name
        if chart_repo:
            url = charts.require_published(chart_repo, version, name)
            return None, charts.download(url, self.cache.state / "charts-fetched" / self.name)
        if self.settings.deploy.chart is not None:  # a team's chart, the same for each version
            team = self.settings.deploy.chart.resolve()
            return team, team
        chart_file = self.repository.package(version)
        return self.repository.unpacked(version), chart_file

    def _model_config(self, version: str, values: dict[str, Any], chart_path: Path | None,
                      chart_repo: str | None, canary: CanaryConfig | None = None) -> ModelConfig:
        return model_config(self.settings, version, values, chart_path, chart_repo,
                            self.cluster.host_port or None, canary)

    def _namespace_made(self, stack: auto.Stack, namespace: str) -> str | None:
        """The uid of `namespace` as the stack created it, from its state; None when the
        state holds no such namespace (or only one it reads)."""
        resources = (stack.export_stack().deployment or {}).get("resources") or []
        for r in resources:
            metadata = (r.get("outputs") or {}).get("metadata") or {}
            if (r.get("type") == "kubernetes:core/v1:Namespace" and not r.get("external")
                    and metadata.get("name") == namespace):
                return str(metadata.get("uid") or "") or None
        return None

    def _stack_config(self, config: ModelConfig) -> dict[str, auto.ConfigValue]:
        return {k: auto.ConfigValue(value=v) for k, v in config.to_stack_config().items()}

    def _validate_values(self, chart_files: Mapping[str, Path], config: ModelConfig) -> None:
        """Render each release's chart with helm first: schema errors surface before
        anything changes. `chart_files`: the packaged chart by chart version."""
        for release in config.releases():
            try:
                render(self.tools.helm, chart_files[release.chart_version], release.values,
                       config.namespace, self.cache.state / f"values-{self.name}.json",
                       release.name)
            except errors.DeployError as e:
                raise errors.DeployError(
                    f"chart values rejected, nothing was changed: {e}") from e

    def _stack(self, version: str | None = None) -> auto.Stack:
        """The stack, selected (made the first time). `version`: a team's program that
        reads its version from the environment is told it there."""
        self.state.mkdir(parents=True, exist_ok=True)
        home = pulumi.plugin_home(self.cache)
        pulumi.install_plugin(self.tools.provider.parent, home)
        env = {
            **pulumi.cli_env(home),
            "PULUMI_BACKEND_URL": self.state.as_uri(),
            "PULUMI_CONFIG_PASSPHRASE_FILE": str(self._passphrase()),
            "PULUMI_IGNORE_AMBIENT_PLUGINS": "true",
            "KUBECONFIG": str(self.cluster.kubeconfig),
        }
        if self.program is not None:
            if version is not None:
                env.update(self.program.env(version))
            return self._program_stack(self.program, home, env)
        # the stack's config file lives in the work dir: keep it across runs
        work_dir = self.cache.state / "pulumi-work" / self.name
        work_dir.mkdir(parents=True, exist_ok=True)
        options = auto.LocalWorkspaceOptions(
            work_dir=str(work_dir),
            pulumi_home=str(home),
            env_vars=env,
            pulumi_command=auto.PulumiCommand(root=str(self.tools.pulumi_root)),
            project_settings=auto.ProjectSettings(
                name=PROJECT, runtime="python",
                backend=auto.ProjectBackend(url=self.state.as_uri()),
            ),
        )
        stack: auto.Stack = self._run(lambda: auto.create_or_select_stack(
            self.name, project_name=PROJECT, program=_inline_program, opts=options),
            f"selecting stack {self.name}")
        return self._selected(stack)

    def _program_stack(self, program: Program, home: Path, env: dict[str, str]) -> auto.Stack:
        """The team's program folder as the workspace: its Pulumi.yaml as it is (no
        project settings given, so none are written), its Python host beside the CLI."""
        options = auto.LocalWorkspaceOptions(
            work_dir=str(program.folder),
            pulumi_home=str(home),
            env_vars=env,
            pulumi_command=auto.PulumiCommand(root=str(self.tools.pulumi_root)),
        )
        stack: auto.Stack = self._run(lambda: auto.create_or_select_stack(
            self.name, work_dir=str(program.folder), opts=options),
            f"selecting stack {self.name} of {program.folder}")
        return self._selected(stack)

    def _selected(self, stack: auto.Stack) -> auto.Stack:
        self._clear_stale_lock()
        if self.cluster.context:  # the default provider's context (else the current one)
            stack.set_config("kubernetes:context", auto.ConfigValue(value=self.cluster.context))
        return stack

    def _passphrase(self) -> Path:
        path = self.state / f"{self.name}.passphrase"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(32))
        return path

    def _locks(self) -> list[tuple[Path, dict[str, Any]]]:
        found = []
        for lock in (self.state / ".pulumi" / "locks").glob(
                f"*/{self.project}/{self.name}/*.json"):
            try:
                found.append((lock, dict(json.loads(lock.read_text()))))
            except (OSError, ValueError, TypeError):
                continue
        return found

    def _clear_stale_lock(self) -> None:
        """Remove the lock a killed run left behind: only one taken on this host by a
        process that is gone. Another host's lock may belong to a live update there."""
        for lock, owner in self._locks():
            pid = int(owner.get("pid", 0) or 0)
            if owner.get("hostname") != os.uname().nodename or not pid or _alive(pid):
                continue
            lock.unlink(missing_ok=True)
            progress.say(f"stack {self.name}: removed the lock left by a killed run "
                         f"(pid {pid}); continuing")

    def _require_api(self) -> None:
        found = readiness(self.cluster.kubeconfig, self.cluster.context)
        if not found.reachable:
            context = self.cluster.context or f"kind-{self.cluster.name}"
            raise errors.DeployError(
                f"the Kubernetes API is unreachable ({found.problem}); kubeconfig "
                f"{self.cluster.kubeconfig}, context {context}: is the cluster up?"
            )

    def _drop_pods(self) -> None:
        """Best effort: if it fails, the destroy still removes everything, only slower."""
        from kubernetes.client.exceptions import ApiException

        namespace = self.settings.deploy.namespace
        try:
            dropped = drop_pods(self.cluster.kubeconfig, self.cluster.context, namespace)
        except (ApiException, OSError) as e:
            log.warning("could not stop the pods of %s before the destroy: %s", namespace, e)
        else:
            log.info("stopped %d pods of %s before the destroy", dropped, namespace)

    def _pods_ready(self) -> str | None:
        return pods_ready(self.cluster.kubeconfig, self.cluster.context,
                          self.settings.deploy.namespace)

    def _output(self, line: str) -> None:
        with self.log_path.open("a") as out:
            out.write(line if line.endswith("\n") else line + "\n")

    def _run(self, call: Callable[[], Any], what: str) -> Any:
        try:
            with interrupts.passed_on(_cancel_pulumi):
                return call()
        except auto.ConcurrentUpdateError as e:
            owners = ", ".join(f"pid {o.get('pid')} on {o.get('hostname')}"
                               for _, o in self._locks()) or "an unknown process"
            raise errors.DeployError(
                f"{what}: stack {self.name} is locked by a running update ({owners}); wait "
                f"for it or stop it (details in {self.log_path})") from e
        except auto.CommandError as e:
            raise errors.DeployError(
                f"{what} failed: {_last_error(str(e))} (full output in {self.log_path})") from e
        except BaseException as e:
            if not isinstance(e, Exception):  # stopped by a signal: pulumi must not go on
                _stop_pulumi()
            raise


def model_config(settings: Settings, version: str, values: Mapping[str, Any],
                 chart_path: Path | None, chart_repo: str | None,
                 host_port: int | None, canary: CanaryConfig | None = None) -> ModelConfig:
    """The program's settings for one version (and its canary, if any); a value it
    refuses is a usage error."""
    values = dict(values)
    deploy = settings.deploy
    service = dict(values.get("service") or {})
    service.setdefault("type", "NodePort")
    service.setdefault("nodePort", settings.cluster.node_port)
    values["service"] = service
    try:
        return ModelConfig(
            chart_version=version,
            chart_path=str(chart_path) if chart_path else None,
            chart_repo=chart_repo,
            replica_count=deploy.replicas,
            namespace=deploy.namespace,
            values=values,
            timeout_seconds=deploy.rollout_timeout,
            host_port=host_port,
            canary=canary,
            adopt_namespace=settings.target.adopt_namespace,
            # the bundled image is the values' default; a team's is set, as its repository
            image_repository=deploy.image_repository if deploy.team_chart else None,
            chart_name=deploy.chart_name,
        )
    except ValueError as e:
        raise errors.UsageError(str(e)) from e


def render(helm: Path, chart: Path, values: Mapping[str, Any], namespace: str,
           values_file: Path, release: str = "check") -> None:
    """`helm template` of `chart` with `values`, which checks them against the chart's
    values.schema.json; raises DeployError with helm's reason."""
    values_file.parent.mkdir(parents=True, exist_ok=True)
    values_file.write_text(json.dumps(values))
    procs.output([helm, "template", release, chart, "--namespace", namespace,
                  "--values", values_file], what=f"helm template of {chart.name}",
                 error=errors.DeployError)


def check_values(settings: Settings, helm: Path, version: str, scratch: Path) -> None:
    """The run's --set values rendered into the chart (the bundled one as shipped, or the
    team's --chart), before anything is built or created: a value its schema refuses is a
    usage error (exit 64). A chart from --chart-repo is checked when it is fetched."""
    chart = (settings.deploy.chart or CHART_DIR).resolve()
    config = model_config(settings, version, settings.deploy.values, chart, None, None)
    scratch.mkdir(parents=True, exist_ok=True)
    try:  # a file of its own: runs on other cluster names check their values at the same time
        with tempfile.TemporaryDirectory(prefix="values-check-", dir=scratch) as tmp:
            render(helm, chart, config.chart_values(), config.namespace,
                   Path(tmp) / "values.json")
    except errors.DeployError as e:
        said = [part[2:] for part in str(e).split(" / ") if part.startswith("- at ")]
        if said or settings.deploy.chart is None:
            raise errors.UsageError(f"--set values rejected by the chart's schema, nothing was "
                                    f"created: {'; '.join(said) or e}") from e
        raise errors.UsageError(f"--chart {chart} does not render with these values, nothing "
                                f"was created: {e}") from e


class _DeploymentSteps:
    """From the engine's events: the time of the Deployment's step (update and rollout
    await), and each Deployment the update created or changed."""

    TYPE = "kubernetes:apps/v1:Deployment"
    ROLLING = ("create", "update", "replace", "create-replacement")
    """Steps after which a Deployment has a rollout to finish."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.seconds: float | None = None
        self.changed: list[tuple[str, str]] = []
        """(namespace, name) of each Deployment created or changed."""

    def __call__(self, event: auto.EngineEvent) -> None:
        pre, done = event.resource_pre_event, event.res_outputs_event
        if pre is not None and pre.metadata.type == self.TYPE and pre.metadata.op != "same":
            self.started = time.monotonic()
        elif done is not None and done.metadata.type == self.TYPE:
            if self.started is not None:
                self.seconds = self.since_started()
            made = done.metadata.new
            metadata = ((made.outputs or {}).get("metadata") or {}) if made else {}
            if done.metadata.op in self.ROLLING and metadata.get("name"):
                self.changed.append((str(metadata.get("namespace") or "default"),
                                     str(metadata["name"])))

    def since_started(self) -> float | None:
        """Seconds since the Deployment's step began (for a rollout awaited beyond it)."""
        return None if self.started is None else round(time.monotonic() - self.started, 1)


MIN_ROLLOUT_WAIT = 30.0
"""The least time given to a rollout pulumi returned from early, whatever the timeout
left: the controller only needs to catch up."""

PULUMI_GRACE_SECONDS = 30.0
"""How long pulumi may take to cancel an update cleanly before it is killed."""


def _pulumi_processes() -> list[int]:
    return [pid for pid in procs.descendants() if "pulumi" in procs.command_line(pid)]


def _cancel_pulumi() -> None:
    """SIGINT to the pulumi CLI, as Ctrl-C in a terminal would send it; no waiting."""
    ours = _pulumi_processes()
    for pid in ours:
        if procs.parent(pid) not in ours:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)


def _stop_pulumi() -> None:
    """Wait for the pulumi CLI, told to cancel by `_cancel_pulumi`, to end: on SIGINT it
    stops the update, saves the stack's state and releases its lock. (A second SIGINT
    would make it quit at once, lock held, so it gets none.) Whatever of it, plugins
    included, is still there after the grace period is killed."""
    ours = _pulumi_processes()
    if not ours:
        return
    progress.say("waiting for pulumi to cancel: it saves the stack's state and releases "
                 "its lock ...")
    deadline = time.monotonic() + PULUMI_GRACE_SECONDS
    while time.monotonic() < deadline and any(procs.running(pid) for pid in ours):
        time.sleep(0.2)
    left = [pid for pid in ours if procs.running(pid)]
    if left:
        procs.stop(left, signal.SIGTERM, 5.0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _plain(outputs: Mapping[str, Any]) -> dict[str, Any]:
    return {key: getattr(value, "value", value) for key, value in outputs.items()}


def _last_error(text: str) -> str:
    """The lines of pulumi's output that say why, for a one-line error.

    The last "error:" line is usually just "update failed"; the provider's
    diagnostics list the causes as "* ..." bullets, the bracketed ones
    ("[ProgressDeadlineExceeded] ...", "[Pod ...]: containers with unready
    status") being the ones a person acts on.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    bullets = list(dict.fromkeys(line[2:] for line in lines if line.startswith("* ")))
    specific = [bullet for bullet in bullets if bullet.startswith("[")]
    if specific or bullets:
        return "; ".join((specific or bullets)[:3])
    for line in reversed(lines):
        if line.startswith("error:") or "error:" in line:
            return line
    return lines[-1] if lines else text
