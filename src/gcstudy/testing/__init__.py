"""Generated studies, for tests and benchmarks only: **not measurements**.

``layouts`` builds configs shaped like the default study and the paper grid and the empty
study-file layout of a config (through the real ``gcstudy.study.config`` expansion and
``gcstudy.analysis.aggregate.build_dataset``); ``laws`` fills that layout in memory with
values that follow known laws (a planted truth, or a null); ``files`` writes a generated
study as run folders with the real writers, so that ``aggregate`` can read it.

Every generated trace and study file carries the attribute ``generated_by``; ``gcstudy
aggregate`` refuses such traces unless told ``--allow-generated``, and the report then
says in its first line that the study is generated.
"""

from gcstudy.testing.files import make_study, write_study
from gcstudy.testing.laws import REALISTIC_EFFECTS, Laws, diverge, pair_mean, simulate
from gcstudy.testing.layouts import GENERATED_BY, Layout, layout, shaped_config, small_config

__all__ = [
    "GENERATED_BY",
    "REALISTIC_EFFECTS",
    "Laws",
    "Layout",
    "diverge",
    "layout",
    "make_study",
    "pair_mean",
    "shaped_config",
    "simulate",
    "small_config",
    "write_study",
]
