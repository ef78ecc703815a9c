"""gcstudy figures: one figure per experiment, laid out like the paper's, as PNG and PDF."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gcstudy import cli
from gcstudy.analysis import aggregate, figures, synthetic

DIVERGED = "sweeps/lr-0.1_bs-32_l2-0_gcp-0_seed-1"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("figures")
    config = synthetic.small_config(steps=20, seeds=(0, 1))
    synthetic.make_study(root, config, diverge=(DIVERGED,))
    dataset = aggregate.aggregate(root / "run_table.json", root / "runs")
    aggregate.write(dataset, root / "study.nc")
    return root, dataset


@pytest.fixture(scope="module")
def drawn(study):
    return {item.name: item for item in figures.build(study[1])}


def panels(figure):
    return [ax for ax in figure.axes if ax.get_visible()]


def test_one_figure_per_experiment(drawn):
    assert set(drawn) == {
        "sweeps_E1",
        "transfer_E4",
        "estimators_E2",
        "bound_E3",
        "penalty_E5",
        "scatter_nc_gc",
    }
    for item in drawn.values():
        assert len(item.caption) > 60


def test_e1_layout(drawn):
    figure = drawn["sweeps_E1"].figure
    axes = panels(figure)
    assert len(axes) == 9  # 3 sweeps x (GC, geometric collapse, NC)
    rows = np.array(axes).reshape(3, 3)
    assert [row[0].get_title(loc="left") for row in rows] == [
        "learning rate sweep",
        "batch size sweep",
        "L2 penalty sweep",
    ]
    for row in rows:
        assert row[0].get_ylabel().startswith("GC")
        assert row[1].get_ylabel() == "geometric collapse"
        assert row[2].get_ylabel().startswith("NC")
        for ax in row:
            assert ax.get_xlabel() == figures.STEP_LABEL
        legend = row[2].get_legend()
        assert legend is not None and len(legend.get_texts()) >= 3
    # one mean line per swept value (3) in each panel; the lr row also has a diverged run
    lines = [line for line in rows[1][0].get_lines() if line.get_linestyle() == "-"]
    assert len(lines) == 3
    lr_legend = [t.get_text() for t in rows[0][2].get_legend().get_texts()]
    assert lr_legend == ["0.02", "0.05", "0.1", "diverged"]
    # mean lines use distinct colours of a sequential map
    colours = {tuple(line.get_color()) for line in lines}
    assert len(colours) == 3


def test_e4_e2_e3_e5_layouts(drawn):
    transfer = panels(drawn["transfer_E4"].figure)
    assert len(transfer) == 6  # 2 sweeps x (source GC, target NC, 5-shot accuracy)
    assert transfer[1].get_ylabel().startswith("target NC")
    assert "5-shot" in transfer[2].get_ylabel()
    estimators = panels(drawn["estimators_E2"].figure)
    assert len(estimators) == 4  # one per estimator
    for ax in estimators:
        assert ax.get_xscale() == "log" and ax.get_xlabel().startswith("sampling budget")
        assert any(line.get_linestyle() == "--" for line in ax.get_lines())  # exact GC
    bound = panels(drawn["bound_E3"].figure)
    assert len(bound) == 1 and bound[0].get_yscale() == "log"
    labels = [t.get_text() for t in bound[0].get_legend().get_texts()]
    assert labels[0] == "NCC test error" and len(labels) == 3
    assert len(panels(drawn["penalty_E5"].figure)) == 3
    scatter = panels(drawn["scatter_nc_gc"].figure)
    assert len(scatter) == 4  # studies with at least 2 runs: sweeps, transfer, bound, penalty


def test_log_axes_only_where_values_span_decades():
    assert figures.spans_decades(np.array([1.0, 50.0]))
    assert not figures.spans_decades(np.array([1.0, 5.0]))
    mean, low, high = figures.seed_band(np.array([[1.0, 10.0], [100.0, 10.0]]), log=True)
    assert mean == pytest.approx([10.0, 10.0])
    assert low[0] < 10 < high[0] and low[1] == high[1] == pytest.approx(10.0)


def test_files_are_valid_png_and_pdf(study, tmp_path):
    root, _ = study
    out = tmp_path / "figures"
    assert cli.main(["figures", str(root / "study.nc"), "--out", str(out)]) == 0
    index = json.loads((out / "figures.json").read_text())
    assert len(index) == 6
    for item in index:
        png = (out / item["png"]).read_bytes()
        pdf = (out / item["pdf"]).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
        assert pdf[:5] == b"%PDF-" and pdf.rstrip().endswith(b"%%EOF")
