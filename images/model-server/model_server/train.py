"""Train the model for one version and write its artefacts (run at image build time).

``python -m model_server.train --version 1.1.0 --out /opt/model`` writes:

- ``model.joblib``: the fitted scikit-learn pipeline;
- ``metadata.json``: version, behaviour, feature names, classes, hold-out
  accuracy and sha256 of training inputs and of the model file;
- ``holdout.jsonl``: the labelled hold-out rows, one ``{"instance", "label"}``
  per line, for golden checks by tests and ``helm test``.

The dataset is scikit-learn's bundled wine data (178 rows, 13 features,
3 classes): local, small, and clean enough that a good model scores ~1.0 on
the hold-out while a degraded one is visibly worse. The split is the same
for every version so accuracies are comparable; the estimator and its seed
depend on the version, so training is deterministic per version and 1.0.x
and 1.1.x are genuinely different models. ``metadata.json`` is written last:
its presence means the directory is complete.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypedDict

import joblib
import numpy as np
import sklearn
from sklearn.datasets import load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from model_server import versions

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
HOLDOUT_FILE = "holdout.jsonl"
DATASET = "sklearn.datasets.load_wine"
HOLDOUT_FRACTION = 0.3
SPLIT_SEED = 0
_FILE_MODE = 0o644
"""World-readable: the image trains as root at build time and serves as a non-root user."""


class Metadata(TypedDict):
    """``metadata.json``: what the server and the harness know about a model."""

    version: str
    behaviour: str
    estimator: str
    params: dict[str, Any]
    dataset: str
    n_features: int
    feature_names: list[str]
    classes: list[int]
    class_names: list[str]
    train_size: int
    holdout_size: int
    holdout_accuracy: float
    seed: int
    training_sha256: str
    model_sha256: str
    sklearn_version: str
    model_file: str
    holdout_file: str


def _seed(version: versions.Version) -> int:
    """A seed derived from the whole version string, stable across machines."""
    return int.from_bytes(hashlib.sha256(version.text.encode()).digest()[:4], "big") >> 1


def estimator_for(version: versions.Version) -> tuple[str, Pipeline]:
    """The (unfitted) pipeline for a version: even minors linear, odd minors an MLP.

    1.0.x is standardised logistic regression; 1.1.x a one-hidden-layer MLP.
    Both predict with plain matrix products, which ``fastpath`` exploits.
    """
    seed = _seed(version)
    if version.minor % 2 == 0:
        classifier: LogisticRegression | MLPClassifier = LogisticRegression(
            C=1.0, max_iter=1000, random_state=seed
        )
        name = "standard-scaler+logistic-regression"
    else:
        classifier = MLPClassifier(
            hidden_layer_sizes=(16,), alpha=1e-3, max_iter=2000, random_state=seed
        )
        name = "standard-scaler+mlp-16"
    return name, Pipeline([("scale", StandardScaler()), ("classify", classifier)])


def _sha256(*chunks: bytes) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(hashlib.sha256(chunk).digest())
    return digest.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def train(version_text: str, out: Path) -> Metadata:
    """Train the model for ``version_text`` into ``out`` and return its metadata."""
    version = versions.parse(version_text)
    behaviour = version.behaviour
    data = load_wine()
    x: np.ndarray = np.ascontiguousarray(data.data, dtype=np.float64)
    y: np.ndarray = np.asarray(data.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=HOLDOUT_FRACTION, random_state=SPLIT_SEED, stratify=y
    )
    seed = _seed(version)
    if behaviour is versions.Behaviour.DEGRADED:
        y_train = np.random.default_rng(seed).permutation(y_train)
    name, pipeline = estimator_for(version)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipeline.fit(x_train, y_train)
    accuracy = float(np.mean(pipeline.predict(x_test) == y_test))
    params = {
        k: v
        for k, v in pipeline.named_steps["classify"].get_params().items()
        if isinstance(v, int | float | str | bool | tuple | type(None))
    }

    out.mkdir(parents=True, exist_ok=True)
    (out / METADATA_FILE).unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{MODEL_FILE}.")
    os.close(fd)
    try:
        joblib.dump(pipeline, tmp)
        model_bytes = Path(tmp).read_bytes()
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, out / MODEL_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    holdout = b"".join(
        json.dumps({"instance": row.tolist(), "label": int(label)}).encode() + b"\n"
        for row, label in zip(x_test, y_test, strict=True)
    )
    _write_atomic(out / HOLDOUT_FILE, holdout)

    metadata: Metadata = {
        "version": version.text,
        "behaviour": behaviour.value,
        "estimator": name,
        "params": params,
        "dataset": DATASET,
        "n_features": int(x.shape[1]),
        "feature_names": [str(f) for f in data.feature_names],
        "classes": [int(c) for c in pipeline.classes_],
        "class_names": [str(c) for c in data.target_names],
        "train_size": len(y_train),
        "holdout_size": len(y_test),
        "holdout_accuracy": round(accuracy, 4),
        "seed": seed,
        "training_sha256": _sha256(
            version.text.encode(),
            json.dumps(params, sort_keys=True).encode(),
            x_train.tobytes(),
            y_train.tobytes(),
        ),
        "model_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "sklearn_version": sklearn.__version__,
        "model_file": MODEL_FILE,
        "holdout_file": HOLDOUT_FILE,
    }
    _write_atomic(out / METADATA_FILE, json.dumps(metadata, indent=2).encode() + b"\n")
    return metadata


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m model_server.train --version V [--out DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m model_server.train", description=__doc__)
    parser.add_argument("--version", required=True, help="model version, e.g. 1.1.0-flaky")
    parser.add_argument("--out", type=Path, default=Path("model"), help="artefact directory")
    args = parser.parse_args(argv)
    try:
        metadata = train(args.version, args.out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"trained {metadata['version']} ({metadata['estimator']}, behaviour "
        f"{metadata['behaviour']}): hold-out accuracy {metadata['holdout_accuracy']:.3f} "
        f"-> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
