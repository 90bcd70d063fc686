"""Loading a trained model from its build directory, checking inputs, predicting.

Artefacts are only ever read from the directory ``train`` wrote (the image's
``/opt/model``); the joblib file is unpickled only after its sha256 matches
``metadata.json``, so a swapped or truncated file is refused rather than run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from model_server import fastpath, train

log = logging.getLogger(__name__)


class ModelLoadError(Exception):
    """The model directory is missing, incomplete or does not match its metadata."""


class InputError(ValueError):
    """Input the model cannot score; the message names the expected shape (HTTP 400)."""


@dataclass(frozen=True)
class Model:
    """A loaded model: its metadata and a predict function over float64 matrices."""

    metadata: train.Metadata
    predict: fastpath.Predictor
    compiled: bool
    """True when predictions come from ``fastpath`` (verified on the hold-out)."""

    @property
    def n_features(self) -> int:
        """Number of features each instance must have."""
        return self.metadata["n_features"]


def read_metadata(model_dir: Path) -> train.Metadata:
    """Read ``metadata.json``; cheap, so the server knows its version before loading."""
    path = model_dir / train.METADATA_FILE
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError as e:
        raise ModelLoadError(
            f"no {train.METADATA_FILE} in {model_dir}: train the model first "
            f"(python -m model_server.train --version V --out {model_dir})"
        ) from e
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read {path}: {e}") from e
    missing = sorted(set(train.Metadata.__annotations__) - set(data))
    if missing:
        raise ModelLoadError(f"{path} lacks {', '.join(missing)}: retrain the model")
    return cast(train.Metadata, data)


def read_holdout(model_dir: Path, metadata: train.Metadata) -> tuple[np.ndarray, np.ndarray]:
    """The labelled hold-out rows as ``(x, y)`` arrays."""
    rows = [
        json.loads(line) for line in (model_dir / metadata["holdout_file"]).read_text().splitlines()
    ]
    x = np.array([r["instance"] for r in rows], dtype=np.float64)
    y = np.array([r["label"] for r in rows], dtype=np.int64)
    return x, y


def load(
    model_dir: Path, metadata: train.Metadata | None = None, *, compile_model: bool = True
) -> Model:
    """Verify and load the model in ``model_dir``; raise ``ModelLoadError`` if unusable."""
    import joblib  # deferred: the drain and smoke commands must start fast

    metadata = metadata or read_metadata(model_dir)
    path = model_dir / metadata["model_file"]
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise ModelLoadError(f"cannot read {path}: {e}") from e
    digest = hashlib.sha256(blob).hexdigest()
    if digest != metadata["model_sha256"]:
        raise ModelLoadError(
            f"{path} has sha256 {digest}, metadata says {metadata['model_sha256']}: refused"
        )
    estimator = joblib.load(path)
    reference: fastpath.Predictor = estimator.predict
    x, _ = read_holdout(model_dir, metadata)
    compiled = fastpath.compile_predictor(estimator) if compile_model else None
    if compiled is not None and not np.array_equal(compiled(x), reference(x)):
        log.warning("compiled predictor disagrees with %s on the hold-out; not using it", path)
        compiled = None
    return Model(metadata=metadata, predict=compiled or reference, compiled=compiled is not None)


def to_matrix(
    instances: object, n_features: int, *, may_hold_bools: bool = True, field: str = "instances"
) -> np.ndarray:
    """Turn KServe v1 rows into an ``(n, n_features)`` float64 matrix or raise ``InputError``.

    ``field`` is the body's key the rows came in (``instances`` or ``inputs``), for the
    messages. ``may_hold_bools=False`` skips the per-element bool check (numpy would
    silently read ``true`` as 1); callers pass it when the request body holds
    no ``true``/``false`` token at all, which keeps the common path in C.
    """
    shape = (
        f"[N, {n_features}] (a non-empty list of instances, each a list of {n_features} numbers)"
    )
    if not isinstance(instances, list) or not instances:
        raise InputError(f'"{field}" must have shape {shape}')
    try:
        matrix = np.array(instances)
    except (ValueError, TypeError, OverflowError) as e:
        raise InputError(f'"{field}" must have shape {shape}; rows differ in length') from e
    if matrix.ndim != 2 or matrix.shape[1] != n_features:
        raise InputError(f'"{field}" must have shape {shape}; got shape {list(matrix.shape)}')
    if matrix.dtype.kind not in "iuf" or (
        may_hold_bools and any(type(v) is bool for row in instances for v in row)
    ):
        raise InputError(f'"{field}" must hold only numbers; expected shape {shape}')
    matrix = matrix.astype(np.float64, copy=False)
    if not np.isfinite(matrix).all():
        raise InputError(f'"{field}" must hold finite numbers; expected shape {shape}')
    return matrix
