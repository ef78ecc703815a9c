"""gcstudy report: one self-contained HTML file with every section, figure and verdict, the
verdicts said in words, warnings on runs lost to divergence and a flag on generated data."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import pandas as pd
import pytest

from gcstudy import cli, testing
from gcstudy.analysis import aggregate, claims
from gcstudy.analysis import report as report_module
from gcstudy.analysis.claims import tables
from gcstudy.analysis.table_formats import fmt

SKIPPED = "sweeps/lr-0.02_bs-32_l2-0_gcp-0_seed-0"
DIVERGED = "sweeps/lr-0.1_bs-32_l2-0_gcp-0_seed-1"


class Collect(HTMLParser):
    """Sections, images, links, the claims table's rows and the text before the title."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.links, self.rows = [], [], [], []
        self.before_title, self._seen_title, self._in_body = [], False, False
        self._table_class, self._row, self._cell, self._in_cell = None, None, None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "h1":
            self._seen_title = True
        if tag == "body":
            self._in_body = True
        if tag == "section":
            self.sections.append(attrs.get("id"))
        elif tag == "img":
            self.images.append(attrs.get("src", ""))
        elif tag in ("link", "script") and (attrs.get("href") or attrs.get("src")):
            self.links.append(attrs.get("href") or attrs.get("src"))
        elif tag == "table":
            self._table_class = attrs.get("class")
        elif tag == "tr" and self._table_class == "claims":
            self._row = []
        elif tag == "td" and self._row is not None and not self._in_cell:
            self._in_cell, self._cell = True, []

    def handle_endtag(self, tag):
        if tag == "td" and self._in_cell and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._in_cell = False
        elif tag == "tr" and self._row is not None:
            if self._row:
                self.rows.append(self._row)
            self._row = None
        elif tag == "table":
            self._table_class = None

    def handle_data(self, data):
        if self._in_cell:
            self._cell.append(data)
        if self._in_body and not self._seen_title and data.strip():
            self.before_title.append(data.strip())


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    config = testing.small_config(steps=20, seeds=(0, 1), studies=("sweeps", "estimators", "bound"))
    testing.make_study(root, config, diverged=(DIVERGED,))
    (root / "runs" / SKIPPED / "trace.h5").unlink()
    study = root / "study.nc"
    common = ["--table", str(root / "run_table.json"), "--runs", str(root / "runs")]
    assert (
        cli.main(["aggregate", *common, "--out", str(study), "--skip-bad", "--allow-generated"])
        == 0
    )
    settings = ["--permutations", "199", "--summary-window", "2"]
    assert cli.main(["stats", str(study), "--out", str(root / "stats"), *settings]) == 0
    assert cli.main(["figures", str(study), "--out", str(root / "figures"), *settings]) == 0
    out = root / "report.html"
    args = [
        "report",
        str(study),
        "--stats",
        str(root / "stats"),
        "--figures",
        str(root / "figures"),
        "--out",
        str(out),
    ]
    assert cli.main(args) == 0
    text = out.read_text()
    parsed = Collect()
    parsed.feed(text)
    return root, text, parsed


def test_sections_present(report):
    _, _, parsed = report
    # issue 18: what was asked and found first; the run inventory after the statistics
    assert parsed.sections == [
        "summary",
        "claims",
        "figures",
        "statistics",
        "inventory",
        "methods",
        "defaults",
        "provenance",
    ]


def test_a_generated_study_says_so_first(report):
    _, _, parsed = report
    assert parsed.before_title[0].startswith("GENERATED STUDY, NOT MEASUREMENTS")


def test_images_are_embedded(report):
    root, _, parsed = report
    index = json.loads((root / "figures" / "figures.json").read_text())
    # E1, E2, E3 and a figure per claim (claim 3: no transfer study here)
    assert len(parsed.images) == len(index) == 6
    for src in parsed.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:4] == b"\x89PNG"
    assert parsed.links == []  # nothing fetched from elsewhere


def test_claims_table_rows_match_the_statistics_and_say_the_rule(report):
    root, text, parsed = report
    summary = json.loads((root / "stats" / "claims.json").read_text())
    rows = summary["claims"]
    assert len(parsed.rows) == len(rows) == len(claims.CLAIMS) + len(claims.PARTS)
    for row, claim in zip(parsed.rows, rows, strict=True):
        assert row[0] == str(claim["claim"])
        assert row[2].startswith(claim["verdict"]) and claim["verdict"] in claims.VERDICTS
        assert claim["detail"] in row[3]
    # no transfer study: claim 3 is inconclusive, its parts named as not tested
    claim3 = next(r for r in parsed.rows if r[0] == "3")
    assert claim3[2].startswith("inconclusive") and "3a, 3b not tested" in claim3[3]
    part = next(r for r in parsed.rows if r[0] == "1a")
    assert "GC vs learning rate" in part[3]
    assert "supported only when every part is supported" in text
    for word in ("claim 1:", "claim 2:", "claim 3:", "claim 4:"):
        assert word in text


def test_verdicts_resting_on_lost_runs_carry_a_warning(report):
    root, text, parsed = report
    warnings = json.loads((root / "stats" / "claims.json").read_text())["warnings"]
    assert any("lr 0.1 seed 1 (diverged)" in w for w in warnings)
    assert any("lr 0.02 seed 0 (not aggregated)" in w for w in warnings)
    assert "Warning: runs lost" in text
    part = next(r for r in parsed.rows if r[0] == "1a")
    assert "runs lost" in part[2] and part[2].startswith("inconclusive")


def test_inventory_runs_defaults_and_provenance(report):
    root, text, _ = report
    assert "1 diverged" in text and DIVERGED in text
    assert "1 skipped" in text and SKIPPED in text and "does not exist" in text
    assert "Every run" in text and "20 / 20" in text  # the per-run table: step of budget
    for key in ("bn_recalibration_examples", "poincare_constant", "fewshot_ways", "momentum"):
        assert key in text
    assert "open default (docs/science.md)?" in text
    dataset = aggregate.open_study(root / "study.nc")
    assert dataset.attrs["config_hash"] in text
    assert "git commit" in text and "version: xarray" in text
    assert "summary window = last 2 evaluations, 199 permutations" in text


def test_first_screen_says_what_was_asked_found_and_what_the_study_is(report):
    root, text, _ = report
    summary = json.loads((root / "stats" / "claims.json").read_text())
    first = text[text.index("What was asked and what was found") : text.index('id="claims"')]
    for claim in (c for c in summary["claims"] if str(c["claim"]).isdigit()):
        assert claim["statement"] in first
        assert f"claim {claim['claim']}: {claim['label']}" in first
    # the deciding mechanisms and clocks in words
    assert "Per sweep: at equal steps," in first and "learning rate (sweeps)" in first
    assert "at equal examples seen" in first and "at equal lr x steps" in first
    assert "Decided by the CDNV bound (parts 4a, 4b, 4c)" in first
    assert "4d, 4e, 4f are a diagnostic" in first
    # claim 4: where the bound crosses 1, bound / error at the end, which NC feeds it
    bound = pd.read_csv(root / "stats" / "bound.csv").set_index("bound")
    cdnv = bound.loc["CDNV bound"]
    assert "(from the NC of the training features, 4 (C - 1) NC_train)" in first
    assert f"first below 1 at step {fmt(cdnv['crossing_step_median'])}" in first
    assert f"bound / test error at the end {fmt(cdnv['end_ratio_to_error'])}" in first
    assert "NC of the test features, 4 (C - 1) NC_test" in first
    # what the study is and cannot say; the convergence state
    assert "What the study is." in first and "vgg11 at width 0.125 on digits" in first
    assert "20 steps" in first and "What it cannot say." in first
    assert "narrower than the paper" in first
    assert "Runs in the terminal phase" in first and "sweeps: " in first
    assert "with 2/3 of the budget" in first or "not converged" in first


def test_run_table_is_collapsed_after_the_statistics_and_p_is_labelled(report):
    _, text, _ = report
    assert text.index('id="statistics"') < text.index("table-runs")
    runs = text[text.index("table-runs") :]
    assert runs.index("<details>") < runs.index("stats/runs.csv")
    assert "p (one-sided; for a slope max(p_t, p_permutation))" in text
    assert "max of t and permutation p" in text  # each test in the claims table


def test_a_claim_that_did_not_converge_says_so_on_the_first_screen(report):
    root, _, _ = report
    summary = json.loads((root / "stats" / "claims.json").read_text())
    claim2 = next(c for c in summary["claims"] if str(c["claim"]) == "2")
    claim2.update(
        verdict="inconclusive",
        label="inconclusive: not converged",
        reason="NOT_CONVERGED",
        stability="supported",
    )
    dataset = aggregate.open_study(root / "study.nc")
    first = report_module.first_screen(summary, dataset, root / "stats")
    assert "claim 2: inconclusive: not converged" in first
    assert "claim 2 changed between 2/3 of the budget and the end" in first


def test_the_inventory_is_counted_once_by_the_statistics(report, monkeypatch):
    """The report's run counts per study are the statistics stage's ``inventory`` (checked
    against a count of its own here), and the section shows whatever that count says."""
    root, _, _ = report
    dataset = aggregate.open_study(root / "study.nc")
    counts = tables.inventory(dataset).set_index("study")
    status = pd.Series(dataset["status"].values).groupby(dataset["study"].values)
    for study, values in status:
        assert counts.loc[study, "complete"] == (values == "complete").sum()
        assert counts.loc[study, "diverged"] == (values == "diverged").sum()
    skipped = pd.Series([s["study"] for s in dataset.attrs["skipped"]]).value_counts()
    assert counts["skipped"].sum() == skipped.sum() == 1
    assert set(counts.index) == set(dataset.attrs["studies"])
    doctored = counts.reset_index().assign(complete=lambda f: f["complete"] + 1000)
    monkeypatch.setattr(report_module, "inventory", lambda _: doctored)
    section = report_module.inventory_section(dataset, root / "stats")
    total = int(doctored["complete"].sum())
    assert f"({total} complete, " in section
    for value in doctored["complete"]:
        assert f">{value}<" in section
