"""Design clocks: what "as far along in training" means when runs of a sweep are compared.

Runs of a learning-rate or batch-size sweep do not make equal progress in equal steps, and
which notion of equal progress is right is not known in advance (at equal steps a smaller
batch has seen fewer examples; at equal examples it has taken more steps). So every
relation between a factor and a metric is judged at each clock of a declared panel:

========== =================================== ================================
clock      value at step ``t``                  what is held equal across runs
========== =================================== ================================
steps      ``t``                                optimiser steps
examples   ``t * batch_size``                   training examples seen
lr_steps   ``t * lr``                           learning rate x steps (SGD "time")
========== =================================== ================================

For a sweep (its runs, the base point included) and a clock, the **common value** is the
largest value every run reaches within its budget, ``C = min over runs of clock(steps)``;
each run is read at the step where its clock equals ``C`` (``read_step``, rounded to a
whole step). The **stability check** reads every run at ``STABILITY_FRACTION * C``: the
value the sweep reaches with 2/3 of its budget. ``scheduled_steps`` lists the steps a run
must be evaluated at so that every clock's reading is a measured evaluation, not an
interpolation. Only ``lr`` and ``batch_size`` set a clock's rate, so in a sweep of L2 or of
the GC penalty every clock reads the same steps.

Pure arithmetic on numbers: the config (evaluation schedule) and the claims (where to read)
both import it, so the two cannot disagree.
"""

from __future__ import annotations

import numpy as np

CLOCKS = ("steps", "examples", "lr_steps")
CLOCK_LABELS = {
    "steps": "equal steps",
    "examples": "equal examples seen",
    "lr_steps": "equal lr x steps",
}
STABILITY_FRACTION = 2 / 3
FRACTIONS = (STABILITY_FRACTION, 1.0)  # the stability reading, then the final one


def rate(clock: str, lr, batch_size) -> np.ndarray:
    """Clock units per optimiser step (1, ``batch_size`` or ``lr``), elementwise."""
    lr, batch_size = np.asarray(lr, dtype=float), np.asarray(batch_size, dtype=float)
    if clock == "steps":
        return np.ones(np.broadcast(lr, batch_size).shape)
    if clock == "examples":
        return batch_size * np.ones_like(lr)
    if clock == "lr_steps":
        return lr * np.ones_like(batch_size)
    raise ValueError(f"unknown clock {clock!r}: expected one of {', '.join(CLOCKS)}")


def common_value(clock: str, lr, batch_size, steps) -> float:
    """The largest clock value every run of a sweep reaches: ``min(rate * steps)``."""
    return float(np.min(rate(clock, lr, batch_size) * np.asarray(steps, dtype=float)))


def read_step(clock: str, value: float, lr, batch_size, steps) -> np.ndarray:
    """The whole step of each run at which its clock equals ``value``, within [1, steps]."""
    exact = value / rate(clock, lr, batch_size)
    return np.clip(np.rint(exact), 1, np.asarray(steps)).astype(int)


def scheduled_steps(clocks, run: tuple[float, int, int], sweep: list[tuple[float, int, int]]):
    """The steps at which ``run`` = ``(lr, batch_size, steps)`` is read, for every clock in
    ``clocks`` and both ``FRACTIONS``, as a member of ``sweep`` (the same triples for every
    run of the sweep, ``run`` included)."""
    lrs, batches, budgets = (np.array(column) for column in zip(*sweep, strict=True))
    lr, batch_size, steps = run
    chosen = set()
    for clock in clocks:
        common = common_value(clock, lrs, batches, budgets)
        for fraction in FRACTIONS:
            chosen.add(int(read_step(clock, fraction * common, lr, batch_size, steps)))
    return chosen
