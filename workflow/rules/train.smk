# Training. With resources.runs_per_job = 1 (clusters): one job per run, rule `train`, its
# spec.yaml written by rule run_spec, its evaluations by the rules of evaluate.smk. With
# more: the jobs of TRAIN_GROUPS, rules `train_group_<k>`, each training its runs one after
# another in one process (`gcstudy train --runs`, which writes their spec.yaml from the run
# table and evaluates each run when it is trained), so that the start-up is paid once per
# job (Snakemake runs each job, `run:` jobs too, in a process of its own).
# Either way each run has its own folder, trace, weights and checkpoints (ckpt/, not a
# declared output, so a retried or resubmitted job resumes where the last one stopped),
# and SLURM sends SIGUSR1 120 s before the time limit: checkpoint, then a longer retry
# resumes (gcstudy.jobs).
if not TRAIN_GROUPS:

    localrules:
        run_spec,

    rule run_spec:
        output:
            run_file("{run}", runfolder.SPEC),
        params:
            spec=run_spec,
        log:
            "logs/run_spec/{run}.log",
        run:
            study_config.write_yaml(params.spec, output[0])

    rule train:
        input:
            spec=run_file("{run}", runfolder.SPEC),
            data=data_ready,
        output:
            trace=run_file("{run}", runfolder.TRACE),
            model=run_file("{run}", runfolder.MODEL),
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
            slurm_extra=jobs.warning_flag(),
        conda:
            "../envs/gcstudy.yaml"
        shell:
            "OMP_NUM_THREADS={threads} gcstudy -q train {input.spec:q} --out {params.out:q}"
            " > {log:q} 2>&1"


for index, group in enumerate(TRAIN_GROUPS):

    rule:
        name:
            f"train_group_{index}"
        # instead of Snakemake's listing of the job's dozens of outputs (several thousand
        # characters for the default study's jobs)
        message:
            f"train_group_{index}: {len(group)} runs, one after another (a line as each"
            " finishes); log: {log}"
        input:
            table=result("run_table.json"),
            data=sorted({data_marker(run) for run in group}),
        output:
            traces=[run_file(run.run_id, runfolder.TRACE) for run in group],
            models=[run_file(run.run_id, runfolder.MODEL) for run in group],
            evaluations=[
                run_file(folder, name)
                for kind, name in EVALUATION_FILES.items()
                for folder in evaluated(kind, group)
            ],
        params:
            runs=[run_file(run.run_id) for run in group],
            settings=evaluation_settings(),
        log:
            f"logs/train_group/{index}.log",
        benchmark:
            result(f"benchmarks/train_group/{index}.tsv")
        threads: job_threads()
        resources:
            gpu=RESOURCES["gpu"],
            cpus_per_gpu=RESOURCES["cpus_per_gpu"] if RESOURCES["gpu"] else 0,
            mem_mb=memory,
            runtime=group_minutes(group),
            slurm_extra=jobs.warning_flag(),
        conda:
            "../envs/gcstudy.yaml"
        shell:
            # the log gets everything; Snakemake's terminal (its stderr, kept as fd 3
            # before the redirections) one line per finished run
            "OMP_NUM_THREADS={threads} gcstudy -q train --runs {params.runs:q}"
            " --table {input.table:q} --settings {params.settings:q}"
            " --progress-fd 3 3>&2 > {log:q} 2>&1"
