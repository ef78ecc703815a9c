"""`prepare`: fetch a data set's files once (on a machine with internet) and verify them."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from gcstudy.data.errors import not_found, one_line
from gcstudy.data.loader import load
from gcstudy.study.datasets import get_spec

DOWNLOAD_TIMEOUT_S = 20.0


def prepare(
    name: str, root: str | os.PathLike | None, *, timeout_s: float = DOWNLOAD_TIMEOUT_S
) -> Path:
    """Download data set `name` into the data root `root`, verify it, return its folder.

    For the torchvision-based data sets (mnist, fashion_mnist, cifar10, cifar100, and
    cifar_fs, which shares CIFAR-100's files) torchvision downloads the files into
    `root` unless they are already there; digits and digits_fs are bundled with
    scikit-learn and need nothing (`root` may be None; the returned folder is
    scikit-learn's data folder); mnist_5k and glyphs are written under `root` from files of
    installed packages (no network; the returned folder is their cache); a folder set
    (mini_imagenet, or one declared in a config: declare it first, see
    gcstudy.study.datasets.declare) is decoded, resized and split once into its cache
    under `root` from the files already on disk (no network). The `train` split
    is then loaded once to verify the files.

    Returns the absolute folder holding the files (e.g. `<root>/cifar-100-python`).

    Raises DatasetNotFound (a FileNotFoundError) if the download fails (no network, a
    server error, a bad checksum): the message gives the underlying error on one line,
    the folder and files expected and how to place them by hand. Every network operation
    times out after `timeout_s` seconds (the process-wide default socket timeout is set
    for the duration of the call and restored), so an offline machine fails fast.
    Raises ValueError for an unknown name or a missing root where files are needed.

    Meant for `gcstudy prepare-data NAME --root DIR`, run once on a machine with internet
    access (e.g. a cluster's login node) before jobs that run offline.
    """
    spec = get_spec(name, root)
    if spec.folder is None:
        load(name, root, "train")
        from sklearn import datasets  # slow import: only when used

        return Path(datasets.__file__).parent / "data"
    if root is None:
        raise ValueError(f"dataset {name!r} needs a data root to download into (--root DIR)")
    if spec.generated or spec.from_folder:
        load(name, root, "train")  # writes the cache if needed, then checks it
        return spec.cache_path(root)
    from gcstudy.data import torchvision_sets  # imports torchvision (seconds): only when needed

    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        torchvision_sets.download(spec, root)
    except Exception as error:  # torchvision raises URLError, RuntimeError, OSError, ...
        raise not_found(spec, root, f"the download failed ({one_line(error)})") from error
    finally:
        socket.setdefaulttimeout(previous_timeout)
    load(name, root, "train")
    return spec.folder_path(root)
