"""YAML reading that treats ``1e-5`` as a number.

PyYAML follows YAML 1.1, where a float needs a dot (``1.0e-5``), so ``lr: 1e-4`` would
silently become the *string* "1e-4". Study configs are full of such values: this loader
resolves them as floats, as YAML 1.2 does.
"""

import re
from pathlib import Path
from typing import Any

import yaml


class Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 floats (``1e-5``, ``5E3``)."""


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load(path: str | Path) -> Any:
    """Parse a YAML file; a syntax error is a ValueError that names the file, the line
    and the column (``run.yaml, line 3, column 1: not valid YAML: ...``)."""
    path = Path(path)
    try:
        return yaml.load(path.read_text(), Loader=Loader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context = f" ({error.context})" if error.context else ""
        raise ValueError(f"{path}{where}: not valid YAML: {error.problem}{context}") from error
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {error}") from error


def loads(text: str) -> Any:
    """Parse YAML text."""
    return yaml.load(text, Loader=Loader)
