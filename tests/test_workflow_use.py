"""The workflow as a user drives it from a terminal, on real Snakemake processes: Ctrl-C
and a plain rerun, what the terminal and the logs show while runs train, and config
errors that name the file."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from gcstudy.scheduling.batches import batches
from gcstudy.study import config as study_config
from gcstudy.study import traces

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]

# Two runs, trained one after the other by one batch job (resources.batch: study_seed, as
# in the default study), long enough (seconds each on 2 cores) to be interrupted.
LONG_RUN = {
    "results": "out",
    "defaults": {
        "width": 0.0625, "steps": 300, "eval_steps": [0], "gc_examples": 20,
        "feature_examples": 60, "test_examples": 60, "bn_recalibration_examples": 32,
        "checkpoint_every": 100000, "device": "cpu",
    },
    "resources": {"batch": "study_seed"},
    "studies": {
        "tiny": {
            "experiment": "E1", "dataset": "digits", "base": {"lr": 0.05, "batch_size": 16},
            "sweeps": {"lr": [0.1]},
        },
    },
}  # fmt: skip
# in the order the batch job trains them: config order
RUNS = [run.run_id for run in batches(study_config.validate(LONG_RUN), "study_seed")["tiny/seed-0"]]


def trained_arrays(folder: Path) -> tuple[dict, dict]:
    """A finished run's traced values (but wall times) and final weights."""
    trace = traces.load(folder / "trace.h5")
    values = {k: v for k, v in trace.values.items() if k != "wall_time"}
    return values, torch.load(folder / "model.pt", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_ctrl_c_keeps_the_training_and_the_same_command_continues(tmp_path):
    """Ctrl-C (SIGINT to Snakemake's whole process group, as a terminal sends it) while
    the second run of a batch job trains, the first finished: the trainer checkpoints and
    says so in its log, without a traceback; the same `snakemake` command, with no extra
    flag (Snakemake marked the batch's manifest incomplete), keeps the first run and
    resumes the second from its checkpoint, which ends bit for bit as an uninterrupted run
    of its spec (same thread count: 1). Meanwhile Snakemake's terminal shows a line for
    each finished run (k of N, elapsed, ETA), and the job's log names each run without
    dumping its spec."""
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(LONG_RUN))
    targets = ["out/trained/tiny/seed-0.json"]
    command = [*SNAKEMAKE, "--configfile", "cfg.yaml", "--cores", "2", *targets]
    finished, run_dir = (tmp_path / "out" / "runs" / run for run in RUNS)
    with open(tmp_path / "first.err", "w") as err:
        first = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err,
                                 start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 300
        # the first run finished, the second past its step-0 evaluation
        while not (run_dir / "trace.running.h5").exists():
            assert first.poll() is None and time.monotonic() < deadline, "training never began"
            time.sleep(0.2)
        os.killpg(first.pid, signal.SIGINT)
        assert first.wait(timeout=300) != 0
    terminal = (tmp_path / "first.err").read_text()
    header = r"^(local)?rule train:\n(    .*\n)*    log: logs/train/tiny/seed-0.log\n"
    assert re.search(header, terminal, re.M), terminal[-3000:]
    progress = [line for line in terminal.splitlines() if " of 2 " in line]
    assert len(progress) == 1, terminal[-3000:]
    assert re.fullmatch(
        rf"\d\d:\d\d:\d\d run 1 of 2 complete: {RUNS[0]} \([\d.]+ s\); job \d+ min \d\d s in, "
        r"about \d+ min \d\d s left",
        progress[0],
    ), progress
    log = (tmp_path / "logs" / "train" / "tiny" / "seed-0.log").read_text()
    assert "Traceback" not in log, log
    assert f"run 1 of 2: out/runs/{RUNS[0]}" in log and f"run 2 of 2: out/runs/{RUNS[1]}" in log
    assert "spec" not in log, log  # the spec is in the run folder (spec.yaml), not the log
    stopped = [line for line in log.splitlines() if "stopped by signal SIGINT" in line]
    assert len(stopped) == 1 and "run the same command again to resume" in stopped[0], log
    step = int(stopped[0].split(" at step ")[1].split(";")[0])
    assert 0 < step < 300 and not (run_dir / "trace.h5").exists()
    assert traces.status(finished / "trace.h5") == "complete"
    first_run = trained_arrays(finished)
    assert [p.name for p in (run_dir / "ckpt").iterdir()] == [f"step-{step:08d}.pt"]

    second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    log = (tmp_path / "logs" / "train" / "tiny" / "seed-0.log").read_text()
    assert f"resuming at step {step}, training to 300" in log, log
    assert re.search(rf"run 2 of 2 complete: {RUNS[1]} .*; job .* in, done\n", second.stderr)
    kept = trained_arrays(finished)
    for name, values in first_run[0].items():
        np.testing.assert_array_equal(kept[0][name], values, err_msg=name)

    reference = subprocess.run(
        [sys.executable, "-m", "gcstudy.cli", "-q", "train", str(run_dir / "spec.yaml"),
         "--out", str(tmp_path / "reference")],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert reference.returncode == 0, reference.stderr
    (resumed, resumed_weights), (uninterrupted, weights) = map(
        trained_arrays, (run_dir, tmp_path / "reference")
    )
    assert resumed.keys() == uninterrupted.keys()
    for name, values in uninterrupted.items():
        np.testing.assert_array_equal(resumed[name], values, err_msg=name)
    assert all(torch.equal(resumed_weights[k], weights[k]) for k in weights)
    segments = traces.load(run_dir / "trace.h5").attrs["segments"]
    assert [(s["first_step"], s["threads"]) for s in segments] == [(0, 1), (step, 1)]


# A config that is broken in one way each, the message that must name it, and the line and
# column where YAML gives one (1-based).
VALID = "results: out\nstudies:\n  tiny: {experiment: E1, dataset: digits}\n"
BROKEN_CONFIGS = {
    "syntax": ("results: out\nstudies: [tiny\n", "line 3, column 1: not valid YAML"),
    "empty": ("", "the config file is empty; expected a mapping with keys results"),
    "tab": ("results: out\nstudies:\n\ttiny: {}\n", "line 3, column 1: not valid YAML: found "
            "character '\\t' that cannot start any token"),
    "unknown key": (VALID.replace("dataset", "datset"),
                    "unknown key studies.tiny.datset (did you mean 'dataset'?)"),
    "bad value": (VALID + "share_runs: maybe\n", "share_runs: 'maybe' is not of type 'boolean'"),
}  # fmt: skip


@pytest.mark.parametrize("broken", BROKEN_CONFIGS)
def test_config_errors_name_the_file_in_snakemake_and_gcstudy(tmp_path, broken):
    """Each broken config stops `snakemake` (given with --configfile, and as the default
    config/config.yaml) and `gcstudy runs` with one message naming the file (and the line
    where YAML gives one) and what was expected: no traceback, no job, no results."""
    text, expected = BROKEN_CONFIGS[broken]
    (tmp_path / "config").mkdir()
    for name in ("cfg.yaml", "config/config.yaml"):
        (tmp_path / name).write_text(text)
    commands = [
        ("cfg.yaml", [*SNAKEMAKE, "--configfile", "cfg.yaml", "--cores", "1"]),
        ("config/config.yaml", [*SNAKEMAKE, "--cores", "1"]),
        ("cfg.yaml", [sys.executable, "-m", "gcstudy.cli", "runs", "--configfile", "cfg.yaml"]),
    ]
    for path, command in commands:
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert result.returncode != 0, (command, result.stderr)
        errors = [line for line in result.stderr.splitlines() if expected in line]
        assert len(errors) == 1, (command, result.stderr[-3000:])
        assert path in errors[0], (command, errors)
        assert "Traceback" not in result.stderr and "WorkflowError" not in result.stderr
        assert not (tmp_path / "out").exists() and not (tmp_path / "results").exists()
