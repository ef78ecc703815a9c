"""Claim 2, what is shown beside the decision (``mechanisms`` decides it): fits across a
study's complete runs on the end-of-training window summaries, seed-blocked, none deciding.

* ``log NC ~ log GC + C(seed)``: the association the claim's title names, pooled over
  every sweep of the study (each mechanism's own test is in ``mechanisms``);
* ``log NC ~ log GC + C(seed) + log train loss``: conditions on the training loss, a
  quantity measured after treatment and read out from the same features as NC (a
  collider): shown, labelled, never deciding (docs/claims.md);
* the **definitional check** ``log geometric collapse ~ log GC + C(seed)``: geometric
  collapse is built from the per-class GC, so a relation is expected by construction.
"""

from __future__ import annotations

import pandas as pd

from gcstudy.analysis.claims.inputs import swept_factors
from gcstudy.analysis.claims.relations import fit_relation, fit_row, usable
from gcstudy.analysis.claims.rule import Settings

CONDITIONED = "shown, conditions on train loss (post-treatment)"
FITS = (  # y, x, control, relation, role
    ("log_nc", "log_gc", [], "NC vs GC, given seed", "shown (pools the study's sweeps)"),
    ("log_nc", "log_gc", ["log_train_loss"], "NC vs GC, given seed and train loss", CONDITIONED),
    (
        "log_geometric_collapse",
        "log_gc",
        [],
        "geometric collapse vs GC, given seed",
        "definitional check (does not decide)",
    ),
)


def shown(frame: pd.DataFrame, studies: dict, settings: Settings, permutations) -> pd.DataFrame:
    rows = []
    for study, info in studies.items():
        if not swept_factors(info):
            continue
        for y, x, control, relation, role in FITS:
            runs = usable(frame[frame["study"] == study], [y, x, *control])
            fit = fit_relation(runs, y, x, 1, settings, permutations, control or None)
            rows.append(fit_row(fit, study=study, relation=relation, role=role))
    return pd.DataFrame(rows)
