# All traces and evaluations of the config into one xarray file. Both rules are light
# CPU work (aggregate: 203 traces in 2.8 s, benchmarks/bench_aggregate.py --runs 203 on a
# 2-core machine): they run where Snakemake runs and never reach a (GPU) partition.
localrules:
    run_table,
    aggregate,


rule run_table:
    output:
        result("run_table.json"),
    params:
        table=lambda wildcards: study_config.run_table(config),
    log:
        "logs/run_table.log",
    run:
        study_config.write_json(params.table, output[0])


rule aggregate:
    input:
        table=result("run_table.json"),
        trained=manifests,
        run_files=RUN_FILES,
    output:
        result("study.nc"),
    params:
        runs=result("runs"),
    log:
        "logs/aggregate.log",
    benchmark:
        result("benchmarks/aggregate.tsv")
    conda:
        "../envs/gcstudy.yaml"
    shell:
        "gcstudy aggregate --table {input.table:q} --runs {params.runs:q} --out {output:q}"
        " > {log:q} 2>&1"
