"""The `rollout-harness` command line.

Exit codes: 0 success (verify/rehearse: PASS; canary: promoted, and the
promote's rollout passed); 1 a check or gate failed (missing toolchain parts, a
FAIL verdict, a control with a wrong verdict, a canary aborted or a promote that
failed); 3 the verdict is INCONCLUSIVE (the run could not have shown a failure:
never a pass; a canary left undecided, never promoted); 2 an error the
harness could not get past, or a crash (its traceback goes to a log file,
named on screen); 64 bad usage (unknown options included); 69 no docker
engine; 70 toolchain build/download failure; 71 cluster failure; 72 deploy
failure; 75 the cluster is in use by another run (try again later, or another
--name); 130 stopped by SIGINT (Ctrl-C), 143 stopped by SIGTERM — after
cleaning up what the run started.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import NoReturn

from harness import errors, interrupts, progress, settings
from harness.settings import Settings

log = logging.getLogger("harness")

COMMANDS = {
    "toolchain": "make sure docker, kind and the node image exist (build if needed)",
    "cluster": "create, delete or inspect a kind cluster",
    "up": "deploy or upgrade the model chart at a version with the Pulumi program",
    "down": "destroy the model stack (the cluster stays)",
    "verify": "the gate: make a cluster, roll FROM -> TO under traffic, judge every request, "
              "clean up",
    "rehearse": "the same rollout and verdict on a cluster that stays: a kind cluster (reused "
                "or made) or any cluster given by --kubeconfig and --url (staging)",
    "calibrate": "run every control N times at the gate's settings; print each one's "
                 "detection rate with its 95% interval",
    "canary": "run CANDIDATE as a canary beside STABLE under live traffic, judge it interval "
              "by interval against a fresh baseline, then promote it or remove it",
    "serve": "run the model server locally, without docker",
    "engine": "stop the docker engine the harness started (`engine stop`); nothing else",
}


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error, which is our "harness error" code: usage is 64."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(errors.UsageError.exit_code, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """Each command's own arguments here; every setting's flag from the settings table."""
    parser = _Parser(
        prog="rollout-harness",
        description="Rollout gate for ML model releases on Kubernetes (kind, Pulumi, Locust).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="the run described in one file (default: rollout.yaml in this "
                             "folder when there is one; HARNESS_CONFIG); flags and HARNESS_* "
                             "variables override it")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # argparse %-formats help texts (not descriptions): "95%" must be "95%%" there
    sub = {name: commands.add_parser(name, help=text.replace("%", "%%"), description=text)
           for name, text in COMMANDS.items()}
    sub["toolchain"].add_argument("--check", action="store_true",
                                  help="list components and exit non-zero if one is missing")
    sub["toolchain"].add_argument("--only", metavar="TOOL", default=None,
                                  help="obtain just this binary tool (e.g. helm), no docker needed")
    sub["toolchain"].add_argument(
        "--env", action="store_true",
        help="print shell exports that make this toolchain's pulumi, helm, kubectl and kind "
             "yours (eval \"$(rollout-harness toolchain --env)\"), with the cluster's "
             "kubeconfig when it exists; no docker needed")
    sub["cluster"].add_argument("action", choices=("up", "down", "status"))
    sub["engine"].add_argument("action", choices=("stop",))
    sub["up"].add_argument("--version", dest="chart_version", required=True,
                           help="chart version = image tag, e.g. 1.1.0")
    from harness import serve

    serve.add_arguments(sub["serve"])
    for name, command in sub.items():
        settings.add_arguments(command, name)
    return parser


def _version() -> str:
    try:
        return metadata.version("rollout-harness")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def settings_from(args: argparse.Namespace) -> Settings:
    """The flags given, else HARNESS_* variables, else the run file, else defaults (see
    harness/settings.py)."""
    given = {key: value for key, value in vars(args).items() if "." in key}
    run_file = settings.RunFile.find(getattr(args, "config", None), os.environ)
    resolved = settings.resolve(args.command, given, os.environ, run_file)
    if args.command in ("up", "down", "rehearse"):  # they work on a cluster that stays
        resolved = resolved.replace("cluster", keep=True)
    return resolved


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from harness import startup

    with startup.prepared(settings, (args.chart_version,)) as ready:
        outcome = ready.stack.up(args.chart_version, settings.deploy.values,
                                 chart_repo=ready.chart_repo)
    print(json.dumps({"version": outcome.version, "seconds": outcome.seconds,
                      "rollout_seconds": outcome.rollout_seconds, "changes": outcome.changes,
                      "outputs": outcome.outputs}, indent=2))
    return 0


def cmd_down(args: argparse.Namespace, settings: Settings) -> int:
    from harness import cluster, startup, target, toolchain

    if (not target.wanted(settings)
            and not cluster.status(settings.cluster, toolchain.ensure(settings)).ready):
        progress.say(f"cluster {settings.cluster.name} is not running: nothing to destroy")
        return 0
    with startup.prepared(settings) as ready:
        ready.stack.down()
    return 0


def cmd_toolchain(args: argparse.Namespace, settings: Settings) -> int:
    from harness import toolchain

    if args.only:
        print(toolchain.ensure_tool(settings, args.only))
        return 0
    if args.env:
        print(shell_exports(settings))
        return 0
    if not args.check:
        toolchain.ensure_all(settings)
    return print_check(settings)


def shell_exports(settings: Settings) -> str:
    """`toolchain --env`: sh exports of the toolchain's environment, plus KUBECONFIG of
    the cluster named by the settings when one was made."""
    import shlex

    from harness import cluster, toolchain
    from harness.toolchain.cache import Cache

    env = toolchain.shell_env(settings)
    kubeconfig = cluster.kubeconfig(Cache(settings.cache_dir), settings.cluster.name)
    if kubeconfig.is_file():
        env["KUBECONFIG"] = str(kubeconfig)
    return "\n".join(f"export {key}={shlex.quote(value)}" for key, value in env.items())


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


def cmd_gate(args: argparse.Namespace, settings: Settings) -> int:
    from harness import verify

    result = verify.verify(settings)
    print(result.verdict.summary())
    return verify.EXIT_CODES[result.verdict.outcome]


def cmd_canary(args: argparse.Namespace, settings: Settings) -> int:
    from harness import canary

    result = canary.canary(settings)
    print(result.run.summary())
    return result.run.exit_code


def cmd_calibrate(args: argparse.Namespace, settings: Settings) -> int:
    from harness import calibrate

    rows = calibrate.calibrate(settings)
    print(calibrate.table(rows))
    print(f"written: {settings.gate.report_dir.resolve() / 'calibration.json'}")
    wrong = [row.control.name for row in rows
             if row.control.expected != "measure" and row.hits < len(row.runs)]
    if wrong:
        progress.say(f"the gate gave a wrong verdict in some runs of: {', '.join(wrong)}")
        return 1
    return 0


def cmd_engine(args: argparse.Namespace, settings: Settings) -> int:
    from harness.toolchain import docker
    from harness.toolchain.cache import Cache

    progress.say(docker.stop_engine(Cache(settings.cache_dir)))
    return 0


def cmd_cluster(args: argparse.Namespace, settings: Settings) -> int:
    from harness import cluster, runlock, startup, toolchain

    tools = toolchain.ensure(settings)
    if args.action == "status":
        state = cluster.status(settings.cluster, tools)
        print(f"cluster {state.name}: {state.detail}")
        return 0 if state.ready else 1
    with runlock.held(startup.lock_folder(settings), settings.cluster.name):
        if args.action == "up":
            made = cluster.up(settings.cluster, tools)
            tracks = "".join(f"; {track}: {made.track_url(track)}" for track in made.track_ports)
            print(f"cluster {made.name} is ready; KUBECONFIG={made.kubeconfig}; "
                  f"model traffic: {made.base_url}{tracks}")
        else:
            cluster.down(settings.cluster, tools)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return _run(args)
    except errors.HarnessError as e:
        progress.say(f"error: {e}")
        return e.exit_code
    except interrupts.Interrupted as e:
        progress.say(f"stopped by {e.signal_name} during {e.phase or 'start-up'}; what this run "
                     "started is stopped and removed (a kept cluster stays)")
        return e.exit_code
    except KeyboardInterrupt:
        progress.say("interrupted")
        return 130
    except Exception as e:  # a bug: one line here, the traceback in a file
        where = _crash_log(e)
        progress.say(f"error: the harness crashed ({type(e).__name__}: {e}); traceback in "
                     f"{where}; please report it")
        return 2


def _run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.command == "serve":  # the model server handles its own signals (graceful drain)
        from harness import serve

        return serve.run(args, settings)
    with interrupts.raised():
        return RUNNERS[args.command](args, settings)


RUNNERS = {"toolchain": cmd_toolchain, "cluster": cmd_cluster, "up": cmd_up, "down": cmd_down,
           "verify": cmd_gate, "rehearse": cmd_gate, "calibrate": cmd_calibrate,
           "canary": cmd_canary, "engine": cmd_engine}
"""Every command but `serve`, which handles its own signals."""


def _crash_log(error: BaseException) -> Path:
    import tempfile
    import traceback

    fd, name = tempfile.mkstemp(prefix="rollout-harness-crash-", suffix=".log")
    with os.fdopen(fd, "w") as out:
        out.write("".join(traceback.format_exception(error)))
    log.debug("crash", exc_info=error)
    return Path(name)


if __name__ == "__main__":
    sys.exit(main())
