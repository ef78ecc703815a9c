"""What a training job asks a cluster for: its time limit and the warning before it.

One source for the Snakemake rules (``workflow/rules/common.smk``, ``train.smk``) and the
submitit launcher (``gcstudy.scheduling.launch``), so both paths give a run the same limit.

Time limit, in minutes, of attempt ``a`` (1, 2, 3 with Snakemake's retries) of a run of
``S`` steps, with ``m`` = the config's ``resources.minutes_per_1000_steps`` (expected
training minutes per 1,000 steps, evaluation included)::

    limit = max(10, round(2 * m * S / 1000)) * a

twice the expected time, at least 10 minutes (start-up: imports, data, first evaluation),
and longer on each retry.

Warning before the limit: SLURM sends ``WARNING_SIGNAL`` (SIGUSR1) ``WARNING_SECONDS``
(120 s) before it to the job's steps (``sbatch --signal=USR1@120``, no ``B:``: the batch
shell is not signalled). ``gcstudy train`` then finishes its step, writes a checkpoint and
exits with 128 + 10; Snakemake resubmits the job (next attempt, longer limit) and the run
resumes from that checkpoint. The Snakemake process that runs the rule inside the job
step receives the signal too (SLURM signals every process of a step), and Python's
default action for SIGUSR1 is to terminate, which would end the step and kill the
trainer before its checkpoint: ``survive_warning_signal`` makes Snakemake ignore it.
The submitit path uses submitit's own signal (SIGUSR2) with the same lead time.
"""

from __future__ import annotations

import signal

MIN_MINUTES = 10
MARGIN = 2
WARNING_SIGNAL = signal.SIGUSR1
WARNING_SECONDS = 120


def expected_minutes(steps: int, minutes_per_1000_steps: float) -> float:
    """Expected training time of a run, minutes (the config's estimate, no margin)."""
    return minutes_per_1000_steps * steps / 1000


def expected_hours(runs: list, minutes_per_1000_steps: float) -> float:
    """Expected training time of ``runs`` (gcstudy.study.config.Run), summed, hours; one job
    each, so with one GPU per job these are GPU-hours."""
    return sum(expected_minutes(run.spec.steps, minutes_per_1000_steps) for run in runs) / 60


def train_minutes(steps: int, minutes_per_1000_steps: float, attempt: int = 1) -> int:
    """The job time limit of attempt ``attempt`` of a run of ``steps`` steps (see above)."""
    margin = round(MARGIN * expected_minutes(steps, minutes_per_1000_steps))
    return max(MIN_MINUTES, margin) * attempt


def warning_flag() -> str:
    """The sbatch option that asks for the warning signal (``--signal=USR1@120``)."""
    return f"--signal={WARNING_SIGNAL.name.removeprefix('SIG')}@{WARNING_SECONDS}"


def survive_warning_signal() -> None:
    """Ignore the warning signal in this process (Snakemake, via common.smk).

    The ignore is inherited by the rule's shell and by ``gcstudy train``, which installs
    its own handler while it trains (a signal that comes during start-up is ignored; the
    time limit's SIGTERM still stops the run with a checkpoint).
    """
    signal.signal(WARNING_SIGNAL, signal.SIG_IGN)
