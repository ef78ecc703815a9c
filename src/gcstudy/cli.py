"""The ``gcstudy`` command: what the workflow rules and the launchers call.

gcstudy prepare-data NAME --root DIR [--configfile F]   download a data set (or write an
                                         embedded one, or prepare a folder set)
gcstudy show-data NAME --root DIR --out FILE.png [--configfile F]   example images of each split
gcstudy train RUN.yaml --out DIR         one pre-training run (resumable)
gcstudy train --batch F --manifest M     a batch of runs in one process (rule train)
gcstudy train --example                  print a complete, commented run spec
gcstudy measure NETWORK... --dataset NAME --root DIR --out FILE.nc   trained networks
                                         (run folder, model.pt, MODEL=STATE.pt) ranked by GC
gcstudy aggregate --table T --runs D --out results/study.nc   all traces into one file
gcstudy stats STUDY.nc --out results/stats                    regressions, claims table
gcstudy figures STUDY.nc --out results/figures                one figure per experiment
gcstudy report STUDY.nc --stats S --figures F --out report.html   self-contained report
gcstudy launch --configfile F [--executor slurm|local] [--only SEL]   submitit job arrays
gcstudy status [--configfile F]          runs complete / running / pending, steps, ETA
gcstudy --version
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import signal
import sys
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from gcstudy.study.datasets import BUILT_IN
from gcstudy.study.settings import ListOf, StatsSettings, declared, default_of

# Spinning OpenMP threads slow torch down many times on a shared machine (a login node, a
# CPU job next to others); waiting passively costs nothing measurable. Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from gcstudy import __version__

log = logging.getLogger("gcstudy")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gcstudy", description=__doc__.splitlines()[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--version", action="version", version=f"gcstudy {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for command in COMMANDS:  # the table at the end of this module
        subparser = verbs.add_parser(command.name, help=command.help)
        command.arguments(subparser)
        subparser.set_defaults(handler=command.run)
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["gcstudy", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr
    )
    return run_command(args, parser)


def run_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run the chosen subcommand; returns its exit status, or 2 for an error of the input
    (logged as one line), 128 + the signal on Ctrl-C and on a reader that went away."""
    try:
        status = args.handler(args, parser)
        sys.stdout.flush()  # a reader that went away shows here, not at exit
        return status
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as error:
        log.error("%s", error)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C outside a training loop (which checkpoints and stops on its own): during
        # start-up, loading or an evaluation; nothing is half-written (files appear by rename)
        log.warning("interrupted (Ctrl-C); finished files are kept: run the same command again")
        return 128 + signal.SIGINT
    except BrokenPipeError:
        # the reader went away (`gcstudy runs ... | head`): not an error of gcstudy's; the
        # interpreter must not flush into the closed pipe again at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE  # as a program the pipe's signal ended


@dataclass(frozen=True)
class Command:
    """A subcommand of ``gcstudy``: its name, its one-line help, the function that adds its
    arguments to its parser, and the one that runs it (``run(args, parser)``, which returns
    the exit status; ``parser`` is the top-level one, for ``parser.error``)."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, argparse.ArgumentParser], int]


def add_stats_settings(parser) -> None:
    """The config's ``stats`` keys as options (``--summary-window`` for ``summary_window``),
    with the defaults, choices and help they are declared with
    (``gcstudy.study.settings.StatsSettings``)."""
    for key in declared(StatsSettings):
        default, kind = default_of(key), key.metadata["kind"]
        flag = "--" + key.name.replace("_", "-")
        if isinstance(kind, ListOf):
            options = {"nargs": "+", "choices": kind.item.choices, "type": str}
        else:
            options = {"type": int if kind.integer else float}
        help = f"{key.metadata['help']} (default: {_flag_value(default)})".replace("%", "%%")
        parser.add_argument(flag, default=default, help=help, **options)


def stats_options(keys: dict) -> str:
    """The config's ``stats`` section as the options of ``add_stats_settings`` (for the
    workflow's stats and figures rules)."""
    return " ".join(
        f"--{key.name.replace('_', '-')} {_flag_value(keys[key.name])}"
        for key in declared(StatsSettings)
    )


def _flag_value(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def stats_settings(args) -> StatsSettings:
    """The ``StatsSettings`` of the options of ``add_stats_settings``."""
    return StatsSettings(**{key.name: getattr(args, key.name) for key in declared(StatsSettings)})


def prepare_arguments(prepare: argparse.ArgumentParser) -> None:
    """The arguments of ``gcstudy prepare-data``."""
    prepare.add_argument(
        "name",
        help=f"data set name ({', '.join(BUILT_IN)}, or one declared in --configfile)",
    )
    prepare.add_argument("--root", required=True, help="data root folder")
    configfile_argument(prepare)
    prepare.add_argument(
        "--declaration",
        metavar="JSON",
        help="the set's `datasets` entry of a study config, as JSON (what the workflow's "
        "prepare_data rule passes; null: a built-in set)",
    )


def configfile_argument(parser: argparse.ArgumentParser) -> None:
    """``--configfile``: the study config(s) whose ``datasets`` declare the named set."""
    parser.add_argument(
        "--configfile",
        nargs="+",
        default=[],
        help="study config(s), as for snakemake: their `datasets` declare your own data sets",
    )


def declare_from(configfiles: list[str]) -> None:
    """Register the data sets that the config files declare (their `datasets`)."""
    if configfiles:
        from gcstudy.study import config as study_config

        study_config.load_all(configfiles)


def prepare_data(args, parser) -> int:
    from gcstudy.data import prepare

    declare_from(args.configfile)
    declared = json.loads(args.declaration) if args.declaration else None
    if declared is not None:
        from gcstudy.study.datasets import declare

        declare(args.name, declared, f"--declaration of datasets.{args.name}")
    folder = prepare(args.name, args.root)
    print(f"{args.name}: ready in {folder}")
    return 0


def show_arguments(show: argparse.ArgumentParser) -> None:
    """The arguments of ``gcstudy show-data``."""
    show.add_argument("name", help="data set name (e.g. glyphs)")
    show.add_argument("--root", help="data root folder (not needed for digits)")
    show.add_argument("--out", required=True, help="image file to write (PNG, PDF, SVG)")
    show.add_argument("--classes", type=int, default=16, help="classes shown per split")
    configfile_argument(show)


def show_data(args, parser) -> int:
    from gcstudy.data.examples import example_grid

    declare_from(args.configfile)
    print(example_grid(args.name, args.root, args.out, classes=args.classes))
    return 0


def train_arguments(train: argparse.ArgumentParser) -> None:
    """The arguments of ``gcstudy train``."""
    train.add_argument("spec", nargs="?", help="run spec YAML (see --example)")
    train.add_argument("--out", help="run folder (trace.h5, model.pt, ckpt/)")
    train.add_argument(
        "--batch",
        metavar="FILE",
        help="train the run folders of this batch file (results/batches/<batch>.json) one "
        "after another in this process, each with its evaluations (a failing run fails "
        "alone; exit status 1 if any failed)",
    )
    train.add_argument(
        "--manifest",
        metavar="FILE",
        help="with --batch: the file written when every run of the batch is finished "
        "(results/trained/<batch>.json)",
    )
    train.add_argument(
        "--progress-fd",
        type=int,
        metavar="FD",
        help="with --batch: also write the line that the log gets after each run (k of N, "
        "elapsed, ETA) to the open file descriptor FD (the workflow: 3, Snakemake's stderr)",
    )
    train.add_argument("--example", action="store_true", help="print an example run spec")


def train_run(args, parser) -> int:
    from gcstudy import yamlio
    from gcstudy.study.spec import RunSpec, example_yaml

    if args.example:
        sys.stdout.write(example_yaml())
        return 0
    if args.batch and (args.spec or args.out):
        parser.error("train takes either RUN.yaml --out DIR or --batch FILE --manifest FILE")
    if bool(args.batch) != bool(args.manifest):
        parser.error("train --batch FILE and --manifest FILE go together")
    if not args.batch and not (args.spec and args.out):
        parser.error("train needs RUN.yaml and --out DIR (or --batch FILE, or --example)")
    from gcstudy.scheduling.batches import train_batch
    from gcstudy.training.trainer import Interrupted, run

    try:
        if not args.batch:
            spec = RunSpec.from_dict(yamlio.load(args.spec) or {}, source=str(args.spec))
            print(run(spec, args.out, progress=not args.quiet))
            return 0
        # written through the inherited descriptor, not reopened: a file behind it keeps
        # one offset for Snakemake's lines and these
        fd = args.progress_fd
        with open(fd, "w", buffering=1, closefd=False) if fd else nullcontext() as to:
            announce = (lambda line: print(line, file=to)) if to else None
            outcomes = train_batch(args.batch, args.manifest, not args.quiet, announce)
    except Interrupted as stop:
        log.warning("%s", stop)
        return 128 + stop.signum
    for folder, status in outcomes.items():
        print(f"{folder}\t{status}")
    failed = [str(folder) for folder, status in outcomes.items() if status == "failed"]
    if failed:
        log.error("%d of %d runs failed: %s", len(failed), len(outcomes), ", ".join(failed))
    return 1 if failed else 0


def read_spec(path):
    """The run spec in the YAML file ``path`` (errors name the file)."""
    from gcstudy import yamlio
    from gcstudy.study.spec import RunSpec

    return RunSpec.from_dict(yamlio.load(path) or {}, source=str(path))


def evaluate_arguments(evaluate: argparse.ArgumentParser) -> None:
    """The arguments of ``gcstudy evaluate``."""
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--fewshot", action="store_true", help="write RUN_DIR/fewshot.nc")
    evaluate.add_argument(
        "--gc-estimators", action="store_true", help="write RUN_DIR/gc_estimators.nc"
    )
    evaluate.add_argument("--settings", help="JSON of the config's `evaluate` settings")
    evaluate.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))


def evaluate_run(args, parser) -> int:
    import json

    from gcstudy.measure.evaluations import EvaluationSettings, evaluate

    if not (args.fewshot or args.gc_estimators):
        parser.error("evaluate needs --fewshot and/or --gc-estimators")
    settings = EvaluationSettings.from_dict(json.loads(args.settings) if args.settings else None)
    for path in evaluate(args.run_dir, args.fewshot, args.gc_estimators, settings, args.device):
        print(path)
    return 0


# The run-spec keys that ``gcstudy measure`` takes as options (their help and checks are
# the run spec's), with the defaults and help that differ from a training run's.
MEASURE_SETTINGS = (
    "gc_method", "gc_probes", "gc_outputs", "gc_mask_rate", "gc_examples", "feature_examples",
    "test_examples", "target_examples", "sample_seed", "bn_recalibration_examples",
    "poincare_constant", "fewshot_ways", "fewshot_queries", "fewshot_episodes", "fewshot_seed",
    "fewshot_normalize", "seed",
)  # fmt: skip
MEASURE_OVERRIDES = {
    "gc_method": ("hutchinson", "GC estimator"),
    "target_examples": (
        0,
        "fixed stratified sample of the target-class images for target NC "
        "and few-shot accuracy (0 = all)",
    ),
    "fewshot_episodes": (600, "few-shot episodes per network (the RFS convention)"),
    "seed": (0, "seed of the GC probes, with each network's training step (as the trace's)"),
}


def measure_arguments(measure: argparse.ArgumentParser) -> None:
    """The arguments of ``gcstudy measure``."""
    measure.add_argument(
        "networks",
        nargs="+",
        metavar="NETWORK",
        help="a gcstudy run folder, a model.pt, or MODEL=STATE_DICT.pt (MODEL: a gcstudy "
        "network or torchvision:<arch>)",
    )
    measure.add_argument("--dataset", required=True, help="data set to measure on")
    measure.add_argument("--root", default="data", help="data root folder (default: data)")
    measure.add_argument("--out", required=True, help="netCDF file to write (FILE.nc)")
    measure.add_argument("--configfile", help="a study config declaring the data set")
    measure.add_argument(
        "--width", type=float, default=1.0, help="width of gcstudy networks given as "
        "MODEL=STATE_DICT.pt (default 1; run folders and model.pt record theirs)",
    )  # fmt: skip
    measure.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    from gcstudy.study.spec import RunSpec

    fields = {f.name: f for f in dataclasses.fields(RunSpec)}
    for key in MEASURE_SETTINGS:
        meta, flag = fields[key].metadata, "--" + key.replace("_", "-")
        default, help = MEASURE_OVERRIDES.get(key, (fields[key].default, meta["help"]))
        help = f"{help} (default: {default})".replace("%", "%%")
        if isinstance(default, bool):
            measure.add_argument(flag, action="store_true", help=help)
            continue
        kind = float if default is None or isinstance(default, float) else type(default)
        measure.add_argument(flag, type=kind, default=default, choices=meta["choices"], help=help)


def measure_run(args, parser) -> int:
    from gcstudy.measure import trained
    from gcstudy.measure.evaluations import write_netcdf
    from gcstudy.study import config
    from gcstudy.training.trainer import resolve_device

    if args.configfile:
        config.load(args.configfile)  # registers the data sets it declares
    settings = {key: getattr(args, key) for key in MEASURE_SETTINGS}
    dataset = trained.measure_networks(
        args.networks, args.dataset, args.root, settings, args.width,
        resolve_device(args.device), command=args.command_line,
    )  # fmt: skip
    print(trained.table(dataset))
    print(trained.footer(dataset))
    print(write_netcdf(dataset, Path(args.out)))
    return 0


def runs_arguments(runs: argparse.ArgumentParser) -> None:
    """The arguments of ``gcstudy runs``."""
    runs.add_argument("--configfile", required=True)
    runs.add_argument("--table", help="also write the run table (JSON) to this file")


def list_runs(args, parser) -> int:
    from gcstudy.study import config

    loaded = config.load(args.configfile)
    table = config.run_table(loaded, source=args.configfile)
    for run in table["runs"]:
        print(
            f"{run['run_id']}\tsweeps={','.join(run['sweeps'])}\t"
            f"evaluations={','.join(run['evaluations']) or '-'}"
        )
    trained = config.trained_runs(config.expand(loaded))
    print(
        f"{len(table['runs'])} runs in {len(table['studies'])} studies, trained in "
        f"{len(trained)} run folders (runs of one spec share a folder)",
        file=sys.stderr,
    )
    print(expected_time(loaded, trained), file=sys.stderr)
    if args.table:
        config.write_json(table, args.table)
    return 0


def expected_time(config: dict, runs: list) -> str:
    """The expected training time of ``runs`` (trained runs, one per run folder), in all
    and per study, each run at its study's ``minutes_per_1000_steps``
    (``gcstudy.scheduling.jobs``)."""
    from gcstudy.scheduling import jobs

    resources = config["resources"]
    if resources["gpu"]:
        unit, per_job = "GPU-hours", resources["gpu"]
    else:
        unit, per_job = "CPU-core-hours", resources["threads"]
    by_study: dict[str, list] = {}
    for run in runs:
        by_study.setdefault(run.study, []).append(run)
    hours = jobs.expected_hours(config, runs)
    lines = [
        f"expected training: {hours * per_job:.1f} {unit} for {len(runs)} runs "
        f"({hours:.1f} job-hours, each study's runs at its minutes_per_1000_steps; job time "
        f"limits are {jobs.MARGIN}x a job's expected time, at least {jobs.MIN_MINUTES} min)"
    ]
    for study, chosen in by_study.items():
        steps = sum(run.spec.steps for run in chosen)
        lines.append(
            f"  {study}: {jobs.expected_hours(config, chosen) * per_job:.1f} {unit} "
            f"({len(chosen)} runs, {steps:,} steps at {jobs.rate(config, study):g} min "
            "per 1,000 steps)"
        )
    return "\n".join(lines)


def status_arguments(status: argparse.ArgumentParser) -> None:
    """The arguments of ``gcstudy status``."""
    status.add_argument(
        "--configfile",
        nargs="+",
        default=["config/config.yaml"],
        help="as for snakemake (default: config/config.yaml)",
    )
    status.add_argument("--results", help="results folder (default: the config's `results`)")
    status.add_argument(
        "-d", "--directory", default=".", help="working directory, as snakemake's (default: .)"
    )


def study_status(args, parser) -> int:
    from gcstudy.scheduling import status
    from gcstudy.study import config as study_config

    config = study_config.load_all(args.configfile)
    results = Path(args.directory) / (args.results or config["results"])
    found = status.survey(study_config.expand(config), results)
    print(status.render(found))
    return status.exit_status(found)


def aggregate_arguments(aggregate: argparse.ArgumentParser) -> None:
    """The arguments of ``gcstudy aggregate``."""
    aggregate.add_argument("--table", required=True, help="run table (results/run_table.json)")
    aggregate.add_argument("--runs", required=True, help="folder of run folders (results/runs)")
    aggregate.add_argument("--out", required=True, help="study file to write (results/study.nc)")
    aggregate.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out runs with a missing, corrupt or unfinished file (listed in the report)",
    )
    aggregate.add_argument(
        "--allow-generated",
        action="store_true",
        help="read traces written by gcstudy.testing (tests only; the report flags them)",
    )


def aggregate_runs(args, parser) -> int:
    from gcstudy.analysis import aggregate

    dataset = aggregate.aggregate(
        args.table, args.runs, skip_bad=args.skip_bad, allow_generated=args.allow_generated
    )
    aggregate.write(dataset, args.out)
    skipped = json.loads(dataset.attrs["skipped"])
    for item in skipped:
        log.warning("skipped %s: %s", item["run_id"], item["reason"])
    print(
        f"{args.out}: {dataset.sizes['run']} runs x {dataset.sizes['step']} steps"
        + (f", {len(skipped)} skipped" if skipped else "")
    )
    return 0


def study_file_arguments(out: str) -> Callable[[argparse.ArgumentParser], None]:
    """The arguments of a command that reads the study file and writes into the folder
    ``out`` with the stats settings (``gcstudy stats``, ``gcstudy figures``)."""

    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("study", help="study file (results/study.nc)")
        parser.add_argument("--out", required=True, help=f"output folder ({out})")
        add_stats_settings(parser)

    return arguments


def stats_run(args, parser) -> int:
    from gcstudy.analysis.claims import tables

    return wrote(args.out, tables.run(args.study, args.out, stats_settings(args)))


def figures_run(args, parser) -> int:
    from gcstudy.analysis import figures

    return wrote(args.out, figures.run(args.study, args.out, stats_settings(args)))


def wrote(folder: str, written: list) -> int:
    """Say how many files went into ``folder``; the exit status 0."""
    print(f"{folder}: {len(written)} files")
    return 0


def report_arguments(report: argparse.ArgumentParser) -> None:
    """The arguments of ``gcstudy report``."""
    report.add_argument("study", help="study file (results/study.nc)")
    report.add_argument("--stats", required=True, help="statistics folder (results/stats)")
    report.add_argument("--figures", required=True, help="figures folder (results/figures)")
    report.add_argument("--out", required=True, help="report to write (results/report.html)")


def report_run(args, parser) -> int:
    from gcstudy.analysis import report

    print(report.run(args.study, args.stats, args.figures, args.out))
    return 0


def launch_arguments(launch: argparse.ArgumentParser) -> None:
    """The arguments of ``gcstudy launch``."""
    launch.add_argument(
        "--configfile", required=True, nargs="+", help="study config(s), as for snakemake"
    )
    launch.add_argument("--executor", default="slurm", choices=("slurm", "local"))
    launch.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SELECTOR",
        help="a study name or a glob on run ids: the batches that hold a matching run "
        "(repeatable; default: all)",
    )
    launch.add_argument("--results", help="results folder (default: the config's `results`)")
    launch.add_argument(
        "-d", "--directory", default=".", help="working directory, as snakemake's (default: .)"
    )
    launch.add_argument("--timeout-min", type=int, help="job time limit (default: as the rule)")
    launch.add_argument(
        "--set-resources",
        nargs="+",
        action="extend",
        default=[],
        metavar="RULE:KEY=VALUE",
        help="as for snakemake; the train rule's entries set sbatch options (qos, "
        "constraint, gpu_model, slurm_partition, slurm_account, slurm_extra, ...)",
    )
    launch.add_argument(
        "--max-timeouts", type=int, default=3, help="requeues allowed per task (default 3)"
    )
    launch.add_argument(
        "--wait", action="store_true", help="wait for the jobs (always with --executor local)"
    )
    launch.add_argument(
        "-n", "--dry-run", action="store_true", help="list the batches to train, submit nothing"
    )


def launch_runs(args, parser) -> int:
    from gcstudy.scheduling import launch

    if args.dry_run:
        plan = launch.plan(args.configfile, args.only, args.results, args.directory)
        minutes = args.timeout_min or launch.train_resources(args.set_resources).get("runtime")
        show_plan(plan, launch.by_time_limit(plan, minutes))
        return 0
    plan, jobs = launch.launch(
        args.configfile,
        executor=args.executor,
        only=args.only,
        results=args.results,
        workdir=args.directory,
        timeout_min=args.timeout_min,
        max_num_timeout=args.max_timeouts,
        set_resources=args.set_resources,
    )
    for batch, run, holder in plan.busy:
        log.warning("skipped %s: %s %s (%s)", batch, run.run_id, holder.state, holder.describe())
    if not jobs:
        print(f"nothing to train: the selected batches are finished, {len(plan.busy)} busy")
        return 0
    for batch, job in jobs.items():
        print(f"{job.job_id}\t{batch}")
    print(
        f"submitted {len(jobs)} batches to {args.executor}; "
        f"logs in {plan.workdir / launch.LOG_FOLDER}",
        file=sys.stderr,
    )
    if not (args.wait or args.executor == "local"):
        return 0
    outcomes = launch.wait(list(jobs.values()), args.executor)
    failed = [o for o in outcomes if o["state"] != "done"]
    for outcome in failed:
        log.error("job %s: %s: %s", outcome["job"], outcome["state"], outcome["error"])
    print(f"{len(outcomes) - len(failed)} batches finished, {len(failed)} failed")
    return 1 if failed else 0


def show_plan(plan, arrays: dict[int, list[str]]) -> None:
    """What ``launch -n`` prints: each batch to train with its runs (stdout), the job
    arrays, the busy batches and the expected training time (stderr)."""
    for limit, chosen in arrays.items():
        print(f"# one job array, time limit {limit} min: {len(chosen)} batches", file=sys.stderr)
        for batch in chosen:
            print(f"{batch}\t{' '.join(run.run_id for run in plan.pending[batch])}")
    for batch, run, holder in plan.busy:
        print(f"# skipped {batch}, {holder.state}: {run.run_id} ({holder.describe()})",
              file=sys.stderr)  # fmt: skip
    pending = [run for runs in plan.pending.values() for run in runs]
    busy = len({batch for batch, _, _ in plan.busy})
    print(f"{len(plan.pending)} batches to train ({len(pending)} runs), {busy} queued or "
          "running", file=sys.stderr)  # fmt: skip
    print(expected_time(plan.config, pending), file=sys.stderr)


# The subcommands, in the order ``gcstudy --help`` lists them.
COMMANDS = (
    Command(
        "prepare-data",
        "download a data set through torchvision (mnist_5k, glyphs: write it, offline)",
        prepare_arguments,
        prepare_data,
    ),
    Command("show-data", "a figure of example images of each split", show_arguments, show_data),
    Command(
        "train", "train one run (or a batch) and trace its metrics", train_arguments, train_run
    ),
    Command(
        "evaluate",
        "few-shot table / GC-estimator study of a trained run (from RUN_DIR/model.pt)",
        evaluate_arguments,
        evaluate_run,
    ),
    Command(
        "measure",
        "GC, collapse, NC, NCC bounds and few-shot transfer of trained networks on a data "
        "set, ranked by GC",
        measure_arguments,
        measure_run,
    ),
    Command("runs", "list the runs of a study config", runs_arguments, list_runs),
    Command(
        "status",
        "a study's progress: runs complete/running/pending/diverged/failed/broken/"
        "stale, ETA; exit status 0 when finished, 1 when a run needs action, 3 while running",
        status_arguments,
        study_status,
    ),
    Command(
        "aggregate",
        "read every trace and evaluation of a run table into one study file",
        aggregate_arguments,
        aggregate_runs,
    ),
    Command(
        "stats",
        "statistics and the claims table from a study file",
        study_file_arguments("results/stats"),
        stats_run,
    ),
    Command(
        "figures",
        "the paper's figures from a study file",
        study_file_arguments("results/figures"),
        figures_run,
    ),
    Command("report", "one self-contained HTML report", report_arguments, report_run),
    Command(
        "launch",
        "train the unfinished batches of a config as submitit job arrays (SLURM or local)",
        launch_arguments,
        launch_runs,
    ),
)


if __name__ == "__main__":
    sys.exit(main())
