# gcstudy: geometric complexity and neural collapse in transfer learning.
#
#   snakemake --cores all                                   # the embedded digits study
#   snakemake --profile profiles/slurm --configfile config/paper.yaml   # the paper's grid
#
# Data flow: config -> runs (gcstudy.config) -> train -> evaluate -> aggregate.
# The rules only declare files and call the `gcstudy` command; the logic is in src/gcstudy.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare_data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/aggregate.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
