"""Train the wine classifier for one release and write an MLServer model folder.

The folder holds ``model.joblib`` (a scikit-learn pipeline) and
``model-settings.json``, which tells MLServer to serve it with its scikit-learn
runtime (``wine_runtime.WineModel``: the same, with a drain; the Dockerfile
puts the module beside the model) under the name ``wine`` and to report the
release in every answer's ``model_version``.

    python train.py --version 1.1.0 --out /models/wine

Training is deterministic: the data is scikit-learn's bundled wine data set
(no download) and every random choice has a fixed seed, so rebuilding an
image for a release gives the same model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import joblib
import numpy as np
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

MODEL_NAME = "wine"
SEED = 42
HOLDOUT = 0.3
MIN_ACCURACY = 0.9

# Hyperparameters per release; a release not listed here trains with DEFAULT.
DEFAULT = {"C": 1.0, "max_iter": 200}
RELEASES = {
    "1.0.0": {"C": 1.0, "max_iter": 200},
    "1.1.0": {"C": 0.3, "max_iter": 500},
}


def train(version: str) -> tuple[Pipeline, float]:
    """Fit the pipeline for ``version``; return it with its holdout accuracy."""
    params = RELEASES.get(version, DEFAULT)
    x, y = load_wine(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=HOLDOUT, random_state=SEED, stratify=y
    )
    model = Pipeline(
        [
            ("scale", StandardScaler()),
            ("classify", LogisticRegression(random_state=SEED, **params)),
        ]
    )
    model.fit(x_train, y_train.astype(np.int64))
    accuracy = float(model.score(x_test, y_test))
    return model, accuracy


def write(model: Pipeline, version: str, out: Path) -> None:
    """Write the model and the MLServer settings that serve it as ``version``."""
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, out / "model.joblib")
    settings = {
        "name": MODEL_NAME,
        "implementation": "wine_runtime.WineModel",
        "parameters": {"uri": "./model.joblib", "version": version},
    }
    (out / "model-settings.json").write_text(json.dumps(settings, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", required=True, help="release, e.g. 1.0.0")
    parser.add_argument("--out", required=True, type=Path, help="model folder to write")
    args = parser.parse_args(argv)

    model, accuracy = train(args.version)
    print(f"wine {args.version}: holdout accuracy {accuracy:.3f}", file=sys.stderr)
    if accuracy < MIN_ACCURACY:
        print(f"accuracy below {MIN_ACCURACY}: not writing the model", file=sys.stderr)
        return 1
    write(model, args.version, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
