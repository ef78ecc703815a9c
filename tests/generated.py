"""Layouts of generated studies shared by the statistics, figure and report tests."""

from __future__ import annotations

from functools import cache

import numpy as np

from gcstudy import testing
from gcstudy.testing.laws import NO_EFFECT, NULL

__all__ = ["NO_EFFECT", "NULL", "default_layout", "study"]


@cache
def default_layout() -> testing.Layout:
    """The default study's shape: every sweep 4 values x 3 seeds, E3 with 3 seeds."""
    return testing.layout(testing.shaped_config(values=4, seeds=3, bound_seeds=3))


def study(seed: int = 0, layout: testing.Layout | None = None, **laws):
    """A generated study in memory, laws as ``testing.Laws(**laws)``."""
    return testing.simulate(
        layout or default_layout(), testing.Laws(**laws), np.random.default_rng(seed)
    )


def supply_poincare_constant(ds, c: float):
    """The study as if every run's config had supplied the Poincare constant ``c`` (the
    GC-form bound then decides claim 4's parts 4d-4f)."""
    import json

    ds = ds.copy(deep=True)
    specs = [json.loads(str(s)) | {"poincare_constant": c} for s in ds["spec_json"].values]
    return ds.assign_coords(
        spec_json=("run", np.array([json.dumps(s, sort_keys=True) for s in specs])),
        poincare_constant=("run", np.full(ds.sizes["run"], c)),
    )
