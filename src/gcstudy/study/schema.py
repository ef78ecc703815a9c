"""The study config's JSON schema and its documentation, made from the declarations.

``config_schema()`` is the JSON schema of a study config, built from the ``setting()``
declarations of ``gcstudy.study.settings`` (and, for run-spec values, ``spec.option()``).
The package ships it as ``schemas/config.schema.yaml`` because Snakemake's
``snakemake.utils.validate`` reads a schema file (and fills in its defaults); a test checks
that the shipped file is this function's output. ``readme_with_tables()`` renders the same
declarations, and the run spec's ``option()`` declarations, as the key tables of
config/README.md (also checked by a test).

Regenerate both after changing a declaration::

    python -m gcstudy.study.schema --schema src/gcstudy/schemas/config.schema.yaml \\
        --readme config/README.md
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import yaml

from gcstudy.study.settings import (
    Choice,
    Config,
    DatasetDeclaration,
    Elsewhere,
    EvaluationSettings,
    Resources,
    RunSpecKey,
    Section,
    StatsSettings,
    Study,
    declared,
    default_of,
)
from gcstudy.study.spec import RunSpec

DESCRIPTION = (
    "gcstudy study config. Validated with snakemake.utils.validate (which fills in the "
    "defaults below) and by gcstudy.study.config (which checks every expanded run and names the "
    "key path of anything wrong). Keys of `defaults` and of a study's `base` are run-spec "
    "keys: see `gcstudy train --example` and config/README.md."
)
HEADER = (
    "# Generated from gcstudy.study.settings by `python -m gcstudy.study.schema`: edit the\n"
    "# declarations there, not this file (a test checks that they agree).\n"
)
# config/README.md's generated tables: marker name -> the declaration it documents
TABLES = {
    "config": Config,
    "study": Study,
    "resources": Resources,
    "evaluate": EvaluationSettings,
    "stats": StatsSettings,
    "datasets": DatasetDeclaration,
    "spec": RunSpec,  # the keys of `defaults` and of a study's `base` (spec.option())
}


def config_schema() -> dict:
    """The JSON schema (draft 2020-12) of a study config."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": DESCRIPTION,
        **Section(Config).schema(),
    }


def schema_text() -> str:
    """``config_schema()`` as the YAML file the package ships."""
    return HEADER + yaml.safe_dump(config_schema(), sort_keys=False, width=100)


def readme_table(declaration) -> str:
    """A Markdown table of a section's keys: key, default, meaning."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for key in declared(declaration):
        kind = key.metadata.get("kind")
        meaning = key.metadata["help"]
        choices = kind.choices if isinstance(kind, Choice) else key.metadata.get("choices")
        if choices:
            meaning += ": " + ", ".join(f"`{c}`" for c in choices)
        if isinstance(kind, RunSpecKey) and kind.describe():
            meaning += ": " + kind.describe()
        meaning = meaning.replace("|", "\\|")  # a pipe inside a Markdown table cell
        rows.append(f"| `{key.name}` | {_default_cell(key)} | {meaning} |")
    return "\n".join(rows) + "\n"


def _default_cell(key) -> str:
    default = default_of(key)
    if isinstance(default, Elsewhere):
        return default
    if isinstance(key.metadata.get("kind"), Section):
        return "see below"
    if default == "":
        return '`""`'
    flow = yaml.safe_dump(default, default_flow_style=True, sort_keys=False, width=1000).strip()
    return f"`{flow.removesuffix('...').strip()}`"


def _marker(name: str) -> tuple[str, str]:
    return f"<!-- settings:{name} (generated: python -m gcstudy.study.schema) -->\n", (
        f"<!-- settings:{name}:end -->"
    )


def readme_with_tables(text: str) -> str:
    """``text`` (config/README.md) with each generated table replaced by the current one;
    a ``ValueError`` if a table's markers are missing."""
    for name, declaration in TABLES.items():
        begin, end = _marker(name)
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
        if not pattern.search(text):
            raise ValueError(f"config/README.md has no generated table {name!r} ({begin.strip()})")
        table = begin + readme_table(declaration) + end
        text = pattern.sub(lambda _, table=table: table, text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", help="write the JSON schema (YAML) to this file")
    parser.add_argument("--readme", help="rewrite the generated tables of this README")
    args = parser.parse_args(argv)
    if args.schema:
        Path(args.schema).write_text(schema_text())
    if args.readme:
        path = Path(args.readme)
        path.write_text(readme_with_tables(path.read_text()))


if __name__ == "__main__":
    main()
