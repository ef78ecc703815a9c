"""The paper's figures, redrawn from ``results/study.nc`` (``gcstudy figures``).

``runs``: one figure per study, laid out after the experiment it reproduces (the runs'
curves); ``claims``: one figure per claim, drawing the readings and fits that the claims'
decisions made (``claims.Results``: nothing is fitted again here); ``common``: what they
share. PNG (150 dpi) and PDF under the output folder, plus ``figures.json`` with every
figure's file names and caption (for the report).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import xarray as xr

from gcstudy.analysis import aggregate
from gcstudy.analysis.claims import Results, Settings, analyse
from gcstudy.analysis.figures import claims, runs
from gcstudy.analysis.figures.common import Drawn


def build(dataset: xr.Dataset, results: Results) -> list[Drawn]:
    """Every figure the study file supports, the claims' from their ``results`` (nothing
    written)."""
    return runs.build(dataset) + claims.build(dataset, results)


def write(drawn: list[Drawn], out_dir: str | os.PathLike) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written, index = [], []
    for item in drawn:
        png, pdf = out / f"{item.name}.png", out / f"{item.name}.pdf"
        item.figure.savefig(png, dpi=150)
        item.figure.savefig(pdf)
        written += [png, pdf]
        index.append({"name": item.name, "png": png.name, "pdf": pdf.name, "caption": item.caption})
    (out / "figures.json").write_text(json.dumps(index, indent=1) + "\n")
    written.append(out / "figures.json")
    return written


def run(
    study_path: str | os.PathLike, out_dir: str | os.PathLike, settings: Settings
) -> list[Path]:
    """``gcstudy figures``: decide the claims on the study file (the decisions the tables
    of ``gcstudy stats`` report, with the same settings) and draw every figure into
    ``out_dir``."""
    dataset = aggregate.open_study(study_path)
    return write(build(dataset, analyse(dataset, settings, extras=False)), out_dir)


__all__ = ["build", "run", "write"]
