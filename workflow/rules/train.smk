# Training, one job per batch of run folders (resources.batch: each run folder alone, or
# the runs of one study with one seed; gcstudy.scheduling.batches). The job is one
# `gcstudy train --batch` process: it writes each run's spec.yaml from the batch file,
# trains the runs one after another (the interpreter, torch and the data loaded once) and
# writes each run's evaluations right after it (fewshot.nc, gc_estimators.nc). Its one
# output is the batch's manifest, written when every run is finished: the run folders'
# files are no outputs, so a failed job loses no finished run and its rerun trains only
# what is unfinished, resuming from the checkpoints in ckpt/. SLURM sends SIGUSR1 120 s
# before the time limit: checkpoint, then a longer retry resumes (gcstudy.scheduling.jobs).
localrules:
    batch_spec,


# Rewritten (only) when what it says changes: a changed run spec or evaluation setting
# trains its batch again, and no other.
rule batch_spec:
    output:
        result("batches/{batch}.json"),
    params:
        batch=batch_file,
    log:
        "logs/batch_spec/{batch}.log",
    run:
        study_config.write_json(params.batch, output[0])


rule train:
    input:
        batch=result("batches/{batch}.json"),
        data=batch_data,
    output:
        result("trained/{batch}.json"),
    log:
        "logs/train/{batch}.log",
    benchmark:
        result("benchmarks/train/{batch}.tsv")
    threads: job_threads()
    resources:
        gpu=RESOURCES["gpu"],
        cpus_per_gpu=RESOURCES["cpus_per_gpu"] if RESOURCES["gpu"] else 0,
        mem_mb=memory,
        runtime=train_minutes,
        slurm_extra=jobs.warning_flag(),
    conda:
        "../envs/gcstudy.yaml"
    shell:
        # the log gets everything; Snakemake's terminal (its stderr, kept as fd 3 before
        # the redirections) one line per finished run
        "OMP_NUM_THREADS={threads} gcstudy -q train --batch {input.batch:q}"
        " --manifest {output:q} --progress-fd 3 3>&2 > {log:q} 2>&1"
