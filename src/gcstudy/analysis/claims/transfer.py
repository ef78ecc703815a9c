"""Claim 3, what is shown beside the decision (``mechanisms`` decides it): on the final
few-shot table (``fewshot.nc``: target NC on every target image, 5-way 5-shot NCC accuracy
over 10,000 episodes), per transfer study, seed-blocked across its complete runs:

* ``accuracy ~ log target NC + C(seed)``: links the two parts of the claim (descriptive);
* ``log target NC ~ log GC + C(seed)`` and ``accuracy ~ log GC + C(seed)`` with the source
  GC of the final network (its last evaluation): the association pooled over the sweeps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gcstudy.analysis.claims.relations import fit_relation, fit_row, usable
from gcstudy.analysis.claims.rule import Settings

FITS = (  # y, x, sign, relation
    ("fewshot_accuracy", "log_fewshot_target_nc", -1, "5-shot accuracy vs target NC"),
    ("log_fewshot_target_nc", "log_gc_final", 1, "target NC vs source GC"),
    ("fewshot_accuracy", "log_gc_final", -1, "5-shot accuracy vs source GC"),
)


def shown(frame: pd.DataFrame, studies: dict, settings: Settings, permutations) -> pd.DataFrame:
    rows = []
    for study in studies:
        runs = frame[frame["study"] == study]
        if not np.isfinite(runs["fewshot_accuracy"].to_numpy(float)).any():
            continue
        for y, x, sign, relation in FITS:
            fit = fit_relation(usable(runs, [y, x]), y, x, sign, settings, permutations)
            rows.append(
                fit_row(fit, study=study, relation=relation, role="descriptive (does not decide)")
            )
    return pd.DataFrame(rows)
