"""Compare two results folders of one study: did a code change alter what the study found?

    python scripts/compare_results.py OLD_RESULTS NEW_RESULTS

Compares, file by file, what a study's results are made of, and reads every file with
h5py, torch and xarray directly (not through gcstudy), so that a change to gcstudy's own
readers cannot hide a difference:

- the run table: the same run ids, with the same studies, points, seeds, folders and specs;
- each run folder's trace (every array bitwise, every attribute), weights (every tensor
  bitwise) and evaluation files (every variable bitwise, every attribute);
- ``study.nc`` (every variable and coordinate bitwise, every attribute);
- the statistics under ``stats/`` (every table and verdict file, as text, a git commit in
  a table masked).

What legitimately differs between two runs of the same study is left out, by name:
clock times and durations (``wall_time``, ``started_at``, ``phase_seconds``, ...), the
host, the git commit and gcstudy's version. Prints one line per difference and a summary;
exits 1 when anything differs, 0 when the two folders hold the same results.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import h5py
import numpy as np
import torch
import xarray as xr

# Attributes and variables that record when, where, how long and with which commit: they
# differ between two runs of one study by design.
VOLATILE = {
    "wall_time",
    "cpu_seconds",
    "phase_seconds",
    "started_at",
    "finished_at",
    "created_at",
    "created",
    "git_commit",
    "commit",
    "host",
    "segments",
    "versions",
    "config_hash",
    "provenance",
    "seconds",
    "train_wall_time",
    "gcest_seconds",
    "git_commit_run",
    "trace_git_commits",
}
# A git commit written into a table (the run tables' commit column): full or short.
COMMIT = re.compile(r"\b(?=[0-9a-f]*[a-f])[0-9a-f]{12,40}\b")


def same_value(a, b) -> bool:
    """Bitwise equality of two attribute values or arrays (NaN equals NaN)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
        return False
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def compare_attrs(where: str, old: dict, new: dict) -> list[str]:
    diffs = []
    for key in sorted(set(old) | set(new)):
        if key in VOLATILE:
            continue
        if key not in old or key not in new:
            diffs.append(f"{where}: attribute {key} only in {'new' if key in new else 'old'}")
        elif not same_value(_decoded(old[key]), _decoded(new[key])):
            diffs.append(f"{where}: attribute {key} differs")
    return diffs


def _decoded(value):
    """A JSON attribute as its object minus volatile keys; anything else as it is."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.dumps(_without_volatile(json.loads(value)), sort_keys=True)
        except ValueError:
            return value
    return value


def _without_volatile(value):
    if isinstance(value, dict):
        return {k: _without_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_without_volatile(v) for v in value]
    return value


def compare_trace(where: str, old: Path, new: Path) -> list[str]:
    diffs = []
    with h5py.File(old, "r") as a, h5py.File(new, "r") as b:
        names_a, names_b = set(a), set(b)
        for name in sorted(names_a ^ names_b):
            diffs.append(f"{where}: array {name} only in {'new' if name in names_b else 'old'}")
        for name in sorted((names_a & names_b) - VOLATILE):
            if not same_value(a[name][()], b[name][()]):
                diffs.append(f"{where}: array {name} differs")
        diffs += compare_attrs(where, dict(a.attrs), dict(b.attrs))
    return diffs


def compare_weights(where: str, old: Path, new: Path) -> list[str]:
    a = torch.load(old, map_location="cpu", weights_only=False)
    b = torch.load(new, map_location="cpu", weights_only=False)
    return [f"{where}: {key}" for key in _tensor_differences(a, b, "")]


def _tensor_differences(a, b, prefix: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            if key in VOLATILE:
                continue
            if key not in a or key not in b:
                out.append(f"{prefix}{key} only in {'new' if key in b else 'old'}")
            else:
                out += _tensor_differences(a[key], b[key], f"{prefix}{key}.")
        return out
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        same = a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
        return [] if same else [f"{prefix.rstrip('.')} differs"]
    if isinstance(a, str) or isinstance(b, str):
        return [] if _decoded(a) == _decoded(b) else [f"{prefix.rstrip('.')} differs"]
    try:
        return [] if same_value(a, b) else [f"{prefix.rstrip('.')} differs"]
    except (TypeError, ValueError):
        return [] if a == b else [f"{prefix.rstrip('.')} differs"]


def compare_netcdf(where: str, old: Path, new: Path) -> list[str]:
    diffs = []
    with xr.open_dataset(old) as a, xr.open_dataset(new) as b:
        a.load()
        b.load()
        for kind, va, vb in (
            ("variable", a.data_vars, b.data_vars),
            ("coordinate", a.coords, b.coords),
        ):
            for name in sorted(set(va) ^ set(vb)):
                diffs.append(f"{where}: {kind} {name} only in {'new' if name in vb else 'old'}")
            for name in sorted((set(va) & set(vb)) - VOLATILE):
                if va[name].dims != vb[name].dims or not same_value(
                    va[name].values, vb[name].values
                ):
                    diffs.append(f"{where}: {kind} {name} differs")
                diffs += compare_attrs(f"{where}:{name}", va[name].attrs, vb[name].attrs)
        diffs += compare_attrs(where, a.attrs, b.attrs)
    return diffs


def compare_run_tables(old: Path, new: Path) -> list[str]:
    a = {run["run_id"]: run for run in json.loads(old.read_text())["runs"]}
    b = {run["run_id"]: run for run in json.loads(new.read_text())["runs"]}
    diffs = [
        f"run table: run {r} only in {'new' if r in b else 'old'}" for r in sorted(set(a) ^ set(b))
    ]
    diffs += [f"run table: run {r} differs" for r in sorted(set(a) & set(b)) if a[r] != b[r]]
    return diffs


def compare_text_files(where: str, old: Path, new: Path) -> list[str]:
    a = {p.relative_to(old): p for p in old.rglob("*") if p.is_file()}
    b = {p.relative_to(new): p for p in new.rglob("*") if p.is_file()}
    diffs = [f"{where}/{p}: only in {'new' if p in b else 'old'}" for p in sorted(set(a) ^ set(b))]
    for path in sorted(set(a) & set(b)):
        if path.suffix == ".nc":
            diffs += compare_netcdf(f"{where}/{path}", a[path], b[path])
        elif _text(a[path]) != _text(b[path]):
            diffs.append(f"{where}/{path}: differs")
    return diffs


# The result files of a run folder, read here without gcstudy (see the module docstring).
RUN_FILES = {
    "trace.h5": compare_trace,
    "model.pt": compare_weights,
    "fewshot.nc": compare_netcdf,
    "gc_estimators.nc": compare_netcdf,
}


def _text(path: Path) -> str:
    """A text result as compared: JSON without its volatile keys, commits masked."""
    return COMMIT.sub("<commit>", str(_decoded(path.read_text())))


def compare(old: Path, new: Path) -> tuple[list[str], int]:
    """Every difference between two results folders, and the number of files compared."""
    diffs = compare_run_tables(old / "run_table.json", new / "run_table.json")
    compared = 1
    folders = {run["folder"] for run in json.loads((old / "run_table.json").read_text())["runs"]}
    for folder in sorted(folders):
        for name, compare_file in RUN_FILES.items():
            a, b = old / "runs" / folder / name, new / "runs" / folder / name
            if a.exists() != b.exists():
                diffs.append(f"{folder}/{name}: only in {'new' if b.exists() else 'old'}")
            elif a.exists():
                diffs += compare_file(f"{folder}/{name}", a, b)
                compared += 1
    diffs += compare_netcdf("study.nc", old / "study.nc", new / "study.nc")
    diffs += compare_text_files("stats", old / "stats", new / "stats")
    compared += 1 + sum(1 for p in (old / "stats").rglob("*") if p.is_file())
    return diffs, compared


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    old, new = map(Path, argv)
    diffs, compared = compare(old, new)
    for line in diffs:
        print(line)
    print(f"{compared} files compared: {len(diffs)} differences")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
