# One job per run. Checkpoints (results/runs/<run>/ckpt/) are not declared outputs, so a retried or
# resubmitted job resumes where the last one stopped.
localrules:
    run_spec,


rule run_spec:
    output:
        result("runs/{run}/spec.yaml"),
    params:
        spec=run_spec,
    log:
        "logs/run_spec/{run}.log",
    run:
        study_config.write_yaml(params.spec, output[0])


rule train:
    input:
        spec=result("runs/{run}/spec.yaml"),
        data=data_ready,
    output:
        trace=result("runs/{run}/trace.h5"),
        model=result("runs/{run}/model.pt"),
    params:
        out=run_dir,
    log:
        "logs/train/{run}.log",
    benchmark:
        result("benchmarks/train/{run}.tsv")
    threads: job_threads()
    resources:
        gpu=RESOURCES["gpu"],
        cpus_per_gpu=RESOURCES["cpus_per_gpu"] if RESOURCES["gpu"] else 0,
        mem_mb=memory,
        runtime=train_minutes,
        # SIGUSR1 120 s before the time limit: checkpoint, then a longer retry resumes.
        slurm_extra=jobs.warning_flag(),
    conda:
        "../envs/gcstudy.yaml"
    shell:
        "OMP_NUM_THREADS={threads} gcstudy -q train {input.spec:q} --out {params.out:q}"
        " > {log:q} 2>&1"
