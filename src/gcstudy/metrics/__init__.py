"""Metrics as pure functions of tensors (no I/O, no training state).

* ``gc``: geometric complexity and its estimators (exact, Hutchinson, output rows, masking).
* ``collapse``: class statistics, neural collapse (CDNV), geometric collapse, NC1, NCC error.
* ``bound``: the NCC error bounds (CDNV and GC forms) and Poincare constants.
* ``fewshot``: batched N-way K-shot episodes on cached features.
"""

from gcstudy.metrics.bound import NCCBound, ncc_bound, poincare_constants
from gcstudy.metrics.collapse import (
    ClassStats,
    PairwiseCollapse,
    cdnv,
    class_stats,
    geometric_collapse,
    nc1,
    ncc_error,
    neural_collapse,
)
from gcstudy.metrics.fewshot import Episodes, FewShotResult, fewshot_eval, sample_episodes
from gcstudy.metrics.gc import (
    GCEstimate,
    PerClassGC,
    geometric_complexity,
    per_class_gc,
    per_example_gc,
)

__all__ = [
    "ClassStats",
    "Episodes",
    "FewShotResult",
    "GCEstimate",
    "NCCBound",
    "PairwiseCollapse",
    "PerClassGC",
    "cdnv",
    "class_stats",
    "fewshot_eval",
    "geometric_collapse",
    "geometric_complexity",
    "nc1",
    "ncc_bound",
    "ncc_error",
    "neural_collapse",
    "per_class_gc",
    "per_example_gc",
    "poincare_constants",
    "sample_episodes",
]
