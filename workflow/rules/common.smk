# Config validation, the run table and every input function: the rules read as declarations.
import json

from gcstudy import config as study_config
from gcstudy import jobs, studylock, workflow_config
from gcstudy.study import runfolder

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
# The run folders to train (runs of several studies with one spec share a folder; each
# with the evaluations of every run that reads it), and, with resources.runs_per_job > 1,
# the jobs that train them several at a time.
RUNS = {run.run_id: run for run in study_config.trained_runs(RUN_LIST)}
TRAIN_GROUPS = (
    study_config.train_groups(RUN_LIST, RESOURCES["runs_per_job"])
    if RESOURCES["runs_per_job"] > 1
    else []
)

EVALUATION_FILES = runfolder.EVALUATION_FILES
# An input of aggregate, stats, figures and report, rewritten when a run file is found
# missing or broken; so the study file and all after it are rebuilt.
RUN_FILES = f"{RESULTS}/{runfolder.STUDY_CHECK}"

# The results folder is this Snakemake's alone while it runs (a second one is refused,
# naming this one; a dry run beside it is let through and writes nothing), and the files
# of its run folders are the truth: broken ones are removed, so that Snakemake sees them
# missing and makes them again (gcstudy.studylock, gcstudy.study.runfolder,
# docs/recovery.md).
if workflow.is_main_process and studylock.guard(RESULTS, workflow.output_settings.dryrun):
    runfolder.check_study(
        RESULTS,
        [runfolder.RunFolder.under(RESULTS, folder, run.evaluations) for folder, run in RUNS.items()],
    )

wildcard_constraints:
    run=r"[A-Za-z0-9_\-]+/[A-Za-z0-9_.\-]+",
    dataset="[a-z_0-9]+",


def result(path):
    """A path under the config's results folder."""
    return f"{RESULTS}/{path}"


def run_file(run, *name):
    """The file ``name`` (a name of gcstudy.study.runfolder) of the run folder ``run``, or
    the folder itself; ``run`` may be the wildcard ``{run}``."""
    return "/".join((RESULTS, runfolder.RUNS, run, *name))


def run_dir(wildcards):
    return run_file(wildcards.run)


def run_spec(wildcards):
    """The resolved run spec of a run (a Snakemake param: a change re-runs the run)."""
    return RUNS[wildcards.run].spec.to_dict()


def data_ready(wildcards):
    return data_marker(RUNS[wildcards.run])


def data_marker(run):
    return f"{RESULTS}/data/{run.spec.dataset}.ready"


def trace_files(wildcards=None):
    return [run_file(run_id, runfolder.TRACE) for run_id in RUNS]


def evaluated(kind, runs=None):
    """The run folders (ids in RUNS) that get evaluation ``kind`` (the evaluations of every
    run that reads them: gcstudy.config.trained_runs), restricted to ``runs`` when given."""
    chosen = RUNS if runs is None else {run.run_id for run in runs}
    return [folder for folder, run in RUNS.items() if kind in run.evaluations and folder in chosen]


def evaluation_files(wildcards=None):
    return [
        run_file(folder, name)
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
