"""Write one table (a ``pandas.DataFrame``) as CSV, Markdown and LaTeX, numbers rounded alike."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def fmt(value, digits: int = 3) -> str:
    """A number with ``digits`` significant digits (scientific when very large or small)."""
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
        if float(value).is_integer() and abs(value) < 1e5:
            return str(int(value))
        return f"{value:.{digits}g}"
    return str(value)


def cells(frame: pd.DataFrame) -> list[list[str]]:
    return [[fmt(_plain(v)) for v in row] for row in frame.itertuples(index=False)]


def _plain(value):
    if hasattr(value, "item") and not isinstance(value, str):
        return value.item()
    return value


def markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells(frame)]
    return "\n".join([header, rule, *rows]) + "\n"


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)


def latex(frame: pd.DataFrame, caption: str = "") -> str:
    columns = "l" * len(frame.columns)
    lines = [r"\begin{table}[ht]", r"\centering", r"\small", rf"\begin{{tabular}}{{{columns}}}"]
    lines.append(r"\hline")
    lines.append(" & ".join(latex_escape(str(c)) for c in frame.columns) + r" \\")
    lines.append(r"\hline")
    for row in cells(frame):
        lines.append(" & ".join(latex_escape(c) for c in row) + r" \\")
    lines.append(r"\hline")
    lines.append(r"\end{tabular}")
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def write_table(frame: pd.DataFrame, folder: Path, name: str, caption: str = "") -> list[Path]:
    """``folder/name.csv`` (full precision), ``.md`` and ``.tex`` (rounded)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.csv", folder / f"{name}.md", folder / f"{name}.tex"]
    frame.to_csv(paths[0], index=False)
    paths[1].write_text((f"{caption}\n\n" if caption else "") + markdown(frame))
    paths[2].write_text(latex(frame, caption))
    return paths
