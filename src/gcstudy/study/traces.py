"""The per-run trace file: HDF5 with dimension scales, readable as an ``xarray.Dataset``.

One file per run, ``results/runs/<run_id>/trace.h5``, one writer (this module). Every
variable lies along the ``step`` dimension (``gc_per_class`` also along ``class``); each
carries ``units``, ``long_name`` and ``description`` attributes. File attributes hold
JSON strings: the resolved run ``spec``, software ``versions``, ``git_commit``, ``device``,
``seed``, ``schema_version`` and ``status`` (``running``, ``complete`` or ``diverged``), plus
run facts such as the input normalisation, ``segments``: the torch thread count, device
and host of each stretch of training (the first, then one per resume), and in a finished
trace ``phase_seconds`` (where the run's wall time went, see ``gcstudy.training.trainer``).
A finished
file is only ever produced by writing a temporary file and renaming it into place, so a
file named ``trace.h5`` is never half-written, and a finished trace is never overwritten.

``gcstudy.study.traces.read(path)`` checks a trace and returns it as an ``xarray.Dataset`` with
decoded JSON attributes; ``gcstudy.study.traces.load(path)`` gives the same checked arrays
without xarray (fast, for aggregating thousands of traces).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from gcstudy import files

if TYPE_CHECKING:
    import xarray as xr

SCHEMA_VERSION = 2  # 2: gc_test, gc_test_stderr, geometric_collapse_test
STATUSES = ("running", "complete", "diverged")
FINISHED = ("complete", "diverged")
JSON_ATTRIBUTES = (
    "spec",
    "versions",
    "normalisation",
    "classes",
    "target_classes",
    "facts",
    "segments",
    "phase_seconds",
)


@dataclass(frozen=True)
class Variable:
    """One traced quantity: its dimensions, units and meaning."""

    dims: tuple[str, ...]
    units: str
    long_name: str
    transfer_only: bool = False


STEP = ("step",)
VARIABLES: dict[str, Variable] = {
    "examples_seen": Variable(STEP, "examples", "training examples processed so far"),
    "wall_time": Variable(STEP, "s", "wall-clock seconds since the run started (resumes add)"),
    "train_loss": Variable(STEP, "nats", "cross-entropy on the fixed training feature sample"),
    "train_accuracy": Variable(STEP, "1", "accuracy on the fixed training feature sample"),
    "test_loss": Variable(STEP, "nats", "cross-entropy on the test sample"),
    "test_accuracy": Variable(STEP, "1", "accuracy on the test sample"),
    "gc": Variable(STEP, "1", "geometric complexity of the embedding, mean ||J_f(x)||_F^2"),
    "gc_stderr": Variable(STEP, "1", "standard error of the GC estimate"),
    "gc_per_class": Variable(("step", "class"), "1", "GC on the examples of each class"),
    "geometric_collapse": Variable(STEP, "1", "mean over class pairs of (GC_i+GC_j)/2d_ij^2"),
    "gc_test": Variable(STEP, "1", "GC of the embedding on the fixed test GC sample"),
    "gc_test_stderr": Variable(STEP, "1", "standard error of the test GC estimate"),
    "geometric_collapse_test": Variable(
        STEP, "1", "geometric collapse on test data: test per-class GC, test class means"
    ),
    "nc_train": Variable(STEP, "1", "neural collapse (mean CDNV) on training features"),
    "nc_test": Variable(STEP, "1", "neural collapse (mean CDNV) on test features"),
    "nc1_train": Variable(STEP, "1", "NC1 = tr(Sigma_W Sigma_B^+)/C on training features"),
    "ncc_train_error": Variable(STEP, "1", "nearest-class-mean error on training features"),
    "ncc_test_error": Variable(STEP, "1", "nearest-class-mean error on test features"),
    "bound_cdnv": Variable(STEP, "1", "NCC error bound 4(C-1) NC_train"),
    "bound_gc": Variable(STEP, "1", "NCC error bound 4(C-1) c geometric_collapse"),
    "target_nc": Variable(STEP, "1", "neural collapse on the target classes", True),
    "fewshot_1shot_accuracy": Variable(STEP, "1", "5-way 1-shot NCC accuracy", True),
    "fewshot_1shot_ci95": Variable(STEP, "1", "95% CI half-width of the 1-shot accuracy", True),
    "fewshot_1shot_bound": Variable(STEP, "1", "1-shot bound 4(W-1)(1+1/1) target NC", True),
    "fewshot_5shot_accuracy": Variable(STEP, "1", "5-way 5-shot NCC accuracy", True),
    "fewshot_5shot_ci95": Variable(STEP, "1", "95% CI half-width of the 5-shot accuracy", True),
    "fewshot_5shot_bound": Variable(STEP, "1", "5-shot bound 4(W-1)(1+1/5) target NC", True),
}


class TraceError(ValueError):
    """A trace file that is missing, unreadable, unfinished or not of this schema."""


def write(
    path: str | os.PathLike,
    steps: np.ndarray,
    classes: np.ndarray,
    values: dict[str, np.ndarray],
    attrs: dict,
    status: str,
) -> Path:
    """Write a trace atomically (``gcstudy.files``: a temporary name, fsynced, renamed).

    Args:
        path: destination, e.g. ``results/runs/<run_id>/trace.h5``.
        steps: int, shape S, the evaluation steps (optimizer updates done before each).
        classes: int, shape C, the source class labels (the ``class`` coordinate).
        values: variable name -> array of shape S (or S x C for ``gc_per_class``); every
            non-transfer variable of ``VARIABLES`` must be present.
        attrs: file attributes; values that are not str/int/float are stored as JSON.
        status: "running", "complete" or "diverged".

    Refuses to replace a finished trace (``FileExistsError``).
    """
    path = Path(path)
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    if path.exists() and _status_of(path) in FINISHED:
        raise FileExistsError(f"{path} is a finished trace; refusing to overwrite it")
    _check_values(steps, classes, values)
    with files.replacing(path, sync=True) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("step", data=np.asarray(steps, dtype=np.int64)).make_scale("step")
        f.create_dataset("class", data=np.asarray(classes, dtype=np.int64)).make_scale("class")
        for name, array in values.items():
            variable = VARIABLES[name]
            dataset = f.create_dataset(name, data=np.asarray(array, dtype=_dtype(name)))
            for axis, dim in enumerate(variable.dims):
                dataset.dims[axis].attach_scale(f[dim])
            dataset.attrs["units"] = variable.units
            dataset.attrs["long_name"] = variable.long_name
            dataset.attrs["description"] = variable.long_name
        for key, value in {**attrs, "status": status, "schema_version": SCHEMA_VERSION}.items():
            f.attrs[key] = value if isinstance(value, str | int | float) else json.dumps(value)
    return path


@dataclass(frozen=True)
class Trace:
    """A checked trace as arrays: ``steps`` (S), ``classes`` (C), ``values`` (name -> array
    of shape S or S x C) and decoded ``attrs``."""

    steps: np.ndarray
    classes: np.ndarray
    values: dict[str, np.ndarray]
    attrs: dict[str, Any]


def load(path: str | os.PathLike, allow_running: bool = False) -> Trace:
    """Read and check a trace straight from HDF5 (xarray's reader costs ~30x more per file).

    Raises ``TraceError`` naming the file if it is missing, corrupt or truncated, of another
    schema version, still running (unless ``allow_running``), lacks a variable, or has
    shapes or steps that do not fit together.
    """
    path = Path(path)
    if not path.is_file():
        raise TraceError(f"trace {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _decode(v) for k, v in f.attrs.items()}
            steps = f["step"][()].astype(np.int64)
            classes = f["class"][()].astype(np.int64)
            values = {name: f[name][()] for name in VARIABLES if name in f}
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise TraceError(f"trace {path} is corrupt or truncated: {error}") from None
    if attrs.get("schema_version") != SCHEMA_VERSION:
        raise TraceError(
            f"trace {path} has schema_version {attrs.get('schema_version')!r}, "
            f"this gcstudy reads version {SCHEMA_VERSION}"
        )
    status = attrs.get("status")
    if status not in STATUSES or (status == "running" and not allow_running):
        raise TraceError(
            f"trace {path} has status {status!r}; expected one of {FINISHED}"
            + (" (the run has not finished)" if status == "running" else "")
        )
    problem = _layout_problem(steps, classes, values)
    if problem:
        raise TraceError(f"trace {path} is corrupt: {problem}")
    if np.any(np.diff(steps) <= 0):
        raise TraceError(f"trace {path} is corrupt: its steps are not increasing")
    for key in JSON_ATTRIBUTES:
        if isinstance(attrs.get(key), str):
            try:
                attrs[key] = json.loads(attrs[key])
            except json.JSONDecodeError:
                raise TraceError(f"trace {path} has a corrupt attribute {key!r}") from None
    return Trace(steps, classes, values, attrs)


def read(path: str | os.PathLike, allow_running: bool = False) -> xr.Dataset:
    """A checked trace (see ``load``) as an ``xarray.Dataset`` with named dimensions, each
    variable with its ``units``, ``long_name`` and ``description``, and decoded attributes:
    the same as ``xarray.open_dataset(path, engine="h5netcdf")`` gives, plus the checks."""
    import xarray as xr  # slow import (pandas): only where datasets are built

    trace = load(path, allow_running)
    variables = {}
    for name, array in trace.values.items():
        variable = VARIABLES[name]
        meta = {
            "units": variable.units,
            "long_name": variable.long_name,
            "description": variable.long_name,
        }
        variables[name] = (variable.dims, array, meta)
    coords = {"step": trace.steps, "class": trace.classes}
    return xr.Dataset(variables, coords=coords, attrs=trace.attrs)


def _decode(value: Any) -> Any:
    """HDF5 attribute value as plain Python (bytes to str, numpy scalars to numbers)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def status(path: str | os.PathLike) -> str | None:
    """The ``status`` attribute of a trace file, or None if there is no readable trace."""
    try:
        return _status_of(Path(path))
    except OSError:
        return None


def _status_of(path: Path) -> str | None:
    with h5py.File(path, "r") as f:
        return _decode(f.attrs.get("status"))


def _dtype(name: str) -> type:
    return np.int64 if name == "examples_seen" else np.float64


def _check_values(steps: np.ndarray, classes: np.ndarray, values: dict[str, np.ndarray]) -> None:
    unknown = sorted(set(values) - set(VARIABLES))
    if unknown:
        raise ValueError(f"unknown trace variables {unknown}; known: {sorted(VARIABLES)}")
    problem = _layout_problem(steps, classes, values)
    if problem:
        raise ValueError(f"trace values do not fit the schema: {problem}")


def _layout_problem(steps, classes, values: dict[str, np.ndarray]) -> str | None:
    """What is wrong with the variables' presence and shapes (the writer's and the reader's
    one check), or None."""
    missing = [n for n, v in VARIABLES.items() if not v.transfer_only and n not in values]
    if missing:
        return f"it lacks the variables {', '.join(missing)}"
    sizes = {"step": len(steps), "class": len(classes)}
    for name, array in values.items():
        expected = tuple(sizes[d] for d in VARIABLES[name].dims)
        if np.shape(array) != expected:
            return f"{name} has shape {np.shape(array)}, expected {expected}"
    return None
