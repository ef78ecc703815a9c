"""benchmarks/study_facts.py: config/README.md's figures come from a study's own files."""

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from gcstudy.study import config as study_config
from gcstudy.study import traces

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "study_facts.py"
BEGIN = "<!-- study-facts:begin (benchmarks/study_facts.py writes this block; do not edit) -->"
END = "<!-- study-facts:end -->"

CONFIG = {
    "defaults": {"width": 0.0625, "steps": 30, "eval_steps": [0, 10, 20, 25]},
    "studies": {
        "sweeps": {
            "experiment": "E1b",
            "dataset": "digits",
            "base": {"lr": 0.05, "batch_size": 32},
            "sweeps": {"l2": [0.0, 0.01]},
            "seeds": [0, 1],
        },
        "bound": {  # trains nothing: its runs are the sweeps' base runs
            "experiment": "E3",
            "dataset": "digits",
            "base": {"lr": 0.05, "batch_size": 32},
            "seeds": [0, 1],
            "evaluations": ["bound"],
        },
        "transfer": {
            "experiment": "E4",
            "dataset": "digits_fs",
            "base": {"lr": 0.05, "batch_size": 32},
            "seeds": [0],
            "evaluations": ["fewshot"],
        },
    },
}
BASE = "sweeps/lr-0.05_bs-32_l2-0_gcp-0_seed-"
STRONG_L2 = "sweeps/lr-0.05_bs-32_l2-0.01_gcp-0_seed-"
TRANSFER = "transfer/lr-0.05_bs-32_l2-0_gcp-0_seed-0"
# Every folder is evaluated at steps 0, 10, 20, 25, 30 (the clocks add 20 and 30); the last
# third of the 30 steps holds 20, 25 and 30.
ACCURACY = {
    BASE + "0": [0.1, 0.5, 1.0, 1.0, 1.0],  # early dip: still terminal
    BASE + "1": [0.1, 1.0, 1.0, 1.0, 1.0],
    STRONG_L2 + "0": [0.1, 1.0, 0.995, 1.0, 1.0],  # exactly 99.5 %: terminal
    STRONG_L2 + "1": [0.1, 1.0, 1.0, 0.99, 1.0],  # one late dip: not terminal
    TRANSFER: [0.1, 0.5, 0.9, 0.98, 0.985],  # below 99 % at the end
}
BOUND = {
    BASE + "0": [5.0, 2.0, 0.9, 1.1, 0.8],  # below 1 at 20, back above at 25: from 30
    BASE + "1": [5.0, 0.9, 0.8, 0.7, 0.6],  # from 10
}
CPU = {BASE + "0": 10, BASE + "1": 11, STRONG_L2 + "0": 12, STRONG_L2 + "1": 13, TRANSFER: 14}
TRAIN_EXAMPLES = {"sweeps": 320, "transfer": 640}
TIME_LOG = """\tCommand being timed: "snakemake --cores all"
\tUser time (seconds): 70.00
\tSystem time (seconds): 5.00
\tElapsed (wall clock) time (h:mm:ss or m:ss): 2:00.00
\tMaximum resident set size (kbytes): 1000
"""
BENCHMARK_HEADER = "\t".join(
    ("s", "h:m:s", "max_rss", "max_vms", "max_uss", "max_pss", "io_in", "io_out", "mean_load",
     "cpu_time")
) + "\n"  # fmt: skip


def write_study(root: Path, accuracy: dict = ACCURACY) -> Path:
    """A study's files as the workflow leaves them: run table, one trace per run folder
    (the real writer), Snakemake benchmark files and the time log of the snakemake command."""
    config = copy.deepcopy(CONFIG)
    study_config.validate(config)
    table = study_config.run_table(config)
    study_config.write_json(table, root / "results" / "run_table.json")
    for folder in {entry["folder"] for entry in table["runs"]}:
        spec = next(e["spec"] for e in table["runs"] if e["folder"] == folder)
        steps = np.array([0, 10, 20, 25, 30])
        assert spec["eval_steps"] + [30] == [0, 10, 20, 25, 30]
        values = {
            name: np.ones((len(steps), 10) if variable.dims == ("step", "class") else len(steps))
            for name, variable in traces.VARIABLES.items()
            if not variable.transfer_only
        }
        values["train_accuracy"] = np.array(accuracy[folder])
        values["bound_cdnv"] = np.array(BOUND.get(folder, [2.0] * 5))
        facts = {"train_examples": TRAIN_EXAMPLES[folder.split("/")[0]]}
        attrs = {"facts": facts, "cpu_seconds": CPU[folder], "git_commit": "abc", "host": "h"}
        path = root / "results" / "runs" / folder / "trace.h5"
        path.parent.mkdir(parents=True, exist_ok=True)
        traces.write(path, steps, np.arange(10), values, attrs, "complete")
    for name, wall, cpu in (("0", 50, 40), ("1", 30, 25)):
        path = root / "results" / "benchmarks" / "train" / "s" / f"seed-{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(BENCHMARK_HEADER + f"{wall}\t0:00:{wall}\t1\t1\t1\t1\t0\t0\t50\t{cpu}\n")
    (root / "study.time").write_text(TIME_LOG)
    readme = root / "README.md"
    typed_in = f"{BEGIN}\n- 30 of 30 runs (typed in)\n{END}"
    readme.write_text(f"# Study\n\nBefore.\n\n{typed_in}\n\nAfter.\n")
    return readme


def facts(root: Path, *options: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), str(root / "results"), "--time-log",
               str(root / "study.time"), "--readme", str(root / "README.md"), *options]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=os.environ)


def block_of(readme: Path) -> str:
    text = readme.read_text()
    return text[text.index(BEGIN) : text.index(END)]


def test_readme_block_is_written_from_the_study_files(tmp_path):
    readme = write_study(tmp_path)
    stale = facts(tmp_path, "--check")
    assert stale.returncode == 1 and "stale" in stale.stdout  # the typed-in block
    assert facts(tmp_path).returncode == 0
    text = readme.read_text()
    assert text.startswith("# Study\n\nBefore.\n\n") and text.endswith(f"{END}\n\nAfter.\n")
    block = block_of(readme)
    assert "typed in" not in block
    # budgets: 30 steps x batch 32 over 320 (sweeps) and 640 (transfer) images
    assert "| `sweeps` | E1b | 4 (4) | 30 | 320 | 3 |" in block
    assert "| `bound` | E3 | 2 (0) | 30 | 320 | 3 |" in block
    assert "| `transfer` | E4 | 1 (1) | 30 | 640 | 1.5 |" in block
    assert "`sweeps` (E1b): 3 of 4 runs in the terminal phase" in block
    assert f"not: {STRONG_L2}1" in block
    assert "`bound` (E3): 2 of 2 runs in the terminal phase" in block
    assert "`transfer` (E4) source runs: final train accuracy 98.5 %, 0 of 1 >= 99 %" in block
    # 2 x 0.05 x 0.01 x 30 = 0.03; exp(-0.03) = 0.97
    assert "`sweeps` L2 doses 2 x lr x L2 x steps: 0 -> 0, 0.01 -> 0.03" in block
    assert "exp(-dose) = 0.97" in block
    assert "stays below 1 from step 30, 10 of 30 (per seed); final bound 0.6-0.8" in block
    assert "sum of the traces' `cpu_seconds`, 5 trained runs): 60 CPU s" in block
    assert "2.0 min wall, 75 CPU s; the runs' share of the CPU seconds: 80.0%" in block
    assert "rule `train`: 2 jobs, 80 s wall, 65 CPU s" in block
    assert facts(tmp_path, "--check").returncode == 0


def test_a_block_the_files_no_longer_give_is_stale(tmp_path):
    readme = write_study(tmp_path)
    assert facts(tmp_path).returncode == 0
    written = readme.read_text()
    # the study is rerun and a run now stays terminal
    shutil.rmtree(tmp_path / "results")
    write_study(tmp_path, {**ACCURACY, STRONG_L2 + "1": [0.1] + [1.0] * 4})
    readme.write_text(written)
    check = facts(tmp_path, "--check")
    assert check.returncode == 1 and "4 of 4 runs in the terminal phase" in check.stdout
    assert readme.read_text() == written  # --check does not write
