"""Running the study's jobs: batches of run folders (batches), job time limits and signals
(jobs), the submitit launcher (launch), the lock on a results folder (studylock), a
study's progress (status) and the Snakemake workflow's config checks (workflow_config)."""
