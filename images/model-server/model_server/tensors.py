"""Open Inference Protocol (KServe v2) tensors: reading an infer request's input.

The model takes one input, a ``[-1, n_features]`` tensor of numbers, and
gives one output, a ``[-1]`` tensor of class labels. ``read_request`` checks
an infer request against the protocol's JSON shapes (``id``, ``parameters``,
``inputs``, ``outputs`` and each input's ``name``, ``shape``, ``datatype``,
``data``) and returns the rows as the float64 matrix every predictor takes,
or raises ``model.InputError`` naming what is wrong (HTTP 400).

Data may be flat (row-major) or nested in the tensor's shape, as the
protocol allows. Its values are read as the declared datatype first, so an
``FP32`` tensor is scored at float32 precision, as a server holding the
tensor in that type would; an ``INT*`` tensor must hold integers in range.
``BOOL`` and ``BYTES`` are refused: the features are numbers. The input's
name must be a string but is not matched against the metadata's: the model
has only one input, so any name means it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from model_server import model

INPUT_NAME = "input-0"
"""The input's name in the model metadata."""
OUTPUT_NAME = "output-0"
"""The output's name in the model metadata and in every infer response."""

DATATYPES: dict[str, np.dtype] = {
    name: np.dtype(kind)
    for name, kind in (
        ("FP64", "float64"), ("FP32", "float32"), ("FP16", "float16"),
        ("INT64", "int64"), ("INT32", "int32"), ("INT16", "int16"), ("INT8", "int8"),
        ("UINT64", "uint64"), ("UINT32", "uint32"), ("UINT16", "uint16"), ("UINT8", "uint8"),
    )
}  # fmt: skip
"""The input datatypes accepted, and the numpy type their data is read as."""

_OUTPUT_DATATYPES = {dtype: name for name, dtype in DATATYPES.items()} | {np.dtype(bool): "BOOL"}


def datatype_of(dtype: np.dtype) -> str:
    """The protocol datatype of a numpy type (labels that are not numbers are ``BYTES``)."""
    return _OUTPUT_DATATYPES.get(dtype, "BYTES")


class Request(NamedTuple):
    """What an infer request asks for."""

    id: str | None
    """The request's ``id``, echoed in the response; ``None`` when it gave none."""
    x: np.ndarray
    """The input rows, ``(n, n_features)`` float64."""


def read_request(payload: object, n_features: int, *, may_hold_bools: bool = True) -> Request:
    """Check an infer request's JSON and read its input; raise ``model.InputError`` if wrong.

    ``may_hold_bools=False`` skips the per-element bool check, as in ``model.to_matrix``.
    """
    if type(payload) is not dict:
        raise model.InputError('an infer request must be a JSON object with "inputs"')
    request_id = payload.get("id")
    if request_id is not None and type(request_id) is not str:
        raise model.InputError('"id" must be a string')
    _check_parameters(payload, "the request")
    _check_outputs(payload.get("outputs"))
    inputs = payload.get("inputs")
    if type(inputs) is not list or len(inputs) != 1 or type(inputs[0]) is not dict:
        raise model.InputError(
            f'"inputs" must be a list of one tensor {{"name", "shape": [N, {n_features}], '
            f'"datatype", "data"}}; this model has one input'
        )
    return Request(request_id, _read_tensor(inputs[0], n_features, may_hold_bools))


def _check_parameters(holder: dict[str, object], where: str) -> None:
    parameters = holder.get("parameters")
    if parameters is not None and type(parameters) is not dict:
        raise model.InputError(f'"parameters" of {where} must be an object')


def _check_outputs(outputs: object) -> None:
    if outputs is None:
        return
    if type(outputs) is not list:
        raise model.InputError('"outputs" must be a list of {"name"} objects')
    for requested in outputs:
        if type(requested) is not dict or type(requested.get("name")) is not str:
            raise model.InputError('"outputs" must be a list of {"name"} objects')
        if requested["name"] != OUTPUT_NAME:
            raise model.InputError(
                f'no output named {requested["name"]!r}; this model has one output, "{OUTPUT_NAME}"'
            )
        _check_parameters(requested, f'output "{OUTPUT_NAME}"')


def _read_tensor(tensor: dict[str, object], n_features: int, may_hold_bools: bool) -> np.ndarray:
    name = tensor.get("name")
    if type(name) is not str:
        raise model.InputError('the input tensor needs a "name" (a string)')
    _check_parameters(tensor, f"input {name!r}")
    expected = f"[N, {n_features}] (N >= 1 rows of {n_features} features)"
    shape = tensor.get("shape")
    if (
        type(shape) is not list
        or len(shape) != 2
        or not all(type(d) is int for d in shape)
        or shape[0] < 1
        or shape[1] != n_features
    ):
        raise model.InputError(f"input {name!r} must have shape {expected}; got {shape!r}")
    datatype = tensor.get("datatype")
    dtype = DATATYPES.get(datatype) if type(datatype) is str else None
    if dtype is None:
        raise model.InputError(
            f"input {name!r} has datatype {datatype!r}; use one of {', '.join(DATATYPES)}"
        )
    data = tensor.get("data")
    if type(data) is not list:
        raise model.InputError(f'input {name!r} needs "data": a list, flat or nested')
    try:
        values = np.array(data)
    except (ValueError, TypeError, OverflowError) as e:
        raise model.InputError(
            f"input {name!r}: nested data must have shape {shape}; rows differ in length"
        ) from e
    size = math.prod(shape)
    if values.ndim == 1 and values.size == size:
        values = values.reshape(shape)
    elif list(values.shape) != shape:
        raise model.InputError(
            f"input {name!r}: data of shape {list(values.shape)} does not fit shape {shape}; "
            f"give {size} values, flat or nested as {shape}"
        )
    return _as_features(values, data, dtype, str(datatype), name, may_hold_bools)


def _as_features(
    values: np.ndarray,
    data: list[object],
    dtype: np.dtype,
    datatype: str,
    name: str,
    may_hold_bools: bool,
) -> np.ndarray:
    """``values`` read as ``datatype``, then as float64; ``InputError`` if they are not that."""
    integral = dtype.kind in "iu"
    if values.dtype.kind not in ("iu" if integral else "iuf") or (
        may_hold_bools and _holds_bool(data)
    ):
        kind = "integers" if integral else "numbers"
        raise model.InputError(f"input {name!r} is {datatype}: its data must hold only {kind}")
    if integral:
        limits = np.iinfo(dtype)
        if values.min() < limits.min or values.max() > limits.max:
            raise model.InputError(
                f"input {name!r} is {datatype}: values must lie in [{limits.min}, {limits.max}]"
            )
    elif dtype != np.float64:
        with np.errstate(over="ignore"):
            values = values.astype(dtype)
    matrix = np.ascontiguousarray(values, dtype=np.float64)
    if not np.isfinite(matrix).all():
        raise model.InputError(f"input {name!r} must hold finite numbers within {datatype}'s range")
    return matrix


def _holds_bool(data: object) -> bool:
    if type(data) is list:
        return any(_holds_bool(item) for item in data)
    return type(data) is bool
