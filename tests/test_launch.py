"""The submitit launcher without SLURM: run selection, the plan, the sbatch settings, the
hand-over of gcstudy's stop to submitit's requeue, and the local executor end to end
(interrupted, requeued, resumed). On a real SLURM: test_slurm_workflow.py."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from gcstudy import cli
from gcstudy.scheduling import launch
from gcstudy.study import traces
from gcstudy.training.trainer import Interrupted, run

CONFIG = {
    "defaults": {
        "model": "vgg11", "width": 0.0625, "steps": 60, "eval_steps": [0, 30, 60],
        "gc_examples": 20, "feature_examples": 60, "test_examples": 60,
        "bn_recalibration_examples": 32, "checkpoint_every": 5, "device": "cpu",
    },
    "resources": {"gpu": 0, "threads": 1, "mem_mb": 1000},
    "studies": {
        "tiny": {
            "experiment": "E1", "dataset": "digits",
            "base": {"lr": 0.05, "batch_size": 32}, "sweeps": {"lr": [0.1]}, "seeds": [0],
        },
        "other": {"experiment": "E3", "dataset": "digits", "seeds": [0, 1]},
    },
}  # fmt: skip
TINY = ["tiny/lr-0.05_bs-32_l2-0_gcp-0_seed-0", "tiny/lr-0.1_bs-32_l2-0_gcp-0_seed-0"]
OTHER = ["other/lr-0.05_bs-64_l2-0_gcp-0_seed-0", "other/lr-0.05_bs-64_l2-0_gcp-0_seed-1"]


@pytest.fixture
def configfile(tmp_path) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    return path


# ----------------------------------------------------------------------------- planning


def test_only_selects_studies_and_run_id_globs(configfile, tmp_path):
    everything = launch.plan([configfile], workdir=tmp_path)
    assert list(everything.pending) == TINY + OTHER  # resources.batch: run (the default)
    assert [r.run_id for r in launch.plan([configfile], ["other"], workdir=tmp_path).selected] == (
        OTHER
    )
    picked = launch.plan([configfile], ["tiny/lr-0.1_*", "*seed-1"], workdir=tmp_path)
    assert [r.run_id for r in picked.selected] == [TINY[1], OTHER[1]]  # config order, once each
    with pytest.raises(launch.LaunchError, match=r"--only 'tiy' matches no run.*other, tiny"):
        launch.plan([configfile], ["tiy"], workdir=tmp_path)


def test_later_configfiles_are_merged_into_earlier_ones_as_snakemake_does(configfile, tmp_path):
    override = tmp_path / "more.yaml"
    override.write_text(yaml.safe_dump({"defaults": {"steps": 90}, "results": "out"}))
    p = launch.plan([configfile, override], workdir=tmp_path)
    assert p.workdir / p.results == tmp_path / "out"
    assert {r.spec.steps for runs in p.pending.values() for r in runs} == {90}
    assert {r.spec.width for runs in p.pending.values() for r in runs} == {0.0625}  # merged


def test_batches_of_the_rules_and_their_manifests_decide_what_is_pending(configfile, tmp_path):
    """The batches are the workflow's (resources.batch: study_seed here); a batch with a
    manifest and an unchanged batch file is done; a changed run spec makes its batch, and
    no other, pending again, and writing its new batch file removes its manifest."""
    config = yaml.safe_load(configfile.read_text())
    config["resources"]["batch"] = "study_seed"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    p = launch.plan([configfile], workdir=tmp_path)
    assert {b: [r.run_id for r in runs] for b, runs in p.pending.items()} == {
        "tiny/seed-0": TINY, "other/seed-0": OTHER[:1], "other/seed-1": OTHER[1:]
    }  # fmt: skip
    jobs = launch.prepare_files(p)
    assert list(jobs) == list(p.pending)
    for batch in p.pending:
        written = json.loads(p.batch_file(batch).read_text())
        assert written == p.content(batch) and written["runs"][0]["folder"].startswith("results/")
        p.manifest(batch).parent.mkdir(parents=True, exist_ok=True)
        p.manifest(batch).write_text("{}")
    assert launch.plan([configfile], workdir=tmp_path).pending == {}
    config["studies"]["other"]["base"] = {"momentum": 0.5}
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    changed = launch.plan([configfile], workdir=tmp_path)
    assert list(changed.pending) == ["other/seed-0", "other/seed-1"]
    launch.prepare_files(changed)
    assert not changed.manifest("other/seed-0").exists()
    assert changed.manifest("tiny/seed-0").exists()


def test_cli_dry_run_lists_what_would_be_trained(configfile, tmp_path, capsys):
    assert cli.main(["launch", "--configfile", str(configfile), "-d", str(tmp_path), "-n",
                     "--only", "tiny"]) == 0  # fmt: skip
    out, err = capsys.readouterr()
    assert out.split() == [TINY[0], TINY[0], TINY[1], TINY[1]]  # batch, then its runs
    assert "2 batches to train (2 runs), 0 queued or running" in err
    assert "# one job array, time limit 10 min: 2 batches" in err and "GPU-hours" not in err
    assert not (tmp_path / "results").exists()  # a dry run writes nothing
    assert cli.main(["launch", "--configfile", str(configfile), "--only", "nope", "-n"]) == 2


def test_sbatch_settings_follow_the_train_rule(configfile, tmp_path, monkeypatch):
    from submitit.slurm.slurm import _make_sbatch_string

    from gcstudy.scheduling import jobs

    monkeypatch.setenv("GCSTUDY_SLURM_ACCOUNT", "proj42")
    monkeypatch.delenv("GCSTUDY_SLURM_PARTITION", raising=False)
    p = launch.plan([configfile], workdir=tmp_path)
    (minutes,) = launch.by_time_limit(p)  # 60-step runs: the 10-minute floor
    assert minutes == jobs.MIN_MINUTES == 10
    script = _make_sbatch_string(
        command="python -m x", folder=tmp_path, map_count=4,
        **launch.slurm_parameters(p, minutes),
    )  # fmt: skip
    for flag in ("--time=10", "--mem=1000M", "--cpus-per-task=1", "--signal=USR2@120",
                 "--account=proj42", f"--chdir={tmp_path}", "--array=0-3%4"):  # fmt: skip
        assert f"#SBATCH {flag}\n" in script, flag
    assert "--partition" not in script and "--gpus" not in script

    p.config["resources"].update(gpu=1, cpus_per_gpu=4)
    params = launch.slurm_parameters(p, 72)
    assert (params["gpus_per_node"], params["cpus_per_task"], params["time"]) == (1, 4, 72)


def test_one_job_array_per_time_limit(configfile, tmp_path):
    """Batches are submitted by the train rule's time limit
    (gcstudy.scheduling.jobs.train_minutes of
    their summed steps): here a 6,000-step study next to a 15,000-step one, as MNIST and
    CIFAR in the paper grid, and one batch of two 6,000-step runs."""
    from gcstudy.scheduling import jobs

    config = yaml.safe_load(configfile.read_text())
    config["resources"]["minutes_per_1000_steps"] = 3
    config["studies"]["other"]["base"] = {"steps": 15000}
    config["studies"]["tiny"]["base"]["steps"] = 6000
    configfile.write_text(yaml.safe_dump(config))
    p = launch.plan([configfile], workdir=tmp_path)
    arrays = launch.by_time_limit(p)
    # 2 x 3 min per 1,000 steps: 6,000 steps 36 min, 15,000 steps 90 min
    assert arrays == {36: TINY, 90: OTHER}
    assert [jobs.train_minutes(p.config, p.pending[b]) for b in TINY + OTHER] == [36, 36, 90, 90]
    config["resources"]["batch"] = "study_seed"
    configfile.write_text(yaml.safe_dump(config))
    arrays = launch.by_time_limit(launch.plan([configfile], workdir=tmp_path))
    assert arrays == {72: ["tiny/seed-0"], 90: ["other/seed-0", "other/seed-1"]}  # 12,000 steps
    assert list(launch.by_time_limit(p, minutes=30)) == [30]  # --timeout-min: one array


def test_a_studys_own_rate_sets_its_jobs_time_limits(configfile, tmp_path):
    """A study's `minutes_per_1000_steps` replaces the resources' one for its runs alone,
    in the launcher's limits as in the train rule's (the one gcstudy.scheduling.jobs
    function): here 7 min per 1,000 steps for `other` (15,000 steps: 2 x 105 = 210 min)
    beside the resources' 3 for `tiny` (6,000 steps: 36 min)."""
    config = yaml.safe_load(configfile.read_text())
    config["resources"]["minutes_per_1000_steps"] = 3
    config["studies"]["other"].update(base={"steps": 15000}, minutes_per_1000_steps=7)
    config["studies"]["tiny"]["base"]["steps"] = 6000
    configfile.write_text(yaml.safe_dump(config))
    assert launch.by_time_limit(launch.plan([configfile], workdir=tmp_path)) == {
        36: TINY, 210: OTHER
    }  # fmt: skip
    config["resources"]["batch"] = "study_seed"
    configfile.write_text(yaml.safe_dump(config))
    arrays = launch.by_time_limit(launch.plan([configfile], workdir=tmp_path))
    assert arrays == {72: ["tiny/seed-0"], 210: ["other/seed-0", "other/seed-1"]}


def test_expected_gpu_hours_sum_each_studys_runs_at_its_rate(configfile, capsys):
    """`gcstudy runs`: the GPU-hours of a config whose studies have different rates, in all
    and per study, against the hand computation: `tiny` 2 runs x 6,000 steps x 3 min per
    1,000 = 36 min = 0.6 h; `other` 2 x 15,000 x 7 / 1,000 = 210 min = 3.5 h; 4.1 h."""
    config = yaml.safe_load(configfile.read_text())
    config["resources"].update(gpu=1, minutes_per_1000_steps=3)
    config["studies"]["other"].update(base={"steps": 15000}, minutes_per_1000_steps=7)
    config["studies"]["tiny"]["base"]["steps"] = 6000
    configfile.write_text(yaml.safe_dump(config))
    assert cli.main(["runs", "--configfile", str(configfile)]) == 0
    err = capsys.readouterr().err
    assert "expected training: 4.1 GPU-hours for 4 runs (4.1 job-hours" in err
    assert "  tiny: 0.6 GPU-hours (2 runs, 12,000 steps at 3 min per 1,000 steps)" in err
    assert "  other: 3.5 GPU-hours (2 runs, 30,000 steps at 7 min per 1,000 steps)" in err


def test_set_resources_for_train_reach_sbatch(configfile, tmp_path, monkeypatch):
    """`--set-resources train:...` as given to snakemake: qos, constraint, GPU model,
    partition, account, memory, time and extra flags reach the submitit sbatch script."""
    from submitit.slurm.slurm import _make_sbatch_string

    monkeypatch.setenv("GCSTUDY_SLURM_PARTITION", "gpu")
    monkeypatch.delenv("GCSTUDY_SLURM_ACCOUNT", raising=False)
    p = launch.plan([configfile], workdir=tmp_path)
    p.config["resources"].update(gpu=1, cpus_per_gpu=8)
    given = launch.train_resources([
        "train:qos=long", "train:constraint=a100", "train:gpu_model=a100",
        "train:slurm_partition=gpu-long", "train:mem_mb=64000", "train:runtime=240",
        "train:slurm_extra='--mail-type=FAIL --exclusive'", "evaluate_fewshot:qos=short",
    ])  # fmt: skip
    assert given["qos"] == "long" and given["runtime"] == 240  # evaluate_* entries ignored
    script = _make_sbatch_string(
        command="x", folder=tmp_path, **launch.slurm_parameters(p, 10, given)
    )
    for flag in ("--qos=long", "--constraint=a100", "--gres=gpu:a100:1", "--partition=gpu-long",
                 "--mem=64000M", "--time=240", "--cpus-per-task=8", "--mail-type=FAIL",
                 "--exclusive"):  # fmt: skip
        assert f"#SBATCH {flag}\n" in script, flag
    assert "--gpus-per-node" not in script and "--account" not in script
    with pytest.raises(launch.LaunchError, match="resource 'qoss' is not one launch passes"):
        launch.train_resources(["train:qoss=long"])
    with pytest.raises(launch.LaunchError, match="expected RULE:RESOURCE=VALUE"):
        launch.train_resources(["qos=long"])


def test_runs_held_by_a_live_trainer_are_skipped(configfile, tmp_path):
    """A run folder held by a live process (here a `gcstudy.study.runlock` holder in another
    process) is neither planned nor submitted again; once that process is gone it is."""
    p = launch.plan([configfile], workdir=tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from gcstudy.study import runlock;"
         "runlock.acquire(sys.argv[1]); print('held', flush=True); time.sleep(600)",
         str(p.run_dir(TINY[0]))],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = launch.plan([configfile], workdir=tmp_path)
        assert list(busy.pending) == TINY[1:] + OTHER
        assert [(b, r.run_id, h.pid) for b, r, h in busy.busy] == [(TINY[0], TINY[0], holder.pid)]
    finally:
        holder.kill()
        holder.wait()
    assert list(launch.plan([configfile], workdir=tmp_path).pending) == TINY + OTHER


# ----------------------------------------------------------------------------- signals


class Requeued(Exception):
    """Stands for submitit's handler, which requeues and exits."""


@pytest.fixture
def submitit_handler():
    """A stand-in for submitit's handler of its signal (SIGUSR2), as inside a job."""
    calls = []

    def handler(signum, frame):
        calls.append(signum)
        raise Requeued

    previous = signal.signal(signal.SIGUSR2, handler)
    yield calls
    signal.signal(signal.SIGUSR2, previous)


def test_stop_on_submitits_signal_is_handed_to_submitit_at_once(submitit_handler):
    # a preemption: SIGTERM, then SIGUSR2, both received while training
    stop = Interrupted(signal.SIGTERM, 12, (signal.SIGTERM, signal.SIGUSR2))
    with pytest.raises(Requeued):
        launch.hand_over(stop)
    assert submitit_handler == [signal.SIGUSR2]


# A submitit job that stopped on a lone SIGTERM, in a child process: a stand-in for
# submitit's handler of SIGUSR2 (like submitit's after a requeue, it exits with
# SystemExit, which no `except Exception` on the way swallows), then gcstudy's hand-over
# with a grace period of argv[1] seconds. It prints whether the signal came while the
# hand-over was still running.
LONE_SIGTERM = """
import signal, sys
from gcstudy.scheduling import launch
from gcstudy.training.trainer import Interrupted

handing_over = False

def submitit_handler(signum, frame):
    print("requeued" if handing_over else "signal after the hand-over", flush=True)
    sys.exit(3)

signal.signal(signal.SIGUSR2, submitit_handler)
launch.SIGTERM_GRACE_S = float(sys.argv[1])
handing_over = True
launch.hand_over(Interrupted(signal.SIGTERM, 12))
handing_over = False
print("returned", flush=True)
"""


def test_lone_sigterm_waits_for_submitits_signal():
    """With an hour of grace, the hand-over waits (it says so) and requeues as soon as
    submitit's signal arrives: the child ends long before the grace is over."""
    child = subprocess.Popen([sys.executable, "-c", LONE_SIGTERM, "3600"], text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        said = queue.Queue()
        threading.Thread(target=lambda: said.put(child.stderr.readline()), daemon=True).start()
        assert "waiting up to 3600 s for SIGUSR2" in said.get(timeout=120)
        child.send_signal(signal.SIGUSR2)
        out, err = child.communicate(timeout=120)
    finally:
        child.kill()
        child.wait()
    assert (child.returncode, out) == (3, "requeued\n"), err


def test_lone_sigterm_without_submitits_signal_returns_after_the_grace(
    submitit_handler, monkeypatch
):
    monkeypatch.setattr(launch, "SIGTERM_GRACE_S", 0.3)
    launch.hand_over(Interrupted(signal.SIGTERM, 12))  # nothing came: the caller re-raises
    assert submitit_handler == []


def test_outside_submitit_nothing_is_requeued():
    previous = signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    try:
        launch.hand_over(Interrupted(signal.SIGUSR2, 3))  # returns; must not kill pytest
    finally:
        signal.signal(signal.SIGUSR2, previous)


# ----------------------------------------------------------------------------- local executor


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


def job_process(pid: int) -> int | None:
    """The submitit job process (python -m submitit.core._submit) under `pid`."""
    for child in descendants(pid):
        try:
            if b"submitit.core._submit" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
        except OSError:
            pass
    return None


@pytest.mark.slow
def test_local_executor_requeues_on_its_signal_and_resumes(configfile, tmp_path):
    """`gcstudy launch --executor local`: the job, sent submitit's signal after step 10,
    checkpoints, is requeued (exit 144, restarted by submitit) and resumes to the results of
    an uninterrupted run, at the Snakemake paths."""
    workdir = tmp_path / "work"
    run_id = TINY[1]
    cmd = [sys.executable, "-m", "gcstudy.cli", "launch", "--configfile", str(configfile),
           "--executor", "local", "--only", run_id, "-d", str(workdir)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_dir = workdir / "results" / "runs" / run_id
    deadline = time.monotonic() + 240
    while not any(int(p.stem[5:]) >= 10 for p in (run_dir / "ckpt").glob("step-*.pt")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
        time.sleep(0.05)
    job = job_process(proc.pid)
    assert job is not None and not (run_dir / "trace.h5").exists()
    os.kill(job, signal.SIGUSR2)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out
    assert "1 batches finished, 0 failed" in out

    log = "\n".join(p.read_text() for p in (workdir / "logs" / "submitit").glob("*/*_log.err"))
    assert "stopped by signal SIGUSR2" in log and "Requeued job" in log, log[-3000:]
    resumed = re.search(r"resuming from checkpoint \S+ \(step (\d+)\)", log)
    assert resumed and int(resumed.group(1)) >= 10, log[-3000:]
    assert (run_dir / "spec.yaml").exists() and (run_dir / "model.pt").exists()
    assert (workdir / "results" / "data" / "digits.ready").exists()
    assert (workdir / "results" / "trained" / f"{run_id}.json").is_file()
    assert launch.plan([configfile], [run_id], workdir=workdir).pending == {}

    # the uninterrupted reference, in-process with the job's thread count
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        spec = launch.plan([configfile], [run_id], workdir=tmp_path / "ref").pending[run_id][0].spec
        run(spec, tmp_path / "ref", progress=False)
    finally:
        torch.set_num_threads(threads)
    first, second = traces.read(tmp_path / "ref" / "trace.h5"), traces.read(run_dir / "trace.h5")
    np.testing.assert_array_equal(first.step.values, second.step.values)
    for name in first.data_vars:
        if name != "wall_time":
            np.testing.assert_array_equal(first[name].values, second[name].values, err_msg=name)
    assert first.attrs["spec"] == second.attrs["spec"]


def test_runs_and_dry_run_print_the_expected_gpu_hours(tmp_path, capsys):
    """config/paper.yaml: the sum over the run folders to train (a run that shares another
    study's folder is trained once) of steps / 1000 x the study's minutes per 1,000 steps
    (its own, else the resources'), computed here from the YAML and the run table."""
    paper = Path(__file__).resolve().parents[1] / "config" / "paper.yaml"
    config = yaml.safe_load(paper.read_text())
    studies = config["studies"]
    steps = {s: {**config["defaults"], **study.get("base", {})}["steps"]
             for s, study in studies.items()}  # fmt: skip
    rate = {s: study.get("minutes_per_1000_steps", config["resources"]["minutes_per_1000_steps"])
            for s, study in studies.items()}  # fmt: skip
    table = tmp_path / "table.json"
    assert cli.main(["runs", "--configfile", str(paper), "--table", str(table)]) == 0
    out, err = capsys.readouterr()
    runs = json.loads(table.read_text())["runs"]
    assert len(out.splitlines()) == len(runs)
    trained: dict[str, int] = {}
    for entry in runs:
        if entry["folder"] == entry["run_id"]:
            trained[entry["study"]] = trained.get(entry["study"], 0) + 1
    hours = {s: n * steps[s] / 1000 * rate[s] / 60 for s, n in trained.items()}
    total = sum(hours.values())
    assert f"expected training: {total:.1f} GPU-hours for {sum(trained.values())} runs" in err
    for study, n in trained.items():
        assert f"  {study}: {hours[study]:.1f} GPU-hours ({n} runs, " in err, study
