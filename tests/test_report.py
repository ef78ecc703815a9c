"""gcstudy report: one self-contained HTML file with every section, figure and verdict."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import pytest

from gcstudy import cli
from gcstudy.analysis import aggregate, stats, synthetic

SKIPPED = "sweeps/lr-0.02_bs-32_l2-0_gcp-0_seed-0"


class Collect(HTMLParser):
    """Sections, images, links and table rows of the report."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.links, self.rows = [], [], [], []
        self._table_class, self._row, self._cell, self._in_cell = None, None, None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
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


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    config = synthetic.small_config(
        steps=20, seeds=(0, 1), studies=("sweeps", "estimators", "bound")
    )
    config["studies"]["sweeps"]["sweeps"] = {"lr": [0.02, 0.1], "batch_size": [16, 64]}
    synthetic.make_study(root, config, diverge=("sweeps/lr-0.1_bs-32_l2-0_gcp-0_seed-1",))
    (root / "runs" / SKIPPED / "trace.h5").unlink()
    study = root / "study.nc"
    common = ["--table", str(root / "run_table.json"), "--runs", str(root / "runs")]
    assert cli.main(["aggregate", *common, "--out", str(study), "--skip-bad"]) == 0
    assert cli.main(["stats", str(study), "--out", str(root / "stats"), "--bootstrap", "100"]) == 0
    assert cli.main(["figures", str(study), "--out", str(root / "figures")]) == 0
    out = root / "report.html"
    assert (
        cli.main(
            [
                "report",
                str(study),
                "--stats",
                str(root / "stats"),
                "--figures",
                str(root / "figures"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = out.read_text()
    parsed = Collect()
    parsed.feed(text)
    return root, text, parsed


def test_sections_present(report):
    _, _, parsed = report
    assert parsed.sections == [
        "inventory",
        "claims",
        "figures",
        "statistics",
        "methods",
        "defaults",
        "provenance",
    ]


def test_images_are_embedded(report):
    root, _, parsed = report
    index = json.loads((root / "figures" / "figures.json").read_text())
    assert len(parsed.images) == len(index) == 4  # E1, E2, E3 and the NC-GC scatter
    for src in parsed.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:4] == b"\x89PNG"
    assert parsed.links == []  # nothing fetched from elsewhere


def test_claims_table_rows_match_the_statistics(report):
    root, _, parsed = report
    summary = json.loads((root / "stats" / "claims.json").read_text())
    claims = summary["claims"]
    assert len(parsed.rows) == len(claims) == len(stats.CLAIMS) + len(stats.PARTS)
    for row, claim in zip(parsed.rows, claims, strict=True):
        assert row[0] == str(claim["claim"])
        assert row[2] == claim["verdict"] and row[2] in stats.VERDICTS
    part = next(r for r in parsed.rows if r[0] == "1a")
    assert "final GC vs learning rate" in part[3]


def test_inventory_defaults_and_provenance(report):
    _, text, _ = report
    assert "1 diverged" in text and "sweeps/lr-0.1_bs-32_l2-0_gcp-0_seed-1" in text
    assert "1 skipped" in text and SKIPPED in text and "does not exist" in text
    for key in ("bn_recalibration_examples", "poincare_constant", "fewshot_ways", "momentum"):
        assert key in text
    assert "SCIENCE.md default?" in text
    dataset = aggregate.open_study(report[0] / "study.nc")
    assert dataset.attrs["config_hash"] in text
    assert "git commit" in text and "version: xarray" in text
