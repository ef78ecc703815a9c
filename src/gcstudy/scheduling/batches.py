"""Batches: which run folders one training job trains, and how Snakemake knows it is done.

A **batch** is a set of run folders that one job trains one after another in one process
(``gcstudy train --batch``), so that the interpreter, torch and the data sets are loaded
once for all of them; after each run its evaluations (``fewshot.nc``,
``gc_estimators.nc``) are written in the same process. Which batch a run folder belongs to
depends on that run alone (the config's ``resources.batch``), never on a cost estimate or
on the number of runs, so adding a run or changing a resource moves no other run:

- ``run``: each run folder is its own batch; the batch id is the folder's id
  (``<study>/lr-..._seed-<s>``). One cluster job per run, rule ``train``.
- ``study_seed``: the run folders of one study with one seed; the batch id is
  ``<study>/seed-<s>``. The default study: 63 run folders in 12 batches.

Two small files per batch, under the results folder:

- ``batches/<batch>.json``, the **batch file** (rule ``batch_spec``, written only when
  its content changes): each run folder with its run spec and evaluations, and the
  ``evaluate`` settings when a run is evaluated. A change of one run's spec changes only
  its batch's file, so only that batch is trained again.
- ``trained/<batch>.json``, the **manifest** (the one output of rule ``train``), written
  when every run of the batch is finished and evaluated: each run folder's status and the
  SHA-256 of its result files (from their seals, ``gcstudy.study.seals``).

The run folders' files are not Snakemake outputs: when a batch job fails, Snakemake
deletes only its manifest, never a finished run's trace, and the rerun trains only what
is unfinished (a finished run of the same spec is skipped, an interrupted one resumes from
its checkpoint). When the start-up check (``gcstudy.study.runfolder.check_study``) finds a
result file missing or broken, ``forget`` removes the manifest of its batch, so that
Snakemake trains that batch again.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gcstudy.study import config as study_config
from gcstudy.study import runfolder
from gcstudy.study import seals as runfiles
from gcstudy.study.runfolder import EVALUATION_FILES, RunFolder
from gcstudy.study.settings import BATCH_MODES

log = logging.getLogger(__name__)

BATCH_FOLDER = "batches"  # under the results folder: the batch files
MANIFEST_FOLDER = "trained"  # under the results folder: the manifests


def batch_id(run: study_config.Run, mode: str) -> str:
    """The batch of a trained run (``gcstudy.study.config.trained_runs``: ``run_id`` is its
    folder) under ``resources.batch`` = ``mode``."""
    if mode == "run":
        return run.run_id
    if mode == "study_seed":
        return f"{run.study}/seed-{run.seed}"
    raise ValueError(f"resources.batch {mode!r}: expected one of {', '.join(BATCH_MODES)}")


def batches(runs: list[study_config.Run], mode: str) -> dict[str, list[study_config.Run]]:
    """The run folders to train for ``runs`` (``trained_runs``), by batch, both in config
    order."""
    grouped: dict[str, list[study_config.Run]] = {}
    for run in study_config.trained_runs(runs):
        grouped.setdefault(batch_id(run, mode), []).append(run)
    return grouped


def batch_path(results: str | os.PathLike, batch: str) -> Path:
    return Path(results) / BATCH_FOLDER / f"{batch}.json"


def manifest_path(results: str | os.PathLike, batch: str) -> Path:
    return Path(results) / MANIFEST_FOLDER / f"{batch}.json"


def batch_content(
    results: str | os.PathLike, runs: list[study_config.Run], evaluate: dict[str, Any]
) -> dict[str, Any]:
    """What the batch file of ``runs`` says: each run folder (under ``results``), its run
    spec and the evaluations it gets (those with a file, ``runfolder.EVALUATION_FILES``:
    ``bound`` needs none); ``evaluate`` (the config's settings) only when some run is
    evaluated, so that changing them trains no batch without evaluations again."""
    entries = [
        {
            "folder": str(RunFolder.under(results, run.run_id).path),
            "spec": run.spec.to_dict(),
            "evaluations": [kind for kind in run.evaluations if kind in EVALUATION_FILES],
        }
        for run in runs
    ]
    content: dict[str, Any] = {"runs": entries}
    if any(entry["evaluations"] for entry in entries):
        content["evaluate"] = evaluate
    return content


def forget(
    results: str | os.PathLike, findings: Iterable[runfolder.Finding], batch_of: dict[str, str]
) -> None:
    """Remove the manifests of the batches whose run folders have ``findings`` (missing or
    removed result files, ``runfolder.check_study``; ``batch_of``: folder id -> batch), so
    that Snakemake trains or evaluates those batches again."""
    runs = runfolder.runs_root(results)
    folders = {Path(finding.path).parent.relative_to(runs).as_posix() for finding in findings}
    for batch in sorted({batch_of[folder] for folder in folders if folder in batch_of}):
        path = manifest_path(results, batch)
        if path.exists():
            path.unlink()
            log.warning("removed %s: batch %s is trained again", path, batch)


def train_batch(
    batch_file: str | os.PathLike,
    manifest: str | os.PathLike,
    progress: bool = True,
    announce: Callable[[str], object] | None = None,
) -> dict[Path, str]:
    """Train and evaluate the run folders of ``batch_file`` one after another in this
    process (``gcstudy.training.trainer.run_many``); returns each folder's status
    ("failed" for a run
    whose training or evaluation raised). Writes ``manifest`` when every run is finished.

    Before training, each folder gets its ``spec.yaml``; a finished run of another spec
    (the config changed) has its result removed, and a run whose result is not intact has
    its evaluations removed (they belong to weights that are gone). After a run, each
    evaluation it gets is written unless its file is intact and was made with these
    settings.
    """
    from gcstudy.study.spec import RunSpec
    from gcstudy.training.trainer import run_many

    batch_file = Path(batch_file)
    content = json.loads(batch_file.read_text())
    settings = content.get("evaluate")
    folders: dict[Path, RunFolder] = {}
    runs = []
    for entry in content["runs"]:  # every spec is checked before any run starts
        folder = RunFolder(entry["folder"], entry["evaluations"])
        spec = RunSpec.from_dict(entry["spec"], source=f"{batch_file}: {folder.path}")
        runs.append((spec, folder.path))
        folders[folder.path] = folder
    for spec, path in runs:
        study_config.write_yaml(spec.to_dict(), folders[path].spec)
        clear_outdated(folders[path], spec.to_dict())

    def then(path: Path) -> None:
        evaluate_outdated(folders[path], settings)

    outcomes = run_many(runs, progress=progress, then=then, announce=announce)
    if all(status != "failed" for status in outcomes.values()):
        write_manifest(manifest, outcomes)
    return outcomes


def clear_outdated(folder: RunFolder, spec: dict) -> None:
    """Remove a finished result of another run spec than ``spec``, and the evaluation
    files of a run whose result is not intact."""
    intact = not any(folder.trained_problems().values())
    if intact and runfolder.differing_keys(folder.traced_spec(), spec):
        log.warning("%s was trained with another run spec: training it again", folder.path)
        folder.remove_trained()
        intact = False
    if not intact:
        for path in folder.evaluation_files:
            runfiles.remove(path)


def evaluate_outdated(folder: RunFolder, settings: dict | None) -> None:
    """Write the evaluations of the trained run in ``folder`` whose files are missing,
    broken or made with other settings than ``settings`` (the config's ``evaluate``)."""
    if not folder.evaluation_files:
        return
    from gcstudy.measure.evaluations import EvaluationSettings, evaluate

    chosen = EvaluationSettings.from_dict(settings)
    recorded = json.dumps(chosen.__dict__, default=list)  # as evaluate() records them
    todo = [k for k in folder.evaluations if not current(folder, k, recorded)]
    if todo:
        for path in evaluate(folder.path, "fewshot" in todo, "gc_estimators" in todo, chosen):
            log.info("wrote %s", path)


def current(folder: RunFolder, kind: str, settings: str) -> bool:
    """Whether the file of evaluation ``kind`` is intact and made with ``settings``."""
    import h5py

    path = folder.evaluation_file(kind)
    if folder.problem(path):
        return False
    with h5py.File(path, "r") as f:
        return f.attrs.get("settings") == settings


def write_manifest(path: str | os.PathLike, outcomes: dict[Path, str]) -> None:
    """The manifest of a finished batch: each run folder's status and the SHA-256 of its
    result files, from their seals."""
    runs = {}
    for folder, status in outcomes.items():
        files = RunFolder(folder, tuple(EVALUATION_FILES)).result_files
        seals = {file.name: runfiles.seal_of(file) for file in files}
        sha256 = {n: json.loads(s.read_text())["sha256"] for n, s in seals.items() if s.is_file()}
        runs[str(folder)] = {"status": status, "sha256": sha256}
    study_config.write_json({"runs": runs}, path)
