"""All traces and per-run evaluations of a study config in one ``xarray.Dataset``.

``gcstudy aggregate --table results/run_table.json --runs results/runs --out results/study.nc``

Layout of ``study.nc`` (see ``aggregate``):

* dims ``run`` (run ids), ``step`` (union of every run's evaluation steps), ``class`` (union
  of source class labels); ``classifier`` x ``shots`` for the few-shot table; ``setting`` x
  ``repeat`` for the GC-estimator study.
* per-run coords: study, experiment, sweeps ("base,lr"), swept_factor, swept_value, model,
  width, dataset, lr, batch_size, l2, gc_penalty, seed, status, final_step, steps_planned;
  run_folder (the folder under results/runs it was read from: runs of several studies with
  one spec share the folder of the first, see gcstudy.study.config); from the trace's facts:
  poincare_constant, test_examples and feature_examples (the sizes of the test and
  feature samples the run measured on; NaN where the trace does not record them).
* every trace variable along (run, step) (``gc_per_class`` along (run, step, class)),
  with NaN where a run has no measurement: steps are aligned by an outer join, never
  interpolated. A diverged run keeps its steps up to divergence and is marked in ``status``.
* ``fewshot_accuracy`` / ``fewshot_ci95`` (run, classifier, shots), ``fewshot_target_nc``
  (run); ``gcest_estimate`` / ``gcest_reported_stderr`` (run, setting, repeat),
  ``gcest_cost`` / ``gcest_seconds`` (run, setting), ``gcest_exact`` / ``gcest_exact_stderr``
  (run); NaN for runs without that evaluation.
* attributes: config_hash, created_at, versions, git_commit, trace_git_commits, studies
  (JSON of the run table's study summaries), skipped (JSON list of refused runs),
  spec_defaults (JSON of the run-spec defaults in force).

A missing, truncated, corrupt or still-running trace (or a missing or unreadable evaluation
file the study asks for) is refused with the file named; ``skip_bad=True`` leaves such runs
out and lists them in the ``skipped`` attribute instead.

A trace written by a generator (``gcstudy.testing``: its ``generated_by`` attribute) is
refused: generated values are not measurements. ``allow_generated=True`` (tests,
benchmarks) reads it and copies the marker into the study file's ``generated_by``
attribute, and the report then says in its first line that the study is generated.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from gcstudy import files
from gcstudy.study import traces
from gcstudy.study.factors import FACTORS
from gcstudy.study.runfolder import RunFolder

RUN_COORDS = (
    "study",
    "experiment",
    "sweeps",
    "swept_factor",
    "swept_value",
    "model",
    "width",
    "dataset",
    *FACTORS,
    "seed",
    "status",
    "final_step",
    "steps_planned",
)
FEWSHOT_VARS = {"accuracy": "fewshot_accuracy", "ci95": "fewshot_ci95"}
GCEST_VARS = {"estimate": "gcest_estimate", "reported_stderr": "gcest_reported_stderr"}
GCEST_SETTING_VARS = {"cost": "gcest_cost", "seconds": "gcest_seconds"}
GCEST_SCALARS = {"exact": "gcest_exact", "exact_stderr": "gcest_exact_stderr"}


class AggregateError(ValueError):
    """A run whose files cannot be aggregated; the message names the file."""


class GeneratedError(AggregateError):
    """A generated trace (``gcstudy.testing``) offered as a measurement; never skipped."""


@dataclass
class RunRecord:
    """What one run contributes: its table entry, its trace and its evaluations."""

    entry: dict
    trace: traces.Trace
    fewshot: xr.Dataset | None = None
    gc_estimators: xr.Dataset | None = None


def read_trace(path: Path) -> traces.Trace:
    """A checked trace (``gcstudy.study.traces.load``), its errors as ``AggregateError``."""
    try:
        return traces.load(path)
    except traces.TraceError as error:
        raise AggregateError(str(error)) from None


def load_table(path: str | os.PathLike) -> dict:
    """The run table (``results/run_table.json``)."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise AggregateError(f"run table {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise AggregateError(f"run table {path} is not valid JSON: {error}") from None


def read_run(entry: dict, runs_dir: Path, allow_generated: bool = False) -> RunRecord:
    """Read and check one run's trace and the evaluation files its study asks for."""
    folder = RunFolder(runs_dir / entry.get("folder", entry["run_id"]))  # shared: one folder
    path = folder.trace
    if not path.exists() and folder.running_trace.exists():
        raise AggregateError(
            f"trace {path} does not exist: the run is still running "
            f"({folder.running_trace} is its partial trace)"
        )
    trace = read_trace(path)
    if "generated_by" in trace.attrs and not allow_generated:
        raise GeneratedError(
            f"trace {path} was written by a generator ({trace.attrs['generated_by']}), not "
            "by training: refusing to aggregate it into a study (tests pass allow_generated)"
        )
    _check_spec(trace, entry, path)
    record = RunRecord(entry, trace)
    evaluations = entry.get("evaluations", [])
    if "fewshot" in evaluations:
        record.fewshot = _read_netcdf(
            folder.evaluation_file("fewshot"), ("accuracy", "ci95", "target_nc")
        )
    if "gc_estimators" in evaluations:
        record.gc_estimators = _read_netcdf(
            folder.evaluation_file("gc_estimators"), ("estimate", "reported_stderr", "exact")
        )
    return record


def _read_netcdf(path: Path, required: tuple[str, ...]) -> xr.Dataset:
    if not path.is_file():
        raise AggregateError(f"evaluation file {path} does not exist")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as opened:
            dataset = opened.load()
    except (OSError, ValueError, KeyError) as error:
        raise AggregateError(f"evaluation file {path} is corrupt or truncated: {error}") from None
    missing = [name for name in required if name not in dataset]
    if missing:
        raise AggregateError(f"evaluation file {path} lacks the variables {', '.join(missing)}")
    return dataset


def _check_spec(trace: xr.Dataset, entry: dict, path: Path) -> None:
    """Refuse a trace written for another run spec (a stale file from an older config)."""
    recorded, expected = trace.attrs.get("spec"), entry.get("spec")
    if not isinstance(recorded, dict) or not isinstance(expected, dict):
        return
    differing = sorted(
        key for key in expected if key in recorded and not _same(recorded[key], expected[key])
    )
    if differing:
        shown = ", ".join(f"{k}: {recorded[k]!r} (table {expected[k]!r})" for k in differing)
        raise AggregateError(
            f"trace {path} belongs to a different run spec than the run table ({shown}); "
            "re-run the workflow to retrain it"
        )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return a == b


def aggregate(
    table: dict | str | os.PathLike,
    runs_dir: str | os.PathLike,
    skip_bad: bool = False,
    allow_generated: bool = False,
) -> xr.Dataset:
    """Read every run of the run table into one dataset (layout in the module docstring).

    Raises ``AggregateError`` naming the first bad file unless ``skip_bad``; then bad runs
    are left out and recorded in ``attrs["skipped"]`` (JSON list of run_id, path, reason).
    """
    if not isinstance(table, dict):
        table = load_table(table)
    runs_dir = Path(runs_dir)
    records: list[RunRecord] = []
    skipped: list[dict] = []
    for entry in table["runs"]:
        try:
            records.append(read_run(entry, runs_dir, allow_generated))
        except AggregateError as error:
            if not skip_bad or isinstance(error, GeneratedError):
                raise
            skipped.append(
                {"run_id": entry["run_id"], "study": entry["study"], "reason": str(error)}
            )
    if not records:
        raise AggregateError(
            f"no run of the run table could be read from {runs_dir}"
            + (f" ({len(skipped)} skipped)" if skipped else "")
        )
    dataset = build_dataset(records, table)
    markers = {
        str(r.trace.attrs["generated_by"]) for r in records if "generated_by" in r.trace.attrs
    }
    if markers:
        dataset.attrs["generated_by"] = "; ".join(sorted(markers))
    dataset.attrs["skipped"] = json.dumps(skipped)
    dataset.attrs["runs_in_table"] = len(table["runs"])
    return dataset


def build_dataset(records: list[RunRecord], table: dict) -> xr.Dataset:
    """Stack the runs: an outer join of the steps (and classes), NaN where not measured."""
    studies = table.get("studies", {})
    steps = np.unique(np.concatenate([r.trace.steps for r in records]))
    classes = np.unique(np.concatenate([r.trace.classes for r in records]))
    step_index = {int(s): i for i, s in enumerate(steps)}
    class_index = {int(c): i for i, c in enumerate(classes)}
    n = len(records)
    names = [name for name in traces.VARIABLES if any(name in r.trace.values for r in records)]
    data: dict[str, np.ndarray] = {}
    for name in names:
        shape = (n, len(steps)) + ((len(classes),) if name == "gc_per_class" else ())
        data[name] = np.full(shape, np.nan)
    for i, record in enumerate(records):
        rows = np.array([step_index[int(s)] for s in record.trace.steps], dtype=int)
        cols = np.array([class_index[int(c)] for c in record.trace.classes], dtype=int)
        for name in names:
            if name not in record.trace.values:
                continue
            values = record.trace.values[name]
            if name == "gc_per_class":
                data[name][i, rows[:, None], cols[None, :]] = values
            else:
                data[name][i, rows] = values
    variables = {}
    for name in names:
        meta = traces.VARIABLES[name]
        dims = ("run", *meta.dims)
        attrs = {"units": meta.units, "long_name": meta.long_name}
        variables[name] = (dims, data[name], attrs)
    extra_coords: dict[str, Any] = {}
    for part in (_fewshot_variables(records), _gcest_variables(records)):
        extra_coords.update(part.pop("_coords", {}))
        variables.update(part)
    coords: dict[str, Any] = {
        "run": [r.entry["run_id"] for r in records],
        "step": ("step", steps.astype(np.int64), {"long_name": "optimizer steps done"}),
        "class": ("class", classes.astype(np.int64), {"long_name": "source class label"}),
    }
    for name, (values, attrs) in _run_coords(records, studies).items():
        coords[name] = ("run", values, attrs)
    for name, values in _per_run_provenance(records).items():
        coords[name] = ("run", values)
    coords.update(extra_coords)
    dataset = xr.Dataset(variables, coords=coords)
    dataset.attrs.update(_provenance(records, table))
    return dataset


def _run_coords(records: list[RunRecord], studies: dict) -> dict[str, tuple[np.ndarray, dict]]:
    out: dict[str, list] = {name: [] for name in RUN_COORDS}
    for record in records:
        entry, spec = record.entry, record.entry.get("spec", {})
        point = entry.get("point", {})
        sweeps = list(entry.get("sweeps", []))
        factors = [s for s in sweeps if s != "base"]
        factor = factors[0] if len(factors) == 1 and "base" not in sweeps else "base"
        steps = record.trace.steps
        measured = np.isfinite(record.trace.values["gc"])
        out["study"].append(entry["study"])
        out["experiment"].append(studies.get(entry["study"], {}).get("experiment") or "")
        out["sweeps"].append(",".join(sweeps))
        out["swept_factor"].append(factor)
        out["swept_value"].append(float(point[factor]) if factor in point else np.nan)
        out["model"].append(spec.get("model", ""))
        out["width"].append(float(spec.get("width", np.nan)))
        out["dataset"].append(spec.get("dataset", ""))
        for key in FACTORS:
            value = point.get(key, spec.get(key, np.nan))
            out[key].append(int(value) if key == "batch_size" else float(value))
        out["seed"].append(int(entry.get("seed", spec.get("seed", -1))))
        out["status"].append(str(record.trace.attrs["status"]))
        out["final_step"].append(int(steps[measured][-1]) if measured.any() else int(steps[-1]))
        out["steps_planned"].append(int(spec.get("steps", steps[-1])))
    descriptions = {
        "sweeps": "the sweeps this run belongs to (the base point belongs to every sweep)",
        "swept_factor": "the factor this run varies, or 'base' for the base point",
        "swept_value": "value of swept_factor (NaN for the base point: see lr, batch_size, ...)",
        "final_step": "last step with a finite GC measurement",
        "steps_planned": "the run's step budget",
        "status": "complete or diverged",
    }
    result = {}
    for name, values in out.items():
        dtype = object if values and isinstance(values[0], str) else None
        array = np.array(values, dtype=dtype)
        if dtype is object:
            array = array.astype(str)
        result[name] = (array, {"description": descriptions[name]} if name in descriptions else {})
    return result


def _per_run_provenance(records: list[RunRecord]) -> dict[str, np.ndarray]:
    def fact(record: RunRecord, key: str) -> float:
        facts = record.trace.attrs.get("facts")
        value = facts.get(key) if isinstance(facts, dict) else None
        return float(value) if isinstance(value, int | float) else np.nan

    return {
        "device": np.array([str(r.trace.attrs.get("device", "")) for r in records]),
        "git_commit_run": np.array([str(r.trace.attrs.get("git_commit", "")) for r in records]),
        "run_folder": np.array([str(r.entry.get("folder", r.entry["run_id"])) for r in records]),
        "poincare_constant": np.array([fact(r, "poincare_constant") for r in records]),
        "test_examples": np.array([fact(r, "test_examples") for r in records]),
        "feature_examples": np.array([fact(r, "feature_examples") for r in records]),
        "spec_json": np.array(
            [json.dumps(r.entry.get("spec", {}), sort_keys=True) for r in records]
        ),
    }


def _fewshot_variables(records: list[RunRecord]) -> dict:
    tables = [(i, r.fewshot) for i, r in enumerate(records) if r.fewshot is not None]
    if not tables:
        return {}
    classifiers = list(dict.fromkeys(str(c) for _, t in tables for c in t["classifier"].values))
    shots = np.unique(np.concatenate([t["shots"].values for _, t in tables])).astype(np.int64)
    n = len(records)
    out = {}
    for source, target in FEWSHOT_VARS.items():
        array = np.full((n, len(classifiers), len(shots)), np.nan)
        for i, table in tables:
            rows = [classifiers.index(str(c)) for c in table["classifier"].values]
            cols = [int(np.searchsorted(shots, s)) for s in table["shots"].values]
            array[i][np.ix_(rows, cols)] = table[source].values
        attrs = dict(tables[0][1][source].attrs)
        out[target] = (("run", "classifier", "shots"), array, attrs)
    target_nc = np.full(n, np.nan)
    for i, table in tables:
        target_nc[i] = float(table["target_nc"].values)
    out["fewshot_target_nc"] = (
        ("run",),
        target_nc,
        {"units": "1", "long_name": "target-class NC of the final embedding (fewshot.nc)"},
    )
    out["_coords"] = {"classifier": ("classifier", classifiers), "shots": ("shots", shots)}
    out["fewshot_episodes"] = (
        ("run",),
        np.array(
            [
                float(r.fewshot.attrs.get("episodes", np.nan)) if r.fewshot is not None else np.nan
                for r in records
            ]
        ),
        {"long_name": "few-shot episodes of the final evaluation"},
    )
    return out


def _gcest_variables(records: list[RunRecord]) -> dict:
    tables = [(i, r.gc_estimators) for i, r in enumerate(records) if r.gc_estimators is not None]
    if not tables:
        return {}
    settings = list(
        dict.fromkeys(
            (str(e), float(b))
            for _, t in tables
            for e, b in zip(t["estimator"].values, t["budget"].values, strict=True)
        )
    )
    repeats = max(t.sizes["repeat"] for _, t in tables)
    n = len(records)
    arrays = {name: np.full((n, len(settings), repeats), np.nan) for name in GCEST_VARS}
    per_setting = {name: np.full((n, len(settings)), np.nan) for name in GCEST_SETTING_VARS}
    scalars = {name: np.full(n, np.nan) for name in GCEST_SCALARS}
    for i, table in tables:
        index = [
            settings.index((str(e), float(b)))
            for e, b in zip(table["estimator"].values, table["budget"].values, strict=True)
        ]
        r = table.sizes["repeat"]
        for name in GCEST_VARS:
            arrays[name][i, index, :r] = table[name].values
        for name in GCEST_SETTING_VARS:
            if name in table:
                per_setting[name][i, index] = table[name].values
        for name in GCEST_SCALARS:
            if name in table:
                scalars[name][i] = float(table[name].values)
    first = tables[0][1]
    out: dict[str, Any] = {}
    for name, target in GCEST_VARS.items():
        out[target] = (("run", "setting", "repeat"), arrays[name], dict(first[name].attrs))
    for name, target in GCEST_SETTING_VARS.items():
        attrs = dict(first[name].attrs) if name in first else {}
        out[target] = (("run", "setting"), per_setting[name], attrs)
    for name, target in GCEST_SCALARS.items():
        attrs = dict(first[name].attrs) if name in first else {}
        out[target] = (("run",), scalars[name], attrs)
    out["_coords"] = {
        "setting": ("setting", np.arange(len(settings))),
        "repeat": ("repeat", np.arange(repeats)),
        "estimator": ("setting", np.array([e for e, _ in settings])),
        "budget": ("setting", np.array([b for _, b in settings])),
    }
    return out


def _provenance(records: list[RunRecord], table: dict) -> dict[str, Any]:
    from gcstudy import provenance

    try:
        versions = provenance.versions()
    except Exception:  # provenance must never stop aggregation
        versions = {}
    import statsmodels
    import xarray

    versions = {**versions, "xarray": xarray.__version__, "statsmodels": statsmodels.__version__}
    commits = sorted({str(r.trace.attrs.get("git_commit", "unknown")) for r in records})
    run_versions = sorted(
        {json.dumps(r.trace.attrs.get("versions", {}), sort_keys=True) for r in records}
    )
    return {
        "title": "gcstudy study file: every trace and per-run evaluation of one config",
        "config_hash": str(table.get("config_hash", "unknown")),
        "created_at": provenance.now(),
        "git_commit": provenance.git_commit(),
        "versions": json.dumps(versions, sort_keys=True),
        "trace_git_commits": json.dumps(commits),
        "trace_versions": json.dumps([json.loads(v) for v in run_versions]),
        "studies": json.dumps(table.get("studies", {}), sort_keys=True),
        "step_alignment": "outer join on step; NaN where a run has no measurement "
        "(no interpolation)",
    }


def write(dataset: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write the study file atomically (``gcstudy.files``), h5netcdf engine."""
    path = Path(path)
    encoding = {
        name: {"zlib": True, "complevel": 1}
        for name, var in dataset.data_vars.items()
        if var.dtype.kind == "f" and var.ndim >= 2
    }
    with files.replacing(path) as tmp:
        dataset.to_netcdf(tmp, engine="h5netcdf", encoding=encoding)
    return path


def open_study(path: str | os.PathLike) -> xr.Dataset:
    """Open ``study.nc`` (loaded into memory) with its JSON attributes decoded."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study file {path} does not exist (run `gcstudy aggregate`)")
    with xr.open_dataset(path, engine="h5netcdf") as opened:
        dataset = opened.load()
    for key in ("versions", "trace_git_commits", "trace_versions", "studies", "skipped"):
        if isinstance(dataset.attrs.get(key), str):
            dataset.attrs[key] = json.loads(dataset.attrs[key])
    return dataset


def sweep_runs(dataset: xr.Dataset, study: str, factor: str) -> xr.Dataset:
    """The runs of one sweep of a study (the base point included), ordered by the factor."""
    member = np.array(
        [
            study == s and factor in str(w).split(",")
            for s, w in zip(dataset["study"].values, dataset["sweeps"].values, strict=True)
        ]
    )
    return dataset.isel(run=np.flatnonzero(member))


def study_runs(dataset: xr.Dataset, study: str) -> xr.Dataset:
    """The runs of one study, restricted to the steps at which any of them was measured."""
    chosen = dataset.isel(run=np.flatnonzero(dataset["study"].values == study))
    if "gc" in chosen:
        measured = np.isfinite(chosen["gc"].values).any(axis=0)
        chosen = chosen.isel(step=np.flatnonzero(measured))
    return chosen


def final_values(dataset: xr.Dataset, variable: str) -> np.ndarray:
    """Each run's value of ``variable`` at its own last measured step (NaN if none)."""
    values = dataset[variable].values
    out = np.full(values.shape[0], np.nan)
    for i, row in enumerate(values):
        finite = np.flatnonzero(np.isfinite(row))
        if len(finite):
            out[i] = row[finite[-1]]
    return out
