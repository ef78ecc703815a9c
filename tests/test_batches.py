"""Batch membership (gcstudy.scheduling.batches): a function of the run alone, so an added
run or a changed resource moves no other run; the batch file says only its own runs; the
start-up check's findings remove only their batches' manifests."""

import copy
from pathlib import Path

import pytest

from gcstudy.scheduling import batches
from gcstudy.study import config as study_config
from gcstudy.study import runfolder
from gcstudy.study.settings import BATCH_MODES

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def default():
    return study_config.load(REPO / "config" / "config.yaml")


def membership(config: dict, mode: str) -> dict[str, str]:
    """Run folder -> batch."""
    grouped = batches.batches(study_config.expand(copy.deepcopy(config)), mode)
    return {run.run_id: batch for batch, runs in grouped.items() for run in runs}


def test_the_default_study_trains_one_batch_per_study_and_seed(default):
    grouped = batches.batches(study_config.expand(default), default["resources"]["batch"])
    trained = study_config.trained_runs(study_config.expand(default))
    assert default["resources"]["batch"] == "study_seed"
    assert len(trained) == 63 and len(grouped) == 12  # 4 studies x 3 seeds
    assert sorted(r.run_id for runs in grouped.values() for r in runs) == sorted(
        r.run_id for r in trained
    )  # every run folder once
    for batch, runs in grouped.items():
        study, seed = batch.split("/seed-")
        assert {(r.study, r.seed) for r in runs} == {(study, int(seed))}
    per_run = batches.batches(study_config.expand(default), "run")
    assert list(per_run) == [r.run_id for r in trained]  # each folder its own batch


@pytest.mark.parametrize("mode", BATCH_MODES)
def test_an_added_run_or_changed_resource_moves_no_other_run(default, mode):
    before = membership(default, mode)
    more = copy.deepcopy(default)
    more["studies"]["sweeps"]["sweeps"]["lr"].append(0.3)  # a new run in every seed
    more["studies"]["penalty"]["seeds"].append(7)  # a new seed: batches of its own
    more["resources"].update(minutes_per_1000_steps=9, mem_mb=9000, threads=2)
    after = membership(more, mode)
    assert {folder: after[folder] for folder in before} == before
    added = sorted(set(after) - set(before))
    assert len(added) == 3 + 4  # lr 0.3 in seeds 0-2; penalty seed 7: base + 3 penalties
    if mode == "study_seed":
        assert {after[f] for f in added} == {
            "sweeps/seed-0", "sweeps/seed-1", "sweeps/seed-2", "penalty/seed-7"
        }  # fmt: skip


def test_a_studys_own_rate_changes_no_batch(default):
    """A study's `minutes_per_1000_steps` sets its jobs' time limits only: every batch keeps
    its runs and its batch file (so nothing trains again)."""
    rated = copy.deepcopy(default)
    rated["studies"]["sweeps"]["minutes_per_1000_steps"] = 9
    study_config.validate(rated)
    for mode in BATCH_MODES:
        before = batches.batches(study_config.expand(copy.deepcopy(default)), mode)
        after = batches.batches(study_config.expand(rated), mode)
        assert list(after) == list(before)
        for batch, runs in before.items():
            was = batches.batch_content("results", runs, default["evaluate"])
            assert batches.batch_content("results", after[batch], rated["evaluate"]) == was


def test_a_batch_file_says_its_runs_and_the_settings_only_where_evaluated(default):
    grouped = batches.batches(study_config.expand(default), "study_seed")
    content = batches.batch_content("results", grouped["transfer/seed-1"], default["evaluate"])
    assert [e["folder"] for e in content["runs"]] == [
        f"results/runs/{r.run_id}" for r in grouped["transfer/seed-1"]
    ]
    assert content["runs"][0]["spec"] == grouped["transfer/seed-1"][0].spec.to_dict()
    assert {k for e in content["runs"] for k in e["evaluations"]} == {"fewshot"}
    assert content["evaluate"] == default["evaluate"]
    bound = batches.batch_content("results", grouped["bound/seed-0"], default["evaluate"])
    assert bound["runs"][0]["evaluations"] == [] and "evaluate" not in bound  # bound: no file


def test_findings_remove_the_manifests_of_their_batches_only(tmp_path):
    batch_of = {"a/x_seed-0": "a/seed-0", "a/y_seed-0": "a/seed-0", "b/z_seed-1": "b/seed-1"}
    for batch in set(batch_of.values()):
        path = batches.manifest_path(tmp_path, batch)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    found = [runfolder.Finding(str(tmp_path / "runs" / "a" / "y_seed-0" / "trace.h5"), "missing")]
    batches.forget(tmp_path, found, batch_of)
    assert not batches.manifest_path(tmp_path, "a/seed-0").exists()
    assert batches.manifest_path(tmp_path, "b/seed-1").exists()
    batches.forget(tmp_path, found, batch_of)  # already gone: nothing to do
