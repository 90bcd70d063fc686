"""The `rollout-harness` command line.

Exit codes: 0 success (verify/rehearse: PASS); 1 a check or gate failed
(missing toolchain parts, a FAIL verdict); 3 the verdict is INCONCLUSIVE
(the traffic did not cover the rollout: never a pass); 2 an error the
harness could not get past; 64 bad usage;
69 no docker engine; 70 toolchain build/download failure; 71 cluster
failure; 72 deploy failure; 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from harness import errors, progress
from harness.settings import (
    CHART_SOURCES,
    SOURCES,
    Settings,
    parse_chart_source,
    parse_cluster_name,
    parse_source,
)

log = logging.getLogger("harness")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rollout-harness",
        description="Rollout gate for ML model releases on Kubernetes (kind, Pulumi, Locust).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    toolchain = commands.add_parser(
        "toolchain", help="make sure docker, kind and the node image exist (build if needed)")
    toolchain.add_argument("--source", choices=SOURCES, default=None,
                           help="auto (default): cache, release, then build; release; build")
    toolchain.add_argument("--check", action="store_true",
                           help="list components and exit non-zero if one is missing")
    toolchain.add_argument("--only", metavar="TOOL", default=None,
                           help="obtain just this binary tool (e.g. helm), no docker needed")

    cluster = commands.add_parser("cluster", help="create, delete or inspect a kind cluster")
    cluster.add_argument("action", choices=("up", "down", "status"))
    cluster.add_argument("--name", default=None, help="cluster name (HARNESS_CLUSTER_NAME)")
    cluster.add_argument("--source", choices=SOURCES, default=None)

    up = commands.add_parser(
        "up", help="deploy or upgrade the model chart at a version with the Pulumi program")
    up.add_argument("--version", required=True, help="chart version = image tag, e.g. 1.1.0")
    up.add_argument("--name", "--cluster", dest="name", default=None, help="cluster name")
    up.add_argument("--set", dest="values", action="append", default=[], metavar="KEY=VALUE",
                    help="a chart value, e.g. gracefulDrain.enabled=false (repeatable)")
    up.add_argument("--chart-source", choices=CHART_SOURCES, default=None,
                    help="folder (default) or repo: fetch the chart from a repository on 127.0.0.1")
    up.add_argument("--source", choices=SOURCES, default=None, help=argparse.SUPPRESS)

    down = commands.add_parser("down", help="destroy the model stack (the cluster stays)")
    down.add_argument("--name", "--cluster", dest="name", default=None, help="cluster name")
    down.add_argument("--source", choices=SOURCES, default=None, help=argparse.SUPPRESS)

    for name, text in (
        ("verify", "the gate: make a cluster, roll FROM -> TO under traffic, judge every "
                   "request, clean up"),
        ("rehearse", "the same rollout and verdict on an existing (or reused) cluster, "
                     "which stays"),
    ):
        gate = commands.add_parser(name, help=text)
        gate.add_argument("--from", dest="from_version", default="1.0.0",
                          help="the version serving before the rollout (default 1.0.0)")
        gate.add_argument("--to", dest="to_version", default="1.1.0",
                          help="the version rolled out (default 1.1.0)")
        gate.add_argument("--set", dest="values", action="append", default=[],
                          metavar="KEY=VALUE", help="a chart value for both versions (repeatable)")
        gate.add_argument("--name", "--cluster", dest="name", default=None, help="cluster name")
        gate.add_argument("--chart-source", choices=CHART_SOURCES, default=None)
        gate.add_argument("--users", type=int, default=None,
                          help="concurrent keep-alive clients (default 8)")
        gate.add_argument("--rate", type=float, default=None,
                          help="requests/s per user (default 20; 0 = as fast as answers come)")
        gate.add_argument("--baseline", type=float, default=None,
                          help="seconds of traffic before the upgrade (default 10)")
        gate.add_argument("--settle", type=float, default=None,
                          help="seconds of traffic after the last old pod is gone (default 10)")
        gate.add_argument("--rollout-timeout", type=int, default=None,
                          help="seconds Pulumi awaits the rollout before it counts as failed "
                               "(default 300)")
        gate.add_argument("--report-dir", default="rollout-report",
                          help="where verdict.json, junit.xml and report.html go "
                               "(default ./rollout-report)")
        gate.add_argument("--keep", action="store_true",
                          help="verify: keep the cluster afterwards (HARNESS_KEEP_CLUSTER)")
        gate.add_argument("--source", choices=SOURCES, default=None, help=argparse.SUPPRESS)

    from harness import serve

    serve.add_arguments(commands.add_parser(
        "serve", help="run the model server locally, without docker"))
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    if getattr(args, "source", None):
        settings = dataclasses.replace(settings, toolchain=dataclasses.replace(
            settings.toolchain, source=parse_source(args.source)))
    if getattr(args, "name", None):
        settings = dataclasses.replace(settings, cluster=dataclasses.replace(
            settings.cluster, name=parse_cluster_name(args.name)))
    if getattr(args, "keep", False):
        settings = dataclasses.replace(settings, cluster=dataclasses.replace(
            settings.cluster, keep=True))
    if getattr(args, "rollout_timeout", None) is not None:
        if args.rollout_timeout < 10:
            raise errors.UsageError("--rollout-timeout must be at least 10 seconds")
        settings = dataclasses.replace(settings, deploy=dataclasses.replace(
            settings.deploy, rollout_timeout=args.rollout_timeout))
    if getattr(args, "chart_source", None):
        settings = dataclasses.replace(settings, deploy=dataclasses.replace(
            settings.deploy, chart_source=parse_chart_source(args.chart_source)))
    return settings


def parse_values(pairs: Sequence[str]) -> dict[str, Any]:
    """`a.b=c` pairs into nested chart values; scalars read as YAML (true, 3, 0.5)."""
    import yaml

    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise errors.UsageError(f"--set takes KEY=VALUE with a dotted key, not {pair!r}")
        target = values
        *parents, leaf = key.split(".")
        for part in parents:
            child = target.setdefault(part, {})
            if not isinstance(child, dict):
                raise errors.UsageError(f"--set {pair!r} conflicts with an earlier --set")
            target = child
        target[leaf] = yaml.safe_load(raw) if raw else ""
    return values


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    import contextlib

    from harness import charts, cluster, toolchain
    from harness.deploy import ModelStack

    values = parse_values(args.values)
    tools, deploy_tools = toolchain.ensure_all(settings)
    made = cluster.up(settings.cluster, tools)
    stack = ModelStack(settings, made, tools, deploy_tools)
    with contextlib.ExitStack() as stay:
        repo_url = None
        if settings.deploy.chart_source == "repo":
            stack.repository.package(args.version)
            repo_url = stay.enter_context(charts.serve(stack.repository.folder))
        outcome = stack.up(args.version, values, chart_repo=repo_url)
    print(json.dumps({"version": outcome.version, "seconds": outcome.seconds,
                      "rollout_seconds": outcome.rollout_seconds, "changes": outcome.changes,
                      "outputs": outcome.outputs}, indent=2))
    return 0


def cmd_down(args: argparse.Namespace, settings: Settings) -> int:
    from harness import cluster, toolchain
    from harness.deploy import ModelStack

    tools, deploy_tools = toolchain.ensure_all(settings)
    if not cluster.status(settings.cluster, tools).ready:
        progress.say(f"cluster {settings.cluster.name} is not running: nothing to destroy")
        return 0
    made = cluster.up(settings.cluster, tools)
    ModelStack(settings, made, tools, deploy_tools).down()
    return 0


def cmd_toolchain(args: argparse.Namespace, settings: Settings) -> int:
    from harness import toolchain

    if args.only:
        print(toolchain.ensure_tool(settings, args.only))
        return 0
    if not args.check:
        toolchain.ensure_all(settings)
    return print_check(settings)


def print_check(settings: Settings) -> int:
    from harness import toolchain
    from harness.toolchain.cache import Cache

    components = toolchain.check(settings)
    rows = [("component", "version", "source", "took", "location")]
    for c in components:
        took = f"{c.seconds:.0f}s" if c.seconds is not None else "-"
        rows.append((c.name, c.version, c.source, took, c.location))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])
    cache = Cache(settings.cache_dir)
    figures = []
    for key, label in (("run-cold", "last cold toolchain run (everything made)"),
                       ("run-partial", "last partial run"),
                       ("run-warm", "last warm toolchain run (nothing made)"),
                       ("cluster-up", "last cluster up to ready")):
        seconds = cache.recorded(key).get("seconds")
        if seconds is not None:
            figures.append(f"{label}: {seconds:.1f}s")
    if figures:
        print("figures: " + "; ".join(figures))
    missing = [c.name for c in components if not c.present]
    if missing:
        print(f"missing: {', '.join(missing)} (run `make toolchain`)")
        return 1
    return 0


def run_settings(args: argparse.Namespace) -> Any:
    """The gate's options; each bad one is a usage error naming the option."""
    from pathlib import Path

    from harness.traffic import TrafficSettings
    from harness.verify import RunSettings

    if args.from_version == args.to_version:
        raise errors.UsageError(f"--from and --to are both {args.from_version}: a rollout needs "
                                "two versions")
    checks = (("--users", args.users, 1), ("--rate", args.rate, 0),
              ("--baseline", args.baseline, 1), ("--settle", args.settle, 1))
    for option, value, least in checks:
        if value is not None and value < least:
            raise errors.UsageError(f"{option} must be at least {least}, not {value}")
    traffic = TrafficSettings()
    traffic = dataclasses.replace(
        traffic,
        users=args.users if args.users is not None else traffic.users,
        rate_per_user=args.rate if args.rate is not None else traffic.rate_per_user,
    )
    run = RunSettings(from_version=args.from_version, to_version=args.to_version,
                      values=parse_values(args.values), traffic=traffic,
                      report_dir=Path(args.report_dir))
    if args.baseline is not None:
        run = dataclasses.replace(run, baseline_seconds=args.baseline)
    if args.settle is not None:
        run = dataclasses.replace(run, settle_seconds=args.settle)
    return run


def cmd_gate(args: argparse.Namespace, settings: Settings) -> int:
    from harness import verify

    run = run_settings(args)
    if args.command == "rehearse":  # verify on a cluster that stays
        settings = dataclasses.replace(settings, cluster=dataclasses.replace(
            settings.cluster, keep=True))
    result = verify.verify(settings, run)
    print(result.verdict.summary())
    return verify.EXIT_CODES[result.verdict.outcome]


def cmd_cluster(args: argparse.Namespace, settings: Settings) -> int:
    from harness import cluster, toolchain

    tools = toolchain.ensure(settings)
    if args.action == "up":
        made = cluster.up(settings.cluster, tools)
        print(f"cluster {made.name} is ready; KUBECONFIG={made.kubeconfig}; "
              f"model traffic: {made.base_url}")
    elif args.action == "down":
        cluster.down(settings.cluster, tools)
    else:
        state = cluster.status(settings.cluster, tools)
        print(f"cluster {state.name}: {state.detail}")
        return 0 if state.ready else 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = settings_from(args)
        if args.command == "toolchain":
            return cmd_toolchain(args, settings)
        if args.command == "cluster":
            return cmd_cluster(args, settings)
        if args.command == "up":
            return cmd_up(args, settings)
        if args.command == "down":
            return cmd_down(args, settings)
        if args.command in ("verify", "rehearse"):
            return cmd_gate(args, settings)
        if args.command == "serve":
            from harness import serve

            return serve.run(args)
        parser.error(f"unknown command {args.command}")
    except errors.HarnessError as e:
        progress.say(f"error: {e}")
        return e.exit_code
    except KeyboardInterrupt:
        progress.say("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
