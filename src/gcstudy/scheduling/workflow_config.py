"""The study config as Snakemake reads it: errors that name the file, before any job.

Snakemake reads every ``--configfile`` itself, before the Snakefile runs, and on a YAML
syntax error, an empty file or a tab indent says only "Config file is not valid JSON or
YAML" (no file, no line). The one gcstudy code that runs earlier is the workflow profile,
``profiles/default/config.yaml``, which Snakemake reads (with yte, executing its
``__definitions__``) while it parses its options: it calls ``check_command_line``, which
reads each config file named on the command line with ``gcstudy.study.config.read``. The
Snakefile then checks the merged config (``runs``), naming the files it came from. Either
way an error ends Snakemake with one message and exit status 1, no traceback
(``SystemExit`` passes through Snakemake's error printing), before any job.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gcstudy.study import config as study_config
from gcstudy.study.datasets import get_spec
from gcstudy.study.networks import torchvision_arch


def check_command_line(argv: list[str] | None = None) -> None:
    """Read every file of Snakemake's ``--configfile`` / ``--configfiles`` in ``argv``
    (default: this process's command line); exit with the first file's error."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--configfile", "--configfiles", nargs="+", action="extend", default=[])
    check_files(parser.parse_known_args(sys.argv[1:] if argv is None else argv)[0].configfile)


def check_files(paths: list[str | Path]) -> None:
    """Read each config file (the command line's; the Snakefile's default config, before
    its ``configfile:``); exit with the first file's error."""
    for path in paths:
        try:
            study_config.read(path)
        except study_config.ConfigError as error:
            exit_with(error)


def runs(config: dict, configfiles: list, overrides=None) -> list:
    """``gcstudy.study.config.validate`` of the config Snakemake built from ``configfiles`` (and
    the ``--config`` ``overrides``, a mapping); exit with a message naming them on an
    error."""
    source = ", ".join(map(str, configfiles)) + (" with --config" if overrides else "")
    try:
        found = study_config.validate(config, source=source)
    except study_config.ConfigError as error:
        exit_with(error)
    check_torchvision_networks(found, source)
    return found


def declaration(config: dict, dataset: str) -> str:
    """The config's declaration of data set ``dataset`` (its ``datasets`` entry) as JSON,
    ``null`` for a built-in set: rule prepare_data's parameter, so that a changed
    declaration prepares the set again (and retrains what reads it) while no other key of
    the config, and not the config file's name, does."""
    return json.dumps(config.get("datasets", {}).get(dataset), sort_keys=True)


def check_torchvision_networks(runs: list, source: str) -> None:
    """Build every torchvision network the runs name, for its data set's classes and
    channels, on the meta device where it can be (``gcstudy.models.build_shapes``), and
    pass it one image of the data set's size: an architecture torchvision does not have,
    whose head cannot be found, or that does not take images of that size (a ViT built for
    224 x 224 given 32 x 32) ends the workflow before any job. Imports torch only when a run
    names one (the name's form is checked torch-free)."""
    named = sorted(
        {(r.study, r.spec.model, r.spec.dataset) for r in runs if torchvision_arch(r.spec.model)}
    )
    if not named:
        return
    import torch  # imported only here: most configs name no torchvision network

    from gcstudy.models import build_shapes

    for study, model, dataset in named:
        data = get_spec(dataset)
        try:
            network = build_shapes(model, len(data.split_classes("train")), data.channels).eval()
            device = next(network.parameters()).device
            image = torch.zeros(1, data.channels, data.image_size, data.image_size, device=device)
            with torch.no_grad():
                network(image)
        except ValueError as error:
            exit_with(f"{source}: studies.{study}.model = {model!r}: {error}")
        except (RuntimeError, AssertionError) as error:  # torchvision's own size checks
            exit_with(
                f"{source}: studies.{study}.model = {model!r} does not take the "
                f"{data.image_size} x {data.image_size} images of {dataset!r} "
                f"({' '.join(str(error).split())})"
            )


def exit_with(error: Exception) -> None:
    """End the process with one line: what is wrong, where."""
    print(f"gcstudy: config error: {error}", file=sys.stderr)
    raise SystemExit(1)
