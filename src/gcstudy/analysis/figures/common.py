"""What every figure shares: the ``Drawn`` record, the step axis, readable log ticks, one
colour per swept value and how a swept value is written."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

STEP_LABEL = "training step (SGD updates)"


@dataclass
class Drawn:
    """A figure with its file stem and caption."""

    name: str
    figure: Figure
    caption: str


def spans_decades(values: np.ndarray, decades: float = 1.0) -> bool:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    return len(values) > 1 and np.log10(values.max() / values.min()) >= decades


def tidy_log_axis(axis, values=None) -> None:
    """Readable log-axis ticks: plain numbers at 1-2-5 (or decades when the range is wide),
    no minor labels (matplotlib's defaults overlap on ranges under a decade)."""
    values = np.asarray([] if values is None else values, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    wide = len(values) > 1 and np.log10(values.max() / values.min()) > 2.5
    axis.set_major_locator(LogLocator(base=10, subs=(1.0,) if wide else (1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(_tick_text))
    axis.set_minor_formatter(NullFormatter())


def _tick_text(value, _position=None) -> str:
    if value <= 0:
        return ""
    exponent = np.floor(np.log10(value))
    if -3 <= exponent <= 4:
        return f"{value:g}"
    mantissa = value / 10**exponent
    head = "" if np.isclose(mantissa, 1) else f"{mantissa:g}\\times"
    return f"${head}10^{{{int(exponent)}}}$"


def value_colors(values: list[float]) -> dict[float, tuple]:
    """One colour per swept value on a sequential colormap, ordered by value."""
    cmap = colormaps["viridis"]
    ordered = sorted(values)
    if len(ordered) == 1:
        return {ordered[0]: cmap(0.5)}
    return {v: cmap(0.05 + 0.8 * i / (len(ordered) - 1)) for i, v in enumerate(ordered)}


def format_value(factor: str, value: float) -> str:
    if factor == "batch_size":
        return str(int(value))
    return "0" if value == 0 else f"{value:g}"


def step_axis(ax, steps: np.ndarray) -> None:
    ax.set_xlabel(STEP_LABEL)
    positive = steps[steps > 0]
    if len(positive) and positive.max() / positive.min() >= 100:
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(left=0)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
