"""``rollout-harness serve``: run the model server locally, without docker or a cluster.

Trains the requested version into the cache once (the same
``model_server.train`` step the image runs at build time), then serves it in
the foreground with the same code the image runs. ``MODEL_*`` environment
variables apply as in a pod (e.g. ``MODEL_DRAIN_SECONDS``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from harness import errors, progress
from harness.settings import Settings

log = logging.getLogger(__name__)


def model_cache_dir(settings: Settings, version: str) -> Path:
    """``models/<version>`` in the cache (``HARNESS_CACHE_DIR``)."""
    return settings.cache_dir / "models" / version


def ensure_model(version: str, model_dir: Path) -> Path:
    """Train ``version`` into ``model_dir`` unless a matching model is already there."""
    import sklearn
    from model_server import model, train

    try:
        metadata = model.read_metadata(model_dir)
        if metadata["version"] == version and metadata["sklearn_version"] == sklearn.__version__:
            return model_dir
    except model.ModelLoadError:
        pass
    with progress.step(f"training model {version} into {model_dir}"):
        try:
            train.train(version, model_dir)
        except ValueError as e:
            raise errors.UsageError(str(e)) from e
    return model_dir


def serve(version: str, port: int, model_dir: Path, host: str = "127.0.0.1") -> int:
    """Train if needed; serve ``version`` on ``host:port`` until a signal; return its exit code."""
    from model_server import serving
    from model_server.settings import Settings

    directory = ensure_model(version, model_dir)
    try:
        settings = Settings.from_env(model_dir=directory, host=host, port=port)
    except ValueError as e:
        raise errors.UsageError(str(e)) from e
    logging.getLogger("model_server").setLevel(settings.log_level)
    return serving.run(settings)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` subcommand's options."""
    parser.add_argument("--version", required=True, help="model version, e.g. 1.1.0 or 1.1.0-flaky")
    parser.add_argument(
        "--port", type=int, default=8080, help="listen port, 0 for any (default 8080)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument(
        "--model-dir", type=Path, default=None,
        help="model directory (default $HARNESS_CACHE_DIR/models/<version>)",
    )  # fmt: skip


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Entry point for the CLI."""
    model_dir = args.model_dir or model_cache_dir(settings, args.version)
    return serve(args.version, args.port, model_dir, args.host)
