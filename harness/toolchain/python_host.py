"""A Python language host for the pulumi CLI, where the release's cannot be had.

`pulumi up` in a Python program folder asks for the plugin `pulumi-language-python`,
which pulumi's release archive carries next to the CLI. The CLI we build from Go
modules has none, and the host's own Go module is not served by the module proxy
here, so it cannot be built the way the CLI is. This is a conforming host of our own:
the LanguageRuntime gRPC service the engine talks to, on the Python SDK's generated
stubs (the SDK's inline-program server shows what the engine needs).

It does what the release's host does for `preview`, `up`, `destroy` and `refresh`: the
engine starts it with its own address as the last argument and reads the port it
prints; `Run` then runs the program in a Python of the program's choosing, so the
program imports what its own environment has, never the harness's:

- the project's ``runtime.options.virtualenv`` (relative to the project folder), else
- ``PULUMI_PYTHON_CMD``, else ``python3`` on PATH, as the release's host picks it.

The program runs in `toolchain/python-host/run_program.py`, a file that needs nothing but the pulumi
SDK in that Python; its exit status says whether it already told the engine what
went wrong (`BAILED`). Dependency installation, code generation and the other
services a release host offers for `pulumi new` and `pulumi convert` are not
offered: they answer UNIMPLEMENTED, which the engine reports by name.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from concurrent import futures
from pathlib import Path
from typing import Any

from harness import resources

log = logging.getLogger(__name__)

EXEC = resources.RECIPES / "python-host" / "run_program.py"
"""Runs one program inside the program's own Python (stdlib and the pulumi SDK only)."""
BAILED = 32
"""The exec script's exit status when the program failed and the engine was told why."""
NO_SDK = 3
"""The exec script's exit status when the program's Python has no pulumi SDK."""
ENTRY = "import sys; from harness.toolchain.python_host import main; sys.exit(main(sys.argv[1:]))"
"""The launcher's program (`-m` would run this module a second time: the package imports it)."""
LAUNCHER = "pulumi-language-python"
"""The plugin's name: the CLI looks for it next to itself, then on PATH."""


def program_python(root: Path, options: dict[str, Any], environ: dict[str, str]) -> str:
    """The Python that runs the program (see the module docstring for the order)."""
    if virtualenv := options.get("virtualenv"):
        venv = Path(str(virtualenv))
        python = (venv if venv.is_absolute() else root / venv) / "bin" / "python"
        if not python.exists():
            raise HostError(f"the project's virtualenv {virtualenv!r} has no {python}: "
                            f"create it (python3 -m venv {virtualenv}) and install the "
                            "program's requirements into it")
        return str(python)
    if command := environ.get("PULUMI_PYTHON_CMD"):
        return command
    found = shutil.which("python3", path=environ.get("PATH"))
    if found is None:
        raise HostError("no python3 on PATH to run the program: put one there, set "
                        "PULUMI_PYTHON_CMD, or name a virtualenv in Pulumi.yaml")
    return found


class HostError(Exception):
    """Why a program cannot be run; the engine shows it as the update's error."""


def exec_command(python: str, request: Any, engine: str) -> list[str]:
    """The command that runs the program of a RunRequest."""
    info = request.info
    root = Path(info.root_directory or request.pwd)
    program = info.program_directory or request.program or str(root)
    entry = info.entry_point or "."
    target = Path(program) / entry if entry != "." else Path(program)
    command = [python, "-u", str(EXEC), "--monitor", request.monitor_address,
               "--engine", engine, "--project", request.project, "--stack", request.stack,
               "--organization", request.organization or "organization",
               "--parallel", str(max(request.parallel, 1))]
    if request.dryRun:
        command.append("--dry-run")
    return [*command, str(target), *request.args]


def _servicer() -> Any:
    from google.protobuf import json_format  # type: ignore[import-untyped]
    from pulumi.runtime.proto import language_pb2, language_pb2_grpc, plugin_pb2

    class PythonHost(language_pb2_grpc.LanguageRuntimeServicer):
        def __init__(self, engine: str) -> None:
            self.engine = engine

        def Handshake(self, request: Any, context: Any) -> Any:
            self.engine = request.engine_address or self.engine
            return language_pb2.LanguageHandshakeResponse()

        def GetPluginInfo(self, request: Any, context: Any) -> Any:
            from harness.toolchain import versions
            return plugin_pb2.PluginInfo(version=versions.PULUMI.lstrip("v"))

        def GetRequiredPlugins(self, request: Any, context: Any) -> Any:
            # Providers are found when the program registers its resources.
            return language_pb2.GetRequiredPluginsResponse()

        def GetRequiredPackages(self, request: Any, context: Any) -> Any:
            return language_pb2.GetRequiredPackagesResponse()

        def Cancel(self, request: Any, context: Any) -> Any:
            # The engine says it is done; it then ends this process.
            from google.protobuf import empty_pb2
            return empty_pb2.Empty()

        def About(self, request: Any, context: Any) -> Any:
            version = ".".join(map(str, sys.version_info[:3]))
            return language_pb2.AboutResponse(executable=sys.executable, version=version)

        def Run(self, request: Any, context: Any) -> Any:
            options = json_format.MessageToDict(request.info.options) \
                if request.info.HasField("options") else {}
            root = Path(request.info.root_directory or request.pwd)
            env = dict(os.environ)
            try:
                python = program_python(root, options, env)
            except HostError as e:
                return language_pb2.RunResponse(error=str(e))
            env["PULUMI_CONFIG"] = json.dumps(dict(request.config))
            env["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(list(request.configSecretKeys))
            command = exec_command(python, request, self.engine)
            log.debug("running the program: %s", command)
            try:
                # The program's output goes where ours goes: the engine shows it.
                code = subprocess.call(command, cwd=request.pwd or root, env=env,
                                       stdin=subprocess.DEVNULL)
            except OSError as e:
                return language_pb2.RunResponse(error=f"could not start {python}: {e}")
            if code == 0:
                return language_pb2.RunResponse()
            if code == BAILED:
                return language_pb2.RunResponse(bail=True)
            if code == NO_SDK:
                return language_pb2.RunResponse(error=(
                    f"{python} has no pulumi SDK to run the program: name the project's "
                    "virtualenv in Pulumi.yaml (runtime.options.virtualenv) or set "
                    "PULUMI_PYTHON_CMD to a Python that has the program's requirements"))
            return language_pb2.RunResponse(
                error=f"the program exited with code {code} before it could report why "
                      f"(its output is above); it ran in {python}")

    return PythonHost


def serve(engine: str) -> None:
    """Serve until the engine kills us; the first line on stdout is the port."""
    import grpc  # type: ignore[import-untyped]
    from pulumi.runtime.proto import language_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                         options=[("grpc.max_receive_message_length", 400 * 1024 * 1024)])
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(_servicer()(engine), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    # The engine ends its plugins with a signal: a quiet exit, not a traceback.
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(0)


def install(bin_dir: Path) -> Path | None:
    """Put a launcher for this host beside a pulumi CLI that has no Python host (a CLI from
    a release has its own: left alone). Returns the launcher written, None if none was."""
    target = bin_dir / LAUNCHER
    script = (f"#!/bin/sh\n# {LAUNCHER} for this pulumi CLI, written by rollout-harness\n"
              f'exec "{sys.executable}" -c "{ENTRY}" "$@"\n')
    if target.exists():
        if target.read_text(errors="replace") == script:
            return target
        if "written by rollout-harness" not in target.read_text(errors="replace"):
            return None  # a release's host
    tmp = bin_dir / f".{LAUNCHER}.tmp"
    tmp.write_text(script)
    tmp.chmod(0o755)
    tmp.rename(target)
    return target


def main(argv: list[str]) -> int:
    if not argv:
        print(f"usage: {LAUNCHER} [flags] ENGINE_ADDRESS (started by the pulumi CLI)",
              file=sys.stderr)
        return 64
    logging.basicConfig(level=logging.WARNING)
    serve(argv[-1])  # flags (-tracing, -root, ...) come first; the address is last
    return 0
