# From the study file to answers: statistics, figures and one self-contained report.


rule stats:
    input:
        study=f"{RESULTS}/study.nc",
    output:
        report(
            directory(f"{RESULTS}/stats"),
            patterns=["{name}.csv"],
            caption="../report/stats.rst",
            category="Statistics",
        ),
    log:
        "logs/stats.log",
    benchmark:
        f"{RESULTS}/benchmarks/stats.tsv"
    shell:
        "gcstudy stats {input.study:q} --out {output:q} > {log:q} 2>&1"


rule figures:
    input:
        study=f"{RESULTS}/study.nc",
    output:
        report(
            directory(f"{RESULTS}/figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
        ),
    log:
        "logs/figures.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures.tsv"
    shell:
        "gcstudy figures {input.study:q} --out {output:q} > {log:q} 2>&1"


rule report:
    input:
        study=f"{RESULTS}/study.nc",
        stats=f"{RESULTS}/stats",
        figures=f"{RESULTS}/figures",
    output:
        report(
            f"{RESULTS}/report.html",
            caption="../report/report.rst",
            category="Report",
        ),
    log:
        "logs/report.log",
    benchmark:
        f"{RESULTS}/benchmarks/report.tsv"
    shell:
        "gcstudy report {input.study:q} --stats {input.stats:q} --figures {input.figures:q}"
        " --out {output:q} > {log:q} 2>&1"
