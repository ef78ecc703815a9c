"""What a training job asks a cluster for: its time limit and the warning before it.

One source for the Snakemake rules (``workflow/rules/common.smk``, ``train.smk``) and the
submitit launcher (``gcstudy.scheduling.launch``), so both paths give a run the same limit.

The expected training time of a run of ``S`` steps, in minutes, is ``m * S / 1000`` with
``m`` its study's rate: the study's own ``minutes_per_1000_steps`` if it declares one (a
study of a larger network or of larger images), else the config's
``resources.minutes_per_1000_steps`` (expected training minutes per 1,000 steps,
evaluation included). A job trains a batch of runs (``gcstudy.scheduling.batches``); the
time limit, in minutes, of its attempt ``a`` (1, 2, 3 with Snakemake's retries) is::

    limit = max(10, round(2 * sum over the batch's runs of m * S / 1000)) * a

twice the expected time, at least 10 minutes (start-up: imports, data, first evaluation),
and longer on each retry. A run of a shared folder (``gcstudy.study.config.trained_runs``)
is charged at the rate of the study whose folder trains it.

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


def rate(config: dict, study: str) -> float:
    """Expected training minutes per 1,000 steps of ``study``'s runs: the study's own
    ``minutes_per_1000_steps``, else ``resources.minutes_per_1000_steps`` (``config`` with
    its defaults filled in, as ``gcstudy.study.config`` leaves it)."""
    own = config["studies"][study].get("minutes_per_1000_steps")
    return own if own is not None else config["resources"]["minutes_per_1000_steps"]


def expected_minutes(config: dict, run) -> float:
    """Expected training time of one run (``gcstudy.study.config.Run``), minutes, no margin."""
    return rate(config, run.study) * run.spec.steps / 1000


def expected_hours(config: dict, runs: list) -> float:
    """Expected training time of ``runs``, summed, hours; one job each (or one per batch),
    so with one GPU per job these are GPU-hours."""
    return sum(expected_minutes(config, run) for run in runs) / 60


def train_minutes(config: dict, runs: list, attempt: int = 1) -> int:
    """The time limit of attempt ``attempt`` of the job that trains ``runs`` (a batch), in
    minutes (see above): the one function of the ``train`` rule and of ``gcstudy launch``."""
    expected = sum(expected_minutes(config, run) for run in runs)
    return max(MIN_MINUTES, round(MARGIN * expected)) * attempt


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
