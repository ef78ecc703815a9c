"""From traces to answers: the study file, the claims, the figures and the HTML report.

In the order the data flow: ``aggregate`` (traces -> ``results/study.nc``); ``claims``
(study.nc -> the decisions: ``claims.inputs`` reads what they decide on, ``claims.analyse``
decides, ``claims.tables`` writes every table to ``results/stats/``: ``gcstudy stats``);
``figures`` (study.nc and the decisions -> ``results/figures/``: one figure per paper
experiment, one per claim drawing the claim's own fits: ``gcstudy figures``); ``report``
(everything -> ``results/report.html``: ``gcstudy report``). ``table_formats`` writes any
table as CSV, Markdown, LaTeX or HTML. Each verb is called by a workflow rule.
"""
