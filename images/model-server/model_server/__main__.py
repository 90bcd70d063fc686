"""``python -m model_server [serve|drain|smoke|train]``: the image's entry point.

``serve`` (the default) runs the server; ``drain`` is the preStop hook;
``smoke`` is the ``helm test`` check; ``train`` is the build step. Only
``serve`` and ``train`` import numpy and scikit-learn, so the hook and the
check start in a few tens of milliseconds.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path


def _serve(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="model-server serve", description="Run the model server.")
    parser.add_argument("--host", help="listen address (MODEL_HOST, default 0.0.0.0)")
    parser.add_argument(
        "--port", type=int, help="listen port, 0 for any (MODEL_PORT, default 8080)"
    )
    parser.add_argument("--model-dir", type=Path, help="trained model directory (MODEL_DIR)")
    args = parser.parse_args(argv)
    from model_server import serving
    from model_server.settings import Settings

    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        settings = Settings.from_env(**overrides)
    except ValueError as e:
        print(f"model-server: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return serving.run(settings)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a subcommand; ``serve`` when none is given."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args and not args[0].startswith("-") else "serve"
    if command == "serve":
        return _serve(args)
    if command in ("drain", "smoke"):
        from model_server import client

        return client.main([command, *args])
    if command == "train":
        from model_server import train

        return train.main(args)
    print(
        f"model-server: unknown command {command!r}; use serve, drain, smoke or train",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
