# Per-run evaluations from the final weights (docs/science.md#experiments: E2, E4), one job per run.
# With resources.runs_per_job > 1 the training jobs evaluate their runs (train.smk).
EVALUATE_FLAGS = {"fewshot": "--fewshot", "gc_estimators": "--gc-estimators"}
EVALUATE_MINUTES = {"fewshot": 30, "gc_estimators": 60}

if not TRAIN_GROUPS:
    for kind, name in EVALUATION_FILES.items():

        rule:
            name:
                f"evaluate_{kind}"
            input:
                model=run_file("{run}", runfolder.MODEL),
            output:
                run_file("{run}", name),
            params:
                out=run_dir,
                settings=evaluation_settings(),
                flag=EVALUATE_FLAGS[kind],
            log:
                f"logs/evaluate_{kind}/{{run}}.log",
            benchmark:
                result(f"benchmarks/evaluate_{kind}/{{run}}.tsv")
            threads: job_threads()
            resources:
                gpu=RESOURCES["gpu"],
                cpus_per_gpu=RESOURCES["cpus_per_gpu"] if RESOURCES["gpu"] else 0,
                mem_mb=memory,
                runtime=attempt_minutes(EVALUATE_MINUTES[kind]),
            conda:
                "../envs/gcstudy.yaml"
            shell:
                "OMP_NUM_THREADS={threads} gcstudy -q evaluate {params.out:q} {params.flag}"
                " --settings {params.settings:q} > {log:q} 2>&1"
