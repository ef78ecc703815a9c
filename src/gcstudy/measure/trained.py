"""Measuring trained networks on one data set (``gcstudy measure``), ranked by GC.

Each network (``gcstudy.measure.loading``: a run folder, a model.pt or a network name with a
state dict) is measured exactly as a training run's trace measures it at an evaluation
step (``gcstudy.measure.traced.measure``, without the head's loss and accuracy):

* the input normalisation is the one the network's model.pt records, else the per-channel
  mean and standard deviation of the data set's source training pixels (what a gcstudy run
  on this data set would train with);
* BatchNorm running statistics are recomputed on a fixed stratified training sample of the
  data set (``bn_recalibration_examples``, 0 keeps the network's own) and the network is
  measured in eval mode;
* on the SOURCE classes: GC with its standard error and geometric collapse on the fixed
  training GC sample and on the test GC sample, NC (mean CDNV) on the training feature
  sample and the test sample, NC1, the NCC training and test errors, and the two NCC
  error bounds ``4 (C - 1) NC`` and ``4 (C - 1) c geometric collapse`` (``c``: the Gaussian
  proxy of the Poincare constant on the normalised inputs, or ``poincare_constant``);
* on the TARGET classes of a transfer data set: target NC and the ``fewshot_ways``-way 1-
  and 5-shot NCC accuracy over ``fewshot_episodes`` episodes with ``fewshot_queries``
  queries, with the half-width of the Student-t 95 % interval (the trace's own interval is
  the normal one). A data set without target classes: the target metrics are skipped and
  the file and the table say so.

The settings are run-spec keys (``gcstudy.study.spec``: sample sizes, sample seed, GC
estimator, few-shot protocol), the same for every network, so the networks are measured on
the same examples and episodes. The GC probes are seeded from ``seed`` and the network's
training step as the trace seeds them (``probe_seed``), so measuring a gcstudy run with
its own settings reproduces its trace's last row.

The result is one ``xarray.Dataset`` along ``network``, sorted by GC (lowest first), with
provenance (``gcstudy.provenance``; each network's weights file and its SHA-256).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math

import numpy as np
import torch
import xarray as xr

from gcstudy import provenance
from gcstudy.data.run_data import RunData, load_run_data
from gcstudy.measure.loading import TrainedNetwork, load_network, weights_file
from gcstudy.measure.traced import measure, poincare_constant
from gcstudy.study.spec import FEWSHOT_SHOTS, RunSpec
from gcstudy.study.traces import VARIABLES

log = logging.getLogger(__name__)

RANKED_BY = "gc"
INTERVAL = (
    "half-width of the Student-t 95 % interval of the mean accuracy over episodes, "
    "t_{0.975, n-1} sd / sqrt(n)"
)


def measure_networks(
    arguments: list[str],
    dataset: str,
    root: str,
    settings: dict,
    width: float = 1.0,
    device: torch.device | None = None,
    command: str = "",
) -> xr.Dataset:
    """Measure the networks of ``arguments`` on the data set ``dataset`` (data root
    ``root``) with the measurement ``settings`` (run-spec keys); ``width``: of the gcstudy
    networks given as state dicts; ``command``: the command line, for the record. Every
    argument and setting is checked before anything is measured. ``device``: default CPU."""
    device = device or torch.device("cpu")
    spec = RunSpec.from_dict(
        {"dataset": dataset, "data_root": root, **settings}, source="gcstudy measure settings"
    )
    if not arguments:
        raise ValueError("no network to measure")
    repeated = sorted({a for a in arguments if arguments.count(a) > 1})
    if repeated:
        raise ValueError(f"network named more than once: {', '.join(repeated)}")
    for argument in arguments:
        weights_file(argument)
    data = load_run_data(spec, device)
    check_episodes(data, spec)
    channels = data.train_images.shape[1]
    networks = [load_network(a, channels, data.num_classes, width) for a in arguments]
    rows = [measure_network(network, data, spec, device) for network in networks]
    measured = as_dataset(networks, rows, data)
    recorded = {"dataset": dataset, "data_root": root, **settings, "width": width}
    measured.attrs.update(record(recorded, str(device), command, data))
    return ranked(measured)


def check_episodes(data: RunData, spec: RunSpec) -> None:
    """Enough target classes and images for the few-shot episodes (``fewshot_ways``
    classes of ``max(FEWSHOT_SHOTS) + fewshot_queries`` images each), before measuring."""
    if data.target_images is None:
        return
    classes, counts = torch.unique(data.target_labels[data.target_sample], return_counts=True)
    needed = max(FEWSHOT_SHOTS) + spec.fewshot_queries
    if len(classes) < spec.fewshot_ways or int(counts.min()) < needed:
        raise ValueError(
            f"data set {spec.dataset!r}: {spec.fewshot_ways}-way episodes with "
            f"{max(FEWSHOT_SHOTS)} shots and {spec.fewshot_queries} queries need "
            f"{spec.fewshot_ways} target classes of {needed} images; it has {len(classes)} "
            f"target classes, the smallest with {int(counts.min())} images in the target "
            "sample (lower --fewshot-ways or --fewshot-queries; --target-examples 0 takes them all)"
        )


def measure_network(network: TrainedNetwork, data: RunData, spec: RunSpec, device) -> dict:
    """The measurements of one network (``gcstudy.measure.traced.measure`` without the
    head, Student-t intervals), with the Poincare constant its GC-form bound used and the
    normalisation it was fed."""
    data = normalised_as(data, network)
    poincare = poincare_constant(data, spec)
    model = network.model.to(device)
    values = measure(model, data, spec, network.step, poincare, with_head=False, t_interval=True)
    model.cpu()  # one network on the device at a time
    return {
        **values,
        "poincare_constant": poincare,
        "normalisation_mean": data.mean.tolist(),
        "normalisation_std": data.std.tolist(),
    }


def normalised_as(data: RunData, network: TrainedNetwork) -> RunData:
    """``data`` with the network's recorded normalisation, if it records one (for as many
    channels as the data set has: ``load_network`` checks a model.pt's input channels)."""
    if network.normalisation is None:
        return data
    mean, std = (torch.tensor(v, dtype=torch.float32) for v in network.normalisation)
    return dataclasses.replace(data, mean=mean.to(data.mean.device), std=std.to(data.std.device))


def as_dataset(networks: list[TrainedNetwork], rows: list[dict], data: RunData) -> xr.Dataset:
    """The measurements along ``network`` (in the given order), ``gc_per_class`` also along
    ``class`` (the source class ids), the normalisation along ``channel``; each network's
    provenance as coordinates."""
    per_network = [name for name in rows[0] if not isinstance(rows[0][name], list)]
    variables = {
        name: ("network", [r[name] for r in rows], attributes(name)) for name in per_network
    }
    variables["gc_per_class"] = (
        ("network", "class"), [r["gc_per_class"] for r in rows], attributes("gc_per_class"),
    )  # fmt: skip
    for name in ("normalisation_mean", "normalisation_std"):
        variables[name] = (("network", "channel"), [r[name] for r in rows], attributes(name))
    return xr.Dataset(
        variables,
        coords={
            "network": [n.label for n in networks],
            "class": data.classes.numpy(),
            "source": ("network", [str(n.source) for n in networks]),
            "sha256": ("network", [n.sha256 for n in networks]),
            "model": ("network", [n.model_name for n in networks]),
            "width": ("network", [n.width for n in networks]),
            "step": ("network", [n.step for n in networks]),
            "normalised_as": (
                "network",
                ["trained" if n.normalisation else "data set" for n in networks],
            ),
        },
    )


def attributes(name: str) -> dict:
    """``units`` and ``long_name`` of a measured variable (those of the trace where it is
    a traced one)."""
    own = {
        "poincare_constant": ("1", "Poincare constant c of the GC-form bound"),
        "normalisation_mean": ("1", "per-channel mean of the input normalisation (0..1 scale)"),
        "normalisation_std": ("1", "per-channel standard deviation of the input normalisation"),
    }
    if name in own:
        units, long_name = own[name]
        return {"units": units, "long_name": long_name}
    variable = VARIABLES[name]
    long_name = INTERVAL if name.endswith("_ci95") else variable.long_name
    return {"units": variable.units, "long_name": long_name}


def record(settings: dict, device: str, command: str, data: RunData) -> dict:
    """The file's provenance and settings attributes (JSON strings for structures)."""
    if data.target_images is None:
        target = f"skipped: data set {settings['dataset']!r} has no target classes"
        log.warning("target metrics %s", target)
    else:
        classes = torch.unique(data.target_labels).tolist()
        target = f"measured on the {len(classes)} target classes {classes}"
    return {
        "command": command,
        "settings": json.dumps(settings),
        "device": device,
        "dataset": settings["dataset"],
        "seed": settings["seed"],
        "ranked_by": f"{RANKED_BY} (lowest first)",
        "target_metrics": target,
        "versions": json.dumps(provenance.versions()),
        "git_commit": provenance.git_commit(),
        "host": provenance.host(),
        "created_at": provenance.now(),
    }


def ranked(dataset: xr.Dataset) -> xr.Dataset:
    """The networks sorted by GC, lowest first (a NaN last, ties in the given order),
    with their ``rank`` (1 = lowest GC)."""
    order = np.argsort(dataset[RANKED_BY].values, kind="stable")
    dataset = dataset.isel(network=order)
    return dataset.assign_coords(rank=("network", np.arange(1, len(order) + 1)))


def table(dataset: xr.Dataset) -> str:
    """The measurements as a text table, one row per network in the file's order."""
    columns = {
        "rank": lambda r: str(int(r["rank"])),
        "network": lambda r: str(r["network"].item()),
        "GC": lambda r: f"{number(r['gc'])} +- {number(r['gc_stderr'])}",
        "geom. collapse": lambda r: number(r["geometric_collapse"]),
        "NC": lambda r: number(r["nc_train"]),
        "NC test": lambda r: number(r["nc_test"]),
        "NC1": lambda r: number(r["nc1_train"]),
        "NCC err train/test": lambda r: (
            f"{percent(r['ncc_train_error'])} / {percent(r['ncc_test_error'])}"
        ),
        "bound CDNV / GC": lambda r: f"{number(r['bound_cdnv'])} / {number(r['bound_gc'])}",
    }
    if "target_nc" in dataset:
        columns["target NC"] = lambda r: number(r["target_nc"])
        for shots in (1, 5):
            name = f"fewshot_{shots}shot"
            columns[f"{shots}-shot acc."] = lambda r, n=name: (
                f"{percent(r[n + '_accuracy'])} +- {percent(r[n + '_ci95'])}"
            )
    cells = [list(columns)] + [
        [cell(dataset.isel(network=i)) for cell in columns.values()]
        for i in range(dataset.sizes["network"])
    ]
    widths = [max(len(row[k]) for row in cells) for k in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def number(value) -> str:
    return f"{float(value):.4g}"


def percent(value) -> str:
    value = float(value)
    return "nan" if math.isnan(value) else f"{100 * value:.1f}%"


def footer(dataset: xr.Dataset) -> str:
    """What the table's numbers are measured on, and how they are ranked."""
    settings = json.loads(dataset.attrs["settings"])
    lines = [
        f"data set {dataset.attrs['dataset']}: {dataset.sizes['class']} source classes; "
        f"ranked by {dataset.attrs['ranked_by']} on the training GC sample",
        f"target metrics {dataset.attrs['target_metrics']}",
    ]
    if "target_nc" in dataset:
        lines.append(
            f"few-shot: {settings['fewshot_ways']}-way, {settings['fewshot_queries']} queries, "
            f"{settings['fewshot_episodes']} episodes (seed {settings['fewshot_seed']}), "
            "NCC, +- Student-t 95 % interval"
        )
    return "\n".join(lines)
