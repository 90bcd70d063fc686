"""Stdlib-only client commands: ``drain`` (the preStop hook) and ``smoke`` (``helm test``).

No numpy or scikit-learn imports here: the preStop hook must start fast,
and the test pod should check the server, not load a model itself.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from model_server import DEFAULT_MODEL_NAME


def _request(
    url: str, method: str, path: str, body: Any = None, timeout: float = 10.0
) -> tuple[int, dict[str, str], Any]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout
    )
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        return (
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            json.loads(raw or b"null"),
        )
    finally:
        conn.close()


def drain(port: int, wait: bool) -> int:
    """Tell the local server to drain; with ``wait``, return when its drain period is over."""
    try:
        status, _, body = _request(f"http://127.0.0.1:{port}", "POST", "/drain", timeout=5.0)
    except (OSError, http.client.HTTPException, ValueError) as e:
        print(f"drain: cannot reach the server on 127.0.0.1:{port}: {e}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"drain: server answered {status}: {body}", file=sys.stderr)
        return 1
    remaining = float(body.get("remaining_seconds", 0.0))
    print(f"drain: draining, {remaining:.1f}s left")
    if wait:
        time.sleep(remaining)
    return 0


def smoke(url: str, model_name: str, holdout: Path, expect_version: str | None, batch: int) -> int:
    """Predict a batch of hold-out rows through ``url``; fail unless all is well."""
    rows = [json.loads(line) for line in holdout.read_text().splitlines()[:batch]]
    path = f"/v1/models/{model_name}:predict"
    try:
        status, headers, body = _request(
            url, "POST", path, {"instances": [r["instance"] for r in rows]}
        )
    except (OSError, http.client.HTTPException, ValueError) as e:
        print(f"smoke: POST {url}{path} failed: {e}", file=sys.stderr)
        return 1
    version = headers.get("x-model-version")
    problems = []
    if status != 200:
        problems.append(f"status {status}: {body}")
    elif len(body.get("predictions", [])) != len(rows):
        problems.append(f"{len(body.get('predictions', []))} predictions for {len(rows)} instances")
    if not version:
        problems.append("no X-Model-Version header")
    elif expect_version and version != expect_version:
        problems.append(f"version {version}, expected {expect_version}")
    if problems:
        print(f"smoke: POST {url}{path} failed: {'; '.join(problems)}", file=sys.stderr)
        return 1
    correct = sum(p == r["label"] for p, r in zip(body["predictions"], rows, strict=True))
    print(f"smoke: {version} answered {len(rows)} instances, {correct}/{len(rows)} correct")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``drain [--port P] [--wait]`` or ``smoke --url URL [...]``."""
    parser = argparse.ArgumentParser(prog="model-server")
    sub = parser.add_subparsers(dest="command", required=True)
    p_drain = sub.add_parser("drain", help="start the local server's drain (preStop hook)")
    p_drain.add_argument("--port", type=int, default=int(os.environ.get("MODEL_PORT", "8080")))
    p_drain.add_argument("--wait", action="store_true", help="return when the drain period ends")
    p_smoke = sub.add_parser("smoke", help="predict hold-out rows through a URL (helm test)")
    p_smoke.add_argument("--url", required=True, help="e.g. http://ml-model:8080")
    p_smoke.add_argument("--model-name", default=os.environ.get("MODEL_NAME", DEFAULT_MODEL_NAME))
    p_smoke.add_argument(
        "--holdout",
        type=Path,
        default=Path(os.environ.get("MODEL_DIR", "/opt/model")) / "holdout.jsonl",
    )
    p_smoke.add_argument("--expect-version", help="fail unless X-Model-Version equals this")
    p_smoke.add_argument("--batch", type=int, default=8, help="instances to send")
    args = parser.parse_args(argv)
    if args.command == "drain":
        return drain(args.port, args.wait)
    return smoke(args.url, args.model_name, args.holdout, args.expect_version, args.batch)


if __name__ == "__main__":
    sys.exit(main())
