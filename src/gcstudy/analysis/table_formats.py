"""Tables as CSV (full precision), Markdown and LaTeX (pandas ``to_markdown`` and
``Styler.to_latex``) and HTML (``Styler.to_html``), numbers rounded alike by ``fmt``."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

LATEX_SPECIAL = str.maketrans({c: "\\" + c for c in "&%$#_{}"} | {"~": r"\~{}", "^": r"\^{}"})


def fmt(value, digits: int = 3) -> str:
    """A number with ``digits`` significant digits (scientific when very large or small)."""
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value == 0:
            return "0"
        if abs(value) >= 1e5 or abs(value) < 1e-3:
            return f"{value:.{digits - 1}e}"
        if value.is_integer():
            return str(int(value))
        return f"{value:.{digits}g}"
    return str(value)


def markdown(frame: pd.DataFrame) -> str:
    return frame.map(fmt).to_markdown(index=False) + "\n"


def latex(frame: pd.DataFrame, caption: str = "") -> str:
    styler = frame.style.format(fmt, escape="latex").format_index(escape="latex", axis=1)
    styler = styler.hide(axis="index")
    return styler.to_latex(caption=caption.translate(LATEX_SPECIAL) or None, hrules=True)


def html_table(frame: pd.DataFrame, cell: Callable[[object], str] = fmt) -> str:
    """An HTML table; ``cell`` turns each (HTML-escaped) value into its content."""
    styler = frame.style.format(cell, escape="html").format_index(escape="html", axis=1)
    return styler.hide(axis="index").to_html()


def write_table(frame: pd.DataFrame, folder: Path, name: str, caption: str = "") -> list[Path]:
    """``folder/name.csv`` (full precision), ``.md`` and ``.tex`` (rounded)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.csv", folder / f"{name}.md", folder / f"{name}.tex"]
    frame.to_csv(paths[0], index=False)
    paths[1].write_text((f"{caption}\n\n" if caption else "") + markdown(frame))
    paths[2].write_text(latex(frame, caption))
    return paths
