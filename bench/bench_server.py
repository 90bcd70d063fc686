"""Requests/s and latency of the model server against MLServer, on loopback.

    python bench/bench_server.py [--duration 10] [--connections 16] [--no-mlserver]

Every server serves the same trained joblib model (wine, ``--version``) and
is driven by the same closed-loop, keep-alive load at fixed concurrency:
``wrk`` when installed (``apt-get install wrk``), else a small asyncio
client. Rows:

- model-server: this project's server (plain asyncio, verified numpy predictor);
- model-server, MODEL_COMPILE=false: the same with scikit-learn's ``predict``,
  i.e. the same model code path as MLServer's runtime;
- the same app on uvicorn (h11): what the HTTP stack alone costs;
- MLServer 1.7.1 + mlserver-sklearn 1.7.1 (V2 protocol), with its default
  ``parallel_workers=1`` (inference in a worker process) and with 0.

MLServer pins dependencies that conflict with the project's, so it lives in
its own venv (``$HARNESS_CACHE_DIR/bench-venv``, made on first use). Figures
depend on the machine; nothing here asserts on them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MLSERVER_PINS = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0"]
"""uvloop pinned: with 0.22+ MLServer 1.7.1's inference workers die at start
(``asyncio.get_event_loop()`` raises in a fresh process), so parallel_workers=1 never gets ready."""


def cache_dir() -> Path:
    root = os.environ.get("HARNESS_CACHE_DIR")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "rollout-harness"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Target:
    """A server to measure: how to start it, where to post, what to post."""

    name: str
    command: list[str]
    env: dict[str, str]
    port: int
    ready_path: str
    predict_path: str
    body: bytes
    check: Callable[[bytes], bool]


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    note: str = ""


# --- load generators ---


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(
    url: str, body: bytes, connections: int, seconds: float, threads: int = 1
) -> tuple[float, float, float, int]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(body.decode())}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
    try:
        out = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s",
             script.name, url],
            capture_output=True, text=True, timeout=seconds + 60, check=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return rps, p50, p99, errors


async def _client(
    port: int, request: bytes, deadline: float, latencies: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not head.startswith(b"HTTP/1.1 2"):
                errors.append(1)
    finally:
        writer.close()


def run_python_client(
    port: int, path: str, body: bytes, connections: int, seconds: float
) -> tuple[float, float, float, int]:
    """Fallback load generator: ``connections`` keep-alive asyncio clients."""
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    errors: list[int] = []

    async def main() -> None:
        deadline = time.perf_counter() + seconds
        await asyncio.gather(
            *(_client(port, request, deadline, latencies, errors) for _ in range(connections))
        )

    asyncio.run(main())
    latencies.sort()
    n = len(latencies)
    return (
        n / seconds,
        latencies[n // 2] * 1000,
        latencies[min(n - 1, n * 99 // 100)] * 1000,
        len(errors),
    )


# --- servers ---


def wait_ready(target: Target, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{target.name} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{target.port}{target.ready_path}", timeout=2
            ) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{target.name} not ready within {timeout}s")


def measure(target: Target, connections: int, seconds: float, log_dir: Path) -> Result:
    log = (log_dir / f"{re.sub(r'[^a-z0-9]+', '-', target.name.lower())}.log").open("wb")
    process = subprocess.Popen(
        target.command, env={**os.environ, **target.env}, stdout=log, stderr=log
    )
    try:
        wait_ready(target, process)
        request = urllib.request.Request(
            f"http://127.0.0.1:{target.port}{target.predict_path}",
            data=target.body, headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            if not target.check(response.read()):
                raise RuntimeError(f"{target.name}: unexpected answer")
        url = f"http://127.0.0.1:{target.port}{target.predict_path}"
        if shutil.which("wrk"):
            run_wrk(url, target.body, connections, 2)  # warm-up
            rps, p50, p99, errors = run_wrk(url, target.body, connections, seconds)
        else:
            run_python_client(target.port, target.predict_path, target.body, connections, 2)
            rps, p50, p99, errors = run_python_client(
                target.port, target.predict_path, target.body, connections, seconds
            )
        return Result(target.name, rps, p50, p99, errors)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        return Result(target.name, 0, 0, 0, 0, note=f"failed: {e} (log: {log.name})")
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def ensure_model(version: str) -> Path:
    directory = cache_dir() / "bench" / "models" / version
    if not (directory / "metadata.json").exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "model_server.train",
                "--version",
                version,
                "--out",
                str(directory),
            ],
            check=True,
        )
    return directory


def ensure_mlserver() -> Path:
    venv = cache_dir() / "bench-venv"
    if not (venv / "bin" / "mlserver").exists():
        print(f"installing {' '.join(MLSERVER_PINS)} into {venv} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *MLSERVER_PINS], check=True)
    return venv


def targets(model_dir: Path, row: list[float], with_mlserver: bool, work: Path) -> list[Target]:
    name = "ml-model"
    v1_body = json.dumps({"instances": [row]}).encode()

    def v1_ok(raw: bytes) -> bool:
        return len(json.loads(raw)["predictions"]) == 1

    ours_env = {
        "MODEL_DIR": str(model_dir),
        "MODEL_LOG_LEVEL": "WARNING",
        "MODEL_HOST": "127.0.0.1",
    }
    out = []
    for title, extra in [
        ("model-server (asyncio, numpy predictor)", {}),
        ("model-server (asyncio, sklearn predict)", {"MODEL_COMPILE": "false"}),
    ]:
        port = free_port()
        out.append(Target(
            title, [sys.executable, "-m", "model_server", "serve", "--port", str(port)],
            {**ours_env, **extra}, port, "/readyz", f"/v1/models/{name}:predict", v1_body, v1_ok,
        ))  # fmt: skip
    port = free_port()
    out.append(Target(
        "same app on uvicorn 0.54 (h11)",
        [sys.executable, "-m", "uvicorn", "asgi_app:app", "--app-dir", str(ROOT / "bench"),
         "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"],
        ours_env, port, "/readyz", f"/v1/models/{name}:predict", v1_body, v1_ok,
    ))  # fmt: skip
    if not with_mlserver:
        return out
    venv = ensure_mlserver()
    v2_body = json.dumps(
        {"inputs": [{"name": "input-0", "shape": [1, len(row)], "datatype": "FP64", "data": row}]}
    ).encode()

    def v2_ok(raw: bytes) -> bool:
        return len(json.loads(raw)["outputs"][0]["data"]) == 1

    for workers in (1, 0):
        folder = work / f"mlserver-{workers}"
        (folder / name).mkdir(parents=True, exist_ok=True)
        shutil.copy(model_dir / "model.joblib", folder / name / "model.joblib")
        (folder / name / "model-settings.json").write_text(json.dumps({
            "name": name, "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib"},
        }))  # fmt: skip
        port = free_port()
        (folder / "settings.json").write_text(json.dumps({
            "debug": False, "host": "127.0.0.1", "http_port": port, "grpc_port": free_port(),
            "metrics_port": free_port(), "parallel_workers": workers,
        }))  # fmt: skip
        out.append(Target(
            f"MLServer 1.7.1 + sklearn (parallel_workers={workers})",
            [str(venv / "bin" / "mlserver"), "start", str(folder)], {}, port,
            f"/v2/models/{name}/ready", f"/v2/models/{name}/infer", v2_body, v2_ok,
        ))  # fmt: skip
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per server")
    parser.add_argument(
        "--connections", type=int, default=16, help="concurrent keep-alive connections"
    )
    parser.add_argument("--version", default="1.0.0", help="model version to train and serve")
    parser.add_argument("--no-mlserver", action="store_true", help="skip MLServer")
    args = parser.parse_args(argv)
    model_dir = ensure_model(args.version)
    row = json.loads((model_dir / "holdout.jsonl").read_text().splitlines()[0])["instance"]
    tool = "wrk -t1" if shutil.which("wrk") else "asyncio client"
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        log_dir = cache_dir() / "bench" / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        results = [
            measure(t, args.connections, args.duration, log_dir)
            for t in targets(model_dir, row, not args.no_mlserver, work)
        ]
    print(
        f"\nModel {args.version} (wine, 1 instance/request), {args.connections} keep-alive "
        f"connections, {args.duration:g} s each, {tool}, {os.cpu_count()} CPUs, loopback.\n"
    )
    print("| server | requests/s | p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        if r.note:
            print(f"| {r.name} | - | - | - | {r.note} |")
        else:
            print(f"| {r.name} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} |")
    return 0 if all(not r.note for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
