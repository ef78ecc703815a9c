# Config validation, the run table and every input function: the rules read as declarations.
import json

from gcstudy import config as study_config
from gcstudy import jobs

# Inside a SLURM job step this Snakemake process gets train's warning signal too; it must
# outlive it so that the trainer can checkpoint (gcstudy.jobs).
jobs.survive_warning_signal()

# gcstudy's own checks (they name the key path, the bad value and what is allowed), then
# snakemake.utils.validate against the packaged schema, which fills in its defaults.
RUN_LIST = study_config.validate(config, source="config")
RUNS = {run.run_id: run for run in RUN_LIST}
RESULTS = config["results"]
RESOURCES = config["resources"]

wildcard_constraints:
    run=r"[A-Za-z0-9_\-]+/[A-Za-z0-9_.\-]+",
    dataset="[a-z_0-9]+",


def result(path):
    """A path under the config's results folder."""
    return f"{RESULTS}/{path}"


def run_dir(wildcards):
    return f"{RESULTS}/runs/{wildcards.run}"


def run_spec(wildcards):
    """The resolved run spec of a run (a Snakemake param: a change re-runs the run)."""
    return RUNS[wildcards.run].spec.to_dict()


def data_ready(wildcards):
    return f"{RESULTS}/data/{RUNS[wildcards.run].spec.dataset}.ready"


def trace_files(wildcards=None):
    return [f"{RESULTS}/runs/{run_id}/trace.h5" for run_id in RUNS]


def evaluation_files(wildcards=None):
    files = []
    for run_id, run in RUNS.items():
        if "fewshot" in run.evaluations:
            files.append(f"{RESULTS}/runs/{run_id}/fewshot.nc")
        if "gc_estimators" in run.evaluations:
            files.append(f"{RESULTS}/runs/{run_id}/gc_estimators.nc")
    return files


def final_outputs():
    """The default target: the report (it needs the study file, the statistics and the
    figures, hence every run)."""
    return [result("report.html")]


def train_minutes(wildcards, attempt):
    """Job time limit from the step budget, longer on each retry (gcstudy.jobs)."""
    steps = RUNS[wildcards.run].spec.steps
    return jobs.train_minutes(steps, RESOURCES["minutes_per_1000_steps"], attempt)


def memory(wildcards, attempt):
    return RESOURCES["mem_mb"] * attempt


def job_threads():
    return RESOURCES["cpus_per_gpu"] if RESOURCES["gpu"] else RESOURCES["threads"]


def evaluation_settings():
    return json.dumps(config["evaluate"], sort_keys=True)
