"""The compiled numpy predictors agree with scikit-learn exactly."""

from __future__ import annotations

import numpy as np
import pytest
from model_server import fastpath
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier


def _inputs(x: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(7)
    noise = rng.normal(size=(5000, x.shape[1])) * x.std(axis=0) * 3 + x.mean(axis=0)
    return np.vstack([x, noise])


@pytest.mark.parametrize("loader", [load_wine, load_breast_cancer], ids=["multiclass", "binary"])
@pytest.mark.parametrize(
    "make",
    [
        lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        lambda: LogisticRegression(max_iter=50),
        lambda: make_pipeline(StandardScaler(with_mean=False), LogisticRegression(max_iter=2000)),
        lambda: make_pipeline(StandardScaler(), MLPClassifier((8,), max_iter=300, random_state=0)),
        lambda: make_pipeline(
            StandardScaler(), MLPClassifier((8, 4), activation="tanh", max_iter=300, random_state=0)
        ),
    ],
    ids=["scaled-lr", "bare-lr", "scale-only-lr", "mlp-relu", "mlp-tanh-2"],
)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_compiled_predictor_matches_sklearn(loader, make) -> None:  # type: ignore[no-untyped-def]
    x, y = loader(return_X_y=True)
    estimator = make().fit(x, y)
    compiled = fastpath.compile_predictor(estimator)
    assert compiled is not None
    inputs = _inputs(x)
    assert np.array_equal(compiled(inputs), estimator.predict(inputs))


def test_unsupported_estimators_fall_back() -> None:
    x, y = load_wine(return_X_y=True)
    assert fastpath.compile_predictor(DecisionTreeClassifier().fit(x, y)) is None
