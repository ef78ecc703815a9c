"""The study design's vocabulary: the sweep factors, the paper's experiments, the
per-run evaluation kinds and the GC estimators, each declared once.

A study sweeps its runs one factor at a time around a base point (``gcstudy.study.config``);
the factors are run-spec keys, listed here in the order a run id names them
(``<study>/lr-0.05_bs-64_l2-0_gcp-0_seed-0``). The config's schema, the config checks,
the study file (``analysis.aggregate``), the claims and their figures, and the generated
studies of ``gcstudy.testing`` all read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Factor:
    """One sweepable run-spec key: its name in a run id and in figures and tables."""

    key: str
    id_name: str
    label: str


_FACTORS = (
    Factor("lr", "lr", "learning rate"),
    Factor("batch_size", "bs", "batch size"),
    Factor("l2", "l2", "L2 penalty"),
    Factor("gc_penalty", "gcp", "GC penalty"),
)
FACTORS: tuple[str, ...] = tuple(factor.key for factor in _FACTORS)
ID_NAMES: dict[str, str] = {factor.key: factor.id_name for factor in _FACTORS}
FACTOR_LABELS: dict[str, str] = {factor.key: factor.label for factor in _FACTORS}

# The paper's experiments (figures) a study can redraw: E1 / E1b the factor sweeps, E2 the
# GC estimators, E3 the NCC bound, E4 transfer, E5 the GC penalty.
EXPERIMENTS: tuple[str, ...] = ("E1", "E1b", "E2", "E3", "E4", "E5")

# What a study asks of its runs after training: the few-shot table (transfer data sets),
# the GC-estimator study, and "bound" (marks the study for the bound figure; no file).
EVALUATIONS: tuple[str, ...] = ("fewshot", "gc_estimators", "bound")

# How GC is estimated (gcstudy.metrics.gc): exactly, or by Hutchinson probes, sampled
# output rows or masked input coordinates (docs/science.md#gc-estimators).
GC_METHODS: tuple[str, ...] = ("exact", "hutchinson", "outputs", "mask")
