"""The one atomic write (gcstudy.files) on real files and real processes: a writer that
fails or is killed mid-write leaves the old file whole; a finished write replaces it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from gcstudy import files


def test_a_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "made" / "here.txt"  # the folder is made
    files.write_text(path, "old\n")
    files.write_text(path, "new ünïcode\n")
    assert path.read_text(encoding="utf-8") == "new ünïcode\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["here.txt"]


def test_a_writer_that_fails_mid_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "table.nc"
    path.write_text("the old content")
    with pytest.raises(RuntimeError, match="disk full"), files.replacing(path) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("disk full")
    assert path.read_text() == "the old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.nc"]


def test_a_synced_write_reaches_the_disk_before_the_rename(tmp_path, monkeypatch):
    """``sync``: the temporary file is fsynced while it still has its temporary name."""
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), (tmp_path / "w.h5").exists()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    files.write_text(tmp_path / "w.h5", "weights", sync=True)
    assert synced == [(str(tmp_path / "w.h5.tmp"), False)]
    files.write_text(tmp_path / "w.h5", "weights", sync=False)
    assert len(synced) == 1


WRITER = """
import sys, time
from gcstudy import files
with files.replacing(sys.argv[1]) as tmp:
    with open(tmp, "w") as handle:
        handle.write("half of the new"); handle.flush()
        print("writing", flush=True)
        time.sleep(600)
"""


def test_a_writer_killed_mid_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "trace.h5"
    path.write_text("the old content")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert path.read_text() == "the old content"
    files.write_text(path, "the new content")  # the next write takes over the leftover
    assert path.read_text() == "the new content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trace.h5"]


def test_the_temporary_is_beside_the_target(tmp_path):
    """Same folder, so the same file system: the rename is atomic."""
    assert files.temporary_name(tmp_path / "x" / "y.json") == tmp_path / "x" / "y.json.tmp"
