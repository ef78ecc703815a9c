# Per-run evaluations from the final weights (SCIENCE.md sections 2 and 4).


rule evaluate_fewshot:
    input:
        model=result("runs/{run}/model.pt"),
    output:
        result("runs/{run}/fewshot.nc"),
    params:
        out=run_dir,
        settings=evaluation_settings(),
    log:
        "logs/evaluate_fewshot/{run}.log",
    benchmark:
        result("benchmarks/evaluate_fewshot/{run}.tsv")
    threads: job_threads()
    resources:
        gpu=RESOURCES["gpu"],
        cpus_per_gpu=RESOURCES["cpus_per_gpu"] if RESOURCES["gpu"] else 0,
        mem_mb=memory,
        runtime=lambda wildcards, attempt: 30 * attempt,
    conda:
        "../envs/gcstudy.yaml"
    shell:
        "OMP_NUM_THREADS={threads} gcstudy -q evaluate {params.out:q} --fewshot"
        " --settings {params.settings:q} > {log:q} 2>&1"


rule evaluate_gc_estimators:
    input:
        model=result("runs/{run}/model.pt"),
    output:
        result("runs/{run}/gc_estimators.nc"),
    params:
        out=run_dir,
        settings=evaluation_settings(),
    log:
        "logs/evaluate_gc_estimators/{run}.log",
    benchmark:
        result("benchmarks/evaluate_gc_estimators/{run}.tsv")
    threads: job_threads()
    resources:
        gpu=RESOURCES["gpu"],
        cpus_per_gpu=RESOURCES["cpus_per_gpu"] if RESOURCES["gpu"] else 0,
        mem_mb=memory,
        runtime=lambda wildcards, attempt: 60 * attempt,
    conda:
        "../envs/gcstudy.yaml"
    shell:
        "OMP_NUM_THREADS={threads} gcstudy -q evaluate {params.out:q} --gc-estimators"
        " --settings {params.settings:q} > {log:q} 2>&1"
