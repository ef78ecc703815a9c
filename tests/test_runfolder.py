"""The run folder type (gcstudy.study.runfolder): it alone names a run folder's files, on
disk as before; it alone says which evaluations a folder needs, and the config, the
workflow and the training jobs agree because they ask it."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from gcstudy.scheduling import batches
from gcstudy.study import config as study_config
from gcstudy.study import runfolder
from gcstudy.study.runfolder import RunFolder, evaluations_by_folder

REPO = Path(__file__).resolve().parents[1]
# The names a run folder's files have on disk (docs/recovery.md, and every results folder
# written so far): the oracle the declarations must keep.
ON_DISK = {
    "spec": "spec.yaml", "trace": "trace.h5", "model": "model.pt",
    "running_trace": "trace.running.h5", "progress_file": "progress.json",
    "lock": "lock.json", "checkpoints": "ckpt",
}  # fmt: skip
EVALUATION_FILES = {"fewshot": "fewshot.nc", "gc_estimators": "gc_estimators.nc"}
# A quoted string (a Python literal, an f-string, a Snakemake path) that is one of these
# names or a path ending in one.
NAMES = (
    runfolder.SPEC, runfolder.TRACE, runfolder.MODEL, runfolder.RUNNING_TRACE,
    runfolder.PROGRESS, runfolder.STUDY_CHECK, runfolder.CHECKPOINTS,
    *runfolder.EVALUATION_FILES.values(),
)  # fmt: skip
ANY_NAME = "|".join(map(re.escape, NAMES))
LITERAL = re.compile(rf"""["'][^"'\s]*\b({ANY_NAME})["']""")


def test_the_files_keep_their_names_on_disk(tmp_path):
    folder = RunFolder.under(tmp_path, "study/run-0", ["fewshot", "bound", "gc_estimators"])
    assert folder.path == tmp_path / "runs" / "study" / "run-0"
    for attribute, name in ON_DISK.items():
        assert getattr(folder, attribute) == folder.path / name, attribute
    assert folder.trained == (folder.path / "model.pt", folder.path / "trace.h5")
    assert folder.evaluation_files == tuple(folder.path / n for n in EVALUATION_FILES.values())
    assert runfolder.checkpoint_name(100) == "step-00000100.pt"


def literals_outside_runfolder() -> list[str]:
    """Every run-folder file name written as a literal in src/ or the workflow, outside
    the module that declares them."""
    sources = [*(REPO / "src").rglob("*.py"), *(REPO / "workflow").rglob("*.smk")]
    sources.append(REPO / "Snakefile")
    found = []
    for path in sources:
        if path == Path(runfolder.__file__):
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            found += [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
                      for _ in LITERAL.finditer(line)]  # fmt: skip
    return found


def test_only_the_run_folder_names_its_files():
    assert literals_outside_runfolder() == []


def test_the_scan_sees_the_ways_a_name_is_written():
    seen = [
        '"trace.h5"', "'model.pt'", 'f"{out}/fewshot.nc"', 'result("runs/{run}/spec.yaml")',
        '"ckpt"', '"gc_estimators.nc"', '"trace.running.h5"',
    ]  # fmt: skip
    unseen = ["``trace.h5``", '"run folder (trace.h5, model.pt, ckpt/)"', '"model.pth"']
    assert all(LITERAL.search(text) for text in seen)
    assert not any(LITERAL.search(text) for text in unseen)


SHARED = {
    "defaults": {"width": 0.0625, "steps": 10, "eval_steps": [0, 10], "device": "cpu"},
    "studies": {
        "first": {"experiment": "E1", "dataset": "digits_fs", "base": {"lr": 0.05,
                  "batch_size": 16}, "seeds": [0], "evaluations": ["gc_estimators"]},
        "second": {"experiment": "E1", "dataset": "digits_fs", "base": {"lr": 0.05,
                   "batch_size": 16}, "sweeps": {"lr": [0.1]}, "seeds": [0],
                   "evaluations": ["fewshot", "bound"]},
    },
}  # fmt: skip


def test_a_shared_folder_needs_the_evaluations_of_every_run_that_reads_it(tmp_path):
    """Two studies share the base run's folder: it gets the union of their evaluations,
    the same from the config's expansion and in the batch file the training job reads."""
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(SHARED))
    config = study_config.load_all([tmp_path / "cfg.yaml"])
    runs = study_config.expand(config)
    base = "first/lr-0.05_bs-16_l2-0_gcp-0_seed-0"
    sweep = "second/lr-0.1_bs-16_l2-0_gcp-0_seed-0"
    assert {run.trained_in for run in runs} == {base, sweep}  # the second base is shared
    oracle = {base: ("gc_estimators", "fewshot", "bound"), sweep: ("fewshot", "bound")}

    trained = {run.run_id: run.evaluations for run in study_config.trained_runs(runs)}
    assert trained == oracle
    content = batches.batch_content(tmp_path / "results", study_config.trained_runs(runs), {})
    assert {e["folder"]: tuple(e["evaluations"]) for e in content["runs"]} == {
        str(tmp_path / "results" / "runs" / f): e[:-1] for f, e in oracle.items()
    }  # the batch file lists the evaluations with a file (not bound)
    files = RunFolder.under(tmp_path, base, oracle[base]).evaluation_files
    assert [p.name for p in files] == ["gc_estimators.nc", "fewshot.nc"]  # bound: no file


def test_evaluations_by_folder_unites_in_first_seen_order():
    readers = [("a", ["x"]), ("b", []), ("a", ["y", "x"]), ("b", ["y"])]
    assert evaluations_by_folder(readers) == {"a": ("x", "y"), "b": ("y",)}
