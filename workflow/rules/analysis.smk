# From the study file to answers: statistics, figures and one self-contained report.
# Light CPU work on one file, like aggregate: run where Snakemake runs, not as cluster jobs.
# The config's `stats` keys (level, summary window, permutations, seed, clocks) reach both verbs.
from gcstudy.cli import stats_options


localrules:
    stats,
    figures,
    report,


rule stats:
    input:
        study=result("study.nc"),
    output:
        report(
            directory(result("stats")),
            patterns=["{name}.csv"],
            caption="../report/stats.rst",
            # not "Statistics": the name of Snakemake's own runtime panel (a duplicate target)
            category="Claims and statistics",
            labels={"table": "{name}"},
        ),
    params:
        settings=stats_options(config["stats"]),
    log:
        "logs/stats.log",
    benchmark:
        result("benchmarks/stats.tsv")
    conda:
        "../envs/gcstudy.yaml"
    shell:
        "gcstudy stats {input.study:q} --out {output:q} {params.settings} > {log:q} 2>&1"


rule figures:
    input:
        study=result("study.nc"),
    output:
        report(
            directory(result("figures")),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
            labels={"figure": "{name}"},
        ),
    params:
        settings=stats_options(config["stats"]),
    log:
        "logs/figures.log",
    benchmark:
        result("benchmarks/figures.tsv")
    conda:
        "../envs/gcstudy.yaml"
    shell:
        "gcstudy figures {input.study:q} --out {output:q} {params.settings} > {log:q} 2>&1"


rule report:
    input:
        study=result("study.nc"),
        stats=result("stats"),
        figures=result("figures"),
    output:
        report(
            result("report.html"),
            caption="../report/report.rst",
            category="Report",
            labels={"page": "study report"},
        ),
    log:
        "logs/report.log",
    benchmark:
        result("benchmarks/report.tsv")
    conda:
        "../envs/gcstudy.yaml"
    shell:
        "gcstudy report {input.study:q} --stats {input.stats:q} --figures {input.figures:q}"
        " --out {output:q} > {log:q} 2>&1"
