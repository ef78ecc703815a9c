# gcstudy: geometric complexity and neural collapse in transfer learning.
#
#   snakemake --cores all                                   # the embedded digits study
#   snakemake --profile profiles/slurm --configfile config/paper.yaml   # the paper's grid
#
# Data flow: config -> runs (gcstudy.study.config) -> train and evaluate -> aggregate -> stats,
# figures -> report (results/report.html).
# The rules only declare files and call the `gcstudy` command; the logic is in src/gcstudy.
from snakemake.utils import min_version

from gcstudy.scheduling import workflow_config

min_version("9.14.1")  # earlier 9.x pass --retries into cluster jobs (snakemake #3855)


# The embedded default study, unless --configfile names another config (which then
# replaces it rather than being merged into it).
if not workflow.overwrite_configfiles:
    # a YAML error, an empty file, a tab: named here, not as Snakemake's "not valid YAML"
    workflow_config.check_files(["config/config.yaml"])

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare_data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/analysis.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
