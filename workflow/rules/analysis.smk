# From the study file to answers: statistics, figures and one self-contained report.
# Light CPU work on one file, like aggregate: run where Snakemake runs, not as cluster jobs.
# The config's `stats` keys (level, summary window, permutations, seed) reach both verbs.
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
            category="Statistics",
        ),
    params:
        settings=stats_options(config["stats"]),
    log:
        "logs/stats.log",
    benchmark:
        result("benchmarks/stats.tsv")
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
        ),
    params:
        settings=stats_options(config["stats"]),
    log:
        "logs/figures.log",
    benchmark:
        result("benchmarks/figures.tsv")
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
        ),
    log:
        "logs/report.log",
    benchmark:
        result("benchmarks/report.tsv")
    shell:
        "gcstudy report {input.study:q} --stats {input.stats:q} --figures {input.figures:q}"
        " --out {output:q} > {log:q} 2>&1"
