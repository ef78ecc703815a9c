# Config validation, the run table and every input function: the rules read as declarations.
from gcstudy.study import config as study_config
from gcstudy.scheduling import jobs, studylock, workflow_config
from gcstudy.scheduling import batches
from gcstudy.study import runfolder

# Inside a SLURM job step this Snakemake process gets train's warning signal too; it must
# outlive it so that the trainer can checkpoint (gcstudy.scheduling.jobs).
jobs.survive_warning_signal()

# gcstudy's own checks (they name the config file, the key path, the bad value and what is
# allowed), then snakemake.utils.validate against the packaged schema, which fills in its
# defaults; an error stops Snakemake with that one message (gcstudy.scheduling.workflow_config).
RUN_LIST = workflow_config.runs(
    config,
    workflow.overwrite_configfiles or workflow.configfiles,
    workflow.config_settings.config,
)
RESULTS = config["results"]
RESOURCES = config["resources"]
# The run folders to train (runs of several studies with one spec share a folder), by
# batch: the runs one `train` job trains in one process, one batch per run folder or per
# study and seed (the config's resources.batch; gcstudy.scheduling.batches).
BATCHES = batches.batches(RUN_LIST, RESOURCES["batch"])
BATCH_OF = {run.run_id: batch for batch, runs in BATCHES.items() for run in runs}
# An input of aggregate, stats, figures and report, rewritten when a run file is found
# missing or broken; so the study file and all after it are rebuilt.
RUN_FILES = f"{RESULTS}/{runfolder.STUDY_CHECK}"

# The results folder is this Snakemake's alone while it runs (a second one is refused,
# naming this one; a dry run beside it is let through and writes nothing), and the files
# of its run folders are the truth: broken ones are removed, so that Snakemake sees them
# missing and makes them again (gcstudy.scheduling.studylock, gcstudy.study.runfolder, docs/recovery.md).
# A batch with such a file loses its manifest, so that Snakemake trains it again.
if workflow.is_main_process and studylock.guard(RESULTS, workflow.output_settings.dryrun):
    FOUND = runfolder.check_study(
        RESULTS,
        [
            runfolder.RunFolder.under(RESULTS, run.run_id, run.evaluations)
            for runs in BATCHES.values()
            for run in runs
        ],
    )
    batches.forget(RESULTS, FOUND, BATCH_OF)

wildcard_constraints:
    batch=r"[A-Za-z0-9_\-]+/[A-Za-z0-9_.\-]+",
    dataset="[a-z_0-9]+",


def result(path):
    """A path under the config's results folder."""
    return f"{RESULTS}/{path}"


def batch_file(wildcards):
    """What the batch file of a batch says (a Snakemake param: a change trains the batch
    again; gcstudy.scheduling.batches)."""
    return batches.batch_content(RESULTS, BATCHES[wildcards.batch], config["evaluate"])


def batch_data(wildcards):
    """The data set markers of a batch's runs."""
    return sorted({data_marker(run) for run in BATCHES[wildcards.batch]})


def data_marker(run):
    return f"{RESULTS}/data/{run.spec.dataset}.ready"


def manifests(wildcards=None):
    """The manifests of all batches: every run trained and evaluated."""
    return [str(batches.manifest_path(RESULTS, batch)) for batch in BATCHES]


def final_outputs():
    """The default target: the report (it needs the study file, the statistics and the
    figures, hence every run)."""
    return [result("report.html")]


def train_minutes(wildcards, attempt):
    """Job time limit of a batch: twice its runs' expected minutes, each at its study's
    rate, longer on each retry (gcstudy.scheduling.jobs)."""
    return jobs.train_minutes(config, BATCHES[wildcards.batch], attempt)


def memory(wildcards, attempt):
    return RESOURCES["mem_mb"] * attempt


def job_threads():
    return RESOURCES["cpus_per_gpu"] if RESOURCES["gpu"] else RESOURCES["threads"]
