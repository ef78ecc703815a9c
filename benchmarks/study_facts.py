"""The figures config/README.md states about a finished study, computed from its own files.

    python benchmarks/study_facts.py RESULTS [--time-log FILE] [--readme config/README.md]
                                             [--check]

Reads ``RESULTS/run_table.json``, every run folder's ``trace.h5`` and Snakemake's benchmark
files (``RESULTS/benchmarks/**.tsv``), and, when given, the ``/usr/bin/time -v`` log of the
``snakemake`` command that ran the study. Prints a Markdown block of:

- each study's budget: runs (trained), steps, training images, epochs seen;
- the terminal phase: runs of the E1/E1b, E3 and E5 studies whose train accuracy is
  >= 99.5 % at every evaluation in the last third of the budget, and the transfer (E4)
  source runs' final train accuracy (>= 99 % asked);
- the L2 doses ``2 x lr x L2 x steps`` of every study that sweeps L2 (the total decay of
  the weights by L2 alone is ``exp(-dose)``);
- the E3 bound: the first evaluated step from which the CDNV bound stays below 1, and its
  final value;
- time: the study's wall time and CPU seconds (the time log: ``snakemake`` and every job
  it waited for), the runs' own CPU seconds (sum of the traces' ``cpu_seconds``: each
  run's training loop, measurements included) and their share of the study's CPU, and
  each rule's jobs and CPU seconds (Snakemake's ``cpu_time``).

With ``--readme`` the block replaces the one between the ``study-facts`` markers of that
file; with ``--check`` it only compares, and exits with status 1 when the file's block is
not what the study's files give (a stale block).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from gcstudy.study import traces

TERMINAL_ACCURACY = 0.995  # at every evaluation of the last third (E1/E1b, E3, E5)
TERMINAL_EXPERIMENTS = ("E1", "E1b", "E3", "E5")
SOURCE_ACCURACY = 0.99  # transfer (E4) source runs, at the end
BEGIN = "<!-- study-facts:begin (benchmarks/study_facts.py writes this block; do not edit) -->"
END = "<!-- study-facts:end -->"


def load_runs(results: Path) -> tuple[dict, dict[str, traces.Trace]]:
    """The run table and the trace of every run folder it names."""
    table = json.loads((results / "run_table.json").read_text())
    loaded = {}
    for entry in table["runs"]:
        folder = entry["folder"]
        if folder not in loaded:
            loaded[folder] = traces.load(results / "runs" / folder / "trace.h5")
    return table, loaded


def terminal(trace: traces.Trace, steps: int) -> bool:
    """Train accuracy >= 99.5 % at every evaluation in the last third of ``steps``."""
    late = trace.steps >= steps * 2 / 3
    return bool(late.any() and (trace.values["train_accuracy"][late] >= TERMINAL_ACCURACY).all())


def bound_crossing(trace: traces.Trace) -> int | None:
    """The first evaluated step from which the CDNV bound stays below 1 (None: never)."""
    above = np.flatnonzero(trace.values["bound_cdnv"] >= 1)
    first = 0 if above.size == 0 else above[-1] + 1
    return int(trace.steps[first]) if first < len(trace.steps) else None


def rule_cpu(results: Path) -> dict[str, tuple[int, float, float]]:
    """Jobs, wall seconds and CPU seconds per rule (or rule family) from the benchmark
    files Snakemake writes (``benchmarks/<rule>/...tsv`` or ``benchmarks/<rule>.tsv``)."""
    totals: dict[str, list] = defaultdict(lambda: [0, 0.0, 0.0])
    for path in sorted((results / "benchmarks").rglob("*.tsv")):
        rule = path.relative_to(results / "benchmarks").parts[0].removesuffix(".tsv")
        with open(path) as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        totals[rule][0] += 1
        totals[rule][1] += float(row["s"])
        totals[rule][2] += float(row["cpu_time"])
    return {rule: tuple(values) for rule, values in sorted(totals.items())}


def read_time_log(path: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, the command and every child it waited
    for) from a ``/usr/bin/time -v`` log."""
    text = path.read_text()

    def field(name: str) -> str:
        match = re.search(rf"^\s*{re.escape(name)}: (.+)$", text, re.MULTILINE)
        if not match:
            raise SystemExit(f"{path}: no line '{name}:' (expected a /usr/bin/time -v log)")
        return match.group(1).strip()

    wall = 0.0
    for part in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":"):
        wall = 60 * wall + float(part)
    cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
    return wall, cpu


def span(values, digits: int = 3) -> str:
    """``a`` or ``a-b`` of the smallest and largest value, rounded."""
    low, high = (round(float(v), digits) for v in (min(values), max(values)))
    return f"{low:g}" if low == high else f"{low:g}-{high:g}"


def facts_block(results: Path, time_log: Path | None = None) -> str:
    """The Markdown block of the study's figures (see the module docstring)."""
    table, loaded = load_runs(results)
    by_study: dict[str, list[dict]] = defaultdict(list)
    for entry in table["runs"]:
        by_study[entry["study"]].append(entry)
    first = next(iter(loaded.values()))
    lines = [
        BEGIN,
        f"Figures of the study in `{results.name}/` (config hash {table['config_hash']}, git "
        f"commit {first.attrs.get('git_commit', '?')[:12]}, host {first.attrs.get('host', '?')}), "
        "computed from its run table, traces and Snakemake benchmark files by "
        "`benchmarks/study_facts.py`.",
        "",
        "| study | experiment | runs (trained) | steps | training images | epochs seen |",
        "|---|---|---|---|---|---|",
    ]
    for name, entries in by_study.items():
        trained = {e["folder"] for e in entries if e["folder"].split("/")[0] == name}
        steps = sorted({e["spec"]["steps"] for e in entries})
        images = sorted({loaded[e["folder"]].attrs["facts"]["train_examples"] for e in entries})
        epochs = [
            e["spec"]["steps"] * e["spec"]["batch_size"]
            / loaded[e["folder"]].attrs["facts"]["train_examples"]
            for e in entries
        ]  # fmt: skip
        lines.append(
            f"| `{name}` | {table['studies'][name]['experiment']} | {len(entries)} "
            f"({len(trained)}) | {', '.join(map(str, steps))} | "
            f"{', '.join(map(str, images))} | {span(epochs, 1)} |"
        )
    lines.append("")
    for name, entries in by_study.items():
        experiment = table["studies"][name]["experiment"]
        if experiment in TERMINAL_EXPERIMENTS:
            late = [terminal(loaded[e["folder"]], e["spec"]["steps"]) for e in entries]
            missed = [e["run_id"] for e, ok in zip(entries, late, strict=True) if not ok]
            lines.append(
                f"- `{name}` ({experiment}): {sum(late)} of {len(late)} runs in the terminal "
                "phase (train accuracy >= 99.5 % at every evaluation of the last third)"
                + (f"; not: {', '.join(missed)}" if missed else "")
            )
        if experiment == "E4":
            final = [loaded[e["folder"]].values["train_accuracy"][-1] for e in entries]
            lines.append(
                f"- `{name}` ({experiment}) source runs: final train accuracy "
                f"{span(100 * np.array(final), 1)} %, {sum(a >= SOURCE_ACCURACY for a in final)} "
                f"of {len(final)} >= 99 %"
            )
    for name, entries in by_study.items():
        if "l2" not in table["studies"][name]["sweeps"]:
            continue
        doses = {}
        for e in entries:
            if "l2" in e["sweeps"]:
                spec = e["spec"]
                doses[spec["l2"]] = 2 * spec["lr"] * spec["l2"] * spec["steps"]
        shown = ", ".join(f"{l2:g} -> {dose:.3g}" for l2, dose in sorted(doses.items()))
        lines.append(
            f"- `{name}` L2 doses 2 x lr x L2 x steps: {shown} (the largest decays the "
            f"weights by exp(-dose) = {math.exp(-max(doses.values())):.2f})"
        )
    for name, entries in by_study.items():
        if table["studies"][name]["experiment"] != "E3":
            continue
        crossings = [bound_crossing(loaded[e["folder"]]) for e in entries]
        final = [loaded[e["folder"]].values["bound_cdnv"][-1] for e in entries]
        steps = entries[0]["spec"]["steps"]
        shown = ", ".join("never" if c is None else str(c) for c in crossings)
        lines.append(
            f"- `{name}` (E3): the CDNV bound stays below 1 from step {shown} of {steps} "
            f"(per seed); final bound {span(final)}"
        )
    own = sum(trace.attrs["cpu_seconds"] for trace in loaded.values())
    lines.append(
        f"- Runs' own compute (sum of the traces' `cpu_seconds`, {len(loaded)} trained runs): "
        f"{own:.0f} CPU s"
    )
    if time_log is not None:
        wall, cpu = read_time_log(time_log)
        lines.append(
            f"- The whole study (`/usr/bin/time -v` of snakemake): {wall / 60:.1f} min wall, "
            f"{cpu:.0f} CPU s; the runs' share of the CPU seconds: {own / cpu:.1%}"
        )
    for rule, (jobs, seconds, cpu) in rule_cpu(results).items():
        lines.append(f"  - rule `{rule}`: {jobs} jobs, {seconds:.0f} s wall, {cpu:.0f} CPU s")
    lines.append(END)
    return "\n".join(lines)


def replace_block(text: str, block: str, where: str) -> str:
    """``text`` with its study-facts block replaced by ``block``."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{where}: no study-facts block ({BEGIN} ... {END})")
    return text[:start] + block + text[end + len(END) :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="the study's results folder")
    parser.add_argument("--time-log", type=Path, help="/usr/bin/time -v log of snakemake")
    parser.add_argument("--readme", type=Path, help="write the block into this file")
    parser.add_argument("--check", action="store_true", help="only compare with --readme")
    args = parser.parse_args(argv)
    block = facts_block(args.results, args.time_log)
    if args.readme is None:
        print(block)
        return 0
    text = args.readme.read_text()
    updated = replace_block(text, block, str(args.readme))
    if args.check:
        if updated != text:
            print(f"{args.readme}: the study-facts block is stale; the study's files give:")
            print(block)
            return 1
        print(f"{args.readme}: the study-facts block matches the study's files")
        return 0
    args.readme.write_text(updated)
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
