"""Numpy-only predictors compiled from fitted scikit-learn pipelines.

Why: on a small machine ``Pipeline.predict`` on one row costs ~1 ms, almost
all of it input validation and array-API dispatch, while the arithmetic is a
couple of matrix products worth a few microseconds. For the pipelines this
project trains (standard scaling, then logistic regression or an MLP) the
same arithmetic is done here directly. ``model.load`` only uses a compiled
predictor after checking it gives exactly the estimator's predictions on the
hold-out set; anything unsupported returns ``None`` and the estimator's own
``predict`` is used.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

Predictor = Callable[[np.ndarray], np.ndarray]

_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda z: np.maximum(z, 0.0, out=z),
    "tanh": lambda z: np.tanh(z, out=z),
    "logistic": lambda z: np.divide(1.0, 1.0 + np.exp(-z), out=z),
    "identity": lambda z: z,
}


def _scaler(scaler: StandardScaler) -> Callable[[np.ndarray], np.ndarray]:
    """``(x - mean) / scale`` in the same order as scikit-learn, so results match bit for bit."""
    mean = np.asarray(scaler.mean_, dtype=np.float64) if scaler.with_mean else None
    scale = np.asarray(scaler.scale_, dtype=np.float64) if scaler.with_std else None

    def transform(x: np.ndarray) -> np.ndarray:
        if mean is not None:
            x = x - mean
        if scale is not None:
            x = x / scale
        return x

    return transform


def _logistic(clf: LogisticRegression) -> Callable[[np.ndarray], np.ndarray] | None:
    coef = np.ascontiguousarray(clf.coef_.T, dtype=np.float64)
    intercept = np.asarray(clf.intercept_, dtype=np.float64)
    classes = np.asarray(clf.classes_)
    if coef.shape[1] == 1:
        return lambda x: classes[((x @ coef)[:, 0] + intercept[0] > 0).astype(np.intp)]
    return lambda x: classes[np.argmax(x @ coef + intercept, axis=1)]


def _mlp(clf: MLPClassifier) -> Callable[[np.ndarray], np.ndarray] | None:
    activation = _ACTIVATIONS.get(clf.activation)
    if activation is None or clf.out_activation_ not in ("softmax", "logistic"):
        return None
    layers = [
        (np.ascontiguousarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64))
        for w, b in zip(clf.coefs_, clf.intercepts_, strict=True)
    ]
    classes = np.asarray(clf.classes_)
    hidden, (w_out, b_out) = layers[:-1], layers[-1]
    binary = clf.out_activation_ == "logistic"
    if binary and len(classes) != 2:
        return None  # multi-label output: leave it to scikit-learn

    def predict(x: np.ndarray) -> np.ndarray:
        for w, b in hidden:
            z = x @ w
            z += b
            x = activation(z)
        logits = x @ w_out + b_out
        index = (logits[:, 0] > 0).astype(np.intp) if binary else np.argmax(logits, axis=1)
        labels: np.ndarray = classes[index]
        return labels

    return predict


def compile_predictor(estimator: object) -> Predictor | None:
    """A numpy predictor equivalent to ``estimator.predict``, or ``None`` if unsupported."""
    steps = estimator.steps if isinstance(estimator, Pipeline) else [("model", estimator)]
    if not steps:
        return None
    *transforms, (_, final) = steps
    scalers = []
    for _, step in transforms:
        if not isinstance(step, StandardScaler):
            return None
        scalers.append(_scaler(step))
    if isinstance(final, LogisticRegression):
        head = _logistic(final)
    elif isinstance(final, MLPClassifier):
        head = _mlp(final)
    else:
        return None
    if head is None:
        return None
    if not scalers:
        return head

    def predict(x: np.ndarray) -> np.ndarray:
        for transform in scalers:
            x = transform(x)
        return head(x)

    return predict
