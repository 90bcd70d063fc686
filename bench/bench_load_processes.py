"""The highest rate the harness's load records, in one and in two Locust processes, beside wrk.

    python bench/bench_load_processes.py URL [--duration 15] [--processes 1,2] [--users 12]
                                             [--churn-users 0] [--model-name ml-model]

``URL`` is the model's base URL, e.g. a cluster's NodePort
(``http://127.0.0.1:30080``, the address ``cluster up`` prints). Each row runs
the gate's own traffic (``harness.traffic.Traffic``: the locustfile, every
request recorded, the workers' records merged and held against Locust's
totals) at ``--rate 0`` — each client sends its next request as soon as the
answer to its last one came — for ``--duration`` seconds after a warm-up,
first in one Locust process, then in ``--processes N`` (Locust's own
``--processes``). The last row drives the same predict request with wrk
(``apt-get install wrk``), as many threads as the most Locust processes and as
many keep-alive connections as clients, as the rate the server gives a
client far cheaper than Locust. Columns: requests/s recorded in the measured
window (by start time), the best single second in it, failed requests, and
whether the record held exactly Locust's count. Figures depend on the machine
and on the server; nothing here asserts on them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from bench_server import run_wrk  # noqa: E402

from harness.settings import TrafficSettings  # noqa: E402
from harness.traffic import Traffic, wait_answering  # noqa: E402

WARM_UP = 3.0
"""Seconds from Locust's start to the measured window: the master finds its workers
(about a second), spawns the clients, and the connections are made."""


@dataclass
class Row:
    generator: str
    processes: str
    clients: int
    rps: float
    best: int | None
    """The most requests started in one second of the window (Locust rows only)."""
    failed: int
    reconciled: str


def locust_row(url: str, model_name: str, processes: int, users: int, churn_users: int,
               seconds: float, work: Path) -> Row:
    settings = TrafficSettings(users=users, churn_users=churn_users, rate_per_user=0,
                               processes=processes, max_seconds=int(WARM_UP + seconds + 60))
    folder = work / f"processes-{processes}"
    with Traffic(url, folder, settings, model_name, planned_seconds=WARM_UP + seconds + 60) \
            as load:
        started = time.time()
        time.sleep(WARM_UP + seconds + 0.5)
        load.require_running()
    everything = load.requests()
    window = (started + WARM_UP, started + WARM_UP + seconds)
    measured = [r for r in everything if window[0] <= r.t < window[1]]
    per_second = Counter(int(r.t - window[0]) for r in measured)
    tally = load.tally()
    held = tally is not None and tally.locust_requests == tally.recorded == len(everything)
    return Row("Locust (the harness's traffic)", str(processes), users + churn_users,
               len(measured) / seconds, max(per_second.values(), default=0),
               sum(not r.ok for r in measured),
               "yes" if held else f"no: {tally}, {len(everything)} lines")


def wrk_row(url: str, model_name: str, threads: int, connections: int, seconds: float) -> Row:
    from sklearn.datasets import load_wine

    body = json.dumps({"instances": [[float(x) for x in load_wine().data[0]]]}).encode()
    predict = f"{url}/v1/models/{model_name}:predict"
    run_wrk(predict, body, connections, WARM_UP, threads)  # warm-up
    rps, _, _, errors = run_wrk(predict, body, connections, seconds, threads)
    return Row(f"wrk -t{threads} -c{connections}", "-", connections, rps, None, errors, "-")


def table(rows: Sequence[Row]) -> str:
    lines = ["| load generator | processes | clients | requests/s | best 1 s | failed | "
             "record = Locust's count |", "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        best = "-" if r.best is None else f"{r.best:,}"
        lines.append(f"| {r.generator} | {r.processes} | {r.clients} | {r.rps:,.0f} | {best} | "
                     f"{r.failed:,} | {r.reconciled} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the model's base URL, e.g. http://127.0.0.1:30080")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per row")
    parser.add_argument("--processes", default="1,2",
                        help="Locust process counts, comma-separated (default 1,2)")
    parser.add_argument("--users", type=int, default=12, help="keep-alive clients")
    parser.add_argument("--churn-users", type=int, default=0,
                        help="new-connection clients (wrk has none: 0 keeps the rows alike)")
    parser.add_argument("--model-name", default="ml-model")
    args = parser.parse_args(argv)
    url = args.url.rstrip("/")
    counts = [int(n) for n in args.processes.split(",")]
    wait_answering(url, args.model_name, timeout=30)
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        rows = [locust_row(url, args.model_name, n, args.users, args.churn_users,
                           args.duration, Path(tmp)) for n in counts]
    clients = args.users + args.churn_users
    if shutil.which("wrk"):
        rows.append(wrk_row(url, args.model_name, max(counts), clients, args.duration))
    print(f"\n{url}, --rate 0, {args.duration:g} s measured after a {WARM_UP:g} s warm-up, "
          f"{os.cpu_count()} CPUs here.\n")
    print(table(rows))
    if not shutil.which("wrk"):
        print("\nwrk is not installed (apt-get install wrk): no wrk row.")
    best = max(rows[:len(counts)], key=lambda r: r.rps)
    print(f"\nHighest recorded rate: {best.rps:,.0f} requests/s, in {best.processes} Locust "
          f"process(es).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
