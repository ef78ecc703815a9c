"""Your own data set in a folder, and mini-ImageNet in its three layouts (issue 22, points 1
and 2): real PNG / JPEG files and real pickles, read through the real code, checked against
the pixels written (resized independently with PIL)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fixtures_images import (
    flat_jpeg_colour,
    mini_imagenet_classes,
    resized,
    write_class_folders,
    write_mini_imagenet,
)

from gcstudy.data import DatasetNotFound, load, prepare
from gcstudy.study import config as study_config
from gcstudy.study import datasets
from gcstudy.study.config import ConfigError
from gcstudy.study.datasets import DATASETS, DeclarationError, declare, get_spec
from gcstudy.study.image_folders import IMAGE_SUFFIXES, held_out_count
from gcstudy.study.spec import RunSpec

REPO = Path(__file__).resolve().parents[1]
ANIMALS = {"cat": 5, "dog": 6, "emu": 4, "fox": 7, "gnu": 5}


@pytest.fixture(autouse=True)
def forget_declared():
    """Each test starts and ends with only the built-in data sets registered."""
    yield
    for name in [n for n in DATASETS if n not in datasets.BUILT_IN]:
        del DATASETS[name]


def by_class(data, class_id) -> list[bytes]:
    """The images of one class as sorted bytes (an order-free comparison)."""
    return sorted(image.numpy().tobytes() for image in data.images[data.labels == class_id])


def oracle(arrays, size, channels=3) -> list[bytes]:
    return sorted(resized(a, size, channels).tobytes() for a in arrays)


def test_suffixes_are_torchvisions():
    from torchvision.datasets.folder import IMG_EXTENSIONS

    assert IMAGE_SUFFIXES == IMG_EXTENSIONS


@pytest.mark.parametrize("channels", [3, 1])
def test_image_folder_is_resized_once_and_split_by_seed(tmp_path, channels):
    """One folder per class, 10 x 12 PNGs: prepared at 8 x 8; each class's images are
    exactly the written ones, resized by PIL; train and test partition each class, with
    round(0.2 n) test images; the split is the same from the same seed, another seed moves it."""
    written = write_class_folders(tmp_path / "pets", ANIMALS)
    spec = declare("pets", {"path": str(tmp_path / "pets"), "image_size": 8,
                            "channels": channels}, "t")  # fmt: skip
    assert spec.class_names == tuple(sorted(ANIMALS)) and not spec.transfer
    train, test = (load("pets", tmp_path / "data", s) for s in ("train", "test"))
    assert train.images.shape[1:] == (channels, 8, 8) and train.images.dtype == torch.uint8
    for label, name in enumerate(spec.class_names):
        n = ANIMALS[name]
        assert (test.labels == label).sum() == held_out_count(n, 0.2) == round(0.2 * n + 1e-9)
        assert sorted(by_class(train, label) + by_class(test, label)) == oracle(
            written[name], 8, channels
        )
    assert (spec.train_size, spec.test_size) == (len(train.labels), len(test.labels))
    # the same declaration under another root: the same bytes; another seed: another split
    again = load("pets", tmp_path / "again", "test")
    assert torch.equal(again.images, test.images)
    declare("pets", {"path": str(tmp_path / "pets"), "image_size": 8, "channels": channels,
                     "split_seed": 1}, "t")  # fmt: skip
    other = load("pets", tmp_path / "seed1", "test")
    assert not torch.equal(other.images, test.images)
    assert torch.equal(other.labels, test.labels)  # stratified: the same counts per class


def test_train_test_folders_and_a_class_file(tmp_path):
    """train/ and test/ folders keep their own split; a class file makes a transfer set."""
    folder = tmp_path / "shapes"
    classes = {f"c{k}": 3 for k in range(6)}
    train = write_class_folders(folder / "train", classes, seed=1)
    test = write_class_folders(folder / "test", {c: 2 for c in classes}, seed=2)
    split_file = tmp_path / "splits.txt"
    split_file.write_text("# class part\nc0 source\nc1 source\nc2 source\n\nc3 val\n"
                          "c4 target\nc5 target\n")  # fmt: skip
    spec = declare("shapes", {"path": str(folder), "image_size": 32,
                              "classes": str(split_file)}, "t")  # fmt: skip
    assert (spec.source_classes, spec.val_classes, spec.target_classes) == ((0, 1, 2), (3,),
                                                                            (4, 5))  # fmt: skip
    assert (spec.train_size, spec.test_size, spec.target_size) == (9, 6, 10)
    root = tmp_path / "data"
    loaded = {s: load("shapes", root, s) for s in spec.splits}
    assert sorted(set(loaded["train"].labels.tolist())) == [0, 1, 2]
    for label in (0, 1, 2):
        assert by_class(loaded["train"], label) == oracle(train[f"c{label}"], 32)
        assert by_class(loaded["test"], label) == oracle(test[f"c{label}"], 32)
    assert by_class(loaded["target"], 5) == oracle(train["c5"] + test["c5"], 32)
    assert set(loaded["val"].labels.tolist()) == {3}


def test_class_fractions_partition_the_classes(tmp_path):
    """Seeded fractions: disjoint parts of round(f * K) source and val classes, the rest
    target; the same seed the same parts, another seed others."""
    write_class_folders(tmp_path / "many", {f"k{i:02d}": 2 for i in range(25)})
    fractions = {"source": 0.64, "val": 0.16, "target": 0.2}
    parts = []
    for seed in (0, 0, 3):
        spec = declare("many", {"path": str(tmp_path / "many"), "classes": fractions,
                                "split_seed": seed}, "t")  # fmt: skip
        parts.append((spec.source_classes, spec.val_classes, spec.target_classes))
    source, val, target = parts[0]
    assert (len(source), len(val), len(target)) == (16, 4, 5)
    assert sorted(source + val + target) == list(range(25))
    assert parts[0] == parts[1] and parts[0] != parts[2]


@pytest.mark.parametrize("layout", ["csv", "split_folders", "pickles"])
def test_mini_imagenet_in_each_layout(tmp_path, layout):
    """The built-in `mini_imagenet` from `<root>/mini-imagenet/` in each layout: 64 / 16 /
    20 classes with label ids in that order, 84 x 84 RGB, each class's images the written
    ones, 5 : 1 train / test in the source classes."""
    written = write_mini_imagenet(tmp_path / "mini-imagenet", layout)
    splits = {s: load("mini_imagenet", tmp_path, s) for s in DATASETS["mini_imagenet"].splits}
    assert torch.equal(splits["source"].labels.unique(), torch.arange(64))
    names = [c for part in mini_imagenet_classes() for c in part[3]]
    assert splits["train"].classes == tuple(names)
    assert splits["train"].images.shape[1:] == (3, 84, 84)
    assert set(splits["train"].labels.tolist()) == set(range(64))
    assert set(splits["val"].labels.tolist()) == set(range(64, 80))
    assert set(splits["target"].labels.tolist()) == set(range(80, 100))
    for label in (0, 63):
        assert (splits["test"].labels == label).sum() == 1  # 6 images: 1 test, 5 train
        assert (splits["train"].labels == label).sum() == 5
    source_both = [splits["train"], splits["test"]]
    checks = [("train", source_both, 0), ("train", source_both, 63),
              ("val", [splits["val"]], 64), ("test", [splits["target"]], 99)]  # fmt: skip
    for part, data, label in checks:
        got = sorted(b for d in data for b in by_class(d, label))
        arrays = written[part][names[label]]
        if layout == "csv":  # flat JPEG colours: each decoded within a few levels
            colours = np.array([np.frombuffer(b, np.uint8).reshape(3, -1).mean(1) for b in got])
            class_index = label - {"train": 0, "val": 64, "test": 80}[part]
            expected = np.array([flat_jpeg_colour(class_index, i, part)
                                 for i in range(len(arrays))])  # fmt: skip
            distance = np.abs(colours[:, None, :] - expected[None, :, :]).max(axis=2)
            assert sorted(distance.argmin(axis=1)) == list(range(len(arrays)))  # one each
            assert distance.min(axis=1).max() <= 3
        else:
            assert got == oracle(arrays, 84)


def test_mini_imagenets_declared_sizes_follow_from_its_split():
    """600 images per class, 1/6 held out: 500 / 100 per source class (like CIFAR-FS)."""
    spec = DATASETS["mini_imagenet"]
    test = held_out_count(600, spec.test_fraction)
    assert test == 100
    assert (spec.train_size, spec.test_size, spec.target_size) == (
        64 * (600 - test), 64 * test, 20 * 600)  # fmt: skip
    assert (spec.image_size, spec.channels, spec.num_classes) == (84, 3, 100)


def test_a_defective_mini_imagenet_copy_is_named(tmp_path):
    """A csv row naming a missing image, a pickle without `class_dict`: the file named."""
    folder = tmp_path / "mini-imagenet"
    write_mini_imagenet(folder, "csv")
    missing = sorted((folder / "images").iterdir())[3]
    missing.unlink()
    with pytest.raises(DatasetNotFound, match=rf"train\.csv, line \d+: {missing} is missing"):
        prepare("mini_imagenet", tmp_path)
    pickles = tmp_path / "pickled"
    write_mini_imagenet(pickles / "mini-imagenet", "pickles")
    broken = pickles / "mini-imagenet" / "mini-imagenet-cache-validation.pkl"
    broken.write_bytes(pickle.dumps({"image_data": np.zeros((2, 84, 84, 3), np.uint8)}))
    with pytest.raises(DatasetNotFound, match=rf"{broken}: not a mini-ImageNet pickle"):
        prepare("mini_imagenet", pickles)


def test_mini_imagenet_declared_at_32_pixels(tmp_path):
    """A declared folder in a mini-ImageNet layout keeps its class split, at its own size."""
    written = write_mini_imagenet(tmp_path / "mi", "pickles")
    spec = declare("mini32", {"path": str(tmp_path / "mi"), "image_size": 32}, "t")
    assert (len(spec.source_classes), len(spec.val_classes), len(spec.target_classes)) == (
        64, 16, 20)  # fmt: skip
    target = load("mini32", tmp_path / "data", "target")
    assert target.images.shape[1:] == (3, 32, 32)
    name = spec.class_names[80]
    assert by_class(target, 80) == oracle(written["test"][name], 32)


def test_missing_mini_imagenet_says_where_and_which_layouts(tmp_path):
    with pytest.raises(DatasetNotFound) as info:
        load("mini_imagenet", tmp_path, "train")
    message = str(info.value)
    assert str(tmp_path / "mini-imagenet") in message
    for text in ("mini-imagenet-cache-train.pkl", "train.csv", "images/", "train/, val/, test/"):
        assert text in message
    (tmp_path / "mini-imagenet" / "train" / "n01").mkdir(parents=True)  # an incomplete copy
    (tmp_path / "mini-imagenet" / "train.csv").write_text("filename,label\n")
    with pytest.raises(DatasetNotFound, match="layouts"):
        prepare("mini_imagenet", tmp_path)


def write_config(tmp_path: Path, declaration: dict, study: dict | None = None) -> Path:
    config = {
        "data_root": str(tmp_path / "data"),
        "datasets": {"pets": declaration},
        "studies": {"mine": {"experiment": "E1", "dataset": "pets", **(study or {})}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_study_trains_on_a_declared_set(tmp_path, monkeypatch):
    """End to end: a config declares a folder set (relative path), a study names it, the
    run spec accepts it, and a tiny run trains on it with the source pixels' statistics."""
    from gcstudy.data.run_data import load_run_data
    from gcstudy.study import traces
    from gcstudy.training import trainer

    monkeypatch.chdir(tmp_path)
    write_class_folders(tmp_path / "pets", {f"p{k}": 8 for k in range(5)})
    base = dict(lr=0.05, batch_size=8, steps=3,
                eval_steps=[0, 3], gc_examples=10, feature_examples=20, test_examples=0,
                bn_recalibration_examples=16, fewshot_episodes=5, fewshot_queries=2,
                fewshot_ways=2, device="cpu")  # fmt: skip
    path = write_config(tmp_path, {"path": "pets", "classes": {"source": 0.6, "target": 0.4}},
                        {"model": "vgg11", "width": 0.0625, "base": base})  # fmt: skip
    runs = study_config.validate(study_config.load(path))
    spec = runs[0].spec
    assert spec.dataset == "pets" and get_spec("pets").folder == str(tmp_path / "pets")
    data = load_run_data(spec, torch.device("cpu"))
    source = load("pets", spec.data_root, "train")
    pixels = source.images.double().div(255).transpose(0, 1).flatten(1)
    assert torch.allclose(data.mean.double(), pixels.mean(1), atol=1e-6)
    assert data.target_images.shape[0] == 16 and data.num_classes == 3
    assert data.train_images.shape[1:] == (3, 32, 32)  # 10 x 12 files, resized once
    assert trainer.run(spec, tmp_path / "run", progress=False) == "complete"
    trace = traces.read(tmp_path / "run" / "trace.h5")
    assert trace.step.values.tolist() == spec.evaluation_steps and spec.evaluation_steps[-1] == 3
    assert trace.attrs["spec"]["dataset"] == "pets"
    assert trace["class"].values.tolist() == list(spec_classes(spec))


def spec_classes(spec: RunSpec) -> tuple[int, ...]:
    return get_spec(spec.dataset, spec.data_root).source_classes


def test_prepare_data_and_show_data_commands(tmp_path, capsys, caplog):
    """`gcstudy prepare-data NAME --root DIR --configfile F` prepares a declared set; a
    later process that never reads the config (`show-data` without --configfile, a run
    spec) knows it from the prepared copy's manifest."""
    from gcstudy import cli

    write_class_folders(tmp_path / "pets", ANIMALS)
    config = write_config(tmp_path, {"path": str(tmp_path / "pets"), "image_size": 16,
                                     "classes": {"source": 0.6, "val": 0.2,
                                                 "target": 0.2}},
                          {"base": {"batch_size": 4}})  # fmt: skip
    root = tmp_path / "data"
    command = ["prepare-data", "pets", "--root", str(root)]
    assert cli.main(command) == 2 and "unknown dataset 'pets'" in caplog.text
    assert cli.main([*command, "--configfile", str(config)]) == 0
    assert str(root / "prepared" / "pets") in capsys.readouterr().out
    del DATASETS["pets"]  # as in a process that never read the config
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    show = [sys.executable, "-m", "gcstudy.cli", "show-data", "pets", "--root", str(root),
            "--out", str(tmp_path / "pets.png"), "--classes", "3"]  # fmt: skip
    subprocess.run(show, capture_output=True, text=True, env=env, check=True)
    assert (tmp_path / "pets.png").stat().st_size > 1000
    spec = get_spec("pets", root)  # this process: from the manifest
    assert spec.image_size == 16 and spec.class_names == tuple(sorted(ANIMALS))
    assert RunSpec.from_dict({"dataset": "pets", "data_root": str(root)}).dataset == "pets"


BAD = {
    "missing folder": ({"path": "nowhere"}, r"datasets\.pets\.path = 'nowhere': no folder"),
    "unknown class": ({"path": "pets", "classes": "split.txt"},
                      r"split\.txt, line 2: unknown class 'cow'"),
    "fractions": ({"path": "pets", "classes": {"source": 0.5, "target": 0.3}},
                  r"datasets\.pets\.classes: the fractions .* sum to 0\.8, expected 1"),
    "channels": ({"path": "pets", "channels": 2}, r"datasets\.pets\.channels = 2"),
    "test_fraction": ({"path": "pets", "test_fraction": 1.5},
                      r"datasets\.pets\.test_fraction = 1\.5"),
    "unknown key": ({"path": "pets", "size": 8}, r"unknown key 'size'"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_bad_declarations_are_refused_naming_the_key(tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    write_class_folders(tmp_path / "pets", {"cat": 2, "dog": 2, "emu": 2})
    (tmp_path / "split.txt").write_text("cat source\ncow target\n")
    declaration, message = BAD[case]
    path = write_config(tmp_path, declaration)
    with pytest.raises(ConfigError, match=message) as info:
        study_config.load(path)
    assert str(path) in str(info.value)
    assert not (tmp_path / "data").exists()  # refused before any preparation


def test_a_built_in_name_cannot_be_declared(tmp_path):
    write_class_folders(tmp_path / "pets", {"cat": 2, "dog": 2})
    with pytest.raises(DeclarationError, match="'cifar10' is a built-in data set"):
        declare("cifar10", {"path": str(tmp_path / "pets")}, "cfg.yaml: datasets.cifar10")
    with pytest.raises(DeclarationError, match="must match"):
        declare("My-Set", {"path": str(tmp_path / "pets")}, "cfg.yaml: datasets.My-Set")


def test_an_unreadable_image_is_named(tmp_path):
    write_class_folders(tmp_path / "pets", {"cat": 3, "dog": 3})
    broken = tmp_path / "pets" / "dog" / "img001.png"
    broken.write_bytes(b"not a png at all")
    declare("pets", {"path": str(tmp_path / "pets")}, "t")
    with pytest.raises(DatasetNotFound, match=f"{broken}: cannot read it as an image"):
        prepare("pets", tmp_path / "data")
    assert not (tmp_path / "data" / "prepared" / "pets").exists()


def test_a_changed_declaration_finds_the_prepared_copy_stale(tmp_path):
    write_class_folders(tmp_path / "pets", ANIMALS)
    declare("pets", {"path": str(tmp_path / "pets"), "image_size": 8}, "t")
    prepare("pets", tmp_path / "data")
    declare("pets", {"path": str(tmp_path / "pets"), "image_size": 16}, "t")
    with pytest.raises(
        DatasetNotFound, match=r"(?s)stale.*differs in image_size.*Delete .*prepared/pets"
    ):
        load("pets", tmp_path / "data", "train")


def test_the_workflow_prepares_a_declared_set(tmp_path):
    """The real Snakefile: the config's declared set is prepared by rule prepare_data
    (which passes the set's declaration on), under the relative data root; then another
    config file with other resources plans no preparation, a changed declaration does."""
    write_class_folders(tmp_path / "pets", ANIMALS)
    config = {"datasets": {"pets": {"path": "pets", "image_size": 8}},
              "studies": {"mine": {"experiment": "E1", "dataset": "pets",
                                   "base": {"batch_size": 4}}}}  # fmt: skip
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
               str(tmp_path), "--configfile", "cfg.yaml", "--cores", "1",
               "results/data/pets.ready"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "prepared/pets" in (tmp_path / "results" / "data" / "pets.ready").read_text()
    spec = get_spec("pets", tmp_path / "data")  # from the manifest the rule wrote
    assert spec.image_size == 8 and spec.folder == str(tmp_path / "pets")
    for name, change, prepares in (("same.yaml", {"resources": {"mem_mb": 3000}}, False),
                                   ("bigger.yaml", {"datasets": {"pets": {"path": "pets",
                                                                          "image_size": 16}}},
                                    True)):  # fmt: skip
        (tmp_path / name).write_text(yaml.safe_dump({**config, **change}))
        dry = subprocess.run([*command[:-4], name, "-n", "results/data/pets.ready"],
                             cwd=tmp_path, capture_output=True, text=True, env=env)  # fmt: skip
        assert dry.returncode == 0, dry.stderr[-3000:]
        assert ("rule prepare_data:" in dry.stdout) == prepares, (name, dry.stdout[-2000:])


def test_the_launcher_prepares_a_declared_set(tmp_path, monkeypatch):
    """`gcstudy launch`'s preparation (gcstudy.scheduling.launch.prepare_files): a declared
    set with a folder relative to the launch's working directory is prepared there."""
    from gcstudy.scheduling import launch

    workdir = tmp_path / "work"
    write_class_folders(workdir / "pets", ANIMALS)
    config = {"datasets": {"pets": {"path": "pets", "image_size": 8}},
              "studies": {"mine": {"experiment": "E1", "dataset": "pets",
                                   "base": {"batch_size": 4}}}}  # fmt: skip
    (workdir / "cfg.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)  # not the working directory of the launch
    plan = launch.plan([workdir / "cfg.yaml"], workdir=workdir)
    launch.prepare_files(plan)
    assert "prepared/pets" in (workdir / "results" / "data" / "pets.ready").read_text()
    assert get_spec("pets").folder == str(workdir / "pets")
    assert len(load("pets", workdir / "data", "train").labels) == get_spec("pets").train_size
