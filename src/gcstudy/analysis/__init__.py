"""From traces to answers: the study file, statistics, figures and the HTML report.

``aggregate`` (traces -> ``results/study.nc``), ``stats`` (study.nc -> ``results/stats/``:
regressions, rank correlations, the claims table), ``figures`` (study.nc ->
``results/figures/``: one figure per paper experiment) and ``report`` (everything ->
``results/report.html``). Each is a ``gcstudy`` verb called by a workflow rule.
"""
