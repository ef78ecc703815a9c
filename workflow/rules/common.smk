# Config validation, the run table and every input function: the rules read as declarations.
import json

from gcstudy import config as study_config
from gcstudy import jobs, runfiles, studylock, workflow_config

# Inside a SLURM job step this Snakemake process gets train's warning signal too; it must
# outlive it so that the trainer can checkpoint (gcstudy.jobs).
jobs.survive_warning_signal()

# gcstudy's own checks (they name the config file, the key path, the bad value and what is
# allowed), then snakemake.utils.validate against the packaged schema, which fills in its
# defaults; an error stops Snakemake with that one message (gcstudy.workflow_config).
RUN_LIST = workflow_config.runs(
    config,
    workflow.overwrite_configfiles or workflow.configfiles,
    workflow.config_settings.config,
)
RESULTS = config["results"]
RESOURCES = config["resources"]
# The run folders to train (runs of several studies with one spec share a folder), and,
# with resources.runs_per_job > 1, the jobs that train them several at a time.
RUNS = {run.run_id: run for run in study_config.trained_runs(RUN_LIST)}
TRAIN_GROUPS = (
    study_config.train_groups(RUN_LIST, RESOURCES["runs_per_job"])
    if RESOURCES["runs_per_job"] > 1
    else []
)

EVALUATION_FILES = runfiles.EVALUATIONS
# An input of aggregate, stats, figures and report, rewritten when a run file is found
# missing or broken; so the study file and all after it are rebuilt.
RUN_FILES = f"{RESULTS}/{runfiles.STUDY_CHECK}"

# The results folder is this Snakemake's alone while it runs (a second one is refused,
# naming this one; a dry run beside it is let through and writes nothing), and the files
# of its run folders are the truth: broken ones are removed, so that Snakemake sees them
# missing and makes them again (gcstudy.studylock, gcstudy.runfiles, docs/recovery.md).
if workflow.is_main_process and studylock.guard(RESULTS, workflow.output_settings.dryrun):
    runfiles.check_study(
        RESULTS,
        {
            folder: [EVALUATION_FILES[kind] for kind in run.evaluations if kind in EVALUATION_FILES]
            for folder, run in RUNS.items()
        },
    )

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
    return data_marker(RUNS[wildcards.run])


def data_marker(run):
    return f"{RESULTS}/data/{run.spec.dataset}.ready"


def trace_files(wildcards=None):
    return [f"{RESULTS}/runs/{run_id}/trace.h5" for run_id in RUNS]


def evaluated(kind, runs=None):
    """The run folders (ids in RUNS) that get evaluation ``kind``: those of any run of the
    run table, in the run table's order, restricted to ``runs`` when given."""
    chosen = None if runs is None else {run.run_id for run in runs}
    folders = [run.trained_in for run in RUN_LIST if kind in run.evaluations]
    return [f for f in dict.fromkeys(folders) if chosen is None or f in chosen]


def evaluation_files(wildcards=None):
    return [
        f"{RESULTS}/runs/{folder}/{name}"
        for kind, name in EVALUATION_FILES.items()
        for folder in evaluated(kind)
    ]


def final_outputs():
    """The default target: the report (it needs the study file, the statistics and the
    figures, hence every run)."""
    return [result("report.html")]


def train_minutes(wildcards, attempt):
    """Job time limit from the step budget, longer on each retry (gcstudy.jobs)."""
    steps = RUNS[wildcards.run].spec.steps
    return jobs.train_minutes(steps, RESOURCES["minutes_per_1000_steps"], attempt)


def group_minutes(group):
    """The job time limit of a group of runs trained one after another: that of one run
    with all their steps (gcstudy.jobs)."""

    def minutes(wildcards, attempt):
        steps = sum(run.spec.steps for run in group)
        return jobs.train_minutes(steps, RESOURCES["minutes_per_1000_steps"], attempt)

    return minutes


def attempt_minutes(minutes):
    """A job time limit of ``minutes`` times the attempt number."""

    def limit(wildcards, attempt):
        return minutes * attempt

    return limit


def memory(wildcards, attempt):
    return RESOURCES["mem_mb"] * attempt


def job_threads():
    return RESOURCES["cpus_per_gpu"] if RESOURCES["gpu"] else RESOURCES["threads"]


def evaluation_settings():
    return json.dumps(config["evaluate"], sort_keys=True)
