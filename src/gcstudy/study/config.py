"""Study configs: load, validate, and expand studies into runs (the grid, in one place).

A config (``config/config.yaml``) holds shared ``defaults`` (run-spec keys) and a mapping
of ``studies``. Each study names a ``model`` (and ``width``), a ``dataset``, a ``base``
setting (any run-spec key), one-factor-at-a-time ``sweeps`` around it over ``lr``,
``batch_size``, ``l2`` and ``gc_penalty``, its ``seeds``, the ``evaluations`` it gets and
the paper ``experiment`` whose figure it redraws. Expansion gives one run per (point,
seed): the base point and every sweep value, deduplicated, so the base point shared by
several sweeps is trained once.

Run ids are ``<study>/lr-<lr>_bs-<batch>_l2-<l2>_gcp-<penalty>_seed-<seed>`` with numbers
written exactly (the shortest repr that round-trips: ``1e-05``, ``0.05``, ``0``), so an id
names its values without float-formatting surprises. The Snakefile, ``gcstudy runs`` and
the submitit launcher all call ``expand``.

Runs of different studies with the same resolved run spec are trained once
(``share_runs``, default true): each keeps its own run id and study in the run table, and
its ``folder`` names the run folder it reads, that of the first run (in config order) with
that spec. ``trained_runs`` lists the distinct folders to train.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gcstudy import files, yamlio
from gcstudy.study import datasets as data_sets
from gcstudy.study.clocks import CLOCKS, scheduled_steps
from gcstudy.study.factors import FACTORS, ID_NAMES
from gcstudy.study.runfolder import evaluations_by_folder
from gcstudy.study.settings import (
    STUDY_KEYS,
    TOP_KEYS,
    Declarations,
    RunSpecKeys,
    Section,
    SettingError,
    Studies,
    Study,
)
from gcstudy.study.spec import RunSpec, SpecError, check_sample_sizes, did_you_mean

# Package data (found in a wheel as in a checkout): the JSON schema of a study config.
SCHEMA = importlib.resources.files("gcstudy") / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config that cannot be run: names the key path, the value and what is allowed."""


@dataclass(frozen=True)
class Run:
    """One training run of a study."""

    run_id: str
    study: str
    sweeps: tuple[str, ...]  # the sweeps this run belongs to ("base" for the base point)
    point: dict[str, float]  # the four sweepable values
    seed: int
    spec: RunSpec
    evaluations: tuple[str, ...]
    folder: str = ""  # the run folder (under results/runs) it is trained in; "" = run_id

    @property
    def trained_in(self) -> str:
        """The run folder (relative to ``results/runs``) that holds this run's files."""
        return self.folder or self.run_id

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "folder": self.trained_in,
            "study": self.study,
            "sweeps": list(self.sweeps),
            "point": self.point,
            "seed": self.seed,
            "spec": self.spec.to_dict(),
            "evaluations": list(self.evaluations),
        }


def load(path: str | Path) -> dict[str, Any]:
    """Read a config file and check it (``validate``)."""
    config = read(path)
    validate(config, source=str(path))
    return config


def load_all(paths: list[str | Path]) -> dict[str, Any]:
    """The config as Snakemake builds it from ``--configfile F [G ...]``: later files
    merged into earlier ones with ``snakemake.utils.update_config`` (nested mappings
    merged, other values replaced), then checked (``validate``, defaults filled in)."""
    from snakemake.utils import update_config

    merged: dict[str, Any] = {}
    for path in paths:
        update_config(merged, read(path))
    validate(merged, source=", ".join(map(str, paths)))
    return merged


def read(path: str | Path) -> dict[str, Any]:
    """One config file as a mapping, unchecked. A file that cannot be read, is not YAML
    (the message gives line and column), is empty or is not a mapping is a
    ``ConfigError`` that names it and what was expected."""
    expected = f"expected a mapping with keys {', '.join(TOP_KEYS)}"
    try:
        config = yamlio.load(path)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file ({error.strerror})") from None
    except ValueError as error:
        tab = "'\\t'" in str(error)  # PyYAML: "found character '\t' that cannot start..."
        hint = "; YAML indents with spaces, never tabs" if tab else ""
        raise ConfigError(f"{error}{hint}") from None
    if config is None:
        raise ConfigError(f"{path}: the config file is empty; {expected}")
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: {expected}, not a {type(config).__name__}")
    return config


def validate(config: Any, source: str = "config") -> list[Run]:
    """Check the whole config before any job is scheduled; return its runs.

    Structure first (known keys, and each study's keys against their declarations in
    ``gcstudy.study.settings``), then every expanded run through ``RunSpec``
    (ranges, choices) and the cross-checks (batch size against the data set, transfer
    evaluations on data sets with target classes). Messages name ``source``, the key path
    (``studies.fig1.sweeps.lr[2]``), the value and what is allowed. Last, the JSON schema
    made from the same declarations checks the other sections and fills in the defaults
    (``fill_defaults``).
    """
    if not isinstance(config, dict):
        raise ConfigError(f"{source}: expected a mapping with keys {', '.join(TOP_KEYS)}")
    _known_keys(config, TOP_KEYS, source, "")
    declare_datasets(config, source)
    studies = config.get("studies")
    wrong = Studies().problem(studies)
    if wrong:
        raise ConfigError(f"{source}: key 'studies' {wrong}")
    defaults = config.get("defaults", {})
    _check(RunSpecKeys(), defaults, f"{source}: defaults")
    _as_spec(defaults, f"{source}: defaults")
    for name, study in studies.items():
        _check_study(name, study, defaults, source)
    fill_defaults(config, source)
    return expand(config, source)


def declare_datasets(config: dict[str, Any], source: str = "config") -> None:
    """Register the config's own data sets (``datasets``: each checked against its
    declaration in ``gcstudy.study.settings``, then its folder listed by
    ``gcstudy.study.datasets.declare``), so that studies and run specs may name them."""
    declarations = config.get("datasets", {})
    _check(Declarations(), declarations, f"{source}: datasets")
    for name, declaration in declarations.items():
        try:
            data_sets.declare(name, declaration, f"{source}: datasets.{name}")
        except data_sets.DeclarationError as error:
            raise ConfigError(str(error)) from None


def fill_defaults(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate ``config`` against the packaged ``schemas/config.schema.yaml`` (generated
    from ``gcstudy.study.settings`` by ``gcstudy.study.schema``) with
    ``snakemake.utils.validate``, which fills in the schema's defaults in place, so every
    launcher (the Snakefile, ``gcstudy runs``, ``launch``, ``status``) sees the same
    resolved config. A violation is a ``ConfigError`` naming the key path."""
    from jsonschema.exceptions import ValidationError
    from snakemake.utils import validate as snakemake_validate
    from snakemake_interface_common.exceptions import WorkflowError

    with importlib.resources.as_file(SCHEMA) as schema:
        try:
            snakemake_validate(config, str(schema))
        except WorkflowError as error:
            cause = error.__context__  # raised while handling jsonschema's error
            if not isinstance(cause, ValidationError):
                raise
            path = ".".join(str(p) for p in cause.absolute_path) or "(top level)"
            raise ConfigError(f"{source}: {path}: {cause.message}") from None
    return config


def expand(config: dict[str, Any], source: str = "config") -> list[Run]:
    """All runs of all studies, in config order, each id once per study, each evaluated
    where the design clocks read it (``with_clock_steps``); with ``share_runs`` (default
    true) a run whose spec an earlier run already has, up to those clock steps, is trained
    in that run's folder, evaluated at the clock steps of every run that reads it."""
    clocks = config.get("stats", {}).get("clocks", CLOCKS)
    runs: list[Run] = []
    for name, study in config["studies"].items():
        runs.extend(with_clock_steps(_expand_study(config, name, study, source), clocks))
    if not config.get("share_runs", True):
        return runs
    first: dict[str, str] = {}
    folders = [first.setdefault(_share_key(run), run.run_id) for run in runs]
    clock_steps: dict[str, set[int]] = {folder: set() for folder in folders}
    for run, folder in zip(runs, folders, strict=True):
        clock_steps[folder].update(run.spec.eval_clock_steps)
    return [
        _evaluated_at(dataclasses.replace(run, folder=folder), clock_steps[folder])
        for run, folder in zip(runs, folders, strict=True)
    ]


def with_clock_steps(runs: list[Run], clocks) -> list[Run]:
    """``runs`` (one study's) with ``eval_clock_steps`` holding every step a design clock
    reads them at (``gcstudy.study.clocks.scheduled_steps``): for each sweep a run belongs to
    (the runs of that factor, the base point and all seeds included; in a study without
    sweeps, its base runs), at the sweep's common clock value and 2/3 of it."""
    members: dict[str, list[Run]] = {}
    for run in runs:
        for sweep in run.sweeps:
            members.setdefault(sweep, []).append(run)
    timing = {run.run_id: (run.spec.lr, run.spec.batch_size, run.spec.steps) for run in runs}
    scheduled = []
    for run in runs:
        steps = set(run.spec.eval_clock_steps)
        for sweep in run.sweeps:
            sweep_timing = [timing[other.run_id] for other in members[sweep]]
            steps |= scheduled_steps(clocks, timing[run.run_id], sweep_timing)
        scheduled.append(_evaluated_at(run, steps))
    return scheduled


def _share_key(run: Run) -> str:
    """What makes two runs one training run: the spec, up to its clock evaluations."""
    return json.dumps({**run.spec.to_dict(), "eval_clock_steps": []}, sort_keys=True)


def _evaluated_at(run: Run, clock_steps: set[int]) -> Run:
    spec = dataclasses.replace(run.spec, eval_clock_steps=sorted(clock_steps))
    return dataclasses.replace(run, spec=spec)


def trained_runs(runs: list[Run]) -> list[Run]:
    """One run per distinct run folder, in order: what must be trained for ``runs``. A
    run that reads another's folder stands for it under that folder's id; its evaluations
    are those of every run that reads the folder (``evaluations_by_folder``)."""
    chosen: dict[str, Run] = {}
    evaluations = evaluations_by_folder((run.trained_in, run.evaluations) for run in runs)
    for run in runs:
        if run.trained_in not in chosen:
            study = run.trained_in.split("/")[0]
            chosen[run.trained_in] = dataclasses.replace(
                run, run_id=run.trained_in, study=study, folder=""
            )
    return [
        dataclasses.replace(run, evaluations=evaluations[folder]) for folder, run in chosen.items()
    ]


def run_table(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """The runs with their study metadata, as plain data (``results/run_table.json``)."""
    runs = expand(config, source)
    return {
        "config_hash": config_hash(config),
        "studies": {name: _study_summary(config, name) for name in config["studies"]},
        "runs": [run.as_dict() for run in runs],
    }


def write_json(data: Any, path: str | Path) -> None:
    """Write data as JSON (see ``write_if_changed``)."""
    write_if_changed(json.dumps(data, indent=1, sort_keys=True) + "\n", path)


def write_yaml(data: Any, path: str | Path) -> None:
    """Write data as YAML (see ``write_if_changed``)."""
    import yaml

    write_if_changed(yaml.safe_dump(data, sort_keys=False), path)


def write_if_changed(text: str, path: str | Path) -> None:
    """Write ``text`` atomically (``gcstudy.files``), and only when the file's content
    differs, so that Snakemake's view of the file's age stays meaningful."""
    path = Path(path)
    if path.exists() and path.read_text() == text:
        return
    files.write_text(path, text)


def config_hash(config: dict[str, Any]) -> str:
    """SHA-256 (first 16 hex digits) of the config's canonical JSON."""
    canonical = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def number_id(value: float | int) -> str:
    """An exact, readable rendering of a swept value: ``repr`` of the float, without a
    trailing ``.0`` (``0.05``, ``1e-05``, ``64``, ``0``)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def run_id(study: str, point: dict[str, float], seed: int) -> str:
    values = "_".join(f"{ID_NAMES[k]}-{number_id(point[k])}" for k in FACTORS)
    return f"{study}/{values}_seed-{seed}"


def _expand_study(config, name: str, study: dict, source: str) -> list[Run]:
    base = {**config.get("defaults", {}), **study.get("base", {})}
    for key in ("model", "width", "dataset"):
        if key in study:
            base[key] = study[key]
    if "data_root" in config:
        base["data_root"] = config["data_root"]
    base_point = {k: _base_value(base, k) for k in FACTORS}
    points: dict[tuple, tuple[dict, list[str]]] = {}
    sweeps = study.get("sweeps", {})
    candidates = [("base", base_point)] + [
        (factor, {**base_point, factor: value})
        for factor, values in sweeps.items()
        for value in values
    ]
    for sweep, point in candidates:
        key = tuple(float(point[k]) for k in FACTORS)
        entry = points.setdefault(key, (point, []))
        entry[1].append(sweep)
    # the base point belongs to every sweep (it is one of each sweep's values' neighbours)
    runs = []
    evaluations = tuple(study.get("evaluations", ()))
    for point, members in points.values():
        memberships = tuple(dict.fromkeys(members + (list(sweeps) if "base" in members else [])))
        for seed in study.get("seeds", [0]):
            where = f"{source}: studies.{name}, run {run_id(name, point, seed)}"
            spec = _as_spec({**base, **point, "seed": seed}, where)
            runs.append(
                Run(run_id(name, point, seed), name, memberships, point, seed, spec, evaluations)
            )
    return runs


def _base_value(base: dict, key: str):
    return base.get(key, getattr(RunSpec(), key))


def _study_summary(config, name: str) -> dict[str, Any]:
    study = config["studies"][name]
    runs = _expand_study(config, name, study, "config")
    first = runs[0].spec
    return {
        "experiment": study.get("experiment"),
        "description": study.get("description", ""),
        "model": first.model,
        "width": first.width,
        "dataset": first.dataset,
        "base": {k: getattr(first, k) for k in FACTORS},
        "sweeps": study.get("sweeps", {}),
        "seeds": study.get("seeds", [0]),
        "evaluations": study.get("evaluations", []),
    }


def _as_spec(values: dict, where: str) -> RunSpec:
    """``RunSpec.from_dict`` with config errors that name the key path."""
    try:
        return RunSpec.from_dict(values, source=where)
    except SpecError as error:
        raise ConfigError(str(error)) from None


def _check_study(name: Any, study: Any, defaults: dict, source: str) -> None:
    """One study: its keys against their declarations (``gcstudy.study.settings.Study``),
    then what needs the run specs: the base point with the defaults, each sweep value in
    it, the sample and batch sizes against the data set, few-shot only on transfer sets."""
    where = f"{source}: studies.{name}"
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"{source}: study name {name!r} must be letters, digits, '_' or '-'")
    if not isinstance(study, dict):
        raise ConfigError(f"{where}: expected a mapping, got {study!r}")
    _known_keys(study, STUDY_KEYS, source, f"studies.{name}.")
    _check(Section(Study), study, where)
    clash = [k for k in ("model", "width", "dataset", "seed") if k in study.get("base", {})]
    if clash:
        raise ConfigError(
            f"{where}.base.{clash[0]}: set it on the study (model, width, "
            "dataset) or in seeds, not in base"
        )
    base = {**defaults, **study.get("base", {})}
    base.update({k: study[k] for k in ("model", "width", "dataset") if k in study})
    base_spec = _as_spec(base, f"{where} (base with defaults)")
    dataset = data_sets.get_spec(base_spec.dataset, base_spec.data_root)
    try:
        check_sample_sizes(
            base_spec, len(dataset.split_classes("train")), len(dataset.target_classes)
        )
    except SpecError as error:
        raise ConfigError(f"{where} (base with defaults): {error}") from None
    sweeps = study.get("sweeps", {})
    for factor, values in sweeps.items():
        for index, value in enumerate(values):
            _as_spec({**base, factor: value}, f"{where}.sweeps.{factor}[{index}]")
    if "fewshot" in study.get("evaluations", []) and not dataset.transfer:
        transfer = [n for n, d in data_sets.DATASETS.items() if d.transfer]
        raise ConfigError(
            f"{where}.evaluations: 'fewshot' needs a data set with target "
            f"classes ({', '.join(transfer)}), but dataset is {dataset.name!r}"
        )
    size = min(dataset.train_size, base_spec.train_examples or dataset.train_size)
    for batch in [base_spec.batch_size, *sweeps.get("batch_size", [])]:
        if isinstance(batch, int) and batch > size:
            raise ConfigError(
                f"{where}: batch_size {batch} is larger than the {size} "
                f"training examples of {dataset.name!r}"
            )


def _known_keys(mapping: dict, allowed: tuple[str, ...], source: str, prefix: str) -> None:
    for key in mapping:
        if key not in allowed:
            raise ConfigError(
                f"{source}: unknown key {prefix}{key}{did_you_mean(key, allowed)}; allowed: "
                f"{', '.join(allowed)}"
            )


def _check(kind, value: Any, where: str) -> None:
    """``value`` against its declared kind (``gcstudy.study.settings``), as a ConfigError."""
    try:
        kind.check(value, where)
    except SettingError as error:
        raise ConfigError(str(error)) from None
