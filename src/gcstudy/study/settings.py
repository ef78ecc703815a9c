"""The study config's keys, each declared once: default, type, range and help.

``setting()`` declares one key of a config section, as ``spec.option()`` declares one
run-spec key: its default, its kind (``Integer``, ``Number``, ``Choice``, ``Text``,
``Flag``, ``ListOf``, ``Record``, ``Sweeps``, run-spec keys, a ``Section`` of further
keys) and what it means. From these declarations come the JSON schema the workflow
validates with (``gcstudy.study.schema``), the checks of ``gcstudy.study.config`` with their
messages, the dataclasses the stages read (``Resources``, ``EvaluationSettings``,
``StatsSettings``), the ``gcstudy`` flags' defaults and the tables of config/README.md.
So a default cannot differ between the workflow and the command line.

A kind knows three things about a value: ``problem(value)`` (what is wrong with it, or
``None``), ``schema()`` (the same rule as JSON schema) and ``describe()`` (the rule in
words, for messages and documentation).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import operator
from dataclasses import dataclass, field
from typing import Any

from gcstudy.study.clocks import CLOCKS
from gcstudy.study.datasets import (
    BUILT_IN,
    CHANNELS,
    CLASS_PARTS,
    IMAGE_SIZE,
    NAME,
    SPLIT_SEED,
    TEST_FRACTION,
)
from gcstudy.study.factors import EVALUATIONS, EXPERIMENTS, FACTORS
from gcstudy.study.networks import MODEL_HELP
from gcstudy.study.spec import RunSpec, did_you_mean


class Elsewhere(str):
    """A default that is no value: where the value comes from instead (the text the key
    tables of config/README.md show)."""


REQUIRED = Elsewhere("(required)")  # a key without a default (the config must give it)
INHERITED = Elsewhere("from `defaults`")  # a run-spec key: the config's `defaults` give it
FROM_RESOURCES = Elsewhere("from `resources`")  # the `resources` key of the same name gives it


class SettingError(ValueError):
    """A config value its declaration refuses; the message names the key path and rule."""


class Kind:
    """What values a key takes. ``problem`` says what is wrong with a value (``None``:
    nothing); ``check`` raises it as a ``SettingError`` naming the key path."""

    def problem(self, value: Any) -> str | None:
        raise NotImplementedError

    def schema(self) -> dict:
        raise NotImplementedError

    def check(self, value: Any, where: str) -> None:
        wrong = self.problem(value)
        if wrong:
            raise SettingError(f"{where} = {value!r}: {wrong}")


@dataclass(frozen=True)
class Number(Kind):
    """A finite number (an integer with ``integer``) in an optional range."""

    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    integer: bool = False

    def limits(self) -> list[tuple[str, float]]:
        """The range as (relation, bound) pairs, e.g. ``[(">", 0), ("<=", 1)]``."""
        limits = []
        if self.minimum is not None:
            limits.append((">" if self.exclusive_minimum else ">=", self.minimum))
        if self.maximum is not None:
            limits.append(("<" if self.exclusive_maximum else "<=", self.maximum))
        return limits

    def problem(self, value: Any) -> str | None:
        wanted = int if self.integer else int | float
        if isinstance(value, bool) or not isinstance(value, wanted):
            return f"expected {self.describe()}"
        if not math.isfinite(value):
            return "expected a finite number"
        for relation, bound in self.limits():
            if not _RELATIONS[relation][0](value, bound):
                return f"must be {relation} {bound:g}"
        return None

    def schema(self) -> dict:
        schema: dict[str, Any] = {"type": "integer" if self.integer else "number"}
        return schema | {_RELATIONS[relation][1]: bound for relation, bound in self.limits()}

    def describe(self, plural: bool = False) -> str:
        noun = "integer" if self.integer else "number"
        if self.limits() == [(">=", 0)]:
            return f"non-negative {noun}s" if plural else f"a non-negative {noun}"
        named = f"{noun}s" if plural else f"{'an' if self.integer else 'a'} {noun}"
        return " ".join([named, " and ".join(f"{r} {b:g}" for r, b in self.limits())]).strip()


# relation of a range -> (test, JSON-schema keyword)
_RELATIONS = {
    ">": (operator.gt, "exclusiveMinimum"),
    ">=": (operator.ge, "minimum"),
    "<": (operator.lt, "exclusiveMaximum"),
    "<=": (operator.le, "maximum"),
}


def Integer(minimum: int | None = None, maximum: int | None = None) -> Number:
    """A whole number in an optional closed range."""
    return Number(minimum, maximum, integer=True)


@dataclass(frozen=True)
class Choice(Kind):
    """One of a fixed list of names."""

    choices: tuple

    def problem(self, value: Any) -> str | None:
        return None if value in self.choices else f"expected {self.describe()}"

    def schema(self) -> dict:
        return {"enum": list(self.choices)}

    def describe(self, plural: bool = False) -> str:
        return ("" if plural else "one of ") + ", ".join(map(str, self.choices))


@dataclass(frozen=True)
class Text(Kind):
    """A string."""

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, str) else "expected a string"

    def schema(self) -> dict:
        return {"type": "string"}

    def describe(self, plural: bool = False) -> str:
        return "strings" if plural else "a string"


@dataclass(frozen=True)
class Flag(Kind):
    """true or false."""

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, bool) else "expected true or false"

    def schema(self) -> dict:
        return {"type": "boolean"}

    def describe(self, plural: bool = False) -> str:
        return "true or false"


@dataclass(frozen=True)
class RunSpecKeys(Kind):
    """A mapping of run-spec keys (``RunSpec.from_dict`` checks them, with the whole
    spec in view)."""

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, dict) else "expected a mapping"

    def schema(self) -> dict:
        return {"type": "object"}

    def describe(self, plural: bool = False) -> str:
        return "run-spec keys"


@dataclass(frozen=True)
class RunSpecKey(Kind):
    """One run-spec key set outside ``base`` (a study's ``model``, ``width``,
    ``dataset``): ``spec.option()`` declares its values, ``RunSpec`` checks them."""

    name: str

    def problem(self, value: Any) -> str | None:
        return None

    def schema(self) -> dict:
        return spec_key_schema(self.name)

    def describe(self, plural: bool = False) -> str:
        choices = _spec_field(self.name).metadata["choices"]
        return ", ".join(f"`{c}`" for c in choices) if choices else ""


@dataclass(frozen=True)
class ListOf(Kind):
    """A list of values of one kind, at least ``min_items`` long; with ``repeats`` set
    (the word for the items: "seeds"), no value twice."""

    item: Kind
    min_items: int = 0
    repeats: str = ""

    def problem(self, value: Any) -> str | None:
        if (
            not isinstance(value, list | tuple)
            or len(value) < self.min_items
            or any(self.item.problem(v) for v in value)
        ):
            return f"expected {self.describe()}"
        if self.repeats and len(set(value)) < len(value):
            return f"{self.repeats} repeat"
        return None

    def schema(self) -> dict:
        schema = {"type": "array", "items": self.item.schema()}
        if self.min_items:
            schema["minItems"] = self.min_items
        if self.repeats:
            schema["uniqueItems"] = True
        return schema

    def describe(self, plural: bool = False) -> str:
        size = "a non-empty list" if self.min_items == 1 else "a list"
        return f"{size} of {self.item.describe(plural=True)}"


@dataclass(frozen=True)
class Record(Kind):
    """A mapping of fixed keys, each of its own kind, none required."""

    keys: dict

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"expected {self.describe()}"
        unknown = [key for key in value if key not in self.keys]
        if unknown:
            return f"unknown key {unknown[0]!r}; allowed: {', '.join(self.keys)}"
        return None

    def check(self, value: Any, where: str) -> None:
        super().check(value, where)
        for key, item in value.items():
            self.keys[key].check(item, f"{where}.{key}")

    def schema(self) -> dict:
        return {
            "type": "object",
            "additionalProperties": False,
            "properties": {key: kind.schema() for key, kind in self.keys.items()},
        }

    def describe(self, plural: bool = False) -> str:
        return f"a mapping of {', '.join(self.keys)} to lists"


@dataclass(frozen=True)
class Sweeps(Kind):
    """A study's sweeps: a mapping of sweep factors to non-empty lists of distinct numbers
    (each value is then checked as that run-spec key, with the study's base point)."""

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, dict) else "expected a mapping"

    def check(self, value: Any, where: str) -> None:
        super().check(value, where)
        for factor, values in value.items():
            at = f"{where}.{factor}"
            if factor not in FACTORS:
                raise SettingError(
                    f"{at}: cannot sweep {factor!r}; sweepable: {', '.join(FACTORS)}"
                )
            if not isinstance(values, list) or not values:
                raise SettingError(f"{at} = {values!r}: expected a non-empty list of values")
            for index, number in enumerate(values):
                if isinstance(number, bool) or not isinstance(number, int | float):
                    raise SettingError(f"{at}[{index}] = {number!r}: expected a number")
            if len({float(v) for v in values}) != len(values):
                raise SettingError(f"{at} = {values}: values repeat")

    def schema(self) -> dict:
        return {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                factor: {
                    "type": "array",
                    "minItems": 1,
                    "uniqueItems": True,
                    "items": spec_key_schema(factor),
                }
                for factor in FACTORS
            },
        }

    def describe(self, plural: bool = False) -> str:
        return "lists of values for " + ", ".join(f"`{f}`" for f in FACTORS)


def _spec_field(name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(RunSpec) if f.name == name)


def spec_key_schema(name: str) -> dict:
    """The JSON schema of one run-spec key's values, from its ``spec.option()``."""
    key = _spec_field(name)
    meta = key.metadata
    if meta["choices"]:
        return Choice(meta["choices"]).schema()
    if meta["names"]:
        return {"type": "string", "pattern": meta["names"][1]}
    if isinstance(key.default, bool | str):
        return (Flag() if isinstance(key.default, bool) else Text()).schema()
    integer = isinstance(key.default, int)
    return Number(
        meta["minimum"], meta["maximum"], meta["exclusive_minimum"], integer=integer
    ).schema()


@dataclass(frozen=True)
class Section(Kind):
    """A mapping whose keys a dataclass of ``setting()`` declares (a config section, a
    study, the whole config)."""

    declaration: type

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, dict) else "expected a mapping"

    def check(self, value: Any, where: str) -> None:
        super().check(value, where)
        for key in declared(self.declaration):
            if key.name in value or default_of(key) is REQUIRED:
                key.metadata["kind"].check(value.get(key.name), f"{where}.{key.name}")

    def schema(self) -> dict:
        keys = declared(self.declaration)
        schema: dict[str, Any] = {
            "type": "object",
            "additionalProperties": False,
            "properties": {key.name: key_schema(key) for key in keys},
        }
        required = [key.name for key in keys if default_of(key) is REQUIRED]
        return {**schema, "required": required} if required else schema


@dataclass(frozen=True)
class Studies(Kind):
    """The config's studies: a non-empty mapping of study names to studies (checked one by
    one, with the run specs they expand to, by ``gcstudy.study.config``)."""

    def problem(self, value: Any) -> str | None:
        if isinstance(value, dict) and value:
            return None
        return "must be a non-empty mapping of study names to studies"

    def schema(self) -> dict:
        return {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": Section(Study).schema(),
        }


@dataclass(frozen=True)
class ClassSplit(Kind):
    """A transfer set's class split: a class file name, or fractions of the classes."""

    def problem(self, value: Any) -> str | None:
        if value is None or isinstance(value, str | dict):
            return None
        return f"expected {self.describe()}"

    def schema(self) -> dict:
        fraction = {"type": "number", "minimum": 0, "maximum": 1}
        fractions = {
            "type": "object",
            "additionalProperties": False,
            "properties": dict.fromkeys(CLASS_PARTS, fraction),
            "required": ["source", "target"],
        }
        return {"oneOf": [{"type": "string"}, fractions]}

    def describe(self, plural: bool = False) -> str:
        return "a class file or a mapping of source, val, target to fractions"


@dataclass(frozen=True)
class Declarations(Kind):
    """The config's ``datasets``: new names (not built-in ones) to folder data sets
    (checked with their folders by ``gcstudy.study.datasets.declare``)."""

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, dict) else "expected a mapping of names to data sets"

    def check(self, value: Any, where: str) -> None:
        super().check(value, where)
        for name, declaration in value.items():
            Section(DatasetDeclaration).check(declaration, f"{where}.{name}")

    def schema(self) -> dict:
        return {
            "type": "object",
            "propertyNames": {"pattern": f"^{NAME.pattern}$", "not": {"enum": list(BUILT_IN)}},
            "additionalProperties": Section(DatasetDeclaration).schema(),
        }


def setting(default, help: str, kind: Kind, *, schema_default: bool = True):
    """One config key: its default (a value, or an ``Elsewhere``: ``REQUIRED``,
    ``INHERITED``, ``FROM_RESOURCES``), what it means and its kind.
    ``schema_default=False`` keeps the default out of the JSON schema (the key's reader
    then supplies it)."""
    metadata = {"help": help, "kind": kind, "schema_default": schema_default}
    if isinstance(default, Elsewhere):
        return field(default=None, metadata={**metadata, "default": default})
    if isinstance(default, list | dict):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def declared(section) -> tuple[dataclasses.Field, ...]:
    """The declared keys of a section (a dataclass or an instance of one), in order."""
    return dataclasses.fields(section)


def default_of(key: dataclasses.Field):
    """A key's default as plain data: ``REQUIRED`` when it has none, an ``Elsewhere``
    naming where it comes from (``INHERITED``, ``FROM_RESOURCES``)."""
    if "default" in key.metadata:
        return key.metadata["default"]
    if key.default_factory is not dataclasses.MISSING:
        return key.default_factory()
    return key.default


def key_schema(key: dataclasses.Field) -> dict:
    """One declared key as JSON schema: its kind's rule, its default, its help."""
    schema = dict(key.metadata["kind"].schema())
    default = default_of(key)
    if not isinstance(default, Elsewhere) and key.metadata["schema_default"]:
        schema["default"] = default
    return {**schema, "description": key.metadata["help"]}


class _Checked:
    """A section as the stages read it: built from its config mapping (``from_dict``;
    missing keys take their declared defaults), every value checked against its
    declaration (a ``SettingError`` naming ``SECTION.key``), lists held as tuples."""

    SECTION = ""

    def __post_init__(self):
        Section(type(self)).check(self.__dict__, self.SECTION)
        for key in declared(self):
            value = getattr(self, key.name)
            if isinstance(value, list):
                object.__setattr__(self, key.name, tuple(value))

    @classmethod
    def from_dict(cls, values: dict | None):
        """The section from the config's mapping (``None``: every default)."""
        known = [key.name for key in declared(cls)]
        for key in values or {}:
            if key not in known:
                raise SettingError(
                    f"{cls.SECTION}: unknown key {key!r}{did_you_mean(key, known)}; "
                    f"allowed: {', '.join(known)}"
                )
        return cls(**(values or {}))

    def to_dict(self) -> dict:
        """The section as the config's mapping (plain lists)."""
        values = {key.name: getattr(self, key.name) for key in declared(self)}
        return {name: list(v) if isinstance(v, tuple) else v for name, v in values.items()}


# --- the config's sections -----------------------------------------------------------------


# How runs are grouped into training jobs (resources.batch; gcstudy.scheduling.batches).
BATCH_MODES = ("run", "study_seed")


@dataclass(frozen=True)
class Resources(_Checked):
    """What training and evaluation jobs ask the scheduler for (config key ``resources``)."""

    SECTION = "resources"

    gpu: int = setting(
        0, "GPUs per training and evaluation job (set 1 on a GPU cluster)", Integer(0)
    )
    cpus_per_gpu: int = setting(4, "CPU cores per GPU, when `gpu` > 0", Integer(1))
    threads: int = setting(
        1, "CPU threads per job when `gpu` = 0 (also torch's thread count)", Integer(1)
    )
    mem_mb: int = setting(
        4000,
        "memory per job in MB; doubled on the first retry, tripled on the second",
        Integer(100),
    )
    minutes_per_1000_steps: float = setting(
        10,
        "expected training minutes per 1,000 steps, evaluation included (a study's own "
        "`minutes_per_1000_steps` replaces it for that study's runs); the job's time "
        "limit is twice that (summed over a job's runs; at least 10 minutes), times the "
        "attempt number (`gcstudy.scheduling.jobs`); `gcstudy runs` and `gcstudy launch -n` "
        "print the expected GPU-hours from it, per study",
        Number(0, exclusive_minimum=True),
    )
    batch: str = setting(
        "run",
        "which run folders one training job (rule `train`) trains one after another in one "
        "process, with their evaluations. `run`: a job per run folder (what cluster profiles "
        "address as `train`). `study_seed`: a job per study and seed, so the start-up is paid "
        "once per job. Membership depends on the run alone: an added run joins its study and "
        "seed's job, and no other run moves. A failing run fails alone; the rerun trains only "
        "the unfinished runs of the job (README, design; gcstudy.scheduling.batches)",
        Choice(BATCH_MODES),
    )


BUDGETS = {  # the sampling budgets of the GC-estimator study
    "examples": [8, 16, 32, 64],
    "hutchinson": [1, 2, 4, 8],
    "outputs": [1, 4, 16],
    "mask": [0.002, 0.005, 0.01],
}


@dataclass(frozen=True)
class EvaluationSettings(_Checked):
    """Settings of the per-run evaluations (config key ``evaluate``): the few-shot table
    and the GC-estimator study."""

    SECTION = "evaluate"

    fewshot_episodes: int = setting(
        10000, "episodes of the final few-shot table (1 and 5 shots)", Integer(1)
    )
    fewshot_classifiers: tuple[str, ...] = setting(
        ["ncc"],
        "`ncc` (nearest class mean, the paper's) and/or `logreg` (a logistic-regression probe)",
        ListOf(Choice(("ncc", "logreg")), min_items=1),
    )
    gc_examples: int = setting(
        128, "size of the fixed training sample of the GC-estimator study", Integer(2)
    )
    gc_repeats: int = setting(10, "independent estimates per estimator and budget", Integer(2))
    budgets: dict[str, list[float]] = setting(
        BUDGETS,
        "per estimator, the sampling budgets: `examples` (examples averaged; the standard "
        "error it reports is about the exact GC of the same sample, with the "
        "finite-population correction `sqrt(1 - b/N)`), `hutchinson` (probes per example), "
        "`outputs` (output rows per example), `mask` (input-coordinate keep rate)",
        Record(
            {
                "examples": ListOf(Integer(2), min_items=1),
                "hutchinson": ListOf(Integer(1), min_items=1),
                "outputs": ListOf(Integer(1), min_items=1),
                "mask": ListOf(Number(0, 1, exclusive_minimum=True), min_items=1),
            }
        ),
    )


@dataclass(frozen=True)
class StatsSettings(_Checked):
    """How the statistics stage decides the claims (config key ``stats``; recorded in
    ``stats/claims.json``)."""

    SECTION = "stats"

    alpha: float = setting(
        0.05,
        "level of every test (one-sided, in the predicted direction)",
        Number(0, 0.5, exclusive_minimum=True, exclusive_maximum=True),
    )
    summary_window: int = setting(
        3,
        "a run's summary of a metric: mean of its log over the run's last K evaluations "
        "(the unit of every test; choose K so that the last K evaluations lie in the "
        "terminal phase)",
        Integer(1),
    )
    permutations: int = setting(
        2000,
        "within-seed permutations per permutation test (all of them when there are fewer)",
        Integer(99),
    )
    seed: int = setting(0, "seed of the permutations and of the claim-2 placebo draws", Integer(0))
    clocks: tuple[str, ...] = setting(
        list(CLOCKS),
        "design clocks at which claims 1-3 are judged (equal steps, equal examples seen, "
        "equal lr x steps); a claim is supported or contradicted only when it is so at "
        "every clock (docs/claims.md)",
        ListOf(Choice(CLOCKS), min_items=1, repeats="clocks"),
    )


@dataclass(frozen=True)
class DatasetDeclaration:
    """A user's own data set, a folder of images (config key ``datasets.<name>``; checked
    and listed by ``gcstudy.study.datasets.declare``, docs/data.md)."""

    path: str = setting(
        REQUIRED,
        "the folder of images, relative to the working directory: one folder per class "
        "(torchvision's ImageFolder), or `train/` and `test/` folders of class folders, or "
        "a mini-ImageNet layout",
        Text(),
    )
    image_size: int = setting(
        IMAGE_SIZE,
        "pixels per side: every image is resized to this square size once, when the set is "
        "prepared (`gcstudy prepare-data NAME`)",
        Integer(1),
    )
    channels: int = setting(CHANNELS[-1], "1 (greyscale) or 3 (RGB)", Choice(CHANNELS))
    test_fraction: float = setting(
        TEST_FRACTION,
        "fraction of each class's images held out as test images, drawn from `split_seed` "
        "(only for a folder without `train/` and `test/`; mini-ImageNet's layouts: 1/6)",
        Number(0, 1, exclusive_minimum=True, exclusive_maximum=True),
        schema_default=False,
    )
    split_seed: int = setting(
        SPLIT_SEED, "seed of the train / test split and of the class fractions", Integer(0)
    )
    classes: Any = setting(
        None,
        "makes it a transfer set: a file of lines `<class folder> source|val|target`, or "
        "the fractions of the classes drawn (from `split_seed`) as `source`, `val`, `target`",
        ClassSplit(),
        schema_default=False,
    )


# --- a study and the whole config ---------------------------------------------------------


@dataclass(frozen=True)
class Study:
    """One study of the config (``studies.<name>``). ``model``, ``width`` and ``dataset``
    are run-spec keys set on the study (their defaults: the config's ``defaults``, then
    the run spec's); ``base`` holds the other run-spec keys of the base point."""

    experiment: str = setting(
        REQUIRED,
        "the paper experiment whose figure the study redraws",
        Choice(EXPERIMENTS),
    )
    description: str = setting("", "one line for the report", Text(), schema_default=False)
    model: str = setting(INHERITED, MODEL_HELP, RunSpecKey("model"))
    width: float = setting(
        INHERITED, "channel width multiplier (1 = the paper's networks)", RunSpecKey("width")
    )
    dataset: str = setting(
        INHERITED, "training data set: a built-in one or one of `datasets`", RunSpecKey("dataset")
    )
    base: dict = setting(
        {},
        "run-spec keys of the base point: `lr`, `batch_size`, `l2`, `gc_penalty`, "
        "`steps`, the cadence...",
        RunSpecKeys(),
    )
    sweeps: dict = setting(
        {},
        "one-factor-at-a-time sweeps around the base point: lists of values for "
        + ", ".join(f"`{f}`" for f in FACTORS),
        Sweeps(),
    )
    seeds: list = setting(
        [0],
        "seeds; every point is trained once per seed",
        ListOf(Integer(0), min_items=1, repeats="seeds"),
    )
    evaluations: list = setting(
        [],
        "per-run evaluations: `fewshot` (few-shot table; transfer data sets only), "
        "`gc_estimators` (GC-estimator study, Fig. 2), `bound` (marks the study for the "
        "Fig. 3 bound figure)",
        ListOf(Choice(EVALUATIONS)),
    )
    minutes_per_1000_steps: float = setting(
        FROM_RESOURCES,
        "expected training minutes per 1,000 steps of this study's runs, for a study whose "
        "steps cost more or less than the config's others (a larger network, larger images): "
        "its runs' job time limits and its share of the expected GPU-hours follow from it "
        "(`gcstudy.scheduling.jobs`)",
        Number(0, exclusive_minimum=True),
    )


@dataclass(frozen=True)
class Config:
    """The top level of a study config."""

    results: str = setting(
        "results",
        "folder of every output: `runs/<run_id>/`, `run_table.json`, `study.nc`, `stats/`, "
        "`figures/`, `report.html`",
        Text(),
    )
    data_root: str = setting(
        "data",
        "folder of the downloaded data sets (`gcstudy prepare-data NAME --root DIR`)",
        Text(),
    )
    datasets: dict = setting(
        {},
        "your own data sets: new names (letters a-z, digits, `_`) to folders of images, "
        "each a mapping of the keys below; a study's `dataset` may name them",
        Declarations(),
    )
    defaults: dict = setting(
        {},
        "run-spec keys (table below) applied to every run of every study; a study's `base` wins",
        RunSpecKeys(),
    )
    share_runs: bool = setting(
        True,
        "train runs of different studies with the same resolved run spec once, in the "
        "folder of the first (config order); each keeps its run id and study, and the run "
        "table's `folder` (`study.nc`: `run_folder`) names the folder it reads",
        Flag(),
    )
    resources: dict = setting(
        {}, "what training and evaluation jobs ask the scheduler for", Section(Resources)
    )
    evaluate: dict = setting({}, "settings of the per-run evaluations", Section(EvaluationSettings))
    stats: dict = setting(
        {}, "how the claims are decided (recorded in `stats/claims.json`)", Section(StatsSettings)
    )
    studies: dict = setting(REQUIRED, "study name (letters, digits, `_`, `-`) to study", Studies())


TOP_KEYS = tuple(key.name for key in declared(Config))
STUDY_KEYS = tuple(key.name for key in declared(Study))
