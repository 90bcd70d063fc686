"""What recording every request costs Locust: the same run with and without the recorder.

    python bench/bench_recording.py [--duration 10] [--users 10] [--rounds 2]

Runs headless Locust (``load/locustfile.py``) against the model server on
loopback, alternating plain and recorded runs, and compares requests/s
(Locust itself is the bottleneck here, so its throughput shows the
overhead). Also times ``Recorder.on_request`` alone. Target: <= 10 %.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "load"))
import recording  # noqa: E402
from model_server import testing, train  # noqa: E402

from harness.evidence import read_requests  # noqa: E402


def locust_rps(
    url: str, users: int, seconds: float, work: Path, record: Path | None
) -> tuple[float, int]:
    prefix = work / f"run-{time.monotonic_ns()}"
    env = {**os.environ}
    env.pop("LOAD_RECORD_FILE", None)
    if record is not None:
        env["LOAD_RECORD_FILE"] = str(record)
    subprocess.run(
        [str(Path(sys.executable).with_name("locust")), "-f", str(ROOT / "load" / "locustfile.py"),
         "--host", url, "--headless", "-u", str(users), "-r", str(users), "-t", f"{seconds:g}s",
         "--only-summary", "--loglevel", "WARNING", "--csv", str(prefix)],
        env=env, capture_output=True, text=True, timeout=seconds + 120, cwd=work,
    )  # fmt: skip
    with open(f"{prefix}_stats.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    return float(row["Requests/s"]), int(row["Failure Count"])


def on_request_cost(n: int = 200_000) -> float:
    """Microseconds per ``Recorder.on_request`` call (JSON line, buffered writes)."""
    response = SimpleNamespace(status_code=200, headers={"X-Model-Version": "1.0.0"})
    with (
        tempfile.TemporaryDirectory() as tmp,
        recording.Recorder(Path(tmp) / "r.jsonl") as recorder,
    ):
        started = time.perf_counter()
        for i in range(n):
            recorder.on_request("POST", "predict", 1.234, 43, response=response, start_time=1e9 + i)
        recorder.flush()
        return (time.perf_counter() - started) / n * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per Locust run")
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="plain/recorded pairs")
    args = parser.parse_args(argv)
    plain: list[float] = []
    recorded: list[float] = []
    lines = 0
    with tempfile.TemporaryDirectory(prefix="bench-rec-") as tmp:
        work = Path(tmp)
        train.train("1.0.0", work / "model")
        with testing.ServerProcess(work / "model") as server:
            server.wait_ready()
            for i in range(args.rounds):
                record = work / f"requests-{i}.jsonl"
                for with_recorder in (False, True) if i % 2 == 0 else (True, False):  # ABBA order
                    if with_recorder:
                        recorded.append(
                            locust_rps(server.url, args.users, args.duration, work, record)[0]
                        )
                    else:
                        plain.append(
                            locust_rps(server.url, args.users, args.duration, work, None)[0]
                        )
                lines += len(read_requests(record))
    cost = on_request_cost()
    p, r = statistics.mean(plain), statistics.mean(recorded)
    overhead = (p - r) / p * 100
    print(f"\nLocust {args.users} users, {args.duration:g} s x {args.rounds} rounds each, "
          f"model server on loopback, {os.cpu_count()} CPUs.\n")  # fmt: skip
    print("| run | requests/s (mean) | runs |")
    print("|---|---:|---|")
    print(f"| plain Locust | {p:,.0f} | {', '.join(f'{x:,.0f}' for x in plain)} |")
    print(f"| Locust + recorder | {r:,.0f} | {', '.join(f'{x:,.0f}' for x in recorded)} |")
    print(
        f"\nOverhead: {overhead:+.1f} % of throughput (target <= 10 %); "
        f"{lines:,} lines recorded; Recorder.on_request alone: {cost:.1f} us/request."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
