"""One self-contained HTML report (``gcstudy report``): what was asked, what was found, how.

The first screen says what was asked and found: each claim in one sentence with its verdict
and, in words, the mechanisms and design clocks that decided it; what the study is (model,
width, data, steps, seeds per study) and what it cannot say; the convergence state (runs in
the terminal phase, verdicts stable at 2/3 of the budget). Then the sections: the claims
table with every test (verdict per clock and at 2/3 of the budget, the decision rule, a
warning on every verdict whose sweep lost runs), the figures (PNG embedded as base64) with
captions, the statistics tables, what was run (inventory; the per-run table collapsed), the
methods, the assumptions and defaults in force (from the run specs, flagging every choice
the project marks as a default) and provenance (versions, git commits, config hash, dates,
the statistics settings). A generated study (``gcstudy.testing``) says so in its first
line. Nothing is fetched from the network when it is opened. How the claims are decided:
docs/claims.md.
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from gcstudy import files
from gcstudy.analysis import aggregate
from gcstudy.analysis.claims.inputs import TERMINAL_ACCURACY
from gcstudy.analysis.claims.tables import inventory
from gcstudy.analysis.table_formats import fmt, html_table
from gcstudy.study.clocks import CLOCK_LABELS
from gcstudy.study.factors import FACTOR_LABELS

# Run-spec keys whose value is a default the paper does not state (docs/science.md#defaults).
SCIENCE_DEFAULTS = {
    "momentum": "plain SGD (momentum 0), constant learning rate (docs/science.md#training)",
    "l2": "explicit L2 penalty lambda * ||theta||^2 in the loss (docs/science.md#training)",
    "steps": "a fixed step budget per study (docs/science.md#defaults)",
    "eval_every": "evaluation cadence: every this many steps (docs/science.md#defaults)",
    "eval_log_points": "extra log-spaced evaluation steps, dense early (spec default)",
    "gc_method": "GC estimator during training (docs/science.md#gc-estimators)",
    "gc_probes": "Hutchinson probes per example (docs/facts.md#gc-estimators: one is enough)",
    "gc_examples": "fixed stratified training sample for GC (docs/science.md#defaults)",
    "feature_examples": "fixed stratified training sample for NC, NCC (docs/science.md#defaults)",
    "test_examples": "test sample for test error and NC (0 = all)",
    "sample_seed": "seed of the fixed metric samples, shared by all seeds",
    "bn_recalibration_examples": "BatchNorm statistics recomputed before each evaluation "
    "(docs/science.md#objects, docs/facts.md#stale-batchnorm-statistics)",
    "poincare_constant": "Poincare constant c of the GC bound; null = the Gaussian proxy "
    "max_i lambda_max(Cov(x|i)) estimated on training inputs (docs/science.md#the-ncc-error-bound)",
    "fewshot_ways": "N-way episodes (docs/science.md#few-shot-transfer: 5-way)",
    "fewshot_queries": "queries per class (docs/science.md#few-shot-transfer: 15)",
    "fewshot_episodes": "episodes per evaluation during training",
    "fewshot_seed": "fixed episode seed",
    "fewshot_normalize": "no feature normalisation before NCC (docs/science.md#few-shot-transfer)",
    "width": "channel width multiplier (docs/science.md#defaults: 1 = the paper's networks)",
    "precision": "training precision; metrics always fp32 or better",
}
VERDICT_CLASS = {"supported": "ok", "contradicted": "bad", "inconclusive": "meh"}
STAT_TABLES = (
    ("sweep_slopes", "Claim 1: GC against each swept factor, at each clock (decides)"),
    ("collapse_vs_gc", "Claim 2: NC against each acting factor, at each clock (decides)"),
    (
        "collapse_shown",
        "Claim 2, shown only: NC vs GC pooled; the same conditioned on train loss "
        "(post-treatment); geometric collapse vs GC (definitional)",
    ),
    ("transfer", "Claim 3: target NC and 5-shot accuracy against each acting factor (decides)"),
    ("transfer_shown", "Claim 3, descriptive: relations on the final few-shot table"),
    ("bound", "Claim 4: the NCC-error bounds"),
    ("terminal_phase", "Runs in the terminal phase, per study"),
    ("estimators", "GC estimators against the exact GC (Fig. 2 numbers)"),
    ("tests", "Every deciding test behind the claims table"),
)
P_LABEL = "p (one-sided; for a slope max(p_t, p_permutation))"
TEST_COLUMNS = [
    "claim",
    "part",
    "study",
    "mechanism",
    "clock",
    "name",
    "expected",
    "estimate",
    "ci_low",
    "ci_high",
    "p",
    "p_against_holm",
    "n",
    "interpolated",
    "verdict",
    "reason",
    "warning",
]
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1180px;
margin:0 auto;padding:1.5em 2em;color:#1d1d1f;line-height:1.45;font-size:15px}
h1{font-size:1.7em;margin-bottom:.2em}h2{border-bottom:2px solid #e3e3e8;padding-bottom:.2em;
margin-top:2em}h3{margin-top:1.4em;font-size:1.1em}
.sub{color:#666;margin-top:0}nav{background:#f6f6f8;padding:.6em 1em;border-radius:6px}
nav a{margin-right:1.1em;color:#0b57d0;text-decoration:none}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:13px;width:auto}
th,td{border:1px solid #d8d8de;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f0f0f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fafafc}
.wide{overflow-x:auto}.badge{display:inline-block;padding:1px 9px;border-radius:10px;
font-weight:600;font-size:12px}.ok{background:#d7f5dd;color:#0b6b22}.bad{background:#fddede;
color:#a1110b}.meh{background:#f1ecd2;color:#6b5a00}
figure{margin:1.2em 0 2em;border:1px solid #e3e3e8;border-radius:6px;padding:.6em}
figure img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{font-size:13.5px;color:#333;margin-top:.4em}
.note{background:#f6f6f8;border-left:4px solid #b0b0bb;padding:.5em .9em;font-size:14px}
code{background:#f0f0f4;padding:0 3px;border-radius:3px;font-size:90%}
ul.tests{margin:.2em 0 0;padding-left:1.1em}ul.tests li{margin:.15em 0}
tr.main td{background:#eef1f8!important;border-top:2px solid #c5cbe0}
tr.part td:first-child{padding-left:1.4em;color:#555}
.warnmark{color:#a15c00;font-weight:600;font-size:12px}.warn{border-left-color:#d08000}
.generated{background:#fddede;border-left-color:#a1110b;font-size:16px}
p.verdict{margin:.25em 0}
"""


def esc(value) -> str:
    return html.escape(str(value))


def badge_cell(value) -> str:
    """A table cell: verdicts as badges, numbers as in the Markdown tables."""
    if isinstance(value, str) and value in VERDICT_CLASS:
        return f'<span class="badge {VERDICT_CLASS[value]}">{value}</span>'
    return fmt(value)


def frame_html(frame: pd.DataFrame, columns: list[str] | None = None, max_rows: int = 400) -> str:
    """A DataFrame as an HTML table (pandas Styler), numbers formatted like the Markdown."""
    if frame is None or frame.empty:
        return "<p><em>No rows: nothing of this kind in the study.</em></p>"
    if columns:
        frame = frame[[c for c in columns if c in frame.columns]]
    more = (
        f"<p><em>{len(frame) - max_rows} more rows in the CSV.</em></p>"
        if len(frame) > max_rows
        else ""
    )
    return f'<div class="wide">{html_table(frame.head(max_rows), badge_cell)}</div>{more}'


def read_csv(folder: Path, name: str) -> pd.DataFrame:
    path = folder / f"{name}.csv"
    if not path.exists():
        return pd.DataFrame()
    try:
        return pd.read_csv(path, keep_default_na=True)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


# ---------------------------------------------------------------- sections


def inventory_section(dataset: xr.Dataset, stats_dir: Path) -> str:
    """What was run: the runs per study (counted once, by ``claims.tables.inventory``) with
    what each study is, the diverged and skipped runs, and every run's row."""
    studies = dataset.attrs.get("studies", {})
    skipped = dataset.attrs.get("skipped", [])
    counts = inventory(dataset)
    rows = []
    for count in counts.to_dict("records"):
        info = studies.get(count["study"], {})
        rows.append(
            {
                "study": count["study"],
                "experiment": info.get("experiment", ""),
                "description": info.get("description", ""),
                "model": f"{info.get('model', '')} x{info.get('width', '')}",
                "dataset": info.get("dataset", ""),
                "sweeps": ", ".join(f"{k}: {v}" for k, v in info.get("sweeps", {}).items()) or "-",
                "seeds": len(info.get("seeds", [])) or "",
                "complete": count["complete"],
                "diverged": count["diverged"],
                "skipped / missing": count["skipped"],
            }
        )
    total = dataset.attrs.get("runs_in_table", dataset.sizes["run"])
    parts = [
        f"<p>{int(total)} runs in the run table; {dataset.sizes['run']} aggregated "
        f"({int(counts['complete'].sum())} complete, {int(counts['diverged'].sum())} "
        f"diverged); {len(skipped)} skipped (missing or unreadable files).</p>",
        frame_html(pd.DataFrame(rows)),
        diverged_and_skipped(dataset, skipped),
        "<h3 id='table-runs'>Every run</h3><details><summary>One row per run (click to "
        "open): run-level summaries (geometric mean over the last evaluations), the final "
        "few-shot table, the step reached of the planned budget, device and commit. File: "
        "<code>stats/runs.csv</code>.</summary>"
        + frame_html(read_csv(stats_dir, "runs"))
        + "</details>",
    ]
    return "\n".join(p for p in parts if p)


def diverged_and_skipped(dataset: xr.Dataset, skipped: list[dict]) -> str:
    """The runs that diverged (where they stopped) and those skipped (why)."""
    parts = []
    diverged = dataset.isel(run=np.flatnonzero(dataset["status"].values == "diverged"))
    if diverged.sizes["run"]:
        items = "".join(
            f"<li><code>{esc(r)}</code>: stopped at step {int(s)} of {int(p)}</li>"
            for r, s, p in zip(
                diverged["run"].values,
                diverged["final_step"].values,
                diverged["steps_planned"].values,
                strict=True,
            )
        )
        parts.append(
            "<h3>Diverged runs</h3><p>Kept in the study file and the figures "
            f"(dotted), excluded from every test.</p><ul>{items}</ul>"
        )
    if skipped:
        items = "".join(
            f"<li><code>{esc(s['run_id'])}</code>: {esc(s['reason'])}</li>" for s in skipped
        )
        parts.append(
            "<h3>Skipped runs</h3><p>Left out by <code>gcstudy aggregate "
            f"--skip-bad</code>: their numbers appear nowhere.</p><ul>{items}</ul>"
        )
    return "\n".join(parts)


def claims_section(summary: dict) -> str:
    """Each claim (docs/claims.md) with its verdict in words, then its parts with the tests
    that decided them (estimate, CI, p, Holm p against, sample, reason, warning)."""
    tests = summary.get("tests", [])
    level = round(100 * (1 - summary["alpha"]))
    rows = []
    for claim in summary.get("claims", []):
        name = str(claim["claim"])
        badge = verdict_badge(
            claim["verdict"],
            any(_warned(t) for t in tests if t["part"].startswith(name)),
            claim.get("label", claim["verdict"]),
        ) + _by_clock(claim)
        if name.isdigit():
            rows.append(
                f'<tr class="main"><td><b>{esc(name)}</b></td><td><b>{esc(claim["statement"])}'
                f"</b></td><td>{badge}</td><td>{esc(claim['detail'])}</td></tr>"
            )
            continue
        items = "".join(test_item(t, level) for t in tests if t.get("part") == name)
        detail = esc(claim["detail"]) + (f'<ul class="tests">{items}</ul>' if items else "")
        rows.append(
            f'<tr class="part"><td>{esc(name)}</td><td>{esc(claim["statement"])}</td>'
            f"<td>{badge}</td><td>{detail}</td></tr>"
        )
    warnings = "".join(f"<li>{esc(w)}</li>" for w in summary.get("warnings", []))
    return (
        "<table class='claims'><thead><tr><th>#</th><th>claim (docs/claims.md) and its parts"
        "</th><th>verdict</th><th>why, and the tests that decided it</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        + (
            "<p class='note warn'><b>Warning: runs lost.</b> These verdicts rest on sweeps or "
            "studies that lost runs (a lost grid point leaves its sweep undecided):</p>"
            f"<ul>{warnings}</ul>"
            if warnings
            else ""
        )
        + f"<p class='note'><b>Decision rule</b> (level alpha = {summary['alpha']:g}): "
        + esc(summary.get("decision_rule", ""))
        + "</p>"
    )


def _warned(test: dict) -> bool:
    return bool(test.get("warning")) or bool(test.get("lost"))


def verdict_badge(verdict: str, warned: bool = False, label: str = "") -> str:
    mark = (
        ' <span class="warnmark" title="runs lost: see the warning below">&#9888; runs lost</span>'
    )
    return f'<span class="badge {VERDICT_CLASS[verdict]}">{esc(label or verdict)}</span>' + (
        mark if warned else ""
    )


def _by_clock(claim: dict) -> str:
    """The verdict at each clock and at 2/3 of the budget, small, under the badge."""
    pieces = [
        f"{CLOCK_LABELS.get(clock, 'bound study')}: {verdict}"
        for clock, verdict in claim.get("clocks", {}).items()
    ]
    if claim.get("stability"):
        pieces.append(f"at 2/3 of the budget: {claim['stability']}")
    return f"<br><small>{esc('; '.join(pieces))}</small>" if pieces else ""


def test_item(t: dict, level: int) -> str:
    interval = (
        f" [{level}% CI {esc(fmt(t['ci_low']))}, {esc(fmt(t['ci_high']))}]"
        if _finite(t["ci_low"])
        else ""
    )
    warning = (
        f' <span class="warnmark">&#9888; {esc(t["warning"])}</span>' if t.get("warning") else ""
    )
    clock = f" at {CLOCK_LABELS[t['clock']]}" if t.get("clock") in CLOCK_LABELS else ""
    interpolated = f"; interpolated: {t['interpolated']}" if t.get("interpolated") else ""
    return (
        f'<li><span class="badge {VERDICT_CLASS.get(t["verdict"], "meh")}">{esc(t["verdict"])}'
        f"</span> <b>{esc(t['study'])}</b>{esc(clock)}: {esc(t['name'])} ({esc(t['expected'])}),"
        f" estimate {esc(fmt(t['estimate']))}{interval}, p {esc(fmt(t['p']))} "
        f"({esc(_p_kind(t.get('method', '')))}), Holm p against {esc(fmt(t['p_against_holm']))} "
        f"({esc(t['n'])}{esc(interpolated)}): {esc(t['reason'])}{warning}</li>"
    )


def _p_kind(method: str) -> str:
    """What a test's ``p`` is, from its method."""
    if "rank trend" in method:
        return "one-sided; within-seed permutation p of the rank trend"
    if "max(p_t, p_permutation)" in method:
        return "one-sided; max of t and permutation p"
    return "one-sided"


def _finite(value) -> bool:
    try:
        return value is not None and np.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def figures_section(figures_dir: Path) -> str:
    index_path = figures_dir / "figures.json"
    if not index_path.exists():
        return "<p><em>No figures were drawn.</em></p>"
    parts = []
    for number, item in enumerate(json.loads(index_path.read_text()), start=1):
        png = figures_dir / item["png"]
        raw = png.read_bytes()
        data = base64.b64encode(raw).decode()
        width = int.from_bytes(raw[16:20], "big") * 2 // 3  # 150 dpi files shown at 100 dpi
        parts.append(
            f'<figure id="fig-{esc(item["name"])}"><img alt="{esc(item["name"])}" '
            f'style="width:{width}px" src="data:image/png;base64,{data}">'
            f"<figcaption><b>Figure {number} "
            f"({esc(item['name'])}).</b> {esc(item['caption'])} PDF: "
            f"<code>{esc(item['pdf'])}</code>.</figcaption></figure>"
        )
    return "\n".join(parts)


def stats_section(stats_dir: Path) -> str:
    parts = []
    for name, title in STAT_TABLES:
        frame = read_csv(stats_dir, name)
        if name == "estimators" and not frame.empty:
            frame = frame.drop(columns=["run"]) if frame["run"].nunique() == 1 else frame
        parts.append(f"<h3 id='table-{name}'>{esc(title)}</h3>")
        parts.append(
            f"<p>Files: <code>stats/{name}.csv</code>, <code>.md</code>, <code>.tex</code>.</p>"
        )
        if name == "tests" and not frame.empty:
            frame = frame[[c for c in TEST_COLUMNS if c in frame.columns]]
            frame = frame.rename(columns={"p": P_LABEL})
        parts.append(frame_html(frame))
    return "\n".join(parts)


def methods_section(summary: dict) -> str:
    items = "".join(
        f"<li><b>Claim {esc(k)}.</b> {esc(v)}</li>" for k, v in summary.get("methods", {}).items()
    )
    return (
        f"<p>{esc(summary.get('decision_rule', ''))}</p><ul>{items}</ul><p>Why runs: the "
        "evaluation steps of one run are not independent observations, and runs of one seed "
        "share initialisation and data order across grid points, hence one value per run "
        "and the seed as a block. Why clocks: equal step is not equal progress across "
        "learning rates and batch sizes, and which notion of equal progress is right is not "
        "known, so each relation is judged at equal steps, equal examples seen and equal lr "
        "x steps, and must hold at every one. Why no control for train loss: the loss is "
        "read out from the same features as NC, downstream of both the factor and NC; "
        "holding it fixed conditions on a collider and manufactures relations of either "
        "sign. Such fits are shown, labelled, never deciding (docs/claims.md). The false-"
        "positive rate and power of these rules are measured by simulation "
        "(<code>benchmarks/bench_claims.py</code>).</p>"
    )


def defaults_section(dataset: xr.Dataset) -> str:
    specs = [json.loads(s) for s in dataset["spec_json"].values] if "spec_json" in dataset else []
    if not specs:
        return "<p><em>No run specs recorded.</em></p>"
    frame = pd.DataFrame(specs)
    study = dataset["study"].values
    rows = []
    for key in frame.columns:
        values = frame[key].map(_spec_text)
        distinct = list(dict.fromkeys(str(v) for v in values))
        per_study = {s: sorted({str(v) for v in values[study == s]}) for s in dict.fromkeys(study)}
        varying = [s for s, v in per_study.items() if len(v) > 1]
        shown = (
            distinct[0]
            if len(distinct) == 1
            else "; ".join(f"{s}: {', '.join(v)}" for s, v in per_study.items())
        )
        rows.append(
            {
                "key": key,
                "value in force": shown,
                "open default (docs/science.md)?": "yes" if key in SCIENCE_DEFAULTS else "",
                "meaning": SCIENCE_DEFAULTS.get(key, ""),
                "varies within": ", ".join(varying) or "-",
            }
        )
    table = pd.DataFrame(rows).sort_values(
        by=["open default (docs/science.md)?", "key"], ascending=[False, True]
    )
    facts = recorded_facts(dataset)
    items = "".join(f"<li>{esc(f)}</li>" for f in facts)
    return f"<ul>{items}</ul>" + frame_html(table)


def recorded_facts(dataset: xr.Dataset) -> list[str]:
    """What the runs recorded that holds for the whole study: the Poincare constant of
    the GC bound, the final few-shot episodes, the GC-estimator repeats, and what every
    run has in common."""
    facts = []
    c = finite_values(dataset, "poincare_constant")
    if len(c):
        facts.append(
            f"Poincare constant c used by the GC bound (per run, as recorded in "
            f"the traces): {fmt(float(c.min()))} to {fmt(float(c.max()))}."
        )
    episodes = finite_values(dataset, "fewshot_episodes")
    if len(episodes):
        facts.append(
            f"Final few-shot evaluation: {int(episodes.max())} episodes per run "
            "(fewshot.nc), with a fixed episode seed."
        )
    if "repeat" in dataset.dims:
        facts.append(
            f"GC-estimator study: {dataset.sizes['repeat']} repeats per estimator and budget."
        )
    facts.append(
        "Common to every run (docs/science.md#defaults): plain SGD with a constant "
        "learning rate, cross-entropy, no data augmentation, per-channel input "
        "normalisation, metrics on fixed stratified samples with the network in eval "
        "mode after BatchNorm recalibration."
    )
    return facts


def finite_values(dataset: xr.Dataset, name: str) -> np.ndarray:
    """The finite values of variable ``name`` (none when the study file lacks it)."""
    if name not in dataset:
        return np.array([])
    values = dataset[name].values
    return values[np.isfinite(values)]


def _spec_text(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer():
        return str(value).removesuffix(".0") if abs(value) >= 1 else f"{value:g}"
    return str(value)


def provenance_section(dataset: xr.Dataset, summary: dict) -> str:
    from gcstudy import provenance

    versions = dataset.attrs.get("versions", {})
    rows = [
        ("config hash", dataset.attrs.get("config_hash", "")),
        ("study file created", dataset.attrs.get("created_at", "")),
        ("report created", provenance.now()),
        ("git commit (analysis)", dataset.attrs.get("git_commit", "")),
        ("git commits of the traces", ", ".join(dataset.attrs.get("trace_git_commits", []))),
        (
            "devices",
            ", ".join(sorted({str(d) for d in dataset["device"].values}))
            if "device" in dataset
            else "",
        ),
        (
            "statistics",
            f"alpha = {summary.get('alpha', '')}, summary window = last "
            f"{summary.get('summary_window', '')} evaluations, "
            f"{summary.get('permutations', '')} permutations, clocks "
            f"{', '.join(summary.get('clocks', []))}, seed "
            f"{summary.get('settings', {}).get('seed', '')}; study file {summary.get('study', '')}",
        ),
    ]
    rows += [(f"version: {k}", v) for k, v in sorted(versions.items())]
    trace_versions = dataset.attrs.get("trace_versions", [])
    for i, v in enumerate(trace_versions):
        rows.append(
            (f"trace software set {i + 1}", ", ".join(f"{k} {val}" for k, val in sorted(v.items())))
        )
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def partial_warning(dataset: xr.Dataset) -> str:
    skipped = dataset.attrs.get("skipped", [])
    if not skipped:
        return ""
    total = int(dataset.attrs.get("runs_in_table", dataset.sizes["run"] + len(skipped)))
    return (
        f"<p class='note'><b>Partial study:</b> {len(skipped)} of {total} runs were skipped "
        "(missing or unreadable files, listed under <a href='#inventory'>What was run</a>). "
        "Every verdict below rests only on the runs that were read.</p>"
    )


def first_screen(summary: dict, dataset: xr.Dataset, stats_dir: Path) -> str:
    """What was asked and what was found, before anything else: each claim in one sentence,
    its verdict and in words the mechanisms and clocks that decided it; what the study is
    and cannot say; whether the runs reached the terminal phase and the verdicts settled."""
    tests = summary.get("tests", [])
    claims = [c for c in summary.get("claims", []) if str(c["claim"]).isdigit()]
    bounds = read_csv(stats_dir, "bound")
    items = []
    for c in claims:
        number = int(c["claim"])
        warned = any(_warned(t) for t in tests if t["part"].startswith(str(number)))
        items.append(
            f'<li><p class="verdict"><span class="badge {VERDICT_CLASS[c["verdict"]]}">claim '
            f"{number}: {esc(c.get('label', c['verdict']))}</span> <b>{esc(c['statement'])}."
            f"</b></p><p class='verdict'>{esc(deciding_words(c, tests, bounds))}"
            + (" &#9888; rests on sweeps that lost runs." if warned else "")
            + "</p></li>"
        )
    return (
        "<section id='summary'><h2>What was asked and what was found</h2>"
        f"<ul class='found'>{''.join(items)}</ul>"
        f"{study_note(dataset)}{convergence_note(claims, stats_dir)}</section>"
    )


def deciding_words(claim: dict, tests: list[dict], bounds: pd.DataFrame) -> str:
    """The mechanisms and clocks behind a claim's verdict, in words (claim 4: the bounds)."""
    number = int(claim["claim"])
    mine = [t for t in tests if int(t["claim"]) == number]
    if number == 4:
        parts = sorted({t["part"] for t in mine if not t.get("diagnostic")})
        diagnostic = sorted({t["part"] for t in mine if t.get("diagnostic")})
        words = f"Decided by the CDNV bound (parts {', '.join(parts) or 'none'})"
        if diagnostic:
            words += f"; parts {', '.join(diagnostic)} are a diagnostic (Gaussian proxy for c)"
        return words + f". {claim['detail']}. " + bound_words(bounds)
    if not mine:
        return f"Nothing decided it: {claim['detail']}."
    clocks = list(dict.fromkeys(t["clock"] for t in mine))
    pieces = []
    for clock in clocks:
        by_verdict: dict[str, list[str]] = {}
        for t in mine:
            if t["clock"] == clock:
                name = FACTOR_LABELS.get(t["mechanism"], t["mechanism"])
                what = f"{name} ({t['study']}{', ' + t['part'] if number == 3 else ''})"
                by_verdict.setdefault(t["verdict"], []).append(what)
        said = "; ".join(f"{v}: {', '.join(m)}" for v, m in by_verdict.items())
        pieces.append(f"at {CLOCK_LABELS.get(clock, clock)}, {said}")
    lead = "Per sweep" if number == 1 else "Per mechanism acting on GC"
    stable = claim.get("stability")
    settled = f" With 2/3 of the budget: {stable}." if stable else ""
    return f"{lead}: " + "; ".join(pieces) + "." + settled


def bound_words(bounds: pd.DataFrame) -> str:
    """Per bound study: where each bound first falls below 1, bound / error at the end, and
    which NC feeds it (the ``bound`` table of ``claims.bound``)."""
    said = []
    for _, row in bounds.iterrows():
        if "crossing_step_median" not in row or not isinstance(row.get("fed_by"), str):
            continue
        never = int(row.get("never_below_1", 0) or 0)
        crossing = (
            f"first below 1 at step {fmt(row['crossing_step_median'])} (median over runs; "
            f"{row['crossing_step_range']})"
            if _finite(row["crossing_step_median"])
            else "never below 1"
        ) + (f", never in {never} runs" if never and _finite(row["crossing_step_median"]) else "")
        said.append(
            f"{row['study']}, {row['bound']} (from the {row['fed_by']}): {crossing}; bound / "
            f"test error at the end {fmt(row['end_ratio_to_error'])}."
        )
    return " ".join(said)


def study_note(dataset: xr.Dataset) -> str:
    """What the study is (model, width, data, steps, seeds per study) and cannot say."""
    studies = dataset.attrs.get("studies", {})
    lines = []
    widths = []
    for name in dict.fromkeys(str(s) for s in dataset["study"].values):
        info = studies.get(name, {})
        runs = dataset["study"].values == name
        steps = sorted({int(s) for s in dataset["steps_planned"].values[runs]})
        width = float(info.get("width", np.nan)) if info.get("width") is not None else np.nan
        widths.append(width)
        lines.append(
            f"<li><b>{esc(name)}</b> ({esc(info.get('experiment', ''))}): "
            f"{esc(info.get('model', ''))} at width {esc(fmt(width))} on "
            f"{esc(info.get('dataset', ''))}, {esc(', '.join(map(str, steps)))} steps, "
            f"{len(info.get('seeds', [])) or '?'} seeds, "
            f"{esc(', '.join(info.get('sweeps', {})) or 'no sweep')}</li>"
        )
    narrow = [w for w in widths if np.isfinite(w) and w < 1]
    cannot = [
        "It tests the claims on these networks, data and budgets only: a verdict here is "
        "evidence about the paper's claims, not a replication of its figures."
    ]
    if narrow:
        span = " to ".join(dict.fromkeys(fmt(w) for w in (min(narrow), max(narrow))))
        cannot.append(f"The networks are narrower than the paper's (width {span} of full width).")
    cannot.append(
        "The per-mechanism tests say whether each factor moves NC with GC (a total effect), "
        "not that GC causes NC; a claim about the terminal phase needs runs that reached it."
    )
    if dataset.attrs.get("generated_by"):
        cannot.insert(0, "This is a generated study: it says nothing about networks.")
    return (
        "<div class='note'><b>What the study is.</b><ul>" + "".join(lines) + "</ul>"
        "<b>What it cannot say.</b> " + esc(" ".join(cannot)) + "</div>"
    )


def convergence_note(claims: list[dict], stats_dir: Path) -> str:
    """Runs in the terminal phase per study, and whether each verdict was stable."""
    table = read_csv(stats_dir, "terminal_phase")
    reached = (
        "; ".join(
            f"{r['study']}: {int(r['terminal_phase'])} of {int(r['complete_runs'])}"
            for _, r in table.iterrows()
        )
        if not table.empty
        else "not recorded (no train accuracy in the study file)"
    )
    unstable = [
        str(c["claim"])
        for c in claims
        if c["reason"] == "NOT_CONVERGED" or (c.get("stability") or c["verdict"]) != c["verdict"]
    ]
    stable = (
        "every verdict is the same with 2/3 of the budget"
        if not unstable
        else f"claim {', '.join(unstable)} changed between 2/3 of the budget and the end "
        "(inconclusive: not converged)"
    )
    return (
        "<p class='note'><b>Convergence.</b> Runs in the terminal phase (train accuracy >= "
        f"{100 * TERMINAL_ACCURACY:g} % at every evaluation of the last third): {esc(reached)}. "
        f"Verdicts: {esc(stable)}.</p>"
    )


def generated_banner(dataset: xr.Dataset) -> str:
    marker = dataset.attrs.get("generated_by", "")
    if not marker:
        return ""
    return (
        "<p class='note generated'><b>GENERATED STUDY, NOT MEASUREMENTS.</b> Every trace of "
        f"this study was written by a generator ({esc(marker)}): its verdicts say nothing "
        "about networks.</p>"
    )


def render(dataset: xr.Dataset, stats_dir: Path, figures_dir: Path) -> str:
    summary_path = stats_dir / "claims.json"
    if not summary_path.exists():
        raise FileNotFoundError(f"{summary_path} does not exist (run `gcstudy stats` first)")
    summary = json.loads(summary_path.read_text())
    studies = ", ".join(
        f"{k} ({v.get('experiment', '')})" for k, v in dataset.attrs.get("studies", {}).items()
    )
    sections = [
        ("claims", "Claims", claims_section(summary)),
        ("figures", "Figures", figures_section(figures_dir)),
        ("statistics", "Statistics", stats_section(stats_dir)),
        ("inventory", "What was run", inventory_section(dataset, stats_dir)),
        ("methods", "Methods", methods_section(summary)),
        ("defaults", "Assumptions and defaults in force", defaults_section(dataset)),
        ("provenance", "Provenance", provenance_section(dataset, summary)),
    ]
    nav = "".join(f'<a href="#{k}">{esc(t)}</a>' for k, t, _ in sections)
    body = "".join(
        f'<section id="{k}"><h2>{esc(t)}</h2>{content}</section>' for k, t, content in sections
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{'GENERATED STUDY: ' * bool(dataset.attrs.get('generated_by'))}"
        "gcstudy report</title>"
        f"<style>{CSS}</style></head><body>{generated_banner(dataset)}"
        "<h1>Geometric complexity and neural collapse: study report</h1>"
        "<p class='sub'>Reproduction of Munn, Dherin &amp; Gonzalvo, NeurIPS 2024 "
        f"(arXiv 2405.15706). Studies: {esc(studies)}. Config hash "
        f"<code>{esc(dataset.attrs.get('config_hash', ''))}</code>.</p>"
        f"{partial_warning(dataset)}{first_screen(summary, dataset, stats_dir)}"
        f"<nav>{nav}</nav>{body}"
        "</body></html>\n"
    )


def run(
    study_path: str | os.PathLike,
    stats_dir: str | os.PathLike,
    figures_dir: str | os.PathLike,
    out: str | os.PathLike,
) -> Path:
    """``gcstudy report``: write the self-contained HTML report; returns its path."""
    dataset = aggregate.open_study(study_path)
    text = render(dataset, Path(stats_dir), Path(figures_dir))
    return files.write_text(out, text)
